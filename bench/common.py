"""Timing helpers shared by the benchmarks (no jax/torch import here: threads are set first)."""
from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Callable


def configure_threads(threads: int) -> dict:
  """Gives XLA and PyTorch the same number of threads; call before importing jax or torch.

  XLA's CPU client sizes its thread pool from the process's CPU affinity, so fewer threads
  than cores means restricting the affinity (torch then gets the same count explicitly).
  """
  cores = sorted(os.sched_getaffinity(0))
  if threads < 1 or threads > len(cores):
    raise ValueError(f"--threads must be in 1..{len(cores)} (the cores available), got {threads}")
  if threads < len(cores):
    os.sched_setaffinity(0, set(cores[:threads]))
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)
  return {"threads": threads, "cores": len(cores), "xla_flags": os.environ.get("XLA_FLAGS", "")}


@dataclasses.dataclass
class Timing:
  """Per-call wall-clock and process-CPU seconds of repeated timed runs."""
  wall: list[float] = dataclasses.field(default_factory=list)
  cpu: list[float] = dataclasses.field(default_factory=list)

  @property
  def median(self) -> float:
    return statistics.median(self.wall)

  @property
  def cpu_median(self) -> float:
    return statistics.median(self.cpu)

  def as_dict(self) -> dict:
    return {"median_s": self.median, "min_s": min(self.wall), "max_s": max(self.wall),
            "cpu_median_s": self.cpu_median, "repeats": len(self.wall)}


def time_once(run: Callable[[int], None], calls: int) -> tuple[float, float]:
  """(wall, process-CPU) seconds per call of ``run(calls)``, which must block until done."""
  w0, c0 = time.perf_counter(), time.process_time()
  run(calls)
  return (time.perf_counter() - w0) / calls, (time.process_time() - c0) / calls


def alternate(runs: dict[str, Callable[[int], None]], repeats: int, calls: int,
              warmup: int = 2) -> dict[str, Timing]:
  """Times each ``run(n)`` ``repeats`` times, interleaved, so that load from other processes
  on this shared machine hits all implementations alike; ``warmup`` untimed calls first."""
  for run in runs.values():
    run(warmup)
  timings = {name: Timing() for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      wall, cpu = time_once(run, calls)
      timings[name].wall.append(wall)
      timings[name].cpu.append(cpu)
  return timings


def load_average() -> float:
  return os.getloadavg()[0]
