"""The training driver: ``train_and_evaluate(config, workdir)``.

Sections: set-up and workdir · data · base model F · F's outputs · the code · checkpoints and
resume · the epoch loop (train, evaluate val and test over every pattern, log, checkpoint) ·
summary and plots. The data, F's outputs and the erasure patterns live on the device for the
whole run; each epoch's index arrays cross once; training runs ``steps_per_dispatch`` steps per
jitted call (a ``lax.scan``) and a split's evaluation runs in one call, so the host sends and
reads one small pytree per chunk and never per step. Checkpoints are written asynchronously.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from lcc_jax import (base_training, checkpoint, coding, data, erasure, metrics, nn, optim,
                     parallel, precision, registry, steps, validate,
                     workdir as workdir_lib)
from lcc_jax.evaluation import reports

log = logging.getLogger(__name__)


class TrainingStopped(RuntimeError):
  """Training stopped early (divergence or a signal) after saving what could be saved."""


# ------------------------------------------------------------------------------ components


def _factory_kwargs(kind: str, name: str, candidates: dict, extra: dict) -> dict:
  """The keyword arguments a factory accepts, from the shared ``candidates`` plus ``extra``."""
  params = inspect.signature(registry.get(kind, name)).parameters
  takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
  kwargs = {key: v for key, v in candidates.items() if takes_any or key in params}
  return {**kwargs, **extra}


def _kwargs(cfg) -> dict:
  return cfg.kwargs.to_dict() if hasattr(cfg.kwargs, "to_dict") else dict(cfg.kwargs)


def parity_model_name(config) -> tuple[str, dict] | None:
  """(name, kwargs) of the network on the parities, or None when F itself runs there."""
  name = config.parity_model.name or ("same" if config.train.parity_model else "")
  if not name:
    return None
  if name == "same":
    return config.base_model.name, _kwargs(config.base_model)
  return name, _kwargs(config.parity_model)


def build_base_model(config, input_shape, num_classes) -> nn.ModelFns:
  return registry.build("base_model", config.base_model.name, input_shape=tuple(input_shape),
                        num_classes=num_classes, **_kwargs(config.base_model))


def build_code(config, input_shape, num_classes, base_model: nn.ModelFns) -> coding.Code:
  """The Code (encoder, decoder, F, F_P) a config names."""
  shared = dict(k=config.k, r=config.r, input_shape=tuple(input_shape), num_classes=num_classes,
                channel_mode=config.channel_mode, upstream_init=config.upstream_init)
  encoder = registry.build("encoder", config.encoder.name, **_factory_kwargs(
      "encoder", config.encoder.name, shared, _kwargs(config.encoder)))
  decoder = registry.build("decoder", config.decoder.name, **_factory_kwargs(
      "decoder", config.decoder.name, shared, _kwargs(config.decoder)))
  parity = parity_model_name(config)
  parity_model = None
  if parity is not None:
    parity_model = registry.build("base_model", parity[0], input_shape=tuple(input_shape),
                                  num_classes=num_classes, **parity[1])
  return coding.Code(encoder, decoder, base_model, parity_model)


def init_code_variables(code: coding.Code, base_variables, rng) -> dict[str, Any]:
  enc_key, dec_key, par_key = jax.random.split(rng, 3)
  variables = {"encoder": code.encoder.init(enc_key), "decoder": code.decoder.init(dec_key),
               "base_model": base_variables}
  if code.parity_model is not None:
    variables["parity_model"] = code.parity_model.init(par_key)  # trained from scratch
  return variables


def component_sources(config) -> dict[str, dict]:
  """Each component's name and, for one given by import path, the file it came from."""
  fields = {"dataset": ("dataset", config.data.name), "loss": ("loss", config.loss),
            "base_model": ("base_model", config.base_model.name),
            "encoder": ("encoder", config.encoder.name),
            "decoder": ("decoder", config.decoder.name)}
  parity = parity_model_name(config)
  if parity:
    fields["parity_model"] = ("base_model", parity[0])
  return {field: registry.describe(kind, name) for field, (kind, name) in fields.items()}


def trainable_components(config) -> list[str]:
  return [name for name in steps.COMPONENTS if config.train[name]]


def parameter_counts(variables) -> dict[str, int]:
  return {f"{name}_params": nn.count_params(v) for name, v in variables.items()}


# ------------------------------------------------------------------------------ base model F


def load_or_train_base_model(config, dataset: data.Dataset, split, workdir: str, fns, *,
                             progress: bool) -> tuple[Any, dict]:
  """F's variables: from ``base_model.checkpoint``, from WORKDIR/base, or trained now."""
  rng = jax.random.PRNGKey(config.seed)
  source = config.base_model.checkpoint
  if source and os.path.isdir(source):
    variables, meta = checkpoint.load_variables(source, fns.init(rng))
    return variables, {**meta, "source": os.path.abspath(source)}
  if source:
    from lcc_jax.models import torch_import
    variables = torch_import.load_torch_state_dict(source, config.base_model.name,
                                                   dataset.input_shape, dataset.num_classes)
    return variables, {"source": os.path.abspath(source)}
  base_dir = os.path.join(workdir, "base")
  if not nn.count_params(fns.init(rng)) and not jax.tree.leaves(fns.init(rng)):
    return fns.init(rng), {"source": "parameter-free function"}
  if checkpoint.has_variables(base_dir):
    variables, meta = checkpoint.load_variables(base_dir, fns.init(rng))
    return variables, {**meta, "source": base_dir}
  log.info("no trained F in the config: training %s on %s into %s", config.base_model.name,
           dataset.name, base_dir)
  train_idx = split["train"]
  start = time.time()
  variables = base_training.train(
      fns, rng, dataset.x_train[train_idx], dataset.labels_train[train_idx],
      epochs=config.base_model.epochs, batch_size=config.base_model.batch_size,
      lr=config.base_model.lr, weight_decay=config.base_model.weight_decay, seed=config.seed,
      progress=progress)
  meta = {"trained_epochs": config.base_model.epochs, "train_time_s": time.time() - start,
          "val_accuracy": base_training.accuracy(fns, variables, dataset.x_train[split["val"]],
                                                  dataset.labels_train[split["val"]])}
  # Orbax saves are collective: every process takes part, with globally placed arrays.
  checkpoint.save_variables(base_dir, parallel.replicate(variables, parallel.make_mesh()), meta)
  return variables, {**meta, "source": base_dir}


def outputs_tag(config, dataset) -> str:
  """Cache tag of F's outputs (names the function too, for a parameter-free F)."""
  return f"{dataset.name}/{config.base_model.name}/{config.get('data').get('fn', '')}"


# ------------------------------------------------------------------------------ evaluation


def eval_batches(indices, config, mesh) -> tuple[jax.Array, jax.Array]:
  """A split's fixed groups as device arrays (S, B, K) / (S, B): uploaded once per run."""
  idx_SxBxK, weight_SxB = data.group_indices(
      indices, config.k, config.data.eval_batch_size, shuffle=False,
      process_index=jax.process_index(), process_count=jax.process_count())
  return tuple(parallel.global_steps(idx_SxBxK, weight_SxB, mesh))


def split_summary(per_batch, unavail_PxN, config) -> dict:
  """Per-pattern metrics of a whole split from ``steps.eval_split``'s per-batch counts.

  Summed on the host batch by batch (int64 / float64), so the counts are exact. ``loss`` is
  the training objective, comparable with the train entries: the parity MSE for a
  parity-model run (whose reconstruction MSE is then ``recon_loss``).
  """
  per_batch = jax.device_get(per_batch)
  acc = metrics.Accumulator()
  for s in range(len(per_batch["n"])):
    acc.add({key: v[s] for key, v in per_batch.items()})
  totals = acc.totals
  summary = metrics.summarize(totals, unavail_PxN)
  summary["base_top1"] = float(totals["base_correct"] / max(int(totals["base_n"]), 1))
  if "parity_loss_sum" in totals:
    summary["recon_loss"] = summary["loss"]
    summary["loss"] = summary["parity_loss"] = float(
        totals["parity_loss_sum"] / max(int(totals["base_n"]) // config.k, 1))
  return summary


def expected_accuracy(base_accuracy: float, degraded: float, rates) -> dict[str, float]:
  """(1 − f)·A_F + f·A_degraded for each unavailability rate f (SOSP's definition)."""
  return {str(f): (1.0 - f) * base_accuracy + f * degraded for f in rates}


# ------------------------------------------------------------------------------ the driver


class _SignalFlag:
  """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

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


def _best_so_far(entries: list[dict], best_metric: str) -> tuple[float, int]:
  split, key = best_metric.split("/", 1)
  best, best_epoch = -np.inf, 0
  for entry in entries:
    if entry["split"] == split and entry[key] > best:
      best, best_epoch = entry[key], entry["epoch"]
  return best, best_epoch


def _train_entry(epoch, step, totals, loss_sum, num_steps, skipped, unavail_PxN,
                 time_s, steps_run) -> dict:
  summary = metrics.summarize(totals, unavail_PxN)
  # Skipped steps (on_nonfinite=skip) have no loss to average.
  return {"split": "train", "epoch": epoch, "step": step,
          "loss": loss_sum / max(num_steps - skipped, 1),
          "skipped_steps": skipped, **summary, "time_s": time_s,
          "steps_per_s": steps_run / time_s if time_s > 0 else 0.0}


class _EpochTotals:
  """An epoch's training metrics on the host: counts, the loss sum, skipped steps."""

  def __init__(self, resume: dict | None = None):
    self.acc = metrics.Accumulator()
    resume = resume or {}
    if resume:
      self.acc.add({key: np.asarray(v) for key, v in resume["train_totals"].items()})
    self.loss_sum = resume.get("train_loss_sum", 0.0)
    self.skipped = resume.get("train_skipped", 0)

  def add_chunk(self, outputs, first_step: int, config, epoch: int, bar) -> None:
    """Adds one chunk's results (read now); stops on a non-finite loss at the step it names."""
    (loss_L, skipped_L), counts = jax.device_get(outputs)
    bad = np.flatnonzero(~np.isfinite(loss_L) & (skipped_L == 0))
    if bad.size:
      step = first_step + int(bad[0]) + 1
      raise TrainingStopped(
          f"non-finite loss ({loss_L[bad[0]]}) at epoch {epoch}, step {step}; the last good "
          "checkpoint is kept and a rerun resumes from it. Lower optim.lr, or set "
          "--config.on_nonfinite=skip to skip such steps")
    self.acc.add(counts)
    for loss, skipped in zip(loss_L.tolist(), skipped_L.tolist()):  # in order, in float64
      if not skipped:
        self.loss_sum += loss
      self.skipped += int(skipped)
    totals = self.acc.totals
    n = max(int(np.sum(totals["n"])), 1)
    bar.update(len(loss_L))
    bar.set_postfix(loss=f"{loss_L[-1]:.4f}", refresh=False,
                    deg_top1=f"{np.sum(totals['degraded_top1']) / n:.3f}")

  def resume_meta(self) -> dict:
    return {"train_totals": {key: np.asarray(v).tolist() for key, v in self.acc.totals.items()},
            "train_loss_sum": self.loss_sum, "train_skipped": self.skipped}


# One dispatch (and one compiled program) for the whole state, not one per leaf.
_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


class _CheckpointPolicy:
  """When to write the latest state: every ``every_epochs`` epochs and/or ``every_minutes``.

  The best state is copied on the device when it is reached and written with the next
  checkpoint (before it), so a new best costs no write; every checkpoint written has the best
  so far on disk beside it. All processes decide alike (process 0's clock decides).
  """

  def __init__(self, every_epochs: int, every_minutes: float):
    self.every_epochs, self.every_minutes = every_epochs, every_minutes
    self.last = time.monotonic()
    self.best = None  # (step, state copy, meta, metric) not yet written

  def due(self, epoch: int) -> bool:
    by_epoch = bool(self.every_epochs) and epoch % self.every_epochs == 0
    by_time = bool(self.every_minutes) and time.monotonic() - self.last >= 60 * self.every_minutes
    return parallel.agree(by_epoch or by_time)

  def new_best(self, step: int, state, meta: dict, metric: float) -> None:
    self.best = (step, _copy_tree(state), meta, metric)

  def write(self, ckpt, step: int, state, meta: dict) -> None:
    """Writes the pending best (if any), then ``state`` as the latest (asynchronously)."""
    best, self.best = self.best, None
    if best is not None and best[0] == step:
      ckpt.save(step, best[1], best[2], best[3])
    else:
      if best is not None:
        ckpt.save(*best)
      # The latest state carries no metric, so orbax's BestN keeps exactly the best epoch.
      ckpt.save(step, state, meta, -np.inf)
    self.last = time.monotonic()


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
    return _train_and_evaluate(config, workdir, mesh=mesh, eval_only=eval_only,
                               progress=progress, profile_dir=profile_dir)


def _train_and_evaluate(config, workdir: str, *, mesh, eval_only: bool, progress: bool,
                        profile_dir: str) -> dict:
  """train_and_evaluate once the workdir is locked and claimed."""
  main = parallel.is_main_process()
  start_time = time.time()
  progress = progress and main

  # --- Data.
  dataset = data.load(config.data)
  split = data.make_split(len(dataset.x_train), config.k, config.data.val_size, config.seed,
                          workdir, name=dataset.name)
  test_indices = np.arange(len(dataset.x_test))

  # --- F, then its outputs on every example (computed once, cached by F's hash).
  base_fns = build_base_model(config, dataset.input_shape, dataset.num_classes)
  base_variables, base_info = load_or_train_base_model(config, dataset, split, workdir, base_fns,
                                                       progress=progress)
  f_hash = data.variables_hash(base_variables)
  cache_dir = os.path.join(workdir, "cache")
  tag = outputs_tag(config, dataset)
  y_train = data.cached_outputs(base_fns.apply, base_variables, dataset.x_train, cache_dir,
                                f"{tag}/train")
  y_test = data.cached_outputs(base_fns.apply, base_variables, dataset.x_test, cache_dir,
                               f"{tag}/test")
  base_test_accuracy = float(np.mean(np.argmax(y_test, -1) == dataset.labels_test))
  train_data = parallel.replicate({"x": dataset.x_train, "y": y_train,
                                   "labels": dataset.labels_train.astype(np.int32)}, mesh)
  test_data = parallel.replicate({"x": dataset.x_test, "y": y_test,
                                  "labels": dataset.labels_test.astype(np.int32)}, mesh)
  log.info("F (%s) test accuracy %.4f", config.base_model.name, base_test_accuracy)

  # --- The code: components, patterns, optimizer, train state.
  code = build_code(config, dataset.input_shape, dataset.num_classes, base_fns)
  rng = jax.random.PRNGKey(config.seed)
  variables = init_code_variables(code, base_variables, jax.random.fold_in(rng, 1))
  unavail_PxN = erasure.patterns(config.k, config.r, config.patterns.mode,
                                 limit=config.patterns.limit)
  unavail_on_device = parallel.replicate(unavail_PxN, mesh)  # for the whole run
  tx = optim.make_tx(**config.optim.to_dict())
  # Jitted: one program builds every optimizer moment, instead of one eager op per leaf.
  state, frozen = jax.jit(functools.partial(steps.init_state, trainable=trainable_components(
      config), tx=tx))(variables, rng=jax.random.fold_in(rng, 2))
  shard_min = config.distributed.shard_params_min_size
  # Parameters and optimizer state are replicated, or their big kernels sharded over devices.
  state = parallel.shard_params(state, mesh, shard_min) if shard_min else parallel.replicate(
      state, mesh)
  frozen = parallel.replicate(frozen, mesh)
  chunk = config.patterns.chunk or None
  train_chunk = steps.jit_train_chunk(code, tx, config.loss, dataset.augment, chunk,
                                      skip_nonfinite=config.on_nonfinite == "skip",
                                      precision_name=config.precision)
  eval_split = steps.jit_eval_split(code, config.loss, chunk, precision_name=config.precision)
  eval_sets = {"val": (train_data, eval_batches(split["val"], config, mesh)),
               "test": (test_data, eval_batches(test_indices, config, mesh))}
  metrics_log = workdir_lib.MetricsLog(os.path.join(workdir, "metrics.jsonl"))
  best_split = config.best_metric.split("/", 1)[0]

  run_info = {"seed": config.seed, "versions": workdir_lib.versions(), "base_model": base_info,
              "base_model_sha256": f_hash, "num_patterns": int(unavail_PxN.shape[0]),
              "patterns": erasure.unavailable_slots(unavail_PxN),
              "split_sizes": {key: int(len(v)) for key, v in split.items()},
              "devices": jax.device_count(), "processes": jax.process_count(),
              "backend": jax.default_backend(), "precision": config.precision,
              "components": component_sources(config), **parameter_counts(variables)}
  if main:
    with _writing("run_info.json"):
      workdir_lib.write_json(os.path.join(workdir, "run_info.json"), run_info)

  def evaluate(state, split_names) -> list[tuple[str, dict, float]]:
    """Dispatches every split's evaluation before reading any: (split, summary, time_s)."""
    start = time.perf_counter()
    pending = [(name, eval_split(state.params, state.model_state, frozen, eval_sets[name][0],
                                 *eval_sets[name][1], unavail_on_device))
               for name in split_names]
    results = []
    for name, per_batch in pending:
      summary = split_summary(per_batch, unavail_PxN, config)
      now = time.perf_counter()
      results.append((name, summary, now - start))
      start = now
    return results

  with checkpoint.Checkpoints(os.path.join(workdir, "checkpoints")) as ckpt:
    if eval_only:
      return _eval_only(config, workdir, ckpt, state, evaluate, base_test_accuracy)

    # --- Resume: the latest checkpoint, with the epoch position and partial train counts.
    epoch_done, resume = 0, {}
    if ckpt.latest_step() is not None:
      state, resume = _restore_latest_good(ckpt, state)
      epoch_done = resume["epoch"]
    entries = metrics_log.truncate_after(epoch_done) if main else []
    best, best_epoch = _best_so_far(entries, config.best_metric)

    # --- The epoch loop.
    policy = _CheckpointPolicy(config.checkpoint_every, config.checkpoint_every_minutes)
    global_step = int(jax.device_get(state.step))
    profiler = _Profiler(profile_dir, first_epoch=epoch_done + 1, num_epochs=config.num_epochs)
    with _SignalFlag() as stop:
      for epoch in range(epoch_done + 1, config.num_epochs + 1):
        epoch_start = time.perf_counter()
        idx_SxBxK, weight_SxB = data.group_indices(
            split["train"], config.k, config.data.batch_size, shuffle=True, seed=config.seed,
            epoch=epoch, process_index=jax.process_index(), process_count=jax.process_count())
        num_steps = len(idx_SxBxK)
        first = resume.get("step_in_epoch", 0) if resume.get("in_epoch") == epoch else 0
        totals = _EpochTotals(resume if first else None)
        # The epoch's batches and the global step it began at: one transfer for all its steps.
        *epoch_batches, epoch_first_step = parallel.global_steps(
            idx_SxBxK, weight_SxB, mesh, np.int32(global_step - first))
        per_dispatch = config.steps_per_dispatch or num_steps
        bar = tqdm(total=num_steps, initial=first, desc=f"epoch {epoch}/{config.num_epochs}",
                   disable=not progress, leave=False, dynamic_ncols=True)
        position, pending = first, None
        while position < num_steps:
          length = min(per_dispatch, num_steps - position)
          state, per_step, counts = profiler.call(
              epoch == profiler.epoch and position == first, train_chunk, state, frozen,
              train_data, *epoch_batches, epoch_first_step, unavail_on_device, num_steps=length)
          # Read the previous chunk's results now that this one is queued: no device stall.
          if pending is not None:
            totals.add_chunk(pending[1], pending[0], config, epoch, bar)
          pending = (position, (per_step, counts))
          position += length
          global_step += length
          if stop.received:
            totals.add_chunk(pending[1], pending[0], config, epoch, bar)
            meta = {"epoch": epoch - 1, "in_epoch": epoch, "step_in_epoch": position,
                    **totals.resume_meta()}
            with _writing(f"the checkpoint of the interrupted epoch {epoch}"):
              # An interrupted state has no validation metric: it never becomes "best".
              policy.write(ckpt, global_step, state, meta)
              ckpt.wait_until_finished()
            raise TrainingStopped(
                f"{stop.received} received at epoch {epoch}, step {position}: saved a "
                "checkpoint; run the same command again to resume")
        if pending is not None:
          totals.add_chunk(pending[1], pending[0], config, epoch, bar)
        bar.close()
        train_time = time.perf_counter() - epoch_start
        resume = {}

        # Evaluate val and test over every pattern.
        new_entries = [_train_entry(epoch, global_step, totals.acc.totals, totals.loss_sum,
                                    num_steps, totals.skipped, unavail_PxN, train_time,
                                    num_steps - first)]
        for split_name, summary, time_s in evaluate(state, config.eval_splits):
          new_entries.append({"split": split_name, "epoch": epoch, "step": global_step,
                              **summary, "time_s": time_s})
        # A diverged state is never logged or saved: the last good checkpoint stays the latest.
        bad = [e["split"] for e in new_entries[1:] if not np.isfinite(e.get("loss", 0.0))]
        if bad:
          raise TrainingStopped(
              f"the parameters diverged during epoch {epoch} (non-finite {bad[0]} loss after its "
              "last step); the last good checkpoint is kept and a rerun resumes from it. Lower "
              "optim.lr")
        if main:
          with _writing("metrics.jsonl"):
            metrics_log.append(new_entries)
        entries += new_entries
        _log_epoch(new_entries, progress)

        value = next(e for e in new_entries if e["split"] == best_split)[
            config.best_metric.split("/", 1)[1]]
        meta = {"epoch": epoch, "best": best, "best_epoch": best_epoch}
        if value > best:  # strict: ties go to the earlier epoch, as upstream's
          best, best_epoch = value, epoch
          meta = {"epoch": epoch, "best": best, "best_epoch": best_epoch}
          policy.new_best(global_step, state, meta, value)
        out_of_time = (config.time_limit_minutes > 0 and parallel.agree(
            time.time() - start_time > 60 * config.time_limit_minutes))
        with _writing("a checkpoint written in the background"):
          ckpt.check_for_errors()  # an asynchronous write that failed stops the run now
        if epoch == config.num_epochs or out_of_time or policy.due(epoch):
          with _writing(f"the checkpoint of epoch {epoch}"):
            policy.write(ckpt, global_step, state, meta)
        if out_of_time:
          log.warning("time_limit_minutes=%s reached after epoch %d", config.time_limit_minutes,
                      epoch)
          break
    with _writing("the last checkpoint"):
      ckpt.wait_until_finished()

  summary = _summarize(config, entries, best_epoch, base_test_accuracy, run_info,
                       time.time() - start_time)
  if main:
    with _writing("summary.json"):
      workdir_lib.write_json(os.path.join(workdir, "summary.json"), summary)
    _plot(workdir, entries, summary, config)
  return summary


class _Profiler:
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


@contextlib.contextmanager
def _writing(what: str):
  """A failed write (disk full, permissions) stops the run: it never trains on unsaved."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (orbax and tensorstore: not only OSError)
    lines = str(e).strip().splitlines()
    raise TrainingStopped(
        f"could not write {what} ({type(e).__name__}: {lines[0] if lines else ''}); stopped "
        "instead of training on without it. Free disk space or fix the permissions, then run "
        "the same command again to resume from the last good checkpoint") from e


def _log_epoch(entries, progress):
  parts = [f"{e['split']}: loss {e.get('loss', float('nan')):.4f} "
           f"recon@1 {e['reconstruction_top1']:.4f} degraded@1 {e['degraded_top1']:.4f}"
           for e in entries]
  message = f"epoch {entries[0]['epoch']} | " + " | ".join(parts)
  if progress:
    tqdm.write(message)
  log.info(message)


def _summarize(config, entries, best_epoch, base_test_accuracy, run_info, wall_time) -> dict:
  at_best = {e["split"]: e for e in entries if e["epoch"] == best_epoch}
  test = dict(at_best.get("test", {}))
  if test:
    test["expected_accuracy"] = expected_accuracy(base_test_accuracy, test["degraded_top1"],
                                                  config.unavailability_rates)
  return {"base_model": {"name": config.base_model.name, "test_accuracy": base_test_accuracy,
                         **{k: v for k, v in run_info["base_model"].items() if k != "source"}},
          "dataset": config.data.name, "k": config.k, "r": config.r,
          "encoder": config.encoder.name,
          "decoder": config.decoder.name, "loss": config.loss,
          "parity_model": (parity_model_name(config) or ("",))[0],
          "num_patterns": run_info["num_patterns"], "best_metric": config.best_metric,
          "best_epoch": best_epoch, "epochs": max([e["epoch"] for e in entries], default=0),
          "val": at_best.get("val", {}), "test": test, "wall_time_s": wall_time}


def _plot(workdir, entries, summary, config):
  title = (f"{config.data.name} {config.base_model.name} k={config.k} r={config.r} "
           f"{config.encoder.name}/{config.decoder.name} {config.loss}")
  if entries:
    reports.curves(entries, os.path.join(workdir, "curves.png"), title)
  if summary["test"].get("per_pattern"):
    reports.per_pattern(summary["test"]["per_pattern"], os.path.join(workdir, "patterns.png"),
                        summary["base_model"]["test_accuracy"],
                        f"{title} (test, epoch {summary['best_epoch']})")


def _restore_latest_good(ckpt, state) -> tuple[Any, dict]:
  """The newest checkpoint that restores; the damaged ones after it are set aside, each
  reported in one line. None restores: a WorkdirError (exit 2), with nothing changed."""
  try:
    step, state, meta, problems = ckpt.restore_newest_good(state)
  except checkpoint.NoCheckpointRestores as e:
    raise workdir_lib.WorkdirError(
        f"{e}; the run cannot resume. Pass --overwrite to start it again, or put back the "
        f"checkpoints from a copy") from None
  if problems:
    damaged = ckpt.set_aside([s for s, _ in problems])
    for bad, why in problems:
      _warn(f"checkpoint {bad} does not restore ({why}); moved it to {damaged}/{bad} and "
            f"resumed from checkpoint {step}")
  log.info("resuming from step %d (epoch %d done)", step, meta["epoch"])
  return state, meta


def _warn(message: str) -> None:
  if parallel.is_main_process():
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _eval_only(config, workdir, ckpt, state, evaluate, base_test_accuracy) -> dict:
  """Evaluates the best checkpoint (else the latest that restores) on val and test."""
  if ckpt.latest_step() is None:
    raise validate.ConfigError(f"--eval_only: {workdir} holds no checkpoint to evaluate; train "
                               "first (same command without --eval_only)")
  steps = sorted({ckpt.best_step() or ckpt.latest_step(), *ckpt.all_steps()},
                 key=lambda s: (s != ckpt.best_step(), -s))
  try:
    chosen, state, meta, problems = ckpt.restore_newest_good(state, steps)
  except checkpoint.NoCheckpointRestores as e:
    raise workdir_lib.WorkdirError(f"--eval_only: {e}; nothing to evaluate") from None
  for bad, why in problems:
    _warn(f"checkpoint {bad} does not restore ({why}); evaluated checkpoint {chosen} instead")
  result = {"checkpoint_step": chosen, "epoch": meta["epoch"],
            "base_model_test_accuracy": base_test_accuracy}
  for split_name, summary, _ in evaluate(state, ("val", "test")):
    result[split_name] = summary
  result["test"]["expected_accuracy"] = expected_accuracy(
      base_test_accuracy, result["test"]["degraded_top1"], config.unavailability_rates)
  if parallel.is_main_process():
    workdir_lib.write_json(os.path.join(workdir, "eval_only.json"), result)
  return result
