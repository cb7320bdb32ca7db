"""The training driver: ``train_and_evaluate(config, workdir)``.

Sections: set-up and workdir · data · base model F · F's outputs · the code · checkpoints and
resume · the epoch loop (train, evaluate val and test over every pattern, log, checkpoint) ·
summary and plots. Every step is one jitted call on device-resident data; the host only sends
index arrays and reads each step's metrics one step late, so it never stalls the device.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from lcc_jax import (base_training, checkpoint, coding, data, erasure, metrics, nn, optim,
                     parallel, plots, registry, steps, validate, workdir as workdir_lib)

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


def evaluate_split(eval_step, state, frozen, split_data, indices, unavail_PxN, config,
                   mesh) -> dict:
  """Per-pattern metrics of fixed groups over a whole split (exact counts)."""
  idx_SxBxK, weight_SxB = data.group_indices(
      indices, config.k, config.data.eval_batch_size, shuffle=False,
      process_index=jax.process_index(), process_count=jax.process_count())
  acc = metrics.Accumulator()
  for idx_BxK, weight_B in zip(idx_SxBxK, weight_SxB):
    idx, weight = parallel.global_batch(idx_BxK, weight_B, mesh)
    acc.add(eval_step(state.params, state.model_state, frozen, split_data, idx, weight,
                      unavail_PxN))
  totals = acc.totals
  summary = metrics.summarize(totals, unavail_PxN)
  summary["base_top1"] = float(totals["base_correct"] / max(int(totals["base_n"]), 1))
  if "parity_loss_sum" in totals:
    summary["parity_loss"] = float(totals["parity_loss_sum"] / max(int(totals["base_n"]) //
                                                                   config.k, 1))
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


def _train_entry(epoch, step, totals, loss_sum, num_steps, skipped, unavail_PxN) -> dict:
  summary = metrics.summarize(totals, unavail_PxN)
  # Skipped steps (on_nonfinite=skip) have no loss to average.
  return {"split": "train", "epoch": epoch, "step": step,
          "loss": loss_sum / max(num_steps - skipped, 1),
          "skipped_steps": skipped, **summary}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, eval_only: bool = False,
                       overwrite: bool = False, progress: bool = True) -> dict:
  """Trains what ``config`` says in ``workdir`` (resuming it), evaluates, writes the summary."""
  # --- Set-up: validate everything before any work, then claim the workdir.
  parallel.initialize(config.get("distributed"))
  mesh = parallel.make_mesh()
  main = parallel.is_main_process()
  validate.check_run(config, workdir if main else None, mesh=mesh, overwrite=overwrite,
                     eval_only=eval_only)
  if main:
    if overwrite and os.path.isdir(workdir) and not eval_only:
      shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.claim(workdir, config.to_dict(), overwrite=overwrite)
  parallel.wait_for_all_processes("workdir claimed")
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
  tx = optim.make_tx(**config.optim.to_dict())
  state, frozen = steps.init_state(variables, trainable_components(config), tx,
                                   jax.random.fold_in(rng, 2))
  shard_min = config.distributed.shard_params_min_size
  # Parameters and optimizer state are replicated, or their big kernels sharded over devices.
  state = parallel.shard_params(state, mesh, shard_min) if shard_min else parallel.replicate(
      state, mesh)
  frozen = parallel.replicate(frozen, mesh)
  chunk = config.patterns.chunk or None
  train_step = steps.jit_train_step(code, tx, config.loss, dataset.augment, chunk,
                                    skip_nonfinite=config.on_nonfinite == "skip")
  eval_step = steps.jit_eval_step(code, config.loss, chunk)
  eval_sets = {"val": (train_data, split["val"]), "test": (test_data, test_indices)}
  metrics_log = workdir_lib.MetricsLog(os.path.join(workdir, "metrics.jsonl"))
  best_split = config.best_metric.split("/", 1)[0]

  run_info = {"seed": config.seed, "versions": workdir_lib.versions(), "base_model": base_info,
              "base_model_sha256": f_hash, "num_patterns": int(unavail_PxN.shape[0]),
              "patterns": erasure.unavailable_slots(unavail_PxN),
              "split_sizes": {key: int(len(v)) for key, v in split.items()},
              "devices": jax.device_count(), "processes": jax.process_count(),
              "components": component_sources(config), **parameter_counts(variables)}
  if main:
    with _writing("run_info.json"):
      workdir_lib.write_json(os.path.join(workdir, "run_info.json"), run_info)

  with checkpoint.Checkpoints(os.path.join(workdir, "checkpoints")) as ckpt:
    # --- Resume: the latest checkpoint, with the epoch position and partial train counts.
    latest = ckpt.latest_epoch()
    epoch_done, resume = 0, {}
    if latest is not None:
      state, resume = ckpt.restore(latest, state)
      epoch_done = resume["epoch"]
      log.info("resuming from step %d (epoch %d done)", latest, epoch_done)
    entries = metrics_log.truncate_after(epoch_done) if main else []
    best, best_epoch = _best_so_far(entries, config.best_metric)

    if eval_only:
      return _eval_only(config, workdir, ckpt, state, frozen, eval_step, eval_sets, unavail_PxN,
                        mesh, base_test_accuracy, run_info)

    # --- The epoch loop.
    with _SignalFlag() as stop:
      for epoch in range(epoch_done + 1, config.num_epochs + 1):
        idx_SxBxK, weight_SxB = data.group_indices(
            split["train"], config.k, config.data.batch_size, shuffle=True, seed=config.seed,
            epoch=epoch, process_index=jax.process_index(), process_count=jax.process_count())
        first = resume.get("step_in_epoch", 0) if resume.get("in_epoch") == epoch else 0
        acc = metrics.Accumulator()
        if first:
          acc.add({key: np.asarray(v) for key, v in resume["train_totals"].items()})
        loss_sum = resume.get("train_loss_sum", 0.0) if first else 0.0
        skipped = resume.get("train_skipped", 0) if first else 0
        bar = tqdm(range(first, len(idx_SxBxK)), desc=f"epoch {epoch}/{config.num_epochs}",
                   disable=not progress, leave=False, dynamic_ncols=True)
        pending = None
        for s in bar:
          idx, weight = parallel.global_batch(idx_SxBxK[s], weight_SxB[s], mesh)
          state, step_metrics = train_step(state, frozen, train_data, idx, weight, unavail_PxN)
          # Read the previous step's metrics now that this one is queued: no device stall.
          if pending is not None:
            loss_sum, skipped = _consume(pending, acc, loss_sum, skipped, config, epoch, s - 1,
                                         bar)
          pending = step_metrics
          if stop.received:
            loss_sum, skipped = _consume(pending, acc, loss_sum, skipped, config, epoch, s, bar)
            with _writing(f"the checkpoint of the interrupted epoch {epoch}"):
              _save_interrupted(ckpt, state, epoch - 1, epoch, s + 1, acc, loss_sum, skipped)
            raise TrainingStopped(
                f"{stop.received} received at epoch {epoch}, step {s + 1}: saved a checkpoint; "
                "run the same command again to resume")
        if pending is not None:
          loss_sum, skipped = _consume(pending, acc, loss_sum, skipped, config, epoch,
                                       len(idx_SxBxK) - 1, bar)
        bar.close()
        resume = {}

        # Evaluate val and test over every pattern.
        step_now = int(jax.device_get(state.step))
        new_entries = [_train_entry(epoch, step_now, acc.totals, loss_sum, len(idx_SxBxK),
                                    skipped, unavail_PxN)]
        for split_name in config.eval_splits:
          split_data, indices = eval_sets[split_name]
          summary = evaluate_split(eval_step, state, frozen, split_data, indices, unavail_PxN,
                                   config, mesh)
          new_entries.append({"split": split_name, "epoch": epoch, "step": step_now, **summary})
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
        is_best = value > best
        if is_best:
          best, best_epoch = value, epoch
        out_of_time = (config.time_limit_minutes > 0 and
                       time.time() - start_time > 60 * config.time_limit_minutes)
        if (is_best or epoch % config.checkpoint_every == 0 or epoch == config.num_epochs or
            out_of_time):
          # Only the best epoch carries its metric to orbax, so its BestN keeps exactly the
          # epoch the summary reports (ties go to the earlier epoch, as upstream's strict >).
          with _writing(f"the checkpoint of epoch {epoch}"):
            ckpt.save(step_now, state, {"epoch": epoch, "best": best, "best_epoch": best_epoch},
                      value if is_best else -np.inf)
        if out_of_time:
          log.warning("time_limit_minutes=%s reached after epoch %d", config.time_limit_minutes,
                      epoch)
          break

  summary = _summarize(config, entries, best_epoch, base_test_accuracy, run_info,
                       time.time() - start_time)
  if main:
    with _writing("summary.json"):
      workdir_lib.write_json(os.path.join(workdir, "summary.json"), summary)
    _plot(workdir, entries, summary, config)
  return summary


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


def _consume(step_metrics, acc, loss_sum, skipped, config, epoch, step, bar):
  """Adds one step's metrics to the epoch totals; stops on a non-finite loss."""
  host = jax.device_get(step_metrics)
  loss = float(host.pop("loss"))
  step_skipped = int(host.pop("skipped"))
  if not np.isfinite(loss) and not step_skipped:
    raise TrainingStopped(
        f"non-finite loss ({loss}) at epoch {epoch}, step {step + 1}; the last good checkpoint "
        "is kept and a rerun resumes from it. Lower optim.lr, or set "
        "--config.on_nonfinite=skip to skip such steps")
  acc.add(host)
  if not step_skipped:
    loss_sum += loss
  skipped += step_skipped
  totals = acc.totals
  n = max(int(np.sum(totals["n"])), 1)
  bar.set_postfix(loss=f"{loss:.4f}", deg_top1=f"{np.sum(totals['degraded_top1']) / n:.3f}",
                  refresh=False)
  return loss_sum, skipped


def _save_interrupted(ckpt, state, epoch_done, in_epoch, step_in_epoch, acc, loss_sum, skipped):
  meta = {"epoch": epoch_done, "in_epoch": in_epoch, "step_in_epoch": step_in_epoch,
          "train_totals": {key: np.asarray(v).tolist() for key, v in acc.totals.items()},
          "train_loss_sum": loss_sum, "train_skipped": skipped}
  # An interrupted state has no validation metric: it must never become "best".
  ckpt.save(int(jax.device_get(state.step)), state, meta, -np.inf)


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
    plots.curves(entries, os.path.join(workdir, "curves.png"), title)
  if summary["test"].get("per_pattern"):
    plots.per_pattern(summary["test"]["per_pattern"], os.path.join(workdir, "patterns.png"),
                      summary["base_model"]["test_accuracy"],
                      f"{title} (test, epoch {summary['best_epoch']})")


def _eval_only(config, workdir, ckpt, state, frozen, eval_step, eval_sets, unavail_PxN, mesh,
               base_test_accuracy, run_info) -> dict:
  """Evaluates the best checkpoint (else the latest) on val and test; trains nothing."""
  chosen = ckpt.best_epoch() or ckpt.latest_epoch()
  if chosen is None:
    raise validate.ConfigError(f"--eval_only: {workdir} holds no checkpoint to evaluate; train "
                               "first (same command without --eval_only)")
  state, meta = ckpt.restore(chosen, state)
  result = {"checkpoint_step": chosen, "epoch": meta["epoch"],
            "base_model_test_accuracy": base_test_accuracy}
  for split_name, (split_data, indices) in eval_sets.items():
    result[split_name] = evaluate_split(eval_step, state, frozen, split_data, indices,
                                        unavail_PxN, config, mesh)
  result["test"]["expected_accuracy"] = expected_accuracy(
      base_test_accuracy, result["test"]["degraded_top1"], config.unavailability_rates)
  if parallel.is_main_process():
    workdir_lib.write_json(os.path.join(workdir, "eval_only.json"), result)
  return result
