"""Checkpoints: what is kept, and that dropping old ones never leaves a half checkpoint."""
import os

import jax.numpy as jnp
import numpy as np

from lcc_jax import checkpoint


def _steps(directory):
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_keeps_two_latest_and_best_and_leaves_no_dropped_folder(tmp_path):
  directory = str(tmp_path / "checkpoints")
  with checkpoint.Checkpoints(directory) as ckpts:
    for step, metric in ((10, 0.5), (20, 0.9), (30, 0.7), (40, 0.6)):
      ckpts.save(step, {"step": jnp.asarray(step), "w": jnp.full((3,), step, jnp.float32)},
                 {"epoch": step // 10}, metric)
    assert (ckpts.latest_step(), ckpts.best_step()) == (40, 20)
  assert _steps(directory) == [20, 30, 40]  # the best and the two latest
  # Dropped steps went through the trash folder, which is emptied after each save.
  assert not os.path.exists(os.path.join(directory, checkpoint.TRASH))
  for step in (20, 30, 40):
    state, meta = checkpoint.read_step(directory, step)
    np.testing.assert_array_equal(state["w"], np.full((3,), step, np.float32))
    assert meta == {"epoch": step // 10}


def test_a_half_deleted_checkpoint_in_the_trash_is_never_listed_and_is_removed_on_open(tmp_path):
  # What a kill during the deletion of a dropped checkpoint leaves: a partial folder, in trash.
  directory = tmp_path / "checkpoints"
  with checkpoint.Checkpoints(str(directory)) as ckpts:
    ckpts.save(7, {"step": jnp.asarray(7)}, {"epoch": 1}, 0.5)
  partial = directory / checkpoint.TRASH / "3" / "state"
  partial.mkdir(parents=True)
  (partial / "some_shard").write_bytes(b"\0")
  with checkpoint.Checkpoints(str(directory)) as ckpts:
    assert (ckpts.latest_step(), ckpts.best_step()) == (7, 7)
  assert _steps(directory) == [7]
  assert not (directory / checkpoint.TRASH).exists()


def test_dropped_checkpoints_are_renamed_whole_into_the_trash(tmp_path, monkeypatch):
  # With the trash left alone, the dropped step is there complete: it was moved by one rename,
  # not deleted file by file in place.
  monkeypatch.setattr(checkpoint.Checkpoints, "_empty_trash", lambda self: None)
  directory = tmp_path / "checkpoints"
  with checkpoint.Checkpoints(str(directory)) as ckpts:
    ckpts.save(1, {"step": jnp.asarray(1)}, {"epoch": 1}, 0.1)
    ckpts.save(2, {"step": jnp.asarray(2)}, {"epoch": 2}, 0.9)
    ckpts.save(3, {"step": jnp.asarray(3)}, {"epoch": 3}, 0.2)
  assert _steps(directory) == [2, 3]
  state, _ = checkpoint.read_step(str(directory / checkpoint.TRASH), 1)
  assert int(state["step"]) == 1
