"""Runs are reproducible on CPU: same config and seed → bit-identical metrics and parameters.

Each run is ``python train.py`` in its own process (F trained by each run, as in a fresh
workdir). Eight epochs straight equal two epochs, a restart and six more, bit for bit; another
seed gives another split and other metrics; the workdir records the seed, the split and the
package versions.
"""
from __future__ import annotations

import importlib.metadata
import json
import os

import numpy as np
import pytest

from test_kill_resume import (NUM_EPOCHS, TIMING_KEYS, Launch, _assert_complete_metrics,
                              _assert_identical_states, _finished, _lines)
from test_kill_resume import cache_dir, reference  # noqa: F401  (session fixtures, shared)


@pytest.fixture(scope="module")
def runs(reference, tmp_path_factory, cache_dir):  # noqa: F811
  """Workdirs of: a (the reference run, NUM_EPOCHS epochs), b (the same config again),
  c (seed 1, 2 epochs) and d (2 epochs, then a restart to NUM_EPOCHS)."""
  root = tmp_path_factory.mktemp("repro")
  out = {"a": reference, **{name: str(root / name) for name in "bcd"}}
  launches = [Launch(out["b"], cache_dir),
              Launch(out["c"], cache_dir, {"num_epochs": 2, "seed": 1}),
              Launch(out["d"], cache_dir, {"num_epochs": 2})]
  for launch in launches:
    status, log = launch.wait()
    assert status == 0, log
  status, log = Launch(out["d"], cache_dir).wait()  # the restart, with more epochs
  assert status == 0, log
  return out


def _json(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


def test_same_config_and_seed_give_bit_identical_runs(runs):
  a, b = runs["a"], runs["b"]
  assert _lines(a) == _lines(b)  # every metric of every epoch, as text
  _assert_complete_metrics(_lines(a), num_epochs=NUM_EPOCHS)
  assert _json(a, "run_info.json")["base_model_sha256"] == _json(b, "run_info.json")[
      "base_model_sha256"]  # F, trained by each run, is identical too
  steps = _finished(os.path.join(a, "checkpoints"))
  assert steps == _finished(os.path.join(b, "checkpoints"))
  for step in steps:
    _assert_identical_states(a, b, step)


def test_all_epochs_straight_equal_two_plus_the_rest_after_a_restart(runs):
  a, d = runs["a"], runs["d"]
  assert _lines(d) == _lines(a)
  steps = _finished(os.path.join(a, "checkpoints"))
  assert _finished(os.path.join(d, "checkpoints")) == steps
  for step in steps:
    _assert_identical_states(a, d, step)
  summary_a, summary_d = _json(a, "summary.json"), _json(d, "summary.json")
  for key in ("best_epoch", "epochs"):
    assert summary_a[key] == summary_d[key], key
  for key in ("val", "test"):  # every metric; timings differ between any two runs
    untimed = lambda entry: {k: v for k, v in entry.items() if k not in TIMING_KEYS}
    assert untimed(summary_a[key]) == untimed(summary_d[key]), key


def test_another_seed_gives_another_split_and_other_metrics(runs):
  a, c = runs["a"], runs["c"]
  first = lambda lines: [json.loads(line) for line in lines if json.loads(line)["epoch"] == 1]
  pairs = list(zip(first(_lines(a)), first(_lines(c))))
  assert [x["split"] for x, _ in pairs] == [y["split"] for _, y in pairs] == ["train", "val",
                                                                              "test"]
  for entry_a, entry_c in pairs:  # another F, another code, another val split
    assert entry_a["loss"] != entry_c["loss"], entry_a["split"]
  with np.load(os.path.join(a, "split.npz")) as sa, np.load(os.path.join(c, "split.npz")) as sc:
    assert not np.array_equal(sa["val"], sc["val"])
  assert _json(c, "run_info.json")["seed"] == 1


def test_workdir_records_seed_split_and_versions(runs):
  a = runs["a"]
  info = _json(a, "run_info.json")
  assert info["seed"] == 0
  for package in ("jax", "flax", "optax"):
    assert info["versions"][package] == importlib.metadata.version(package), package
  assert info["versions"]["orbax-checkpoint"] == importlib.metadata.version("orbax-checkpoint")
  assert info["base_model_sha256"] and info["num_patterns"] == 2
  # The split: digits' 1437 training images truncated to a multiple of k = 2, val_size 100.
  with np.load(os.path.join(a, "split.npz")) as split:
    train, val = split["train"], split["val"]
    fingerprint = json.loads(str(split["fingerprint"]))
  assert len(val) == 100 and len(train) == 1436 - 100
  assert sorted(np.concatenate([train, val]).tolist()) == list(range(1436))
  assert fingerprint["seed"] == 0 and fingerprint["k"] == 2
  assert info["split_sizes"] == {"train": 1336, "val": 100}
  assert _json(a, "config.json")["seed"] == 0
