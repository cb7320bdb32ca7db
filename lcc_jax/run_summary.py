"""What a training run reports: metrics.jsonl entries, summary.json, the log line, the plots.

A replicated run (``replicas.seeds`` > 1) reports every replica's entries (with its index and
seed) and summary, and the spread of each headline metric over the replicas that did not
diverge: mean, sample standard deviation (numpy's ``std(ddof=1)``), min and max.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from tqdm import tqdm

from lcc_jax import assembly, metrics
from lcc_jax.evaluation import reports

HEADLINE = ("reconstruction_top1", "reconstruction_top5", "degraded_top1", "degraded_top5",
            "loss")


def split_summary(per_batch, unavail_PxN, k: int) -> dict:
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
        totals["parity_loss_sum"] / max(int(totals["base_n"]) // k, 1))
  return summary


def expected_accuracy(base_accuracy: float, degraded: float, rates) -> dict[str, float]:
  """(1 − f)·A_F + f·A_degraded for each unavailability rate f (SOSP's definition)."""
  return {str(f): (1.0 - f) * base_accuracy + f * degraded for f in rates}


def train_entry(epoch, step, totals, loss_sum, num_steps, skipped, unavail_PxN, time_s,
                steps_run) -> dict:
  summary = metrics.summarize(totals, unavail_PxN)
  # Skipped steps (on_nonfinite=skip) have no loss to average.
  return {"split": "train", "epoch": epoch, "step": step,
          "loss": loss_sum / max(num_steps - skipped, 1),
          "skipped_steps": skipped, **summary, "time_s": time_s,
          "steps_per_s": steps_run / time_s if time_s > 0 else 0.0}


def best_so_far(entries: list[dict], best_metric: str) -> tuple[float, int]:
  """(best value, its epoch) of ``best_metric`` ("split/key") in one replica's entries."""
  split, key = best_metric.split("/", 1)
  best, best_epoch = -np.inf, 0
  for entry in entries:
    if entry["split"] == split and entry[key] > best:
      best, best_epoch = entry[key], entry["epoch"]
  return best, best_epoch


def log_epoch(entries, progress):
  """The epoch's one log line (each split; a replicated run's mean over its replicas)."""
  parts = []
  for split in dict.fromkeys(e["split"] for e in entries):
    rows = [e for e in entries if e["split"] == split]
    mean = {key: float(np.mean([e.get(key, np.nan) for e in rows]))
            for key in ("loss", "reconstruction_top1", "degraded_top1")}
    parts.append(f"{split}: loss {mean['loss']:.4f} recon@1 {mean['reconstruction_top1']:.4f} "
                 f"degraded@1 {mean['degraded_top1']:.4f}")
  count = len({e.get("replica") for e in entries})
  message = (f"epoch {entries[0]['epoch']}" + (f" (mean of {count} replicas)" if count > 1 else "")
             + " | " + " | ".join(parts))
  if progress:
    tqdm.write(message)
  return message


def _run_fields(config, base_test_accuracy, run_info) -> dict:
  """What a run's summary says of F, the data and the code, whatever its replicas."""
  parity = assembly.parity_model_name(config)
  fields = {"base_model": {"name": config.base_model.name, "test_accuracy": base_test_accuracy,
                           **{k: v for k, v in run_info["base_model"].items() if k != "source"}},
            "dataset": config.data.name, "k": config.k, "r": config.r,
            "encoder": config.encoder.name,
            "decoder": config.decoder.name, "loss": config.loss,
            "parity_model": (parity or ("",))[0],
            "num_patterns": run_info["num_patterns"], "best_metric": config.best_metric}
  if parity:  # how F_P started: "base" (a copy of F) or "scratch"
    fields["parity_model_init"] = assembly.parity_init(config)
  return fields


def _at_best(config, entries, best_epoch, base_test_accuracy) -> dict:
  """The best epoch, the epochs run, and val / test at the best epoch of one run or replica."""
  at_best = {e["split"]: e for e in entries if e["epoch"] == best_epoch}
  test = dict(at_best.get("test", {}))
  if test:
    test["expected_accuracy"] = expected_accuracy(base_test_accuracy, test["degraded_top1"],
                                                  config.unavailability_rates)
  return {"best_epoch": best_epoch, "epochs": max([e["epoch"] for e in entries], default=0),
          "val": at_best.get("val", {}), "test": test}


def summarize(config, entries, best_epoch, base_test_accuracy, run_info, wall_time) -> dict:
  """summary.json of a single run."""
  return {**_run_fields(config, base_test_accuracy, run_info),
          **_at_best(config, entries, best_epoch, base_test_accuracy), "wall_time_s": wall_time}


def spread(values) -> dict[str, float]:
  """mean, sample standard deviation (0 for one value), min, max and count of ``values``."""
  values = np.asarray(values, np.float64)
  if not values.size:
    return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
            "max": float("nan"), "count": 0}
  return {"mean": float(np.mean(values)),
          "std": float(np.std(values, ddof=1)) if values.size > 1 else 0.0,
          "min": float(np.min(values)), "max": float(np.max(values)), "count": int(values.size)}


def aggregate(replica_summaries: list[dict]) -> dict[str, dict[str, float]]:
  """{"split/metric": spread} over the replicas that did not diverge."""
  kept = [s for s in replica_summaries if s.get("diverged") is None]
  out = {}
  for split in ("val", "test"):
    for key in HEADLINE:
      values = [s[split][key] for s in kept if key in s.get(split, {})]
      if values:
        out[f"{split}/{key}"] = spread(values)
  out["best_epoch"] = spread([s["best_epoch"] for s in kept])
  return out


def summarize_replicas(config, entries, replicas, best_epochs, diverged, base_test_accuracy,
                       run_info, wall_time) -> dict:
  """summary.json of a replicated run: the shared fields, each replica, and the spread."""
  per_replica = []
  for index, seed in zip(replicas.indices, replicas.seeds):
    own = [e for e in entries if e["replica"] == index]
    best = _at_best(config, own, best_epochs[index], base_test_accuracy)
    per_replica.append({"replica": index, "seed": seed, **replicas.settings(index),
                        "best_epoch": best["best_epoch"], "epochs": best["epochs"],
                        "diverged": diverged.get(index), "val": best["val"],
                        "test": best["test"]})
  return {**_run_fields(config, base_test_accuracy, run_info),
          "epochs": max([e["epoch"] for e in entries], default=0), "wall_time_s": wall_time,
          "replicas": per_replica, "aggregate": aggregate(per_replica)}


def title(config) -> str:
  return (f"{config.data.name} {config.base_model.name} k={config.k} r={config.r} "
          f"{config.encoder.name}/{config.decoder.name} {config.loss}")


def plot(workdir, entries, summary, config) -> None:
  """curves.png (a replicated run: the mean with a min–max band) and patterns.png."""
  title_ = title(config)
  if entries:
    reports.curves(entries, os.path.join(workdir, "curves.png"), title_)
  test = summary["test"] if "test" in summary else summary["replicas"][0]["test"]
  if test.get("per_pattern"):
    reports.per_pattern(test["per_pattern"], os.path.join(workdir, "patterns.png"),
                      summary["base_model"]["test_accuracy"],
                      f"{title_} (test, epoch {summary.get('best_epoch', 'best')})")
