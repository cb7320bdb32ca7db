"""One run per workdir, damaged checkpoints, a full disk: each is one line and a way forward."""
import gc
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from configs import tiny
from lcc_jax import checkpoint, cli, train_lib, workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny code, one checkpoint per epoch.
FIELDS = {"base_model.epochs": 1, "checkpoint_every": 1, "checkpoint_every_minutes": 0}


def _config(epochs: int, **fields):
  config = tiny.get_config(f"epochs={epochs}")
  for key, value in {**FIELDS, **fields}.items():
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def _train_py(workdir, epochs, *flags, timeout=300):
  cmd = [sys.executable, "train.py", "--config=configs/tiny.py", f"--workdir={workdir}",
         "--noprogress", f"--config.num_epochs={epochs}",
         *[f"--config.{k}={v}" for k, v in FIELDS.items()], *flags]
  env = dict(os.environ, JAX_PLATFORMS="cpu")  # 4 devices, as the in-process runs here
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith(("error:", "stopped:"))]


# --- the workdir lock ---------------------------------------------------------------------


def test_a_second_run_is_refused_while_the_first_holds_the_workdir(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lib.locked(workdir, "training"):
    out = _train_py(workdir, 1)
  assert out.returncode == cli.EXIT_BAD_INPUT, out.stderr
  [line] = _error_lines(out.stderr)
  assert f"workdir {workdir} is in use by another run (training, pid {os.getpid()} on " in line
  assert "since 20" in line and "Traceback" not in out.stderr
  assert not os.path.exists(os.path.join(workdir, "config.json"))  # it did nothing
  # Released: the same command runs.
  assert _train_py(workdir, 1).returncode == 0


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom lcc_jax import workdir\n"
       f"with workdir.locked({workdir!r}, 'training'):\n  print('held', flush=True)\n"
       "  time.sleep(600)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lib.WorkdirError, match=f"pid {holder.pid} on "):
      with workdir_lib.locked(workdir, "evaluation"):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lib.locked(workdir, "training"):  # the operating system released it
    pass


def test_overwrite_and_evaluation_take_the_lock_too(tmp_path):
  workdir = str(tmp_path / "run")
  train_lib.train_and_evaluate(_config(1), workdir, progress=False)
  with workdir_lib.locked(workdir, "training"):
    for extra in ("--overwrite", "--eval_only"):
      out = _train_py(workdir, 1, extra)
      assert out.returncode == cli.EXIT_BAD_INPUT and "is in use by another run" in out.stderr
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "lcc_jax.evaluation", f"--workdir={workdir}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "is in use by another run" in out.stderr, out.stderr
  # --overwrite keeps the lock file it holds and deletes the rest.
  train_lib.train_and_evaluate(_config(1), workdir, overwrite=True, progress=False)
  assert os.path.isfile(os.path.join(workdir, workdir_lib.LOCK))


# --- damaged checkpoints -------------------------------------------------------------------


def _truncate_largest_file(step_dir: str) -> None:
  files = [os.path.join(d, f) for d, _, names in os.walk(step_dir) for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(os.path.getsize(largest) // 3)


def _steps(workdir):
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("safety") / "reference")
  train_lib.train_and_evaluate(_config(4), workdir, progress=False)
  return workdir


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "steps_per_s")}
            for line in f]


# orbax leaves the failed restore's coroutines for Python to report (the CLI mutes them).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path,
                                                                      capsys):
  workdir = str(tmp_path / "run")
  train_lib.train_and_evaluate(_config(3), workdir, progress=False)
  steps = _steps(workdir)
  assert len(steps) >= 2  # two latest (and the best) are kept
  _truncate_largest_file(os.path.join(workdir, "checkpoints", str(steps[-1])))
  capsys.readouterr()
  train_lib.train_and_evaluate(_config(4), workdir, progress=False)
  [line] = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
  assert line.startswith(f"warning: checkpoint {steps[-1]} does not restore (")
  assert f"resumed from checkpoint {steps[-2]}" in line
  assert os.path.isdir(os.path.join(workdir, "checkpoints", checkpoint.DAMAGED, str(steps[-1])))
  # Epoch 3 was trained again from epoch 2's checkpoint: the run is the uninterrupted one.
  assert _metrics(workdir) == _metrics(reference)
  gc.collect()  # orbax's failed coroutines are reported here, not in a later test


def test_no_restorable_checkpoint_is_one_line_exit_2_and_changes_nothing(tmp_path):
  workdir = str(tmp_path / "run")
  train_lib.train_and_evaluate(_config(2), workdir, progress=False)
  for step in _steps(workdir):
    _truncate_largest_file(os.path.join(workdir, "checkpoints", str(step)))

  def snapshot():
    return {os.path.join(d, f): os.path.getsize(os.path.join(d, f))
            for d, _, names in os.walk(workdir) for f in names
            if f not in ("config.json", "run_info.json", workdir_lib.LOCK)}  # rewritten alike

  before = snapshot()
  out = _train_py(workdir, 3)
  assert out.returncode == cli.EXIT_BAD_INPUT, out.stderr
  [line] = _error_lines(out.stderr)
  assert line.startswith(f"error: no checkpoint in {workdir}/checkpoints restores (step ")
  assert "--overwrite" in line and "Traceback" not in out.stderr
  assert snapshot() == before


# --- a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
  """A 16 MB tmpfs (root only: skipped where mount is not allowed)."""
  mount = tmp_path / "disk"
  mount.mkdir()
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                        capture_output=True, text=True)
  if done.returncode:
    pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_with_one_line_and_a_rerun_resumes(small_disk, reference):
  workdir = str(small_disk / "run")
  base = os.path.join(reference, "base")
  assert _train_py(workdir, 0, f"--config.base_model.checkpoint={base}").returncode == 0
  # Leave 40 KB: metrics lines fit, a checkpoint (~400 KB) does not.
  free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
  filler = small_disk / "filler"
  subprocess.run(["fallocate", "-l", str(free - 40 * 1024), str(filler)], check=True)
  out = _train_py(workdir, 4, f"--config.base_model.checkpoint={base}")
  assert out.returncode == cli.EXIT_STOPPED, out.stderr
  assert "Traceback" not in out.stderr and "Task exception" not in out.stderr, out.stderr
  [line] = _error_lines(out.stderr)
  assert line.startswith("stopped: could not write ") and "Free disk space" in line, line
  assert "RESOURCE_EXHAUSTED" in line or "No space left" in line
  os.unlink(filler)
  out = _train_py(workdir, 4, f"--config.base_model.checkpoint={base}")
  assert out.returncode == 0, out.stderr
  assert _metrics(workdir) == _metrics(reference)
