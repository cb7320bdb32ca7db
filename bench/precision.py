"""The real training loop at each ``config.precision``: what an accelerator run costs.

For ``highest``, ``default`` and ``bfloat16``, trains the k = 2 MLP code on Fashion-MNIST (the
real files when prepared, else synthetic files of the same sizes; F trained once for one epoch
and shared) for a few epochs with ``train_and_evaluate`` and reports, from its
``metrics.jsonl``: steps/s of the training part, its epoch time against steps × the isolated
step's time (the same step jitted alone and called back to back), the compile time (epoch 1's
training part less a later one's), the device's peak memory, test degraded top-1, and the
500-epoch extrapolation of the training part. ``python -m bench --only precision``.
"""
from __future__ import annotations

import os
import statistics
import tempfile

import jax

from bench import cases, common, loop

PRECISIONS = ("highest", "default", "bfloat16")


def _peak_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def run(quick: bool) -> tuple[list[dict], dict]:
  epochs = 2 if quick else 3
  rows, figures = [], {}
  with tempfile.TemporaryDirectory() as scratch:
    base_dir = None
    for name in PRECISIONS:
      config = loop.mnist_config(epochs, scratch)
      config.precision = name
      if base_dir:
        config.base_model.checkpoint = base_dir  # the same F for every precision
      workdir = os.path.join(scratch, name)
      entries, total = loop.train(config, workdir)
      base_dir = base_dir or os.path.join(workdir, "base")
      epoch_s = statistics.median(e["time_s"] for e in entries[1:])
      num_steps = loop.steps_in(entries[-1])
      step = common.alternate({name: cases.TrainLoop("mlp", 2, 1, config.data.batch_size,
                                                     precision=name)},
                              3 if quick else 5, 10)[name]
      figures[name] = {
          "steps_per_s": num_steps / epoch_s, "epoch_s": epoch_s,
          "epoch_vs_steps": epoch_s / (num_steps * step.median),
          "compile_s": entries[0]["time_s"] - epoch_s, "peak_device_bytes": _peak_bytes(),
          "test_degraded_top1": loop.summary(workdir)["test"]["degraded_top1"],
          "run_total_s": total, "step": step.as_dict(),
          "mnist_500_epochs_train_min": 500 * epoch_s / 60}
      rows.append({"bench": f"precision: {loop.mnist_name(config)} k=2 MLP code, B=64",
                   "impl": f"{name}: training part of an epoch ({num_steps} steps)",
                   "median_s": epoch_s, "min_s": min(e["time_s"] for e in entries[1:]),
                   "max_s": max(e["time_s"] for e in entries[1:]),
                   "ratio": figures[name]["epoch_vs_steps"],
                   "ratio_label": "epoch / (steps × isolated step)"})
  return rows, {"precision": figures}


def table(figures: dict) -> str:
  lines = ["| precision | steps/s | epoch s | epoch / Σ steps | compile s | peak device MB | "
           "test degraded top-1 | 500 epochs (min) |", "|---|---|---|---|---|---|---|---|"]
  for name, f in figures.items():
    peak = f"{f['peak_device_bytes'] / 2**20:.0f}" if f["peak_device_bytes"] else "—"
    lines.append(f"| {name} | {f['steps_per_s']:.0f} | {f['epoch_s']:.3f} | "
                 f"{f['epoch_vs_steps']:.2f} | {f['compile_s']:.1f} | {peak} | "
                 f"{f['test_degraded_top1']:.4f} | {f['mnist_500_epochs_train_min']:.1f} |")
  return "\n".join(lines)
