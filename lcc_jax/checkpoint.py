"""Checkpoints of the train state with orbax (the only module that imports orbax).

Layout: ``WORKDIR/checkpoints/<step>/{state,meta}``; the step number is the global training step
(``meta`` holds the epoch). Kept: the latest checkpoint and the best one by the config's validation metric
(``LatestN(1)`` + ``BestN(1)`` with ``best_fn`` set, so the metric is persisted and ``best_step``
survives a restart). A checkpoint is saved when an epoch is a multiple of ``checkpoint_every``,
when it is the best so far (upstream could record a best epoch it never wrote: a known bug), and at
the end. orbax writes into a temporary folder and renames it when complete, so a killed run
never leaves a checkpoint that a restore would pick up half-written. Dropping an old checkpoint
is made atomic the same way: orbax renames it into ``checkpoints/deleted/`` (``TRASH``), which
we empty afterwards; deleted in place, a kill mid-deletion left a step folder without its
metadata that looked finished.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

BEST_KEY = "best_metric"
TRASH = "deleted"  # not a step number, so orbax never lists it as a checkpoint


class Checkpoints:
  """Latest + best checkpoints of one run."""

  def __init__(self, directory: str, *, read_only: bool = False):
    policies = ocp.checkpoint_managers
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=1),
            policies.BestN(get_metric_fn=lambda m: m[BEST_KEY], n=1,
                           keep_checkpoints_without_metrics=False),
        ]),
        best_fn=lambda m: m[BEST_KEY], best_mode="max", read_only=read_only,
        create=not read_only,
        # A killed save leaves a temporary folder that no restore reads; remove it on open.
        cleanup_tmp_directories=not read_only,
        # Synchronous saves: a checkpoint is on disk when `save` returns, so a failed write
        # stops the run at once instead of surfacing an epoch later.
        enable_async_checkpointing=False,
        todelete_subdir=None if read_only else TRASH)
    self._manager = ocp.CheckpointManager(self.directory, item_names=("state", "meta"),
                                          options=options)
    if not read_only:
      self._empty_trash()  # what a killed run had dropped but not yet deleted

  def save(self, epoch: int, state, meta: dict[str, Any], best_metric: float) -> None:
    saved = self._manager.save(
        epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                       meta=ocp.args.JsonSave(meta)),
        metrics={BEST_KEY: float(best_metric)}, force=True)
    if not saved:
      raise RuntimeError(f"orbax declined to save checkpoint {epoch} in {self.directory}")
    self._manager.wait_until_finished()
    self._empty_trash()

  def _empty_trash(self) -> None:
    shutil.rmtree(os.path.join(self.directory, TRASH), ignore_errors=True)

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def best_epoch(self) -> int | None:
    return self._manager.best_step()

  def restore(self, epoch: int, state_template) -> tuple[Any, dict[str, Any]]:
    """(state, meta) of ``epoch``; ``state_template`` gives structure, shapes and shardings."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    restored = self._manager.restore(
        epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                       meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])

  def restore_meta(self, epoch: int) -> dict[str, Any]:
    restored = self._manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def close(self) -> None:
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
