"""A scheme's sweep: its exact per-pattern counts, and the accuracies clients see from them."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lcc_jax import erasure

# The unavailability rates f of the client curves (unavailability.csv, baseline_curves.csv).
RATES_GRID = np.round(np.linspace(0.0, 0.5, 51), 4)


@dataclasses.dataclass
class Sweep:
  """Every client pattern of one scheme on one split, as exact counts."""
  name: str
  systematic: bool
  k: int
  r: int
  unavail_PxN: np.ndarray
  totals: dict[str, np.ndarray]
  base_hits_K: np.ndarray  # F's top-1 hits per data slot over the groups
  groups: int
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def sizes_P(self) -> np.ndarray:
    return self.unavail_PxN.sum(axis=1)

  @property
  def base_accuracy(self) -> float:
    return float(self.base_hits_K.sum() / (self.groups * self.k))

  def rate(self, key: str) -> np.ndarray:
    """Per-pattern accuracy over the scored slots (metrics.COUNT_KEYS names)."""
    return self.totals[key] / np.maximum(self.totals["n"], 1)

  def client_P(self, key: str = "degraded_top1") -> np.ndarray:
    """Accuracy over all k queries per pattern: F's own output on available data workers.

    ``degraded_top1``: against the labels; ``recon_top1``: agreement with F.
    """
    if not self.systematic:
      return self.rate(key)
    avail_PxK = ~self.unavail_PxN[:, :self.k]
    own_K = self.base_hits_K if key == "degraded_top1" else np.full(self.k, self.groups)
    return (self.totals[key] + avail_PxK @ own_K) / (self.groups * self.k)

  def omitted(self, rates) -> np.ndarray:
    """Probability of the client patterns left out by a ``max_unavailable`` cut, per f."""
    out = []
    for f in np.atleast_1d(rates):
      kept = erasure.probability(self.unavail_PxN, f).sum()
      kept += (1.0 - f)**self.k if self.systematic else 0.0
      out.append(max(0.0, 1.0 - float(kept)))
    return np.asarray(out)

  def expected(self, rates, key: str = "degraded_top1") -> np.ndarray:
    """E[accuracy] over independent worker unavailability with probability f, per f.

    Patterns left out by a cut count as wrong: the exact value is at most ``omitted`` above.
    """
    own = self.base_accuracy if key == "degraded_top1" else 1.0
    client_P = self.client_P(key)
    out = []
    for f in np.atleast_1d(rates):
      value = float(erasure.probability(self.unavail_PxN, f) @ client_P)
      if self.systematic:  # patterns with every data worker available: F's own outputs
        value += (1.0 - f)**self.k * own
      out.append(value)
    return np.asarray(out)

  def summary(self, rates) -> dict[str, Any]:
    """Degraded-mode metrics over the exactly-r patterns, and the client view."""
    exact = self.sizes_P == self.r
    n = max(int(self.totals["n"][exact].sum()), 1)
    out = {"scheme": self.name, "systematic": self.systematic, "k": self.k, "r": self.r,
           "workers": self.k + self.r, "base_top1": self.base_accuracy}
    for name, key in (("degraded_top1", "degraded_top1"), ("degraded_top5", "degraded_top5"),
                      ("agreement", "recon_top1")):
      out[name] = float(self.totals[key][exact].sum() / n)
    if self.systematic:
      out["no_straggler_top1"] = self.base_accuracy
    else:
      out["no_straggler_top1"] = float(self.client_P()[self.sizes_P == 0][0])
    for f, value in zip(rates, self.expected(rates)):
      out[f"expected_top1@{f:g}"] = float(value)
    for f, value in zip(rates, self.expected(rates, "recon_top1")):
      out[f"expected_agreement@{f:g}"] = float(value)
    if self.sizes_P.max(initial=0) < self.k + self.r:  # a tail cut: say how much it left out
      out["max_unavailable"] = int(self.sizes_P.max())
      out[f"omitted_mass@{max(rates):g}"] = float(self.omitted([max(rates)])[0])
    out.update(self.info)
    return out

  def pattern_rows(self, beyond: bool = False) -> list[dict[str, Any]]:
    """One row per pattern of fewer than / exactly (/ more than) r unavailable outputs."""
    rows = []
    for p, unavail_N in enumerate(self.unavail_PxN):
      size = int(unavail_N.sum())
      kind = "fewer" if size < self.r else "exactly" if size == self.r else "beyond"
      if size == 0 or (kind == "beyond" and not beyond):
        continue
      rows.append({"unavailable": " ".join(map(str, np.flatnonzero(unavail_N))),
                   "num_unavailable": size, "set": kind, "scored": int(self.totals["n"][p]),
                   "reconstruction_top1": float(self.rate("recon_top1")[p]),
                   "reconstruction_top5": float(self.rate("recon_top5")[p]),
                   "degraded_top1": float(self.rate("degraded_top1")[p]),
                   "degraded_top5": float(self.rate("degraded_top5")[p])})
    return rows


def slot_hits(y_NxC: np.ndarray, labels_N: np.ndarray, indices, k: int) -> tuple[np.ndarray, int]:
  """(F's top-1 hits per data slot (K,), number of groups) over the groups of ``indices``."""
  idx_GxK = np.asarray(indices)[:len(indices) // k * k].reshape(-1, k)
  hits_GxK = np.argmax(y_NxC[idx_GxK], axis=-1) == labels_N[idx_GxK]
  return hits_GxK.sum(axis=0).astype(np.int64), len(idx_GxK)
