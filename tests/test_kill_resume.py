"""Killed, interrupted, diverging or write-failing runs lose nothing, and resume exactly.

train.py runs as a subprocess (1 CPU device, a shared persistent compilation cache). One
workdir is killed with SIGKILL at six different moments (during set-up, during F's checkpoint
write, during an epoch checkpoint write, between an epoch's metrics lines and its checkpoint,
at a random time mid-epoch, during the write of a SIGTERM checkpoint) and stopped cleanly by
SIGINT during set-up and by SIGTERM and SIGINT mid-epoch; resumed each time, it ends
bit-identical to an uninterrupted run. Runs that
diverge or whose writes fail use this file as a driver (``python tests/test_kill_resume.py
HOOK WORKDIR FIELDS``) to inject the fault.
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TMP = ".orbax-checkpoint-tmp"
# The kill chain's moments take an epoch or more each (more on a fast machine, where an epoch
# passes within a moment's random delay); a clean stop needs epochs left after it.
NUM_EPOCHS = 24
# configs/tiny.py, smaller: F with 16 units trained 1 epoch; 8 groups a step (84 steps an epoch)
# in chunks of 5 steps (16 chunks and one of 4); a checkpoint after every epoch.
FIELDS = {"base_model.kwargs.hidden": (16,), "base_model.epochs": 1, "data.batch_size": 8,
          "num_epochs": NUM_EPOCHS, "steps_per_dispatch": 5, "checkpoint_every": 1,
          "checkpoint_every_minutes": 0}
TIMING_KEYS = ("time_s", "steps_per_s")  # differ between any two runs


def _env(cache_dir) -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env.pop("JAX_NUM_CPU_DEVICES", None)  # one device, as a plain `python train.py`
  return env


@pytest.fixture(scope="module", autouse=True)
def _sigint_catchable():
  """Children start with SIGINT's default action, as from a terminal. A shell without job
  control starts background jobs with SIGINT ignored, an ignored signal stays ignored across
  exec, and Python then never installs its KeyboardInterrupt handler: an interrupt in set-up
  would pass unnoticed. A caught signal is reset to its default on exec, so catching it here
  is enough (no code runs between fork and exec)."""
  before = signal.getsignal(signal.SIGINT)
  if before == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.getbasetemp() / "jax_compilation_cache"


class Launch:
  """One train.py (or driver) process writing its output to a log file."""

  def __init__(self, workdir, cache_dir, fields=None, hook=None):
    self.workdir = str(workdir)
    fields = {**FIELDS, **(fields or {})}
    if hook is None:
      cmd = [os.path.join(ROOT, "train.py"), "--config=configs/tiny.py", f"--workdir={workdir}",
             "--noprogress"] + [f"--config.{k}={v}" for k, v in fields.items()]
    else:
      cmd = [os.path.abspath(__file__), hook, self.workdir, json.dumps(fields)]
    os.makedirs(os.path.dirname(self.workdir), exist_ok=True)
    self.log_path = f"{self.workdir}.{time.monotonic_ns()}.log"
    self._log = open(self.log_path, "w")
    self.proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=_env(cache_dir),
                                 stdout=self._log, stderr=subprocess.STDOUT)

  def wait(self, timeout=600) -> tuple[int, str]:
    self.proc.wait(timeout=timeout)
    self._log.close()
    with open(self.log_path) as f:
      return self.proc.returncode, f.read()

  def until(self, condition, what: str, timeout=600):
    """Polls ``condition`` every 2 ms; fails if the process exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
      value = condition()
      if value:
        return value
      if self.proc.poll() is not None:
        pytest.fail(f"exited ({self.proc.returncode}) before {what}:\n{self.wait()[1][-3000:]}")
      time.sleep(0.002)
    pytest.fail(f"timed out waiting for {what}")

  def kill(self) -> None:
    self.proc.send_signal(signal.SIGKILL)
    self.wait()


def _entries(folder) -> dict[str, int]:
  """{name: inode} of a folder's entries (a recreated temporary folder has a new inode)."""
  try:
    return {e.name: e.inode() for e in os.scandir(folder)}
  except FileNotFoundError:
    return {}


def _finished(folder) -> list[int]:
  return sorted(int(name) for name in _entries(folder) if name.isdigit())


def _new_tmp(folder, before: dict[str, int]):
  return [(n, i) for n, i in _entries(folder).items() if TMP in n and before.get(n) != i]


def _kill_during_write(run: Launch, folder: str) -> str:
  """SIGKILL while orbax writes a checkpoint into ``folder`` (its temporary folder exists).

  The process is stopped (SIGSTOP) first and the temporary folder checked again, so the kill
  provably lands before the write was finished and renamed.
  """
  stale = _entries(folder)
  while True:
    name, inode = run.until(lambda: _new_tmp(folder, stale), f"a write into {folder}")[0]
    run.proc.send_signal(signal.SIGSTOP)
    if _entries(folder).get(name) == inode:
      run.kill()
      return name
    run.proc.send_signal(signal.SIGCONT)  # finished in between: wait for the next write
    stale = _entries(folder)


def _lines(workdir) -> list[str]:
  """metrics.jsonl's lines without their timings (every other field must match bit for bit)."""
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return []
  entries = [json.loads(line) for line in lines]
  assert all(key in e for e in entries for key in TIMING_KEYS[:1]), "an entry has no time_s"
  return [json.dumps({k: v for k, v in e.items() if k not in TIMING_KEYS}) for e in entries]


def _assert_checkpoints_readable(workdir) -> None:
  """Every finished checkpoint (F's and the code's) restores; temporaries are ignored."""
  from lcc_jax import checkpoint  # pylint: disable=g-import-not-at-top
  for step in _finished(os.path.join(workdir, "checkpoints")):
    state, meta = checkpoint.read_step(os.path.join(workdir, "checkpoints"), step)
    assert int(state["step"]) == step and "epoch" in meta
  if checkpoint.has_variables(os.path.join(workdir, "base")):
    assert checkpoint.variables_spec(os.path.join(workdir, "base"))


def _assert_identical_states(a_dir, b_dir, step) -> None:
  from lcc_jax import checkpoint  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  a, meta_a = checkpoint.read_step(os.path.join(a_dir, "checkpoints"), step)
  b, meta_b = checkpoint.read_step(os.path.join(b_dir, "checkpoints"), step)
  assert meta_a == meta_b
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _assert_complete_metrics(lines, num_epochs=NUM_EPOCHS) -> None:
  keys = [(e["split"], e["epoch"]) for e in map(json.loads, lines)]
  assert len(keys) == len(set(keys)), "a metrics line is duplicated"
  assert sorted(keys) == sorted((s, e) for s in ("train", "val", "test")
                                for e in range(1, num_epochs + 1)), "a metrics line is missing"


@pytest.fixture(scope="session")
def reference(tmp_path_factory, cache_dir):
  """An uninterrupted run (it also fills the compilation cache for the others)."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  status, log = Launch(workdir, cache_dir).wait()
  assert status == 0, log
  return str(workdir)


# --- SIGKILL at many moments, SIGTERM and SIGINT -------------------------------------------


def _claimed(run: Launch, before: int | None) -> None:
  """Waits until this process has (re)written config.json: validation passed, set-up began."""
  run.until(lambda: _entries(run.workdir).get("config.json", before) != before, "config.json")


def _interrupt_in_set_up(run: Launch, before: int | None) -> str:
  """SIGINT before the epoch loop (nothing to checkpoint yet): one line, exit status 1."""
  _claimed(run, before)
  run.proc.send_signal(signal.SIGINT)
  status, log = run.wait()
  assert status == 1 and "Traceback" not in log, log
  assert "stopped: interrupted outside the training loop" in log, log
  return "SIGINT in set-up"


def _kill_in_set_up(run: Launch, before: int | None) -> str:
  _claimed(run, before)
  run.kill()
  return "set-up"


def _kill_in_f_write(run: Launch) -> str:
  return "F's checkpoint write: " + _kill_during_write(run, os.path.join(run.workdir, "base"))


def _kill_in_epoch_write(run: Launch) -> str:
  return "epoch checkpoint write: " + _kill_during_write(
      run, os.path.join(run.workdir, "checkpoints"))


def _kill_after_metrics_line(run: Launch) -> str:
  """Right after an epoch's metrics lines, i.e. (almost always) before its checkpoint."""
  before = len(_lines(run.workdir))
  run.until(lambda: len(_lines(run.workdir)) > before, "a new metrics line")
  run.proc.send_signal(signal.SIGSTOP)
  run.kill()
  return "after a metrics line"


def _kill_mid_epoch(run: Launch, rng: random.Random, epoch_s: float) -> str:
  folder = os.path.join(run.workdir, "checkpoints")
  before = _finished(folder)
  run.until(lambda: _finished(folder) != before and _finished(folder), "a new checkpoint")
  delay = rng.uniform(0.0, 1.0) * epoch_s
  time.sleep(delay)
  run.kill()
  return f"{delay:.2f} s after a checkpoint"


def _kill_in_interrupt_write(run: Launch, rng: random.Random, epoch_s: float) -> str:
  folder = os.path.join(run.workdir, "checkpoints")
  before = _finished(folder)
  run.until(lambda: _finished(folder) != before and _finished(folder), "a new checkpoint")
  time.sleep(rng.uniform(0.0, 1.0) * epoch_s)
  stale = _entries(folder)
  run.proc.send_signal(signal.SIGTERM)
  name, inode = run.until(lambda: _new_tmp(folder, stale), "the SIGTERM checkpoint")[0]
  run.proc.send_signal(signal.SIGSTOP)
  written = _entries(folder).get(name) != inode
  run.kill()
  return f"SIGTERM checkpoint write{' (finished)' if written else ''}: {name}"


def _stop_cleanly(sig):
  def moment(run: Launch, rng: random.Random, epoch_s: float) -> str:
    folder = os.path.join(run.workdir, "checkpoints")
    before = _finished(folder)
    run.until(lambda: _finished(folder) != before and _finished(folder), "a new checkpoint")
    time.sleep(rng.uniform(0.0, 0.5) * epoch_s)
    run.proc.send_signal(signal.SIGSTOP)
    # Epoch e's checkpoint finished: the loop is at most at epoch e + 1's save (a save waits
    # for the previous write), so with e <= NUM_EPOCHS - 2 an epoch is left to see the signal.
    from lcc_jax import checkpoint  # pylint: disable=g-import-not-at-top
    _, meta = checkpoint.read_step(folder, _finished(folder)[-1])
    assert meta["epoch"] <= NUM_EPOCHS - 2, f"the chain reached epoch {meta['epoch']} already"
    run.proc.send_signal(sig)
    run.proc.send_signal(signal.SIGCONT)
    status, log = run.wait()
    name = signal.Signals(sig).name
    assert status == 1, log  # cli.EXIT_STOPPED
    message = [line for line in log.splitlines() if line.startswith("stopped: ")]
    assert message and f"{name} received at epoch" in message[-1], log
    assert "run the same command again to resume" in message[-1] and "Traceback" not in log
    epoch, step = map(int, re.search(r"at epoch (\d+), step (\d+):", message[-1]).groups())
    latest = _finished(folder)[-1]
    _, meta = checkpoint.read_step(folder, latest)
    assert (meta["in_epoch"], meta["step_in_epoch"], meta["epoch"]) == (epoch, step, epoch - 1)
    assert step % FIELDS["steps_per_dispatch"] == 0 or step == 84  # at a chunk's end
    return f"{name} at epoch {epoch}, step {step}"
  return moment


def _epoch_seconds(workdir) -> float:
  """Median wall time of an epoch's training and evaluation in ``workdir``'s metrics."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    entries = [json.loads(line) for line in f]
  per_epoch = {}
  for e in entries:
    per_epoch[e["epoch"]] = per_epoch.get(e["epoch"], 0.0) + e["time_s"]
  return float(np.median(list(per_epoch.values())[1:]))


@pytest.mark.slow
def test_killed_and_interrupted_run_resumes_bit_identical(reference, cache_dir, tmp_path):
  workdir = str(tmp_path / "run")
  rng = random.Random(0)
  # Random delays in units of the reference's epoch, so a moment takes about as many epochs
  # on a fast machine as on a slow one.
  epoch_s = _epoch_seconds(reference)
  moments = [_interrupt_in_set_up, _kill_in_set_up, lambda r, _: _kill_in_f_write(r),
             lambda r, _: _kill_in_epoch_write(r), lambda r, _: _kill_after_metrics_line(r),
             lambda r, _: _kill_mid_epoch(r, rng, epoch_s),
             lambda r, _: _kill_in_interrupt_write(r, rng, epoch_s),
             lambda r, _: _stop_cleanly(signal.SIGTERM)(r, rng, epoch_s),
             lambda r, _: _stop_cleanly(signal.SIGINT)(r, rng, epoch_s)]
  done = []
  for moment in moments:
    config_inode = _entries(workdir).get("config.json")
    run = Launch(workdir, cache_dir)
    done.append(moment(run, config_inode))
    assert run.proc.poll() is not None
    _assert_checkpoints_readable(workdir)
  status, log = Launch(workdir, cache_dir).wait()
  assert status == 0, (done, log)
  assert "Traceback" not in log

  # Bit for bit the uninterrupted run: every metrics line, every kept checkpoint, the summary.
  assert _lines(workdir) == _lines(reference), done
  _assert_complete_metrics(_lines(workdir))
  steps = _finished(os.path.join(reference, "checkpoints"))
  assert _finished(os.path.join(workdir, "checkpoints")) == steps
  for step in steps:
    _assert_identical_states(reference, workdir, step)
  with open(os.path.join(reference, "summary.json")) as f, \
      open(os.path.join(workdir, "summary.json")) as g:
    a, b = json.load(f), json.load(g)
  untimed = lambda entry: {k: v for k, v in entry.items() if k not in TIMING_KEYS}
  assert untimed(a["val"]) == untimed(b["val"]) and untimed(a["test"]) == untimed(b["test"])
  assert a["best_epoch"] == b["best_epoch"]
  assert not [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if TMP in n]
  print("moments:", done)


@pytest.mark.slow
def test_sigkill_at_a_dozen_random_moments_resumes_bit_identical(reference, cache_dir, tmp_path):
  """SIGKILL at random times since start (set-up, chunks of steps, evaluation, asynchronous
  checkpoint writes alike); each rerun resumes, and the last one ends as the uninterrupted."""
  workdir = str(tmp_path / "run")
  rng = random.Random(1)
  moments = []
  for _ in range(12):
    run = Launch(workdir, cache_dir)
    delay = rng.uniform(0.5, 8.0)
    time.sleep(delay)
    epochs = len(_lines(workdir)) // 3
    if run.proc.poll() is not None:  # finished before the kill: the chain is complete
      break
    run.kill()
    moments.append(f"{delay:.1f} s (epoch {epochs})")
    _assert_checkpoints_readable(workdir)
  status, log = Launch(workdir, cache_dir).wait()
  assert status == 0 and "Traceback" not in log, (moments, log)
  assert _lines(workdir) == _lines(reference), moments
  steps = _finished(os.path.join(reference, "checkpoints"))
  assert _finished(os.path.join(workdir, "checkpoints")) == steps, moments
  for step in steps:
    _assert_identical_states(reference, workdir, step)
  print("killed at:", moments)


# --- faults: failed writes and divergence -------------------------------------------------


def _nan_step(workdir, epoch) -> int:
  """The step (1-based) of ``epoch`` whose groups hold the example the nan hook poisons."""
  from lcc_jax import data  # pylint: disable=g-import-not-at-top
  with np.load(os.path.join(workdir, "split.npz")) as split:
    train = split["train"]
  idx_SxBxK, _ = data.group_indices(train, 2, FIELDS["data.batch_size"], shuffle=True, seed=0,
                                    epoch=epoch)
  return int(np.flatnonzero((idx_SxBxK == train[1]).any(axis=(1, 2)))[0]) + 1


def _stopped(log: str) -> str:
  assert "Traceback" not in log, log
  return [line for line in log.splitlines() if line.startswith("stopped: ")][-1]


def test_faults_stop_the_run_and_a_rerun_ends_as_if_none_happened(reference, cache_dir,
                                                                   tmp_path):
  """Disk full during a checkpoint write, then during a metrics write, then a non-finite loss:
  each stops the run (exit 1, one line) with the last good checkpoint kept; the rerun without
  the fault ends bit-identical to the reference (same F, loaded from its workdir)."""
  workdir = str(tmp_path / "run")
  ckpt_dir = os.path.join(workdir, "checkpoints")
  fields = {"base_model.checkpoint": os.path.join(reference, "base")}

  status, log = Launch(workdir, cache_dir, fields, hook="checkpoint_fails:2").wait()
  assert status == 1, log
  assert ("could not write the checkpoint of epoch 2 (OSError: [Errno 28] No space left on "
          "device)") in _stopped(log) and "resume from the last good checkpoint" in log
  epoch1 = _finished(ckpt_dir)
  assert len(epoch1) == 1
  assert _lines(workdir) == _lines(reference)[:6]  # epoch 2's lines are ahead of its checkpoint

  status, log = Launch(workdir, cache_dir, fields, hook="metrics_fails").wait()
  assert status == 1, log
  assert "could not write metrics.jsonl (OSError: [Errno 28]" in _stopped(log)
  assert _finished(ckpt_dir) == epoch1  # no checkpoint after a failed metrics write

  status, log = Launch(workdir, cache_dir, fields, hook="nan_example").wait()
  assert status == 1, log
  stopped = _stopped(log)
  assert f"non-finite loss (nan) at epoch 2, step {_nan_step(workdir, 2)};" in stopped, stopped
  assert "last good checkpoint is kept" in stopped and "on_nonfinite=skip" in stopped
  assert _finished(ckpt_dir) == epoch1

  status, log = Launch(workdir, cache_dir, fields).wait()
  assert status == 0, log
  assert _lines(workdir) == _lines(reference)
  for step in _finished(os.path.join(reference, "checkpoints")):
    _assert_identical_states(reference, workdir, step)


def test_skip_counts_nonfinite_steps(reference, cache_dir, tmp_path):
  workdir = str(tmp_path / "run")
  fields = {"base_model.checkpoint": os.path.join(reference, "base"), "num_epochs": 2,
            "on_nonfinite": "skip"}
  status, log = Launch(workdir, cache_dir, fields, hook="nan_example").wait()
  assert status == 0, log
  entries = [json.loads(line) for line in _lines(workdir)]
  train = [e for e in entries if e["split"] == "train"]
  # One poisoned example: one group, hence one step, per epoch is skipped.
  assert [e["skipped_steps"] for e in train] == [1, 1]
  assert all(np.isfinite(e["loss"]) for e in entries)


def test_diverged_parameters_are_never_saved(reference, cache_dir, tmp_path):
  """lr=1e30 with skip: step 1 is finite but leaves the parameters at ~1e30, later steps are
  skipped, and the epoch's evaluation is non-finite: stop without logging or saving it."""
  workdir = str(tmp_path / "run")
  fields = {"base_model.checkpoint": os.path.join(reference, "base"), "optim.lr": 1e30,
            "on_nonfinite": "skip"}
  status, log = Launch(workdir, cache_dir, fields).wait()
  assert status == 1, log
  stopped = _stopped(log)
  assert "the parameters diverged during epoch 1 (non-finite val loss" in stopped, stopped
  assert _lines(workdir) == [] and _finished(os.path.join(workdir, "checkpoints")) == []


# --- the driver: a run with a fault injected ----------------------------------------------------


def _hook_nan_example(config):
  """Poisons one training example with NaN (F is loaded, so it is not trained on it).

  Not train[0]: group_indices pads an epoch's last step with weight-0 copies of train[0], and
  a weight of 0 does not mask a NaN (0 · NaN = NaN), so that example would poison two steps.
  """
  from lcc_jax import data  # pylint: disable=g-import-not-at-top
  load = data.load

  def poisoned(data_config):
    dataset = load(data_config)
    split = data.make_split(len(dataset.x_train), config.k, config.data.val_size, config.seed,
                            None, name=dataset.name)
    dataset.x_train[split["train"][1]] = np.nan
    return dataset

  data.load = poisoned


def _hook_checkpoint_fails(config, on_call: str):
  """orbax's save raises ENOSPC on call ``on_call`` (1-based) of the run's checkpoints."""
  del config
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  save, calls = ocp.CheckpointManager.save, []

  def failing(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == int(on_call):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save(self, *args, **kwargs)

  ocp.CheckpointManager.save = failing


def _hook_metrics_fails(config):
  """fsync of metrics.jsonl fails with ENOSPC (other files are written normally)."""
  del config
  fsync = os.fsync

  def failing(fd):
    if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return fsync(fd)

  os.fsync = failing


def _drive(hook: str, workdir: str, fields_json: str) -> int:
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from lcc_jax import cli  # pylint: disable=g-import-not-at-top
  config = tiny.get_config().to_dict()
  for dotted, value in json.loads(fields_json).items():
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = tuple(value) if isinstance(value, list) else value
  config = ml_collections.ConfigDict(config)
  name, _, arg = hook.partition(":")
  hooks = {"nan_example": _hook_nan_example, "checkpoint_fails": _hook_checkpoint_fails,
           "metrics_fails": _hook_metrics_fails}
  hooks[name](config, *([arg] if arg else []))
  return cli.run(config, workdir, progress=False)


if __name__ == "__main__":
  sys.exit(_drive(*sys.argv[1:]))
