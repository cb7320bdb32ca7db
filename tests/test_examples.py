"""The examples of docs/extending.md run, at small sizes, so they cannot rot."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def test_own_encoder_and_decoder_by_import_path(tmp_path):
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([EXAMPLES, ROOT]), "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_NUM_CPU_DEVICES", None)
  done = subprocess.run(
      [sys.executable, os.path.join(ROOT, "train.py"), "--config=configs/tiny.py",
       "--config.encoder.name=my_coder:encoder", "--config.decoder.name=my_coder:decoder",
       "--config.num_epochs=1", "--config.base_model.epochs=1", f"--workdir={tmp_path}",
       "--progress=false"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
  assert done.returncode == 0, done.stderr
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert (summary["encoder"], summary["decoder"]) == ("my_coder:encoder", "my_coder:decoder")
  # The decoder passes available outputs through, so the code is never worse than chance.
  assert summary["test"]["reconstruction_top1"] > 0.1


def test_functional_loop_without_the_driver(monkeypatch):
  monkeypatch.syspath_prepend(EXAMPLES)
  import functional  # pylint: disable=g-import-not-at-top
  first, last = functional.main(steps=60)
  assert last < first


def test_non_ml_function(monkeypatch, tmp_path):
  monkeypatch.syspath_prepend(EXAMPLES)
  import non_ml  # pylint: disable=g-import-not-at-top
  summary = non_ml.main(str(tmp_path), num_epochs=1, num_train=400)
  assert summary["base_model"]["name"] == "function"
  assert math.isfinite(summary["test"]["loss"])
