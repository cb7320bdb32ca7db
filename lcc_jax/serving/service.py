"""Service-time models (milliseconds) and background interference.

A ``Sampler`` draws one service time from a numpy Generator: ``ShiftedExp`` (the parametric
shifted exponential) or ``Empirical`` (resampling times measured on this machine). ``Timings``
holds one per stage of a coded request; ``Interference`` says how instances are slowed and
how they fail.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import numpy as np


class Sampler(Protocol):
  mean: float

  def draw(self, rng: np.random.Generator) -> float:
    ...

  def quantile(self, q: float) -> float:
    ...


@dataclasses.dataclass(frozen=True)
class ShiftedExp:
  """shift + Exp(mean exp_ms); exp_ms = 0 is a constant (deterministic) service time."""
  shift_ms: float
  exp_ms: float

  @property
  def mean(self) -> float:
    return self.shift_ms + self.exp_ms

  def draw(self, rng) -> float:
    return self.shift_ms + (rng.exponential(self.exp_ms) if self.exp_ms > 0 else 0.0)

  def quantile(self, q: float) -> float:
    return self.shift_ms - self.exp_ms * math.log1p(-q)


@dataclasses.dataclass(frozen=True)
class Empirical:
  """Times measured on this machine, resampled with replacement."""
  samples_ms: tuple[float, ...]

  @property
  def mean(self) -> float:
    return float(np.mean(self.samples_ms))

  def draw(self, rng) -> float:
    return self.samples_ms[rng.integers(len(self.samples_ms))]

  def quantile(self, q: float) -> float:
    return float(np.quantile(self.samples_ms, q))


@dataclasses.dataclass(frozen=True)
class Timings:
  """One sampler per stage: F on a query, the network on a parity, encoding, decoding."""
  model: Sampler
  parity: Sampler
  encode: Sampler
  decode: Sampler


@dataclasses.dataclass(frozen=True)
class Interference:
  """Background load on the instances (ParM's network shuffles, statistically).

  Each instance alternates between normal and slowed periods: slowed periods last Exp(slow_ms)
  and cover ``fraction`` of the time; a task that starts in one takes ``factor`` times longer,
  factor = slow_min · Pareto(slow_alpha) (heavy-tailed, >= slow_min). Fail-stop: an instance
  fails after Exp(mtbf_ms) of operation, loses the task it holds, and is back after
  Exp(repair_ms); the frontend re-queues a lost task after detect_ms unless it is no longer
  needed. mtbf_ms = inf: no failures.
  """
  fraction: float = 0.0
  slow_alpha: float = 1.5
  slow_min: float = 2.0
  slow_ms: float = 1000.0
  mtbf_ms: float = math.inf
  repair_ms: float = 1000.0
  detect_ms: float = 100.0

  @property
  def mean_factor(self) -> float:
    """Long-run mean slowdown of a task: 1 outside slowed periods, E[factor] inside."""
    slowed = self.slow_min * self.slow_alpha / (self.slow_alpha - 1.0)
    return 1.0 - self.fraction + self.fraction * slowed

  def check(self) -> None:
    if not 0.0 <= self.fraction < 1.0:
      raise ValueError(f"slow_fraction must be in [0, 1), got {self.fraction}")
    if self.slow_alpha <= 1.0:
      raise ValueError(f"slow_alpha must be > 1 (a finite mean slowdown), got {self.slow_alpha}")
    if self.slow_min < 1.0:
      raise ValueError(f"slow_min must be >= 1 (a slowdown), got {self.slow_min}")
    for name in ("slow_ms", "mtbf_ms", "repair_ms"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
    if self.detect_ms < 0:
      raise ValueError(f"detect_ms must be >= 0, got {self.detect_ms}")


class Slowdowns:
  """One instance's slowed periods, drawn lazily in time order (an alternating renewal)."""

  def __init__(self, rng: np.random.Generator, interference: Interference):
    self.rng, self.i = rng, interference
    self.slowed, self.factor = False, 1.0
    f = interference.fraction
    self.normal_ms = interference.slow_ms * (1.0 - f) / f if f > 0 else math.inf
    self.until = rng.exponential(self.normal_ms) if f > 0 else math.inf

  def factor_at(self, t: float) -> float:
    while t >= self.until:
      self.slowed = not self.slowed
      if self.slowed:
        self.factor = self.i.slow_min * (1.0 + self.rng.pareto(self.i.slow_alpha))
        self.until += self.rng.exponential(self.i.slow_ms)
      else:
        self.factor = 1.0
        self.until += self.rng.exponential(self.normal_ms)
    return self.factor
