"""End-to-end epoch overhead: the real training loop against steps × the isolated step time.

Runs ``train_lib.train_and_evaluate`` on Fashion-MNIST (digits when it is not prepared) with
the k = 2 MLP code (configs/fashion_mnist_mlp.py; F trained for one epoch only, its accuracy
does not matter here) for a few epochs in a temporary workdir. The jitted train and eval steps
are wrapped to note when each is first called in an epoch, so an epoch splits into its
training part (first train step → first evaluation call, which follows the device sync of the
last step's metrics) and the rest (val + test evaluation over every pattern, metrics.jsonl,
checkpoint). Epoch 1 carries compilation and is left out. The isolated step time comes from
bench.cases.TrainLoop with the same shapes, timed in the same process afterwards.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

from lcc_jax import steps, train_lib

from bench import cases, common

EPOCHS = 4


def _config(dataset: str):
  from configs import fashion_mnist_mlp
  config = fashion_mnist_mlp.get_config(f"epochs={EPOCHS}")
  config.base_model.epochs = 1
  config.data.name = dataset
  return config


def _dataset() -> str:
  """fashion_mnist when its files are prepared, else the embedded digits."""
  from lcc_jax import data
  config = _config("fashion_mnist")
  try:
    data.check_available(config.data)
  except data.DataUnavailableError:
    return "digits"
  return "fashion_mnist"


def _wrap(factory, calls: list):
  """A ``steps.jit_*_step`` whose jitted functions note (wall, process CPU) at every call."""

  def make(*args, **kwargs):
    fn = factory(*args, **kwargs)

    def timed(*fn_args):
      calls.append((time.perf_counter(), time.process_time()))
      return fn(*fn_args)

    return timed

  return make


def run(quick: bool) -> tuple[list[dict], dict]:
  del quick  # the epochs are what they are
  dataset = _dataset()
  config = _config(dataset)
  train_calls, eval_calls = [], []
  original = steps.jit_train_step, steps.jit_eval_step
  steps.jit_train_step = _wrap(original[0], train_calls)
  steps.jit_eval_step = _wrap(original[1], eval_calls)
  try:
    with tempfile.TemporaryDirectory() as workdir:
      start = time.perf_counter()
      train_lib.train_and_evaluate(config, os.path.join(workdir, "run"), progress=False)
      total = time.perf_counter() - start
  finally:
    steps.jit_train_step, steps.jit_eval_step = original
  # Train calls come in epochs of equal length; the code's F-training steps do not go through
  # steps.jit_train_step, so every call here is a code step.
  per_epoch = len(train_calls) // EPOCHS
  starts = np.array([train_calls[e * per_epoch] for e in range(EPOCHS)])
  evals_per_epoch = len(eval_calls) // EPOCHS
  eval_starts = np.array([eval_calls[e * evals_per_epoch] for e in range(EPOCHS)])
  # (wall, CPU) seconds; epoch 1 (compilation) is left out.
  epoch_s = (starts[2:] - starts[1:-1]).tolist()
  train_s = (eval_starts[1:] - starts[1:]).tolist()

  loop = cases.TrainLoop("mlp", 2, 1, config.data.batch_size)
  step = common.alternate({"step": loop}, 5, 10)["step"]
  # The machine is shared: wall times swing with other processes' load, process CPU time much
  # less, so the overheads are stated in both (CPU is the one to trust on a busy machine).
  steps_wall, steps_cpu = per_epoch * step.median, per_epoch * step.cpu_median
  bench = f"epoch: {dataset} k=2 MLP code, B={config.data.batch_size}"

  def row(impl, pairs):
    wall = [w for w, _ in pairs]
    cpu = statistics.median(c for _, c in pairs)
    return {"bench": bench, "impl": impl, "median_s": statistics.median(wall),
            "min_s": min(wall), "max_s": max(wall), "cpu_median_s": cpu, "repeats": len(pairs),
            "ratio": cpu / steps_cpu, "ratio_label": "CPU / (steps × isolated step CPU)"}

  rows = [row(f"training part of an epoch ({per_epoch} steps)", train_s),
          row("whole epoch (train + val/test eval + checkpoint)", epoch_s),
          {"bench": bench, "impl": "steps × isolated step", "median_s": steps_wall,
           "min_s": per_epoch * min(step.wall), "max_s": per_epoch * max(step.wall),
           "cpu_median_s": steps_cpu, "repeats": len(step.wall)}]
  return rows, {"epoch": {"dataset": dataset, "steps_per_epoch": per_epoch,
                          "train_part_wall_cpu_s": train_s, "epoch_wall_cpu_s": epoch_s,
                          "step": step.as_dict(), "run_total_s": total,
                          "train_overhead_cpu": rows[0]["ratio"] - 1.0,
                          "epoch_overhead_cpu": rows[1]["ratio"] - 1.0}}
