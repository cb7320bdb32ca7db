"""Checkpoints of the train state with orbax (the only module that imports orbax).

Layout: ``WORKDIR/checkpoints/<step>/{state,meta}``; the step number is the global training step
(``meta`` holds the epoch). Kept: the two latest checkpoints and the best one by the config's
validation metric (``LatestN(2)`` + ``BestN(1)`` with ``best_fn`` set, so the metric is persisted
and ``best_step`` survives a restart). When to save is the training loop's policy (``checkpoint_every`` epochs,
``checkpoint_every_minutes``, the end; the best state is written with the next checkpoint, so
a best epoch is never recorded without its checkpoint, as upstream's could be:
docs/upstream.md, §Known upstream bugs). Saves are asynchronous: ``save``
returns once the state is copied off the device, the files are written by orbax's background
thread while training goes on, and a failed write is raised by the next ``save``,
``check_for_errors`` or ``wait_until_finished``. orbax writes into a temporary folder and
renames it when complete, so a killed run never leaves a checkpoint that a restore would pick
up half-written. Dropping an old checkpoint
is made atomic the same way: orbax renames it into ``checkpoints/deleted/`` (``TRASH``), which
we empty afterwards; deleted in place, a kill mid-deletion left a step folder without its
metadata that looked finished.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp

BEST_KEY = "best_metric"
TRASH = "deleted"  # not a step number, so orbax never lists it as a checkpoint
DAMAGED = "damaged"  # checkpoints that did not restore, set aside (not a step number either)
KEEP_LATEST = 2  # so that a damaged latest checkpoint has one to fall back on


class NoCheckpointRestores(RuntimeError):
  """Every checkpoint of the folder failed to restore; ``problems`` says how, newest first."""

  def __init__(self, directory: str, problems: list[tuple[int, str]]):
    self.directory, self.problems = directory, problems
    super().__init__(f"no checkpoint in {directory} restores ("
                     + "; ".join(f"step {step}: {why}" for step, why in problems) + ")")


def mute_orbax_failure_reports() -> None:
  """Leaves the reporting of a failed write or restore to the caller's one line.

  When a write fails (a full disk), orbax logs the error with its traceback from each of its
  background threads, asyncio then logs every pending write task as "Task exception was never
  retrieved", tensorstore's callbacks into orbax's closed event loops print "Event loop
  is closed" tracebacks, and a failed restore leaves orbax coroutines whose exceptions Python
  reports as "Exception ignored in". The same error reaches the caller from ``save``,
  ``check_for_errors`` or ``wait_until_finished``, which is where lcc_jax reports it. Called by
  the command-line entry points; idempotent.
  """
  if getattr(sys.unraisablehook, "_lcc_jax_mute", False):
    return
  for name in ("absl", "asyncio"):
    logging.getLogger(name).addFilter(_not_an_orbax_error)
  hook = sys.unraisablehook

  def unraisablehook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)  # an orbax coroutine left failed
    from_orbax = "/orbax/" in getattr(code, "co_filename", "")
    closed_loop = (unraisable.exc_type is RuntimeError and
                   str(unraisable.exc_value) == "Event loop is closed" and
                   _innermost_file(unraisable.exc_traceback) == asyncio.base_events.__file__)
    if not (from_orbax or closed_loop):
      hook(unraisable)

  unraisablehook._lcc_jax_mute = True
  sys.unraisablehook = unraisablehook


def _not_an_orbax_error(record: logging.LogRecord) -> bool:
  """Drops orbax's warnings and errors (and asyncio's about orbax's tasks); keeps the rest."""
  if record.levelno < logging.WARNING:
    return True
  tb = record.exc_info[2] if record.exc_info else None
  frames = []
  while tb is not None:
    frames.append(tb.tb_frame.f_code.co_filename)
    tb = tb.tb_next
  return not any("/orbax/" in text for text in (record.pathname, record.getMessage(), *frames))


def _innermost_file(tb) -> str:
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  return tb.tb_frame.f_code.co_filename if tb is not None else ""


class Checkpoints:
  """Latest + best checkpoints of one run."""

  def __init__(self, directory: str, *, read_only: bool = False):
    policies = ocp.checkpoint_managers
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=KEEP_LATEST),
            policies.BestN(get_metric_fn=lambda m: m[BEST_KEY], n=1,
                           keep_checkpoints_without_metrics=False),
        ]),
        best_fn=lambda m: m[BEST_KEY], best_mode="max", read_only=read_only,
        create=not read_only,
        # A killed save leaves a temporary folder that no restore reads; remove it on open.
        cleanup_tmp_directories=not read_only,
        # Asynchronous saves: the loop checks for failed writes after every epoch.
        enable_async_checkpointing=True,
        todelete_subdir=None if read_only else TRASH)
    self._manager = ocp.CheckpointManager(self.directory, item_names=("state", "meta"),
                                          options=options)
    if not read_only:
      self._empty_trash()  # what a killed run had dropped but not yet deleted

  def save(self, step: int, state, meta: dict[str, Any], best_metric: float) -> None:
    """Starts writing ``state`` as checkpoint ``step``; returns once it is copied to the host."""
    # orbax waits for the previous write before starting this one anyway; waiting here first
    # lets the trash be emptied while no background thread renames into it.
    self.wait_until_finished()
    saved = self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      meta=ocp.args.JsonSave(meta)),
        metrics={BEST_KEY: float(best_metric)}, force=True)
    if not saved:
      raise RuntimeError(f"orbax declined to save checkpoint {step} in {self.directory}")

  def check_for_errors(self) -> None:
    """Raises the error of an asynchronous write that failed (none: returns at once)."""
    self._manager.check_for_errors()

  def wait_until_finished(self) -> None:
    """Blocks until every write has finished (raises a failed one's error)."""
    self._manager.wait_until_finished()
    self._empty_trash()

  def _empty_trash(self) -> None:
    shutil.rmtree(os.path.join(self.directory, TRASH), ignore_errors=True)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, step: int, state_template) -> tuple[Any, dict[str, Any]]:
    """(state, meta) of ``step``; ``state_template`` gives structure, shapes and shardings."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])

  def restore_newest_good(self, state_template, steps: list[int] | None = None):
    """(step, state, meta, problems) of the first of ``steps`` (default: every step, newest
    first) that restores; ``problems`` lists (step, why) of those before it that did not.

    Raises NoCheckpointRestores, having changed nothing, when none does.
    """
    steps = sorted(self._manager.all_steps(), reverse=True) if steps is None else steps
    problems = []
    for step in steps:
      try:
        state, meta = self.restore(step, state_template)
      except Exception as e:  # pylint: disable=broad-except  (tensorstore, orbax, json: any)
        why = (str(e).strip().splitlines() or [""])[0].split(". See full TensorStore")[0]
        problems.append((step, f"{type(e).__name__}: {why[:200]}"))
        continue
      return step, state, meta, problems
    raise NoCheckpointRestores(self.directory, problems)

  def set_aside(self, steps: list[int]) -> str:
    """Moves checkpoints that do not restore into ``checkpoints/damaged/`` (kept for a look,
    never listed again); returns that folder."""
    damaged = os.path.join(self.directory, DAMAGED)
    os.makedirs(damaged, exist_ok=True)
    for step in steps:
      target = os.path.join(damaged, str(step))
      shutil.rmtree(target, ignore_errors=True)
      os.replace(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return damaged

  def close(self) -> None:
    """Waits for the last write (a killed process leaves only a temporary folder) and closes."""
    try:
      self.wait_until_finished()
    finally:
      self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def save_variables(directory: str, variables, meta: dict[str, Any]) -> None:
  """Saves a frozen model's variables (F trained by us) with its metadata."""
  with ocp.CheckpointManager(os.path.abspath(directory), item_names=("variables", "meta"),
                             options=ocp.CheckpointManagerOptions(
                                 enable_async_checkpointing=False)) as manager:
    manager.save(0, args=ocp.args.Composite(variables=ocp.args.StandardSave(variables),
                                            meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()


def has_variables(directory: str) -> bool:
  return os.path.isdir(os.path.join(directory, "0", "variables"))


def load_variables(directory: str, template) -> tuple[Any, dict[str, Any]]:
  """(variables, meta) saved by ``save_variables``; ``template`` fixes structure and shapes."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  with ocp.CheckpointManager(os.path.abspath(directory), item_names=("variables", "meta"),
                             options=ocp.CheckpointManagerOptions(read_only=True,
                                                                  create=False)) as manager:
    restored = manager.restore(0, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  return restored["variables"], dict(restored["meta"])


def variables_spec(directory: str) -> dict[str, tuple[int, ...]]:
  """{leaf path: shape} of the variables ``save_variables`` wrote, from metadata only."""
  from etils import epath  # pylint: disable=g-import-not-at-top  (orbax's own path type)
  metadata = ocp.StandardCheckpointHandler().metadata(
      epath.Path(os.path.abspath(directory)) / "0" / "variables")
  tree = metadata.tree if hasattr(metadata, "tree") else metadata
  return {jax.tree_util.keystr(path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def read_step(directory: str, step: int) -> tuple[Any, dict[str, Any]]:
  """(state as saved, meta) of one finished step of ``Checkpoints``, without a template.

  For checks and tools: arrays come back with the saved shapes and dtypes, on the host.
  """
  step_dir = os.path.join(os.path.abspath(directory), str(step))
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(os.path.join(step_dir, "state"))
  with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
    meta = checkpointer.restore(os.path.join(step_dir, "meta"))
  return state, dict(meta)
