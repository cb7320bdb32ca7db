"""End-to-end runs of the training driver on the embedded digits (seconds each)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import tiny
from lcc_jax import cli, train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tiny"))
  summary = train_lib.train_and_evaluate(tiny.get_config(), workdir, progress=False)
  return workdir, summary


def test_smoke_run_writes_every_file(tiny_run):
  workdir, summary = tiny_run
  for name in ("config.json", "run_info.json", "split.npz", "metrics.jsonl", "summary.json",
               "curves.png", "patterns.png"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert os.path.isdir(os.path.join(workdir, "base", "0"))
  lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [(e["split"], e["epoch"]) for e in lines] == [
      (s, e) for e in (1, 2) for s in ("train", "val", "test")]
  with open(os.path.join(workdir, "summary.json")) as f:
    on_disk = json.load(f)
  assert on_disk["best_epoch"] in (1, 2)
  test = on_disk["test"]
  for key in ("reconstruction_top1", "degraded_top1", "reconstruction_top5", "degraded_top5"):
    assert 0.0 <= test[key] <= 1.0
  assert [p["unavailable"] for p in test["per_pattern"]] == [[0], [1]]
  base = on_disk["base_model"]["test_accuracy"]
  expected = {str(f): (1 - f) * base + f * test["degraded_top1"] for f in (0.01, 0.05, 0.1)}
  assert test["expected_accuracy"] == pytest.approx(expected)
  # The test entry of the summary is the metrics line of the best epoch.
  best_line = next(e for e in lines if e["split"] == "test" and e["epoch"] == on_disk["best_epoch"])
  assert best_line["degraded_top1"] == test["degraded_top1"]


def test_test_split_counts_every_example_once_per_pattern(tiny_run):
  workdir, _ = tiny_run
  lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  test = next(e for e in lines if e["split"] == "test")
  # digits test split: 360 images → 180 groups; r = 1 patterns score one slot per group.
  assert test["num_scored"] == 360


def test_eval_only_matches_the_best_epoch(tiny_run):
  workdir, summary = tiny_run
  result = train_lib.train_and_evaluate(tiny.get_config(), workdir, eval_only=True,
                                        progress=False)
  assert result["epoch"] == summary["best_epoch"]
  assert result["test"]["degraded_top1"] == summary["test"]["degraded_top1"]
  assert result["test"]["per_pattern"] == summary["test"]["per_pattern"]


def test_rerun_of_a_finished_run_trains_nothing_more(tiny_run):
  workdir, summary = tiny_run
  before = open(os.path.join(workdir, "metrics.jsonl")).read()
  again = train_lib.train_and_evaluate(tiny.get_config(), workdir, progress=False)
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == before
  assert again["test"] == summary["test"]


@pytest.mark.parametrize("config_arg,expected", [
    ("configs/tiny.py", {"encoder_params": 24768, "decoder_params": 1970,
                         "parity_model_params": 0, "num_patterns": 2}),
    ("configs/tiny.py:k=4,r=2", {"num_patterns": 14, "parity_model_params": 0}),
    ("configs/learned_cc.py:dataset=mnist,model=base-mlp,k=2,loss=kl,encoder=mlp",
     {"encoder_params": 3690288, "decoder_params": 1970, "base_model_params": 178110,
      "num_patterns": 2}),
])
def test_dry_run_json(config_arg, expected, capsys):
  from lcc_jax import sweep
  path, _, arg = config_arg.partition(":")
  config = sweep.load_module(os.path.join(ROOT, path)).get_config(arg or None)
  result = cli.dry_run(config)
  assert {key: result[key] for key in expected} == expected
  assert "erasure patterns" in capsys.readouterr().out


def test_dry_run_command_prints_json_last_and_touches_nothing(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
  out = subprocess.run(
      [sys.executable, "train.py", "--config=configs/learned_cc.py:dataset=cifar10,"
       "model=resnet18,k=2,loss=kl,encoder=conv", "--dry_run", f"--workdir={tmp_path}/w"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  last = json.loads(out.stdout.strip().splitlines()[-1])
  assert last == {"encoder_params": 73001, "decoder_params": 1970,
                  "base_model_params": 11173962, "parity_model_params": 0, "num_patterns": 2}
  assert not (tmp_path / "w").exists() and not (tmp_path / "tfds").exists()


def test_parity_model_run_trains_f_p_and_keeps_f(tmp_path):
  config = tiny.get_config("encoder=sum,decoder=sub,parity_model=same,loss=parity_mse,epochs=1")
  summary = train_lib.train_and_evaluate(config, str(tmp_path), progress=False)
  info = json.load(open(tmp_path / "run_info.json"))
  assert info["parity_model_params"] == info["base_model_params"] > 0
  assert info["encoder_params"] == info["decoder_params"] == 0
  assert summary["parity_model"] == "base-mlp"
  assert np.isfinite(summary["test"]["degraded_top1"])


def test_zero_epochs_trains_only_f_and_reports_what_it_wrote(tmp_path, capsys):
  config = tiny.get_config()
  config.num_epochs = 0
  assert cli.run(config, str(tmp_path), progress=False) == 0
  assert os.path.isdir(tmp_path / "base" / "0")
  summary = json.load(open(tmp_path / "summary.json"))
  assert 0.2 < summary["base_model"]["test_accuracy"] <= 1.0  # tiny F: above chance (10 %)
  assert not (tmp_path / "curves.png").exists()
  out = capsys.readouterr().out
  assert "summary.json" in out and "curves.png" not in out
