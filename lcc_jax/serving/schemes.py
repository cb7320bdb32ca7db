"""The serving schemes compared at equal resources: m model instances plus m·r/k extra.

* ``none``: no redundancy; the m instances serve every query once (the extra ones idle).
* ``replication``: the extra instances are more replicas of F; m + m·r/k instances serve one
  shared queue, each query once (ParM's "equal resources" baseline).
* ``hedged``: the same m + m·r/k instances; a second copy of a query is queued when it has
  not been answered after the running p95 of answered latencies; the first answer wins.
* ``coded``: systematic: consecutive queries form groups of k, each goes to the m data
  instances as it arrives; when a group is full the frontend encodes r parity queries for the
  m·r/k parity instances. A query's answer is its own output or the decoded one (as soon as
  any k of the group's k + r outputs are back), whichever comes first.
* ``approxifer``, ``letcc-ns``: non-systematic codes (Berrut / ApproxIFER and LeTCC): a full
  group is encoded into k + r coded queries for all m + m·r/k instances, and all k answers are
  decoded once any k of them are back (every answer is approximate).
"""
from __future__ import annotations

import dataclasses

NAMES = ("none", "replication", "hedged", "coded", "approxifer", "letcc-ns")
NONSYSTEMATIC = ("approxifer", "letcc-ns")
KINDS = {"none": "single", "replication": "single", "hedged": "hedged", "coded": "systematic",
         "approxifer": "nonsystematic", "letcc-ns": "nonsystematic"}


@dataclasses.dataclass(frozen=True)
class Scheme:
  name: str
  k: int
  r: int
  m: int  # model instances without redundancy

  @property
  def kind(self) -> str:
    return KINDS[self.name]

  @property
  def extra(self) -> int:
    """Redundant instances: m·r/k (the parity load equals the data load per instance)."""
    return self.m * self.r // self.k

  @property
  def pools(self) -> tuple[int, ...]:
    """Instances per queue: (data,) or (data, parity)."""
    if self.kind == "systematic":
      return (self.m, self.extra)
    return (self.m if self.name == "none" else self.m + self.extra,)

  @property
  def instances(self) -> int:
    """Instances the scheme is given (none leaves the extra ones idle)."""
    return self.m + self.extra


def check(names, k: int, r: int, m: int) -> None:
  unknown = [n for n in names if n not in NAMES]
  if unknown:
    raise ValueError(f"unknown scheme(s) {unknown}; known: {list(NAMES)}")
  if k < 1 or r < 1 or m < 1:
    raise ValueError(f"k, r and m must be >= 1, got k={k} r={r} m={m}")
  if m * r % k:
    raise ValueError(f"m·r/k extra instances must be whole: m={m}, r={r}, k={k}")
