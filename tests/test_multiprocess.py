"""Two local processes on jax.distributed (CPU, gloo collectives) train like one process."""
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests import multiprocess_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiprocess_worker.py")
TIMEOUT_S = 240  # per launch; then every child still running is killed


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(commands, devices_per_process: int, tmp_path) -> None:
  """Runs the commands concurrently; kills all of them and fails if one fails or hangs."""
  env = {key: value for key, value in os.environ.items()
         if not key.startswith(("JAX_", "XLA_", "SLURM_", "OMPI_", "TPU_"))}
  env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices_per_process),
             JAX_DISABLE_MOST_OPTIMIZATIONS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  logs = [open(tmp_path / f"process_{i}.log", "w+") for i in range(len(commands))]
  procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
           for cmd, log in zip(commands, logs)]
  deadline = time.monotonic() + TIMEOUT_S
  try:
    # Until all are done, one fails (its peers would wait for it in a collective) or time is up.
    while time.monotonic() < deadline:
      codes = [proc.poll() for proc in procs]
      if all(code is not None for code in codes) or any(code for code in codes):
        break
      time.sleep(0.2)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
  tails = []
  for i, log in enumerate(logs):
    log.seek(0)
    tails.append(f"--- process {i} ---\n" + log.read()[-3000:])
    log.close()
  if failed:
    pytest.fail(f"processes (id, returncode) {failed} failed, were stopped after a peer failed, or "
                f"timed out after {TIMEOUT_S} s:\n"
                + "\n".join(tails))


def _two_processes_and_one(mode: str, tmp_path):
  """Runs the worker's ``mode`` in 2 processes × 2 CPU devices (into tmp_path/two), then as the
  reference in one process with one device (tmp_path/one); returns (two, one)."""
  two, one = tmp_path / "two", tmp_path / "one"
  two.mkdir()
  one.mkdir()
  port = _free_port()
  _launch([[sys.executable, WORKER, mode, str(two), str(port), "2", str(i)] for i in range(2)],
          devices_per_process=2, tmp_path=tmp_path)
  _launch([[sys.executable, WORKER, mode, str(one), "0", "1", "0"]], devices_per_process=1,
          tmp_path=tmp_path)
  return two, one


def test_two_processes_step_like_one_process(tmp_path):
  # One global batch of 8 groups over the 4 devices, against the same batches on one device.
  two, one = _two_processes_and_one("step", tmp_path)

  ref = np.load(one / "params_0.npz")
  for pid in range(2):
    params = np.load(two / f"params_{pid}.npz")
    assert sorted(params.files) == sorted(ref.files)
    for name in ref.files:
      np.testing.assert_allclose(params[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)
  # Both processes hold the same replicated parameters, bit for bit.
  p0, p1 = np.load(two / "params_0.npz"), np.load(two / "params_1.npz")
  for name in p0.files:
    np.testing.assert_array_equal(p0[name], p1[name])
  # Evaluation counts reduced over both processes are exact and seen by both.
  ref_counts = np.load(one / "counts_0.npz")
  for pid in range(2):
    counts = np.load(two / f"counts_{pid}.npz")
    for key in ref_counts.files:
      if key != "loss_sum":
        np.testing.assert_array_equal(counts[key], ref_counts[key], err_msg=key)
  # Only process 0 wrote metrics; they describe a 2-process, 4-device run.
  assert sorted(os.listdir(two)) == ["counts_0.npz", "counts_1.npz", "metrics.jsonl",
                                     "params_0.npz", "params_1.npz"]
  lines = (two / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 1
  run = json.loads(lines[0])
  assert (run["processes"], run["devices"]) == (2, 4)
  assert len(run["losses"]) == len(multiprocess_worker.global_batches())
  np.testing.assert_allclose(run["losses"], json.loads((one / "metrics.jsonl").read_text())[
      "losses"], rtol=1e-5)


def _checkpoint_params(workdir):
  """The trained params of a run's latest checkpoint, as numpy, read on this process's device."""
  import orbax.checkpoint as ocp  # only to read a finished run; lcc_jax wraps it in checkpoint.py
  from etils import epath
  root = epath.Path(workdir) / "checkpoints"
  latest = max(int(p.name) for p in root.iterdir() if p.name.isdigit())
  path = root / str(latest) / "state"
  metadata = ocp.StandardCheckpointHandler().metadata(path)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        getattr(metadata, "tree", metadata))
  return jax.device_get(ocp.StandardCheckpointer().restore(path, target)["params"])


@pytest.mark.slow  # ~75 s of CPU: F is trained in each process, then one epoch of the code
def test_two_processes_run_train_and_evaluate_like_one(tmp_path):
  two, one = _two_processes_and_one("train", tmp_path)

  writes = [set(json.loads((two / f"writes_{pid}.json").read_text())) for pid in range(2)]
  for name in ("metrics.jsonl", "summary.json", "run_info.json", "config.json"):
    assert name in writes[0], name
    assert name not in writes[1], name
  assert not any(name.endswith(".png") for name in writes[1])

  two_workdir, one_workdir = two / "workdir", one / "workdir"
  summary = json.loads((two_workdir / "summary.json").read_text())
  ref_summary = json.loads((one_workdir / "summary.json").read_text())
  assert summary["best_epoch"] == ref_summary["best_epoch"] == 1
  lines = (two_workdir / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == len((one_workdir / "metrics.jsonl").read_text().splitlines())
  for line, ref_line in zip(lines, (one_workdir / "metrics.jsonl").read_text().splitlines()):
    entry, ref_entry = json.loads(line), json.loads(ref_line)
    # Counts over the whole split: the same groups are scored, whatever the processes; near-equal
    # parameters may at most flip a near-tie, one scored slot.
    assert (entry["split"], entry["step"], entry["num_scored"]) == (
        ref_entry["split"], ref_entry["step"], ref_entry["num_scored"])
    for key in ("reconstruction_top1", "degraded_top1"):
      assert abs(entry[key] - ref_entry[key]) <= 1.0 / entry["num_scored"] + 1e-12, key
  params, ref = _checkpoint_params(two_workdir), _checkpoint_params(one_workdir)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params, ref)
