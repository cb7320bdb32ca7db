"""What a run writes into its workdir, besides checkpoints, and whether a workdir can take a run.

``.lock`` (held by the one process that writes into the workdir: ``locked``),
``config.json`` (the run's config; a workdir never mixes runs of different configs),
``run_info.json`` (seed, package versions, F's hash), ``metrics.jsonl`` (one JSON object per
evaluation, appended; truncated on resume to what the restored checkpoint had seen, so a line is
never duplicated or missing) and ``summary.json``.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import shutil
import socket
import tempfile
from typing import Any, Iterable, Iterator

from lcc_jax import registry

# Fields that may change between a run and its resumption without making it another run.
RESUMABLE_FIELDS = ("num_epochs", "time_limit_minutes", "checkpoint_every",
                    "checkpoint_every_minutes", "steps_per_dispatch", "compilation_cache_dir",
                    "data.data_dir", "data.manual_dir", "eval_splits", "unavailability_rates")


LOCK = ".lock"
_HELD: dict[str, int] = {}  # workdir → descriptor of its locked .lock, in this process


class WorkdirError(ValueError):
  """The workdir cannot be used for this run (another run's files, not writable, ...)."""


@contextlib.contextmanager
def locked(workdir: str, what: str) -> Iterator[None]:
  """Holds WORKDIR/.lock (an exclusive ``flock``) while the block runs: one writer per workdir.

  Another process that holds it makes this raise a WorkdirError at once, naming that run (pid,
  host, since when, what it does). The operating system drops the lock when its process dies,
  so a killed run never leaves a stale one. Nested use in one process is a no-op.
  """
  key = os.path.abspath(workdir)
  if key in _HELD:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  fd = os.open(os.path.join(workdir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.read(fd, 4096).decode(errors="replace").strip()
    os.close(fd)
    raise WorkdirError(f"workdir {workdir} is in use by another run ({_describe(holder)}); wait "
                       "for it to end or stop it, or use another --workdir") from None
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps({
      "pid": os.getpid(), "host": socket.gethostname(), "what": what,
      "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}).encode(), 0)
  _HELD[key] = fd
  try:
    yield
  finally:
    del _HELD[key]
    os.close(fd)  # releases the lock


def _describe(holder: str) -> str:
  try:
    info = json.loads(holder)
    return f"{info['what']}, pid {info['pid']} on {info['host']} since {info['since']}"
  except (ValueError, KeyError, TypeError):
    return "a process that has not written its details yet"


def clear(workdir: str) -> None:
  """Deletes everything in ``workdir`` but its lock (``--overwrite``), which stays held."""
  for entry in os.scandir(workdir):
    if entry.name == LOCK:
      continue
    if entry.is_dir(follow_symlinks=False):
      shutil.rmtree(entry.path)
    else:
      os.unlink(entry.path)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _as_json(config_dict: dict) -> dict:
  """The config as config.json holds it (tuples become lists)."""
  return json.loads(json.dumps(config_dict, default=list))


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise WorkdirError(message)


def check_workdir(workdir: str, config_dict: dict | None = None, *, overwrite: bool = False,
                  eval_only: bool = False) -> None:
  """The workdir can take this run: writable, and not holding a run of another config."""
  _require(bool(workdir), "--workdir is empty; give a folder for checkpoints and metrics")
  probe = os.path.abspath(workdir)
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  _require(os.path.isdir(probe), f"--workdir {workdir}: {probe} exists and is not a folder")
  _require(os.access(probe, os.W_OK | os.X_OK),
           f"--workdir {workdir} is not writable ({probe}); choose a folder you can write to")
  has_run = os.path.isfile(os.path.join(workdir, "config.json"))
  if eval_only:
    _require(not overwrite, "--eval_only with --overwrite would delete the run to evaluate; "
                            "drop --overwrite")
    _require(_has_checkpoint(os.path.join(workdir, "checkpoints")),
             f"--eval_only: {workdir} holds no checkpoint to evaluate; train first (the same "
             "command without --eval_only)")
  if overwrite:
    _require(not os.path.isdir(workdir) or has_run or not set(os.listdir(workdir)) - {LOCK},
             f"--overwrite would delete {workdir}, which holds files but no run (no "
             "config.json); refusing. Pass a run's workdir, or a new or empty folder")
  elif config_dict is not None and has_run:
    _check_same_config(workdir, _as_json(config_dict))


def _has_checkpoint(directory: str) -> bool:
  """A finished orbax step folder (its name a number) exists; temporaries do not count."""
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _check_same_config(workdir: str, new: dict) -> None:
  """WORKDIR/config.json holds ``new`` but for the resumable fields; else a WorkdirError."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      # A field the run's lcc_jax did not have yet ran as its default does: not a difference.
      old = _flatten(with_new_fields(json.load(f)))
  except (OSError, ValueError) as e:
    raise WorkdirError(f"{path} cannot be read ({registry.first_line(e)}); use another --workdir, "
                       "or pass --overwrite to delete that run") from None
  new = _flatten(new)
  diff = sorted(k for k in set(old) | set(new)
                if old.get(k) != new.get(k) and k not in RESUMABLE_FIELDS)
  _require(not diff,
           f"workdir {workdir} holds a run of a different config (fields "
           f"{', '.join(f'{f}: {old.get(f)!r} → {new.get(f)!r}' for f in diff[:4])}"
           f"{' ...' if len(diff) > 4 else ''}); use another --workdir, or pass --overwrite to "
           "delete that run")


def default_config_dict() -> dict:
  """Every config field with its default (``configs/default.py``), as JSON would hold it."""
  from configs import default  # pylint: disable=g-import-not-at-top  (configs imports lcc_jax)
  return _as_json(default.base().to_dict())


def with_new_fields(stored: dict) -> dict:
  """A stored config.json with the fields added to lcc_jax since, at their defaults."""
  return _merged(default_config_dict(), stored)


def _merged(defaults: dict, stored: dict) -> dict:
  out = dict(defaults)
  for key, value in stored.items():
    both = isinstance(value, dict) and isinstance(out.get(key), dict)
    out[key] = _merged(out[key], value) if both else value
  return out


def claim(workdir: str, config_dict: dict, *, overwrite: bool) -> None:
  """Writes config.json, refusing a workdir that holds a run of another config."""
  path = os.path.join(workdir, "config.json")
  config_json = _as_json(config_dict)
  if os.path.exists(path) and not overwrite:
    _check_same_config(workdir, config_json)
  write_json(path, config_json)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[Any]:
  """Opens a fresh temporary file beside ``path`` and renames it over ``path`` once written.

  A kill leaves the old file or the new one, never half of one; readers see either whole.
  Each writer gets its own temporary name, so the processes of a multi-host run that write the
  same file at once (split, F's cached outputs) never trip over each other: the last rename wins,
  with the same contents.
  """
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def write_json(path: str, obj: Any) -> None:
  with atomic_file(path) as f:
    json.dump(obj, f, indent=2, default=_jsonable)


def _jsonable(value):
  if hasattr(value, "tolist"):
    return value.tolist()
  if isinstance(value, (set, tuple)):
    return list(value)
  return str(value)


def versions() -> dict[str, str]:
  import flax
  import jax
  import optax
  import orbax.checkpoint
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
          "flax": flax.__version__, "optax": optax.__version__,
          "orbax-checkpoint": orbax.checkpoint.__version__,
          "backend": jax.default_backend(), "devices": str(jax.devices())}


class MetricsLog:
  """metrics.jsonl: appended line by line, each line flushed and fsync'ed."""

  def __init__(self, path: str):
    self.path = path

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_after(self, epoch: int) -> list[dict]:
    """Keeps the lines of epochs <= ``epoch`` (drops a torn last line too); returns them."""
    kept = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        for line in f:
          try:
            entry = json.loads(line)
          except json.JSONDecodeError:
            break  # a line cut short by a kill: everything after it is gone too
          if entry.get("epoch", 0) <= epoch:
            kept.append(entry)
    with atomic_file(self.path) as f:
      for entry in kept:
        f.write(json.dumps(entry) + "\n")
    return kept

  def append(self, entries: Iterable[dict]) -> None:
    with open(self.path, "a") as f:
      for entry in entries:
        f.write(json.dumps(entry, default=_jsonable) + "\n")
      f.flush()
      os.fsync(f.fileno())
