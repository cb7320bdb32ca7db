"""What keeps a training run safe to stop: signals, failed writes, warnings, a profile.

A signal (SIGINT / SIGTERM) becomes a flag the loop checks between chunks, so the run stops at
a step boundary with a checkpoint; a write that fails (full disk, permissions) stops the run
instead of letting it train on unsaved; either way the run ends in ``TrainingStopped``, which
the command line reports in one line (exit status 1).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys

import jax

from lcc_jax import parallel

log = logging.getLogger(__name__)


class TrainingStopped(RuntimeError):
  """Training stopped early (divergence or a signal) after saving what could be saved."""


class SignalFlag:
  """Turns SIGINT/SIGTERM into a flag the loop checks after each chunk."""

  def __init__(self):
    self.received = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)


@contextlib.contextmanager
def writing(what: str):
  """A failed write (disk full, permissions) stops the run: it never trains on unsaved."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (orbax and tensorstore: not only OSError)
    lines = str(e).strip().splitlines()
    raise TrainingStopped(
        f"could not write {what} ({type(e).__name__}: {lines[0] if lines else ''}); stopped "
        "instead of training on without it. Free disk space or fix the permissions, then run "
        "the same command again to resume from the last good checkpoint") from e


def warn(message: str) -> None:
  """One ``warning:`` line on stderr, from the main process only."""
  if parallel.is_main_process():
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Profiler:
  """A ``jax.profiler`` trace of one chunk: the second epoch's first (compiled by then), or
  the first when the run trains one epoch."""

  def __init__(self, directory: str, *, first_epoch: int, num_epochs: int):
    self.directory = directory
    self.epoch = first_epoch + 1 if num_epochs > first_epoch else first_epoch

  def call(self, wanted: bool, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, traced (and waited for) when ``wanted`` and a folder is set."""
    if not (wanted and self.directory):
      return fn(*args, **kwargs)
    with jax.profiler.trace(self.directory):
      out = jax.block_until_ready(fn(*args, **kwargs))
    log.warning("wrote a profile of one chunk of epoch %d to %s", self.epoch, self.directory)
    return out
