"""The epoch loop of a run: train in chunks, evaluate, log, checkpoint; resume exactly.

``run_epochs(trainer, ckpt, profile_dir)`` drives the jitted programs ``train_lib._Trainer``
built. What the host keeps between chunks lives in three small classes: ``EpochTotals`` (the
epoch's training counts, read one chunk late so the device never waits), ``Progress`` (each
replica's best and divergence) and ``CheckpointPolicy`` (when to write, and the best state).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import jax
import numpy as np
from tqdm import tqdm

from lcc_jax import (data, metrics, parallel, replicas as replicas_lib, run_summary,
                     workdir as workdir_lib)
from lcc_jax.run_control import Profiler, SignalFlag, TrainingStopped, warn, writing

log = logging.getLogger(__name__)


def epoch_batches(split_train, config, replicas, epoch: int):
  """The epoch's shuffled groups, each replica in the order its seed draws (a replica axis in
  front for a replicated run): (idx_SxBxK, weight_SxB)."""
  drawn = [data.group_indices(split_train, config.k, config.data.batch_size, shuffle=True,
                              seed=seed, epoch=epoch, process_index=jax.process_index(),
                              process_count=jax.process_count()) for seed in replicas.seeds]
  if not replicas.vmapped:
    return drawn[0]
  return np.stack([d[0] for d in drawn]), np.stack([d[1] for d in drawn])


class EpochTotals:
  """An epoch's training metrics on the host, per replica: counts, loss sums, skipped steps.

  A replica whose loss goes non-finite stops a single run at the step it names; in a
  replicated run it is marked diverged (``Progress``) and the others go on.
  """

  def __init__(self, replicas, progress: "Progress", resume: dict | None = None):
    self.replicas, self.progress = replicas, progress
    count = replicas.count
    self.accs = [metrics.Accumulator() for _ in range(count)]
    self.loss_sums, self.skipped = [0.0] * count, [0] * count
    if resume:
      as_list = (lambda v: v) if replicas.vmapped else (lambda v: [v])
      for acc, totals in zip(self.accs, as_list(resume["train_totals"])):
        acc.add({key: np.asarray(v) for key, v in totals.items()})
      self.loss_sums = list(as_list(resume["train_loss_sum"]))
      self.skipped = list(as_list(resume["train_skipped"]))

  def add_chunk(self, outputs, first_step: int, config, epoch: int, bar) -> None:
    """Adds one chunk's results (read now); a non-finite loss is reported at its step."""
    (loss_RxL, skipped_RxL), counts = replicas_lib.stacked(jax.device_get(outputs),
                                                           self.replicas)
    for position, index in enumerate(self.replicas.indices):
      if index in self.progress.diverged:
        continue
      loss_L, skipped_L = loss_RxL[position], skipped_RxL[position]
      bad = np.flatnonzero(~np.isfinite(loss_L) & (skipped_L == 0))
      if bad.size:
        step = first_step + int(bad[0]) + 1
        self.progress.diverge(
            index, epoch, step, f"non-finite loss ({loss_L[bad[0]]})",
            f"non-finite loss ({loss_L[bad[0]]}) at epoch {epoch}, step {step}; the last good "
            "checkpoint is kept and a rerun resumes from it. Lower optim.lr, or set "
            "--config.on_nonfinite=skip to skip such steps")
        continue
      self.accs[position].add({key: v[position] for key, v in counts.items()})
      for loss, skipped in zip(loss_L.tolist(), skipped_L.tolist()):  # in order, in float64
        if not skipped:
          self.loss_sums[position] += loss
        self.skipped[position] += int(skipped)
    totals = self.accs[0].totals
    n = max(int(np.sum(totals["n"])), 1)
    bar.update(loss_RxL.shape[1])
    bar.set_postfix(loss=f"{loss_RxL[0, -1]:.4f}", refresh=False,
                    deg_top1=f"{np.sum(totals['degraded_top1']) / n:.3f}")

  def resume_meta(self) -> dict:
    one = (lambda v: v) if self.replicas.vmapped else (lambda v: v[0])
    return {"train_totals": one([{key: np.asarray(v).tolist() for key, v in acc.totals.items()}
                                 for acc in self.accs]),
            "train_loss_sum": one(self.loss_sums), "train_skipped": one(self.skipped)}

  def entries(self, epoch, step, num_steps, unavail_PxN, time_s, steps_run) -> list[dict]:
    return [self.progress.tag(index, run_summary.train_entry(
        epoch, step, acc.totals, loss_sum, num_steps, skipped, unavail_PxN, time_s, steps_run))
            for index, acc, loss_sum, skipped in zip(self.replicas.indices, self.accs,
                                                     self.loss_sums, self.skipped)
            if index not in self.progress.diverged]


@dataclasses.dataclass
class Progress:
  """Per replica: the best value of the best metric, its epoch, and divergence (if any)."""
  replicas: replicas_lib.Replicas
  best: list[float]
  best_epoch: list[int]
  diverged: dict[int, dict] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_entries(cls, replicas, entries, best_metric, diverged=None):
    pairs = [run_summary.best_so_far([e for e in entries if e.get("replica", index) == index],
                                     best_metric) for index in replicas.indices]
    return cls(replicas, [p[0] for p in pairs], [p[1] for p in pairs],
               {int(i): d for i, d in (diverged or {}).items()})

  def tag(self, index: int, entry: dict) -> dict:
    """A metrics entry, with its replica and seed in a replicated run."""
    if not self.replicas.vmapped:
      return entry
    return {**entry, "replica": index, "seed": self.replicas.seeds[self.replicas.indices.index(
        index)]}

  def diverge(self, index: int, epoch: int, step: int, why: str, single_run: str) -> None:
    """Marks replica ``index`` diverged; a single run stops, with the line ``single_run``."""
    if not self.replicas.vmapped:
      raise TrainingStopped(single_run)
    self.diverged[index] = {"epoch": epoch, "step": step, "why": why}
    warn(f"replica {index} diverged ({why}) at epoch {epoch}, step {step}: dropped from the "
         "aggregate; the other replicas go on")
    if len(self.diverged) == self.replicas.count:
      raise TrainingStopped(f"every replica diverged (the last at epoch {epoch}, step {step}); "
                            "lower optim.lr")

  def meta(self, epoch: int) -> dict:
    one = (lambda v: v) if self.replicas.vmapped else (lambda v: v[0])
    meta = {"epoch": epoch, "best": one(self.best), "best_epoch": one(self.best_epoch)}
    if self.replicas.vmapped:
      meta["diverged"] = {str(i): d for i, d in self.diverged.items()}
    return meta


class CheckpointPolicy:
  """When to write the latest state: every ``every_epochs`` epochs and/or ``every_minutes``.

  Single run: the best state is copied on the device when it is reached and written with the
  next checkpoint (before it), so a new best costs no write; every checkpoint written has the
  best so far on disk beside it. Replicated run: each replica's best is kept on the device in
  one stacked ``best`` state (a replica's slice replaced when it improves) and every
  checkpoint holds ``{"latest", "best"}``. All processes decide alike (process 0's clock).
  """

  def __init__(self, every_epochs: int, every_minutes: float, best_state=None):
    self.every_epochs, self.every_minutes = every_epochs, every_minutes
    self.last = time.monotonic()
    self.best = None  # single run: (step, state copy, meta, metric) not yet written
    self.best_state = best_state  # replicated run: every replica's best, stacked

  def due(self, epoch: int) -> bool:
    by_epoch = bool(self.every_epochs) and epoch % self.every_epochs == 0
    by_time = bool(self.every_minutes) and time.monotonic() - self.last >= 60 * self.every_minutes
    return parallel.agree(by_epoch or by_time)

  def new_best(self, step: int, state, meta: dict, metric: float, improved_R=None) -> None:
    if self.best_state is not None:
      self.best_state = replicas_lib.keep_improved(np.asarray(improved_R), state,
                                                   self.best_state)
    else:
      self.best = (step, replicas_lib.copy_tree(state), meta, metric)

  def write(self, ckpt, step: int, state, meta: dict) -> None:
    """Writes the pending best (if any), then ``state`` as the latest (asynchronously)."""
    if self.best_state is not None:
      # The step as metric: orbax's BestN keeps the newest, which holds every replica's best.
      ckpt.save(step, {"latest": state, "best": self.best_state}, meta, float(step))
      self.last = time.monotonic()
      return
    best, self.best = self.best, None
    if best is not None and best[0] == step:
      ckpt.save(step, best[1], best[2], best[3])
    else:
      if best is not None:
        ckpt.save(*best)
      # The latest state carries no metric, so orbax's BestN keeps exactly the best epoch.
      ckpt.save(step, state, meta, -np.inf)
    self.last = time.monotonic()




def run_epochs(trainer, ckpt, profile_dir: str) -> tuple[list[dict], Progress]:
  """Trains from the latest checkpoint (if any) to ``num_epochs`` or the time limit."""
  config, replicas, main = trainer.config, trainer.replicas, trainer.main
  metrics_log = workdir_lib.MetricsLog(os.path.join(trainer.workdir, "metrics.jsonl"))
  state, best_state, epoch_done, resume = trainer.state, None, 0, {}
  if ckpt.latest_step() is not None:
    state, best_state, resume = trainer.restore_latest_good(ckpt)
    epoch_done = resume["epoch"]
  entries = metrics_log.truncate_after(epoch_done) if main else []
  progress = Progress.from_entries(replicas, entries, config.best_metric,
                                   resume.get("diverged"))
  if replicas.vmapped and best_state is None:
    best_state = replicas_lib.copy_tree(state)
  policy = CheckpointPolicy(config.checkpoint_every, config.checkpoint_every_minutes,
                            best_state)
  global_step = int(np.max(jax.device_get(state.step)))
  profiler = Profiler(profile_dir, first_epoch=epoch_done + 1, num_epochs=config.num_epochs)
  with SignalFlag() as stop:
    for epoch in range(epoch_done + 1, config.num_epochs + 1):
      state, global_step, new_entries = _train_epoch(
          trainer, ckpt, state, epoch, global_step, resume, progress, policy, profiler, stop)
      resume = {}
      if main:
        with writing("metrics.jsonl"):
          metrics_log.append(new_entries)
      entries += new_entries
      log.info(run_summary.log_epoch(new_entries, trainer.progress))
      _note_best(progress, policy, new_entries, epoch, global_step, state, config.best_metric)
      out_of_time = (config.time_limit_minutes > 0 and parallel.agree(
          time.time() - trainer.start_time > 60 * config.time_limit_minutes))
      with writing("a checkpoint written in the background"):
        ckpt.check_for_errors()  # an asynchronous write that failed stops the run now
      if epoch == config.num_epochs or out_of_time or policy.due(epoch):
        with writing(f"the checkpoint of epoch {epoch}"):
          policy.write(ckpt, global_step, state, progress.meta(epoch))
      if out_of_time:
        log.warning("time_limit_minutes=%s reached after epoch %d", config.time_limit_minutes,
                    epoch)
        break
  return entries, progress


def _train_epoch(trainer, ckpt, state, epoch, global_step, resume, progress, policy, profiler,
                 stop):
  """One epoch's training (from where ``resume`` says) and its evaluation entries."""
  config, replicas = trainer.config, trainer.replicas
  epoch_start = time.perf_counter()
  idx_SxBxK, weight_SxB = epoch_batches(trainer.run_.split["train"], config, replicas, epoch)
  num_steps = idx_SxBxK.shape[-3]
  first = resume.get("step_in_epoch", 0) if resume.get("in_epoch") == epoch else 0
  totals = EpochTotals(replicas, progress, resume if first else None)
  # The epoch's batches and the global step it began at: one transfer for all its steps.
  *batches, epoch_first_step = parallel.global_steps(
      idx_SxBxK, weight_SxB, trainer.mesh, np.int32(global_step - first),
      replica_sharded=config.replicas.shard)
  per_dispatch = config.steps_per_dispatch or num_steps
  bar = tqdm(total=num_steps, initial=first, desc=f"epoch {epoch}/{config.num_epochs}",
             disable=not trainer.progress, leave=False, dynamic_ncols=True)
  position, pending = first, None
  while position < num_steps:
    length = min(per_dispatch, num_steps - position)
    state, per_step, counts = profiler.call(
        epoch == profiler.epoch and position == first, trainer.train_chunk, state,
        trainer.frozen, trainer.train_data, *batches, epoch_first_step, trainer.unavail,
        num_steps=length)
    # Read the previous chunk's results now that this one is queued: no device stall.
    if pending is not None:
      totals.add_chunk(pending[1], pending[0], config, epoch, bar)
    pending = (position, (per_step, counts))
    position += length
    global_step += length
    if stop.received:
      totals.add_chunk(pending[1], pending[0], config, epoch, bar)
      meta = {**progress.meta(epoch - 1), "in_epoch": epoch, "step_in_epoch": position,
              **totals.resume_meta()}
      with writing(f"the checkpoint of the interrupted epoch {epoch}"):
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
  entries = totals.entries(epoch, global_step, num_steps, trainer.run_.unavail_PxN, train_time,
                           num_steps - first)
  for split_name, summaries, time_s in trainer.evaluate(state, config.eval_splits):
    for index, summary in zip(replicas.indices, summaries):
      if index in progress.diverged:
        continue
      if not np.isfinite(summary.get("loss", 0.0)):
        # A diverged state is never logged or saved: the last good checkpoint stays the latest.
        progress.diverge(
            index, epoch, global_step, f"non-finite {split_name} loss",
            f"the parameters diverged during epoch {epoch} (non-finite {split_name} loss after "
            "its last step); the last good checkpoint is kept and a rerun resumes from it. "
            "Lower optim.lr")
        continue
      entries.append(progress.tag(index, {"split": split_name, "epoch": epoch,
                                          "step": global_step, **summary, "time_s": time_s}))
  return state, global_step, [e for e in entries
                              if e.get("replica") not in progress.diverged]


def _note_best(progress, policy, entries, epoch, step, state, best_metric) -> None:
  """Updates each replica's best from this epoch's entries; the best state follows."""
  split, key = best_metric.split("/", 1)
  improved_R = np.zeros(progress.replicas.count, bool)
  for position, index in enumerate(progress.replicas.indices):
    entry = next((e for e in entries if e["split"] == split and e.get("replica", index) == index),
                 None)
    if entry is not None and entry[key] > progress.best[position]:  # strict: ties go earlier
      progress.best[position], progress.best_epoch[position] = entry[key], epoch
      improved_R[position] = True
  if improved_R.any():
    policy.new_best(step, state, progress.meta(epoch), float(progress.best[0]), improved_R)
