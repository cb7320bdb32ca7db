"""Erasure patterns: which of the N = k + r outputs are unavailable.

A pattern set is a numpy bool array ``unavail_PxN`` (True = unavailable). Slots 0..k-1 are the
data outputs F(X_i), slots k..k+r-1 the parity outputs. Patterns are static per run: they are
built here in numpy and passed to jitted functions as an argument.

Order (deterministic, documented): by number of unavailable slots ascending, then the slot
index tuples in ``itertools.combinations`` (lexicographic) order. For r = 1 the default set is
exactly upstream's k patterns, pattern i erasing data slot i.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterable, Sequence

import numpy as np

MODES = ("exactly", "at_most", "beyond")
# Above this many patterns, callers must say so (``limit=``): a typo such as k=40 would
# otherwise silently build millions of patterns.
DEFAULT_LIMIT = 20_000


def _check_kr(k: int, r: int) -> None:
  for name, value, low in (("k", k, 1), ("r", r, 0)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _sizes(k: int, r: int, mode: str) -> range:
  if mode == "exactly":
    return range(r, r + 1)
  if mode == "at_most":
    return range(1, r + 1)
  if mode == "beyond":
    return range(r + 1, k + r + 1)
  raise ValueError(f"unknown pattern mode {mode!r}; known: {list(MODES)}")


def count(k: int, r: int, mode: str = "exactly") -> int:
  """Number of patterns ``patterns(k, r, mode)`` returns, without building them."""
  _check_kr(k, r)
  n = k + r
  # Subsets of size e minus those made only of parity slots.
  return sum(math.comb(n, e) - math.comb(r, e) for e in _sizes(k, r, mode))


def patterns(k: int, r: int, mode: str = "exactly", *, limit: int = DEFAULT_LIMIT) -> np.ndarray:
  """All patterns of the given mode that make at least one data slot unavailable.

  Args:
    k: number of data inputs (>= 1).
    r: number of parities (>= 0; r = 0 gives no patterns in "exactly"/"at_most" mode).
    mode: "exactly" (r unavailable; C(k+r, r) - 1 patterns), "at_most" (1..r unavailable),
      or "beyond" (r+1..k+r unavailable: where a code that tolerates r must fail).
    limit: refuse to build more patterns than this.

  Returns:
    bool array (P, k + r), True = unavailable.
  """
  num = count(k, r, mode)
  if num > limit:
    raise ValueError(
        f"(k={k}, r={r}, mode={mode!r}) has {num} erasure patterns, more than limit={limit}; "
        "pass a larger limit (config: patterns.limit) if you really mean it, or give an "
        "explicit list of patterns")
  n = k + r
  rows = [c for e in _sizes(k, r, mode) for c in itertools.combinations(range(n), e) if c[0] < k]
  return _to_mask(rows, n)


def from_list(k: int, r: int, unavailable: Iterable[Sequence[int]]) -> np.ndarray:
  """An explicit pattern set: each entry lists the unavailable slot indices."""
  _check_kr(k, r)
  n = k + r
  rows = []
  for entry in unavailable:
    slots = tuple(sorted(int(s) for s in entry))
    if not slots:
      raise ValueError("an erasure pattern must make at least one slot unavailable, got []")
    if len(set(slots)) != len(slots) or slots[0] < 0 or slots[-1] >= n:
      raise ValueError(f"pattern {list(entry)} must list distinct slots in 0..{n - 1}")
    if slots[0] >= k:
      raise ValueError(f"pattern {list(entry)} makes only parity slots unavailable; "
                       f"at least one data slot (0..{k - 1}) must be unavailable")
    rows.append(slots)
  if not rows:
    raise ValueError("the explicit pattern list is empty")
  if len(set(rows)) != len(rows):
    raise ValueError("the explicit pattern list repeats a pattern")
  return _to_mask(rows, n)


def _to_mask(rows: list[tuple[int, ...]], n: int) -> np.ndarray:
  unavail_PxN = np.zeros((len(rows), n), dtype=bool)
  for p, slots in enumerate(rows):
    unavail_PxN[p, list(slots)] = True
  return unavail_PxN


def unavailable_slots(unavail_PxN: np.ndarray) -> list[list[int]]:
  """The slot indices of each pattern, for reports."""
  return [np.flatnonzero(row).tolist() for row in np.asarray(unavail_PxN)]


def probability(unavail_PxN: np.ndarray, f: float) -> np.ndarray:
  """Probability of each pattern when every worker is unavailable independently w.p. f."""
  e_P = np.asarray(unavail_PxN).sum(axis=1)
  n = np.asarray(unavail_PxN).shape[1]
  return f**e_P * (1.0 - f)**(n - e_P)
