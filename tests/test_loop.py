"""The chunked training loop: many steps per dispatch, nothing per step crossing to the device,
exact resume at chunk boundaries, checkpoints off the step path, precision settings."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from lcc_jax import (checkpoint, data, erasure, optim, precision, run_control, steps, train_lib,
                     train_loop)
from tests.helpers import sigterm_at_chunk, tiny_code, tiny_data

TIMING_KEYS = ("time_s", "steps_per_s")


def _epoch(k=2, num_steps=7, batch=8, seed=0):
  """A shuffled epoch of index arrays over the tiny data set (weight 0 on the last rows)."""
  code, variables = tiny_code(k, 1)
  dataset = tiny_data(code, variables, num=num_steps * batch * k, k=k)
  indices = np.arange(num_steps * batch * k - 3 * k)
  idx_SxBxK, weight_SxB = data.group_indices(indices, k, batch, shuffle=True, seed=seed, epoch=1)
  tx = optim.make_tx("adam", lr=1e-2, weight_decay=1e-5)
  state, frozen = steps.init_state(variables, ("encoder", "decoder"), tx, jax.random.key(3))
  return code, tx, state, frozen, dataset, idx_SxBxK, weight_SxB


def _step_by_step(code, tx, state, frozen, dataset, idx_SxBxK, weight_SxB, unavail_PxN):
  step = steps.jit_train_step(code, tx, "kl")
  losses, counts = [], []
  for idx_BxK, weight_B in zip(idx_SxBxK, weight_SxB):
    state, out = step(state, frozen, dataset, idx_BxK, weight_B, unavail_PxN)
    losses.append(float(out.pop("loss")))
    out.pop("skipped")
    counts.append(jax.device_get(out))
  return state, losses, {key: sum(c[key] for c in counts) for key in counts[0]}


def _chunked(code, tx, state, frozen, dataset, idx_SxBxK, weight_SxB, unavail_PxN, per_chunk):
  chunk = steps.jit_train_chunk(code, tx, "kl")
  first_step = jnp.int32(int(state.step))  # not the state's own buffer: that is donated
  idx, weight = jnp.asarray(idx_SxBxK), jnp.asarray(weight_SxB)
  losses, totals, position = [], None, 0
  while position < len(idx_SxBxK):
    length = min(per_chunk, len(idx_SxBxK) - position)
    state, (loss_L, _), counts = chunk(state, frozen, dataset, idx, weight, first_step,
                                       unavail_PxN, num_steps=length)
    losses += np.asarray(loss_L).tolist()
    counts = jax.device_get(counts)
    totals = counts if totals is None else {key: totals[key] + counts[key] for key in counts}
    position += length
  return state, losses, totals


@pytest.mark.parametrize("per_chunk", [7, 3, 1])
def test_a_chunked_epoch_equals_step_by_step_training(per_chunk):
  code, tx, state, frozen, dataset, idx_SxBxK, weight_SxB = _epoch()
  unavail_PxN = jnp.asarray(erasure.patterns(2, 1))
  copy = jax.tree.map(jnp.copy, state)
  ref_state, ref_losses, ref_counts = _step_by_step(code, tx, copy, frozen, dataset, idx_SxBxK,
                                                    weight_SxB, unavail_PxN)
  new_state, new_losses, new_counts = _chunked(code, tx, state, frozen, dataset, idx_SxBxK,
                                               weight_SxB, unavail_PxN, per_chunk)
  assert int(new_state.step) == int(ref_state.step) == len(idx_SxBxK)
  # The scan body is the step itself: the same parameters, losses and counts.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               jax.device_get(ref_state.params), jax.device_get(new_state.params))
  np.testing.assert_allclose(new_losses, ref_losses, rtol=1e-6)
  for key in ref_counts:
    np.testing.assert_array_equal(new_counts[key], ref_counts[key])


def test_a_chunk_starts_where_the_state_says():
  """Chunks resume at state.step − first_step: two halves equal one whole."""
  code, tx, state, frozen, dataset, idx_SxBxK, weight_SxB = _epoch(num_steps=6)
  unavail_PxN = jnp.asarray(erasure.patterns(2, 1))
  chunk = steps.jit_train_chunk(code, tx, "kl")
  args = (frozen, dataset, jnp.asarray(idx_SxBxK), jnp.asarray(weight_SxB), jnp.int32(0),
          unavail_PxN)
  whole, (whole_loss, _), _ = chunk(jax.tree.map(jnp.copy, state), *args, num_steps=6)
  half, (first_loss, _), _ = chunk(state, *args, num_steps=3)
  half, (second_loss, _), _ = chunk(half, *args, num_steps=3)
  np.testing.assert_array_equal(np.concatenate([first_loss, second_loss]), whole_loss)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(whole.params),
               jax.device_get(half.params))


def _config(**fields):
  config = tiny.get_config("epochs=3")
  config.base_model.epochs = 1
  config.steps_per_dispatch = 16  # 668 groups, 16 a step: 42 steps, in chunks of 16, 16, 10
  for key, value in fields.items():
    config[key] = value
  return config


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in f]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("loop") / "reference")
  summary = train_lib.train_and_evaluate(_config(), workdir, progress=False)
  return workdir, summary


def _final_params(workdir):
  directory = os.path.join(workdir, "checkpoints")
  with checkpoint.Checkpoints(directory, read_only=True) as ckpt:
    latest = ckpt.latest_step()
  return checkpoint.read_step(directory, latest)


def test_every_entry_carries_its_timing(reference):
  workdir, _ = reference
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    entries = [json.loads(line) for line in f]
  assert all(e["time_s"] > 0 for e in entries)
  assert all(e["steps_per_s"] > 0 for e in entries if e["split"] == "train")
  info = json.load(open(os.path.join(workdir, "run_info.json")))
  assert (info["precision"], info["backend"]) == ("highest", "cpu")


def test_nothing_crosses_to_the_device_per_chunk(tmp_path, monkeypatch):
  """Each epoch's index arrays are uploaded once and the erasure patterns once per run; every
  chunk gets device arrays only (an implicit host → device transfer would raise)."""
  calls, kept = [], []
  jit_train_chunk = steps.jit_train_chunk

  def guarded(*args, **kwargs):
    chunk = jit_train_chunk(*args, **kwargs)

    def call(state, frozen, dataset, idx, weight, first_step, unavail, *, num_steps):
      # The arrays themselves are kept, so that no id is reused by a later upload.
      kept.append((idx, weight, first_step, unavail))
      calls.append((id(idx), id(weight), id(first_step), id(unavail), num_steps))
      with jax.transfer_guard_host_to_device("disallow"):
        return chunk(state, frozen, dataset, idx, weight, first_step, unavail,
                     num_steps=num_steps)

    return call

  monkeypatch.setattr(steps, "jit_train_chunk", guarded)
  train_lib.train_and_evaluate(_config(), str(tmp_path), progress=False)
  assert [c[4] for c in calls] == [16, 16, 10] * 3
  assert len({c[3] for c in calls}) == 1  # one upload of the patterns
  for epoch in range(3):
    chunks = calls[3 * epoch:3 * epoch + 3]
    assert len({c[:3] for c in chunks}) == 1  # the same epoch arrays for all its chunks
  assert len({c[0] for c in calls[::3]}) == 3  # a new upload per epoch


def test_resume_after_sigterm_at_a_chunk_boundary_is_exact(reference, tmp_path, monkeypatch):
  ref_dir, ref_summary = reference
  workdir = str(tmp_path / "run")
  jit_train_chunk = sigterm_at_chunk(monkeypatch, 4)  # epoch 2's first chunk
  with pytest.raises(run_control.TrainingStopped, match="SIGTERM received at epoch 2, step 16"):
    train_lib.train_and_evaluate(_config(), workdir, progress=False)
  monkeypatch.setattr(steps, "jit_train_chunk", jit_train_chunk)
  summary = train_lib.train_and_evaluate(_config(), workdir, progress=False)
  assert _metrics(workdir) == _metrics(ref_dir)
  untimed = lambda entry: {k: v for k, v in entry.items() if k not in TIMING_KEYS}
  assert summary["best_epoch"] == ref_summary["best_epoch"]
  assert untimed(summary["test"]) == untimed(ref_summary["test"])
  (state, meta), (ref_state, ref_meta) = _final_params(workdir), _final_params(ref_dir)
  assert meta == ref_meta
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               state, ref_state)


def test_checkpoints_are_written_by_the_policy_only(tmp_path, monkeypatch):
  saves = []
  save = checkpoint.Checkpoints.save

  def recording(self, step, state, meta, best_metric):
    saves.append((step, meta["epoch"], best_metric))
    return save(self, step, state, meta, best_metric)

  monkeypatch.setattr(checkpoint.Checkpoints, "save", recording)
  summary = train_lib.train_and_evaluate(_config(checkpoint_every=0, checkpoint_every_minutes=0),
                                         str(tmp_path), progress=False)
  # No interval: the best state (kept on the device until then) and the last, at the end.
  best = summary["best_epoch"]
  expected = [(42 * best, best)] + ([(126, 3)] if best != 3 else [])
  assert [(step, epoch) for step, epoch, _ in saves] == expected
  assert saves[0][2] > -np.inf and saves[-1][2] == (-np.inf if best != 3 else saves[0][2])
  with checkpoint.Checkpoints(str(tmp_path / "checkpoints"), read_only=True) as ckpt:
    assert (ckpt.best_step(), ckpt.latest_step()) == (42 * best, 126)


def test_checkpoint_policy_counts_epochs():
  policy = train_loop.CheckpointPolicy(every_epochs=3, every_minutes=0)
  assert [e for e in range(1, 10) if policy.due(e)] == [3, 6, 9]
  assert not any(train_loop.CheckpointPolicy(0, 0).due(e) for e in range(1, 10))


def test_precision_names_and_bfloat16_casts_floats_only():
  with pytest.raises(ValueError, match="precision='fp8'"):
    precision.check("fp8")
  tree = {"w": jnp.ones(3), "i": jnp.arange(3)}
  cast = precision.cast(tree, precision.compute_dtype("bfloat16"))
  assert cast["w"].dtype == jnp.bfloat16 and cast["i"].dtype == tree["i"].dtype
  assert precision.cast(tree, precision.compute_dtype("highest")) is tree


@pytest.mark.slow
def test_bfloat16_trains_the_digits_code_within_two_points_of_float32(tmp_path):
  from configs import default
  results = {}
  for name in ("highest", "bfloat16"):
    config = default.get_config()
    config.num_epochs = 60
    config.precision = name
    if name != "highest":
      config.base_model.checkpoint = str(tmp_path / "highest" / "base")  # the same F
    results[name] = train_lib.train_and_evaluate(config, str(tmp_path / name), progress=False)
  f32, bf16 = (results[n]["test"]["degraded_top1"] for n in ("highest", "bfloat16"))
  assert f32 > 0.7, f32
  assert abs(bf16 - f32) <= 0.02, (f32, bf16)
