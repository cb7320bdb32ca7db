"""The training driver: ``train_and_evaluate(config, workdir)``.

Set-up (validate, lock and claim the workdir) · assembly (``assembly.prepare``: data, F, F's
outputs, the code) · the train state, one or many replicas (``replicas``) · resume · the epoch
loop (train, evaluate val and test over every pattern, log, checkpoint) · summary and plots.
The data, F's outputs and the erasure patterns live on the device for the whole run; each
epoch's index arrays cross once; training runs ``steps_per_dispatch`` steps per jitted call (a
``lax.scan``) and a split's evaluation runs in one call, so the host sends and reads one small
pytree per chunk and never per step. Checkpoints are written asynchronously.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from lcc_jax import (assembly, checkpoint, data, erasure, parallel, replicas as replicas_lib,
                     run_summary, steps, train_loop, validate, workdir as workdir_lib)
from lcc_jax.run_control import warn, writing

log = logging.getLogger(__name__)


def eval_batches(indices, config, mesh, whole: bool = False) -> tuple[jax.Array, jax.Array]:
  """A split's fixed groups as device arrays (S, B, K) / (S, B): uploaded once per run; split
  along the batch over the devices, or ``whole`` on each (replicas sharded instead)."""
  idx_SxBxK, weight_SxB = data.group_indices(
      indices, config.k, config.data.eval_batch_size, shuffle=False,
      process_index=jax.process_index(), process_count=jax.process_count())
  if whole:
    return tuple(parallel.replicate((np.asarray(idx_SxBxK, np.int32),
                                     np.asarray(weight_SxB, np.float32)), mesh))
  return tuple(parallel.global_steps(idx_SxBxK, weight_SxB, mesh))


# ------------------------------------------------------------------------------ the driver


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, eval_only: bool = False,
                       overwrite: bool = False, progress: bool = True,
                       profile_dir: str = "") -> dict:
  """Trains what ``config`` says in ``workdir`` (resuming it), evaluates, writes the summary.

  ``profile_dir``: write a ``jax.profiler`` trace of one chunk of training steps there.
  """
  # --- Set-up: validate everything before any work, then lock and claim the workdir.
  parallel.initialize(config.get("distributed"))
  mesh = parallel.make_mesh()
  main = parallel.is_main_process()
  validate.check_run(config, workdir if main else None, mesh=mesh, overwrite=overwrite,
                     eval_only=eval_only)
  if config.compilation_cache_dir:
    # Every program of the run, however quick to compile, so a sweep compiles each once.
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(config.compilation_cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  # The main process holds the workdir's lock for the whole run; the others wait for it below.
  lock = (workdir_lib.locked(workdir, "evaluation (--eval_only)" if eval_only else "training")
          if main else contextlib.nullcontext())
  with lock:
    if main:
      if overwrite and os.path.isdir(workdir) and not eval_only:
        workdir_lib.clear(workdir)
      workdir_lib.claim(workdir, config.to_dict(), overwrite=overwrite)
    parallel.wait_for_all_processes("workdir claimed")
    return _Trainer(config, workdir, mesh, progress=progress).run(eval_only, profile_dir)


class _Trainer:
  """One run, assembled and on the device: what the epoch loop and the evaluation share."""

  def __init__(self, config, workdir: str, mesh, *, progress: bool):
    self.config, self.workdir, self.mesh = config, workdir, mesh
    self.main = parallel.is_main_process()
    self.start_time = time.time()
    self.progress = progress and self.main
    self.run_ = run = assembly.prepare(config, workdir, progress=self.progress)
    log.info("F (%s) test accuracy %.4f", config.base_model.name, run.base_test_accuracy)
    dataset = run.dataset
    self.train_data = parallel.replicate({"x": dataset.x_train, "y": run.y_train,
                                          "labels": dataset.labels_train.astype(np.int32)}, mesh)
    test_data = parallel.replicate({"x": dataset.x_test, "y": run.y_test,
                                    "labels": dataset.labels_test.astype(np.int32)}, mesh)
    self.replicas = replicas_lib.from_config(config)
    tx = replicas_lib.make_tx(config, self.replicas)
    variables, state, frozen = replicas_lib.init_state(run, tx, self.replicas)
    axes = replicas_lib.frozen_axes(frozen) if self.replicas.vmapped else None
    self.state, self.frozen = self._place(state, frozen, axes)
    self.unavail = parallel.replicate(run.unavail_PxN, mesh)  # for the whole run
    chunk = config.patterns.chunk or None
    self.train_chunk = steps.jit_train_chunk(
        run.code, tx, config.loss, dataset.augment, chunk,
        skip_nonfinite=config.on_nonfinite == "skip", precision_name=config.precision,
        frozen_axes=axes)
    self.eval_split = steps.jit_eval_split(run.code, config.loss, chunk,
                                           precision_name=config.precision, frozen_axes=axes)
    shard = config.replicas.shard
    self.eval_sets = {"val": (self.train_data, eval_batches(run.split["val"], config, mesh,
                                                            shard)),
                      "test": (test_data, eval_batches(np.arange(len(dataset.x_test)), config,
                                                       mesh, shard))}
    self.run_info = self._run_info(variables)

  def _place(self, state, frozen, axes):
    """On the mesh: parameters and optimizer state replicated, or their big kernels sharded
    (``distributed.shard_params_min_size``), or split by replica (``replicas.shard``)."""
    mesh, config = self.mesh, self.config
    if config.replicas.shard:
      return parallel.shard_replicas(state, mesh), parallel.shard_replicas(frozen, mesh, axes)
    shard_min = config.distributed.shard_params_min_size
    state = (parallel.shard_params(state, mesh, shard_min) if shard_min
             else parallel.replicate(state, mesh))
    return state, parallel.replicate(frozen, mesh)

  def _run_info(self, variables) -> dict:
    run, config = self.run_, self.config
    info = {"seed": config.seed, "versions": workdir_lib.versions(), "base_model": run.base_info,
            "base_model_sha256": run.base_sha256, "num_patterns": int(run.unavail_PxN.shape[0]),
            "patterns": erasure.unavailable_slots(run.unavail_PxN),
            "split_sizes": {key: int(len(v)) for key, v in run.split.items()},
            "devices": jax.device_count(), "processes": jax.process_count(),
            "backend": jax.default_backend(), "precision": config.precision,
            "components": assembly.component_sources(config),
            **assembly.parameter_counts(variables)}
    if self.replicas.vmapped:
      info["replicas"] = [{"replica": i, "seed": s, **self.replicas.settings(i)}
                          for i, s in zip(self.replicas.indices, self.replicas.seeds)]
    return info

  def evaluate(self, state, split_names) -> list[tuple[str, list[dict], float]]:
    """Dispatches every split's evaluation before reading any: (split, [summary per replica],
    time_s)."""
    start = time.perf_counter()
    pending = [(name, self.eval_split(state.params, state.model_state, self.frozen,
                                      self.eval_sets[name][0], *self.eval_sets[name][1],
                                      self.unavail))
               for name in split_names]
    results = []
    for name, per_batch in pending:
      per_batch = replicas_lib.stacked(jax.device_get(per_batch), self.replicas)
      summaries = [run_summary.split_summary(replicas_lib.replica(per_batch, p),
                                             self.run_.unavail_PxN, self.config.k)
                   for p in range(self.replicas.count)]
      now = time.perf_counter()
      results.append((name, summaries, now - start))
      start = now
    return results

  def template(self):
    """What a checkpoint holds: the state, and in a replicated run every replica's best."""
    if self.replicas.vmapped:
      return {"latest": self.state, "best": self.state}
    return self.state

  def run(self, eval_only: bool, profile_dir: str) -> dict:
    if self.main:
      with writing("run_info.json"):
        workdir_lib.write_json(os.path.join(self.workdir, "run_info.json"), self.run_info)
    with checkpoint.Checkpoints(os.path.join(self.workdir, "checkpoints")) as ckpt:
      if eval_only:
        return self._eval_only(ckpt)
      entries, progress = train_loop.run_epochs(self, ckpt, profile_dir)
      with writing("the last checkpoint"):
        ckpt.wait_until_finished()
    return self._finish(entries, progress)

  def _finish(self, entries, progress: train_loop.Progress) -> dict:
    config, replicas = self.config, self.replicas
    wall = time.time() - self.start_time
    base_accuracy = self.run_.base_test_accuracy
    if replicas.vmapped:
      summary = run_summary.summarize_replicas(
          config, entries, replicas, dict(zip(replicas.indices, progress.best_epoch)),
          progress.diverged, base_accuracy, self.run_info, wall)
    else:
      summary = run_summary.summarize(config, entries, progress.best_epoch[0], base_accuracy,
                                      self.run_info, wall)
    if self.main:
      with writing("summary.json"):
        workdir_lib.write_json(os.path.join(self.workdir, "summary.json"), summary)
      run_summary.plot(self.workdir, entries, summary, config)
    return summary

  def restore_latest_good(self, ckpt) -> tuple[Any, Any, dict]:
    """(state, best state or None, meta) of the newest checkpoint that restores; the damaged
    ones after it are set aside, each reported in one line. None restores: a WorkdirError
    (exit 2), with nothing changed."""
    try:
      step, state, meta, problems = ckpt.restore_newest_good(self.template())
    except checkpoint.NoCheckpointRestores as e:
      raise workdir_lib.WorkdirError(
          f"{e}; the run cannot resume. Pass --overwrite to start it again, or put back the "
          f"checkpoints from a copy") from None
    if problems:
      damaged = ckpt.set_aside([s for s, _ in problems])
      for bad, why in problems:
        warn(f"checkpoint {bad} does not restore ({why}); moved it to {damaged}/{bad} and "
             f"resumed from checkpoint {step}")
    log.info("resuming from step %d (epoch %d done)", step, meta["epoch"])
    if self.replicas.vmapped:
      return state["latest"], state["best"], meta
    return state, None, meta

  def _eval_only(self, ckpt) -> dict:
    """Evaluates the best checkpoint (else the latest that restores) on val and test; in a
    replicated run, every replica's best state."""
    config, workdir = self.config, self.workdir
    if ckpt.latest_step() is None:
      raise validate.ConfigError(f"--eval_only: {workdir} holds no checkpoint to evaluate; "
                                 "train first (same command without --eval_only)")
    order = sorted({ckpt.best_step() or ckpt.latest_step(), *ckpt.all_steps()},
                   key=lambda s: (s != ckpt.best_step(), -s))
    try:
      chosen, state, meta, problems = ckpt.restore_newest_good(self.template(), order)
    except checkpoint.NoCheckpointRestores as e:
      raise workdir_lib.WorkdirError(f"--eval_only: {e}; nothing to evaluate") from None
    for bad, why in problems:
      warn(f"checkpoint {bad} does not restore ({why}); evaluated checkpoint {chosen} instead")
    if self.replicas.vmapped:
      state = state["best"]
    base_accuracy = self.run_.base_test_accuracy
    per_replica = [{"replica": i} for i in self.replicas.indices]
    for split_name, summaries, _ in self.evaluate(state, ("val", "test")):
      for out, summary in zip(per_replica, summaries):
        out[split_name] = summary
    for out in per_replica:
      out["test"]["expected_accuracy"] = run_summary.expected_accuracy(
          base_accuracy, out["test"]["degraded_top1"], config.unavailability_rates)
    result = {"checkpoint_step": chosen, "epoch": meta["epoch"],
              "base_model_test_accuracy": base_accuracy}
    if self.replicas.vmapped:
      result.update(replicas=per_replica, aggregate=run_summary.aggregate(
          [{**r, "best_epoch": e} for r, e in zip(per_replica, meta["best_epoch"])]))
    else:
      result.update(val=per_replica[0]["val"], test=per_replica[0]["test"])
    if self.main:
      workdir_lib.write_json(os.path.join(workdir, "eval_only.json"), result)
    return result
