"""Exported StableHLO reproduces the run bit for bit, and loads with jax alone."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax import coding, erasure, export, exported, train_lib
from lcc_jax.evaluation import runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(path, arg):
  from configs import tiny
  config = tiny.get_config(arg)
  config.data.batch_size = 64
  train_lib.train_and_evaluate(config, path, progress=False)
  return path


@pytest.fixture(scope="module", params=["k=2,r=1,epochs=1",
                                        "k=3,r=2,encoder=mds,decoder=mds,parity_model=same,"
                                        "loss=parity_mse,epochs=1"],
            ids=["learned", "parity_model"])
def exported_run(request, tmp_path_factory):
  workdir = _train(str(tmp_path_factory.mktemp("run")), request.param)
  out = str(tmp_path_factory.mktemp("export"))
  export.export_run(workdir, out, platforms=("cpu",))
  return runs.load_run(workdir), out


def _inputs(run, batch):
  x_BxKxI = jnp.asarray(run.dataset.x_test[:batch * run.k].reshape(
      (batch, run.k) + tuple(run.dataset.input_shape)))
  avail_N = jnp.asarray(np.arange(run.k + run.r) != 1)
  return x_BxKxI, avail_N


def _in_process(run, x_BxKxI, avail_N):
  """The same pieces, jitted here with the run's variables (not exported)."""
  parts = export.components(run)
  call = {name: jax.jit(fn) for name, (fn, _) in parts.items()}
  v = {name: variables for name, (_, variables) in parts.items()}
  b, k = x_BxKxI.shape[:2]
  parity_BxRxI = call["encode"](v["encode"], x_BxKxI)
  net = "parity_model" if "parity_model" in call else "base_model"
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  y_BxKxC = call["base_model"](v["base_model"], flat(x_BxKxI)).reshape(b, k, -1)
  pout_BxRxC = call[net](v[net], flat(parity_BxRxI)).reshape(b, run.r, -1)
  outs_BxNxC = jnp.concatenate([y_BxKxC, pout_BxRxC], axis=1)
  return {"parity": parity_BxRxI, "outs": outs_BxNxC,
          "recon": call["decode"](v["decode"], outs_BxNxC, avail_N)}


def _exported_pipeline(model, x_BxKxI, avail_N, r):
  b, k = x_BxKxI.shape[:2]
  parity_BxRxI = model.encode(x_BxKxI)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  y_BxKxC = model.base_model(flat(x_BxKxI)).reshape(b, k, -1)
  pout_BxRxC = model.parity_model(flat(parity_BxRxI)).reshape(b, r, -1)
  outs_BxNxC = jnp.concatenate([y_BxKxC, pout_BxRxC], axis=1)
  return {"parity": parity_BxRxI, "outs": outs_BxNxC, "recon": model.decode(outs_BxNxC, avail_N)}


@pytest.mark.parametrize("batch", [1, 5])
def test_round_trip_equals_the_in_process_pass_bit_for_bit(exported_run, batch):
  run, out = exported_run
  x_BxKxI, avail_N = _inputs(run, batch)
  got = _exported_pipeline(exported.load(out), x_BxKxI, avail_N, run.r)
  want = _in_process(run, x_BxKxI, avail_N)
  for key in want:
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=key)
  # And the run's own forward pass (one jit over everything) agrees to float rounding.
  unavail_1xN = jnp.logical_not(avail_N)[None]
  recon_1xBxKxC, _, _ = jax.jit(lambda x, y: coding.forward(run.code, run.variables, x, y,
                                                            unavail_1xN))(
      x_BxKxI, want["outs"][:, :run.k])
  np.testing.assert_allclose(np.asarray(got["recon"]), np.asarray(recon_1xBxKxC[0]),
                             rtol=1e-5, atol=1e-5)


def test_manifest_describes_the_run(exported_run):
  run, out = exported_run
  with open(os.path.join(out, exported.MANIFEST)) as f:
    manifest = json.load(f)
  assert (manifest["k"], manifest["r"]) == (run.k, run.r)
  assert manifest["input_shape"] == list(run.dataset.input_shape)
  assert manifest["num_classes"] == run.dataset.num_classes
  assert manifest["normalisation"] == run.dataset.info["normalisation"]
  assert manifest["has_parity_model"] == (run.code.parity_model is not None)
  assert manifest["functions"]["encode"]["inputs"][0]["shape"][0] == "b"
  assert manifest["erasure_patterns"] == [np.flatnonzero(p).tolist()
                                         for p in erasure.patterns(run.k, run.r)]


def test_a_tampered_variables_file_is_refused(exported_run, tmp_path):
  _, out = exported_run
  import shutil
  copy = str(tmp_path / "copy")
  shutil.copytree(out, copy)
  with np.load(os.path.join(copy, "base_model.npz")) as stored:
    leaves = {key: stored[key] for key in stored.files}
  leaves["a0"] = leaves["a0"] + 1
  np.savez(os.path.join(copy, "base_model.npz"), **leaves)
  with pytest.raises(ValueError, match="hash"):
    exported.load(copy)


FRESH = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from lcc_jax import exported
m = exported.load({out!r})
x = np.load({inputs!r})
parity = m.encode(x["x"])
b, k = x["x"].shape[:2]
flat = lambda a: a.reshape((-1,) + a.shape[2:])
y = m.base_model(flat(x["x"])).reshape(b, k, -1)
p = m.parity_model(flat(np.asarray(parity))).reshape(b, parity.shape[1], -1)
outs = np.concatenate([np.asarray(y), np.asarray(p)], axis=1)
np.savez({result!r}, recon=np.asarray(m.decode(outs, x["avail"])), outs=outs)
heavy = sorted(n for n in sys.modules if n == "flax" or n.startswith("flax.") or
               (n.startswith("lcc_jax.") and n != "lcc_jax.exported"))
print("HEAVY", heavy)
"""


def test_loads_in_a_fresh_process_without_flax_or_training_code(exported_run, tmp_path):
  run, out = exported_run
  x_BxKxI, avail_N = _inputs(run, 3)
  inputs, result = str(tmp_path / "in.npz"), str(tmp_path / "out.npz")
  np.savez(inputs, x=np.asarray(x_BxKxI), avail=np.asarray(avail_N))
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_NUM_CPU_DEVICES", None)
  proc = subprocess.run([sys.executable, "-c", FRESH.format(repo=REPO, out=out, inputs=inputs,
                                                            result=result)],
                        capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert "HEAVY []" in proc.stdout
  want = _in_process(run, x_BxKxI, avail_N)
  with np.load(result) as got:
    np.testing.assert_array_equal(got["outs"], np.asarray(want["outs"]))
    np.testing.assert_array_equal(got["recon"], np.asarray(want["recon"]))


def test_cli_refuses_bad_input(tmp_path):
  for args in ([f"--workdir={tmp_path}", f"--out={tmp_path}/o"], ["--out=x"], ["--bogus"],
               [f"--workdir={tmp_path}", "--out=x", "--platforms=gameboy"]):
    proc = subprocess.run([sys.executable, "-m", "lcc_jax.export", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (args, proc.stderr)
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
