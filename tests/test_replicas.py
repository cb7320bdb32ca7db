"""Replicas trained in one program: each equals its run alone; seeds differ; resume is exact;
the spread is numpy's; a diverged replica is dropped without stopping the others."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from configs import tiny
from lcc_jax import checkpoint, replicas, run_control, steps, train_lib, train_loop
from tests.helpers import sigterm_at_chunk
from tests.test_loop import TIMING_KEYS

REPLICA_KEYS = ("replica", "seed")


def _config(f_from: str = "", **replica_fields):
  """The tiny run; ``f_from``: a workdir whose trained F to use (the same F as the replicas')."""
  config = tiny.get_config("epochs=3")
  config.base_model.epochs = 1
  config.base_model.checkpoint = os.path.join(f_from, "base") if f_from else ""
  config.steps_per_dispatch = 16  # 42 steps an epoch, in chunks of 16, 16, 10
  for key, value in replica_fields.items():
    config.replicas[key] = value
  return config


def _entries(workdir, replica=None):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    entries = [json.loads(line) for line in f]
  return [{k: v for k, v in e.items() if k not in TIMING_KEYS + REPLICA_KEYS} for e in entries
          if replica is None or e.get("replica") == replica]


def _numbers(tree, prefix=""):
  """Every number of a (nested) metrics entry, by its path."""
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _numbers(sub, f"{prefix}{key}.").items()}
  if isinstance(tree, list):
    return {k: v for i, sub in enumerate(tree) for k, v in _numbers(sub, f"{prefix}{i}.").items()}
  return {prefix: tree}


def _assert_close_entries(entries, expected):
  """Equal metrics up to float32 round-off: the vmapped program is another XLA program."""
  assert len(entries) == len(expected)
  for entry, want in zip(entries, expected):
    got, want = _numbers(entry), _numbers(want)
    assert got.keys() == want.keys()
    for key, value in want.items():
      if isinstance(value, str):
        assert got[key] == value
      else:
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def _latest(workdir):
  directory = os.path.join(workdir, "checkpoints")
  with checkpoint.Checkpoints(directory, read_only=True) as ckpt:
    return checkpoint.read_step(directory, ckpt.latest_step())


@pytest.fixture(scope="module")
def three(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("replicas") / "three")
  summary = train_lib.train_and_evaluate(_config(seeds=3), workdir, progress=False)
  return workdir, summary


def test_replica_equals_its_run_alone(three, tmp_path):
  workdir, summary = three
  alone = str(tmp_path / "alone")
  alone_summary = train_lib.train_and_evaluate(_config(workdir, first=1), alone, progress=False)
  _assert_close_entries(_entries(workdir, replica=1), _entries(alone))
  assert summary["replicas"][1]["test"]["degraded_top1"] == pytest.approx(
      alone_summary["test"]["degraded_top1"], abs=1e-6)
  (stacked, meta), (single, _) = _latest(workdir), _latest(alone)
  assert meta["best_epoch"][1] == alone_summary["best_epoch"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a)[1], b, rtol=1e-5,
                                                       atol=1e-6),
               stacked["latest"]["params"], single["params"])


def test_seeds_draw_their_own_initialisation_and_data_order(three):
  config = _config(seeds=3)
  split_train = np.arange(700)
  reps = replicas.from_config(config)
  assert reps.seeds == (0, 1, 2)
  idx_RxSxBxK, _ = train_loop.epoch_batches(split_train, config, reps, epoch=1)
  assert idx_RxSxBxK.shape[0] == 3
  assert not np.array_equal(idx_RxSxBxK[0], idx_RxSxBxK[1])
  workdir, _ = three
  info = json.load(open(os.path.join(workdir, "run_info.json")))
  assert [r["seed"] for r in info["replicas"]] == [0, 1, 2]
  state, _ = _latest(workdir)
  for leaf in jax.tree.leaves(state["latest"]["params"]):
    assert not np.array_equal(leaf[0], leaf[1])


def test_aggregate_is_numpys_spread_of_the_replicas(three):
  _, summary = three
  for key in ("degraded_top1", "reconstruction_top1", "reconstruction_top5"):
    values = np.array([r["test"][key] for r in summary["replicas"]])
    spread = summary["aggregate"][f"test/{key}"]
    assert spread["mean"] == pytest.approx(np.mean(values), abs=1e-12)
    assert spread["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert (spread["min"], spread["max"], spread["count"]) == (values.min(), values.max(), 3)
  for r in summary["replicas"]:  # each replica reported at its own best epoch
    val = [e for e in _entries_with_replica(three[0], r["replica"]) if e["split"] == "val"]
    assert r["best_epoch"] == max(val, key=lambda e: (e["degraded_top1"], -e["epoch"]))["epoch"]


def _entries_with_replica(workdir, replica):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [e for e in map(json.loads, f) if e["replica"] == replica]


def test_resume_of_a_replicated_run_is_exact(three, tmp_path, monkeypatch):
  ref_dir, ref_summary = three
  workdir = str(tmp_path / "run")
  jit_train_chunk = sigterm_at_chunk(monkeypatch, 5)  # in the middle of epoch 2
  with pytest.raises(run_control.TrainingStopped, match="SIGTERM received at epoch 2, step 32"):
    train_lib.train_and_evaluate(_config(ref_dir, seeds=3), workdir, progress=False)
  monkeypatch.setattr(steps, "jit_train_chunk", jit_train_chunk)
  summary = train_lib.train_and_evaluate(_config(ref_dir, seeds=3), workdir, progress=False)
  assert _entries(workdir) == _entries(ref_dir)
  assert summary["aggregate"] == ref_summary["aggregate"]
  (state, meta), (ref_state, ref_meta) = _latest(workdir), _latest(ref_dir)
  assert meta == ref_meta
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               state, ref_state)


def test_per_replica_lr_equals_a_run_with_that_lr(three, tmp_path):
  workdir = str(tmp_path / "lrs")
  summary = train_lib.train_and_evaluate(_config(three[0], seeds=2, lr=(1e-3, 3e-3)), workdir,
                                         progress=False)
  assert [r["lr"] for r in summary["replicas"]] == [1e-3, 3e-3]
  alone = str(tmp_path / "alone")
  config = _config(three[0], first=1)
  config.optim.lr = 3e-3
  train_lib.train_and_evaluate(config, alone, progress=False)
  (stacked, _), (single, _) = _latest(workdir), _latest(alone)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a)[1], b, rtol=1e-4,
                                                       atol=1e-6),
               stacked["latest"]["params"], single["params"])


def test_a_diverged_replica_is_dropped_and_the_others_go_on(three, tmp_path, capsys):
  workdir = str(tmp_path / "diverging")
  # An absurd learning rate for replica 1: its parameters overflow within the first epoch.
  config = _config(three[0], seeds=3, lr=(1e-3, 1e38, 1e-3))
  summary = train_lib.train_and_evaluate(config, workdir,
                                         progress=False)
  assert "replica 1 diverged" in capsys.readouterr().err
  diverged = {r["replica"]: r["diverged"] for r in summary["replicas"]}
  assert diverged[1] is not None and diverged[0] is None and diverged[2] is None
  assert summary["aggregate"]["test/degraded_top1"]["count"] == 2
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f]
  assert {e["replica"] for e in logged if e["epoch"] == 3} == {0, 2}
  assert np.isfinite([e["loss"] for e in logged]).all()


def test_replica_lists_must_match_the_count():
  from lcc_jax import validate
  with pytest.raises(validate.ConfigError, match="replicas.lr has 2 values for replicas.seeds=3"):
    validate.check_config(_config(seeds=3, lr=(1e-3, 2e-3)))


def test_replicas_sharded_over_the_devices_train_as_the_batch_sharded(three, tmp_path):
  """replicas.shard: each device holds whole replicas (the conftest's 4 CPU devices, 4
  replicas: one each) and computes them as the batch-sharded run does, to round-off."""
  sharded_dir, plain_dir = str(tmp_path / "sharded"), str(tmp_path / "plain")
  sharded = train_lib.train_and_evaluate(_config(three[0], seeds=4, shard=True), sharded_dir,
                                         progress=False)
  plain = train_lib.train_and_evaluate(_config(three[0], seeds=4), plain_dir, progress=False)
  for a, b in zip(sharded["replicas"], plain["replicas"]):
    assert a["test"]["degraded_top1"] == pytest.approx(b["test"]["degraded_top1"], abs=0.02)
  (state, _), (ref, _) = _latest(sharded_dir), _latest(plain_dir)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               state["latest"]["params"], ref["latest"]["params"])


def test_replica_sharding_places_one_replica_per_device():
  from lcc_jax import parallel
  mesh = parallel.make_mesh()
  tree = {"f": np.zeros((3,)), "w": np.zeros((4, 2))}
  placed = parallel.shard_replicas(tree, mesh, {"f": None, "w": 0})
  assert placed["w"].sharding.spec == jax.sharding.PartitionSpec("data")
  assert placed["w"].addressable_shards[0].data.shape == (1, 2)
  assert placed["f"].sharding.is_fully_replicated


def test_replica_sharding_needs_a_multiple_of_the_devices():
  from lcc_jax import parallel, validate
  with pytest.raises(validate.ConfigError, match="replicas.shard=True splits the replicas.seeds=3"):
    validate.check_devices(_config(seeds=3, shard=True), parallel.make_mesh())


def test_eval_only_and_the_evaluation_tool_see_every_replicas_best(three):
  workdir, summary = three
  result = train_lib.train_and_evaluate(_config(seeds=3), workdir, eval_only=True,
                                        progress=False)
  from lcc_jax.evaluation import studies
  swept = studies.evaluate_workdir(workdir)
  names = [s["scheme"] for s in swept["schemes"]]
  assert names == ["code/replica0", "code/replica1", "code/replica2"]
  for trained, evaluated, scheme in zip(summary["replicas"], result["replicas"],
                                        swept["schemes"]):
    for key in ("degraded_top1", "reconstruction_top1"):
      assert evaluated["test"][key] == trained["test"][key]
    # The evaluation tool's own (un-vmapped) program: equal but for a rare round-off flip.
    assert scheme["degraded_top1"] == pytest.approx(trained["test"]["degraded_top1"], abs=0.005)
  assert result["aggregate"]["test/degraded_top1"] == summary["aggregate"]["test/degraded_top1"]
  assert swept["replicas_spread"]["degraded_top1"]["mean"] == pytest.approx(
      summary["aggregate"]["test/degraded_top1"]["mean"], abs=0.005)


def test_a_workdir_from_before_replicas_resumes_and_evaluates(tmp_path):
  """config.json written before a field existed: the field ran as its default does."""
  workdir = str(tmp_path / "old")
  config = _config()
  config.num_epochs = 1
  train_lib.train_and_evaluate(config, workdir, progress=False)
  path = os.path.join(workdir, "config.json")
  stored = json.load(open(path))
  del stored["replicas"]
  json.dump(stored, open(path, "w"))
  config.num_epochs = 2
  summary = train_lib.train_and_evaluate(config, workdir, progress=False)
  assert summary["epochs"] == 2
  from lcc_jax.evaluation import runs
  assert runs.read_config(workdir).replicas.seeds == 1
