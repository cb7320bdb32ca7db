"""Scenarios and the sweep over k, scheme and load that produces the report's rows.

Interference durations are given in mean service times of F, so a scenario means the same
thing with measured times (microseconds for a small MLP) and with parametric ones
(milliseconds). Load is offered load on the m base instances including the mean slowdown:
arrival rate = load · m / (E[S] · Interference.mean_factor), so load < 1 keeps even no
redundancy stable.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

from lcc_jax.serving import schemes as schemes_lib
from lcc_jax.serving import service, simulate


@dataclasses.dataclass(frozen=True)
class Scenario:
  name: str
  ks: tuple[int, ...] = (2, 3, 4)
  r: int = 1
  m: int = 12
  loads: tuple[float, ...] = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9)
  queries: int = 20_000
  slow_fraction: float = 0.05
  slow_alpha: float = 1.5
  slow_min: float = 2.0
  slow_len: float = 50.0  # mean slowed period, in mean service times of F
  mtbf: float = math.inf  # mean time between failures of an instance, likewise
  repair: float = 100.0
  detect: float = 5.0

  def interference(self, mean_ms: float) -> service.Interference:
    return service.Interference(self.slow_fraction, self.slow_alpha, self.slow_min,
                                self.slow_len * mean_ms, self.mtbf * mean_ms,
                                self.repair * mean_ms, self.detect * mean_ms)

  def check(self) -> None:
    for k in self.ks:
      schemes_lib.check([], k, self.r, self.m)
    if not self.loads or not all(0 < load < 1 for load in self.loads):
      raise ValueError(f"loads must be in (0, 1), got {list(self.loads)}")
    if self.queries < 100:
      raise ValueError(f"queries must be >= 100, got {self.queries}")
    self.interference(1.0).check()


# ParM's setting: 12 instances + 12·r/k, k = 2, 3, 4, background slowdowns (their shuffles).
SCENARIOS = {
    "parm": Scenario("parm"),
    "quiet": Scenario("quiet", slow_fraction=0.0),
    "failstop": Scenario("failstop", mtbf=20_000.0),
}


def sweep(scenario: Scenario, names: Sequence[str],
          setup: Callable[[str, int, int], tuple[service.Timings, simulate.Answers, str]], *,
          seed: int = 0, warmup: float = 0.1) -> list[dict]:
  """One row per (k, scheme, load); ``setup(name, k, r)`` gives timings, answers, code."""
  rows = []
  for k in scenario.ks:
    for name in names:
      scheme = schemes_lib.Scheme(name, k, scenario.r, scenario.m)
      timings, answers, code = setup(name, k, scenario.r)
      inter = scenario.interference(timings.model.mean)
      for load in scenario.loads:
        rate = load * scenario.m / (timings.model.mean * inter.mean_factor)
        result = simulate.simulate(simulate.Spec(scheme, rate, scenario.queries, timings,
                                                 inter, answers, seed))
        rows.append({"scenario": scenario.name, "k": k, "r": scenario.r, "m": scenario.m,
                     "instances": scheme.instances, "scheme": name, "code": code,
                     "load": load, "arrival_rate": rate * 1e3,
                     **simulate.summarize(result, warmup)})
  return rows
