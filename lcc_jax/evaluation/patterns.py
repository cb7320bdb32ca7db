"""The erasure patterns an evaluation enumerates: client patterns, subsets, the tail cut."""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from lcc_jax import erasure

# The client curve enumerates all 2^N patterns; beyond this many workers that is too many.
MAX_WORKERS = 16


def subsets(n: int, sizes: Sequence[int]) -> np.ndarray:
  """Every set of unavailable workers with a size in ``sizes``: bool (P, n), erasure's order."""
  rows = [c for e in sizes for c in itertools.combinations(range(n), e)]
  unavail_PxN = np.zeros((len(rows), n), bool)
  for p, slots in enumerate(rows):
    unavail_PxN[p, list(slots)] = True
  return unavail_PxN


def client_patterns(k: int, r: int, systematic: bool,
                    max_unavailable: int | None = None) -> np.ndarray:
  """The patterns a client can meet that change what it is served.

  Systematic: every pattern with at least one unavailable data worker (the rest serve F's own
  outputs), in erasure's order: fewer than r, exactly r, more than r. Non-systematic: all 2^N
  sets, the empty one included (every prediction is decoded). ``max_unavailable`` keeps only
  patterns of at most that many unavailable workers (see ``tail_cut``).
  """
  n = k + r
  if n > MAX_WORKERS:
    raise ValueError(f"k + r = {n} workers have 2^{n} erasure patterns; the evaluation "
                     f"enumerates them all and supports at most {MAX_WORKERS} workers")
  m = n if max_unavailable is None else min(int(max_unavailable), n)
  if not systematic:
    return subsets(n, range(m + 1))
  limit = 1 << n
  unavail_PxN = np.concatenate([erasure.patterns(k, r, "at_most", limit=limit),
                                erasure.patterns(k, r, "beyond", limit=limit)])
  return unavail_PxN[unavail_PxN.sum(axis=1) <= m]


def tail_cut(n: int, f: float, tail: float) -> int:
  """The fewest unavailable workers m with P(more than m of n unavailable) <= tail at rate f."""
  for m in range(n + 1):
    mass = sum(math.comb(n, e) * f**e * (1 - f)**(n - e) for e in range(m + 1, n + 1))
    if mass <= tail:
      return m
  return n
