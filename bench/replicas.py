"""Many replicas in one program against the same runs one after another.

``python -m bench --only replicas``: R = 8 replicas (seeds 0..7) of a code trained for a few
epochs by one ``train_and_evaluate`` with ``replicas.seeds=8`` (vmapped), against the same 8
replicas trained one after another (``replicas.first=i``, one run each, in this process: each
compiles its programs and pays its per-step host work, as separate runs do). Both share one F,
trained once beforehand. Two codes: the digits-sized default (k = 2 MLP code; small enough that
one replica leaves the CPU mostly idle, so vmapping pays) and the Fashion-MNIST k = 2 MLP code
(the real files when prepared, else synthetic files of the same sizes; compute-bound on a CPU,
so the vmapped program saves little more than the per-run overheads). Wall times include the
whole run: set-up, compilation, training, evaluation, checkpoints.
"""
from __future__ import annotations

import os
import tempfile
import time

from bench import loop

REPLICAS = 8


def _wall(config, workdir: str) -> float:
  from lcc_jax import train_lib
  start = time.perf_counter()
  train_lib.train_and_evaluate(config, workdir, progress=False)
  return time.perf_counter() - start


def _compare(make_config, scratch: str, name: str) -> tuple[float, list[float], dict]:
  """(vmapped wall s, each separate run's wall s, the replicated run's aggregate)."""
  warm = make_config()
  warm.num_epochs = 1
  _wall(warm, os.path.join(scratch, f"{name}_f"))  # trains F once, warms imports and caches
  f_dir = os.path.join(scratch, f"{name}_f", "base")
  config = make_config()
  config.base_model.checkpoint = f_dir
  config.replicas.seeds = REPLICAS
  vmapped_dir = os.path.join(scratch, f"{name}_vmapped")
  vmapped = _wall(config, vmapped_dir)
  separate = []
  for i in range(REPLICAS):
    alone = make_config()
    alone.base_model.checkpoint = f_dir
    alone.replicas.first = i
    separate.append(_wall(alone, os.path.join(scratch, f"{name}_alone_{i}")))
  return vmapped, separate, loop.summary(vmapped_dir)["aggregate"]


def run(quick: bool) -> tuple[list[dict], dict]:
  digits_epochs, mnist_epochs = (10, 1) if quick else (30, 2)
  rows, figures, details = [], {}, {}
  with tempfile.TemporaryDirectory() as scratch:

    def digits():
      config = loop._tiny_config(digits_epochs)  # pylint: disable=protected-access
      return config

    def mnist():
      return loop.mnist_config(mnist_epochs, scratch)

    for name, make, label, epochs in (
        ("digits", digits, "digits-sized k=2 MLP code (the default)", digits_epochs),
        ("mnist", mnist, None, mnist_epochs)):
      vmapped, separate, aggregate = _compare(make, scratch, name)
      label = label or f"{loop.mnist_name(make())} k=2 MLP code"
      bench = f"replicas: {REPLICAS} replicas, {epochs} epochs, {label}"
      speedup = sum(separate) / vmapped
      rows.append({"bench": bench, "impl": f"{REPLICAS} replicas in one program (vmapped)",
                   "median_s": vmapped, "min_s": vmapped, "max_s": vmapped,
                   "ratio": speedup, "ratio_label": "one after another / vmapped"})
      rows.append({"bench": bench, "impl": f"{REPLICAS} runs one after another (total)",
                   "median_s": sum(separate), "min_s": sum(separate), "max_s": sum(separate)})
      figures[f"replicas_speedup_{name}_{REPLICAS}"] = speedup
      details[name] = {"epochs": epochs, "vmapped_s": vmapped, "separate_s": separate,
                       "test_degraded_top1": aggregate.get("test/degraded_top1")}
  figures["replicas_details"] = details
  return rows, figures
