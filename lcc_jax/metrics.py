"""Reconstruction and degraded-mode accuracy, per pattern, as exact counts.

* reconstruction top-k: F's argmax on the example is within the top-k of the reconstruction
  (agreement with the deployed model; docs/upstream.md §Metrics).
* degraded top-k: the true label is within the top-k of the reconstruction (SOSP's
  degraded-mode accuracy, learned-cc's "overall" accuracy).

Only unavailable data slots are scored. Counts are summed over a whole split on the host
(int64), so split metrics are exact, never averages of batch averages. With C < 5 classes,
top-5 means top-C (trivially 1).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import losses, registry

COUNT_KEYS = ("n", "recon_top1", "recon_top5", "degraded_top1", "degraded_top5")
# Keys of a summary: accuracies over every scored (group, unavailable slot) pair.
ACCURACY_KEYS = ("reconstruction_top1", "reconstruction_top5", "degraded_top1", "degraded_top5")


def _in_top(scores_xC: jax.Array, target_x: jax.Array, top: int) -> jax.Array:
  """Whether ``target`` is among the ``top`` highest scores (ties broken against it)."""
  target_score = jnp.take_along_axis(scores_xC, target_x[..., None], axis=-1)
  return jnp.sum(scores_xC > target_score, axis=-1) < top


def pattern_counts(recon_PxBxKxC, y_BxKxC, labels_BxK, unavail_PxN, weight_B, loss_name=None):
  """Per-pattern counts for one batch: a dict of (P,) arrays (see COUNT_KEYS, + loss_sum)."""
  top5 = min(5, recon_PxBxKxC.shape[-1])
  base_pred_BxK = jnp.argmax(y_BxKxC, axis=-1)
  hits = {
      "recon_top1": jnp.argmax(recon_PxBxKxC, axis=-1) == base_pred_BxK[None],
      "recon_top5": _in_top(recon_PxBxKxC, base_pred_BxK[None], top5),
      "degraded_top1": jnp.argmax(recon_PxBxKxC, axis=-1) == labels_BxK[None],
      "degraded_top5": _in_top(recon_PxBxKxC, labels_BxK[None], top5),
  }
  counts = {}
  for key, hit_PxBxK in hits.items():
    counts[key], n_P = losses.pattern_sums(hit_PxBxK.astype(jnp.float32), unavail_PxN, weight_B)
  counts["n"] = n_P
  if loss_name is not None:
    elem = registry.get("loss", loss_name)(recon_PxBxKxC, y_BxKxC[None], labels_BxK[None])
    counts["loss_sum"], _ = losses.pattern_sums(elem, unavail_PxN, weight_B)
  return {key: value.astype(jnp.int32) if key != "loss_sum" else value
          for key, value in counts.items()}


def base_counts(y_BxKxC, labels_BxK, weight_B):
  """F's own (available-mode) top-1 hits and example count for one batch."""
  hit_BxK = jnp.argmax(y_BxKxC, axis=-1) == labels_BxK
  return {"correct": jnp.sum(hit_BxK * weight_B[:, None]).astype(jnp.int32),
          "n": (jnp.sum(weight_B) * y_BxKxC.shape[1]).astype(jnp.int32)}


class Accumulator:
  """Sums per-batch count dicts on the host, exactly (int64 / float64)."""

  def __init__(self):
    self._totals: dict[str, np.ndarray] = {}

  def add(self, counts) -> None:
    for key, value in jax.device_get(counts).items():
      value = np.asarray(value, dtype=np.float64 if key == "loss_sum" else np.int64)
      self._totals[key] = self._totals.get(key, 0) + value

  @property
  def totals(self) -> dict[str, np.ndarray]:
    return dict(self._totals)


def summarize(totals: dict[str, np.ndarray], unavail_PxN: np.ndarray | None = None) -> dict:
  """Accuracies over all patterns and per pattern from summed counts."""
  n_P = np.asarray(totals["n"], dtype=np.int64)
  n = max(int(n_P.sum()), 1)
  pairs = {"reconstruction_top1": "recon_top1", "reconstruction_top5": "recon_top5",
           "degraded_top1": "degraded_top1", "degraded_top5": "degraded_top5"}
  out = {name: float(np.sum(totals[key]) / n) for name, key in pairs.items()}
  if "loss_sum" in totals:
    out["loss"] = float(np.sum(totals["loss_sum"]) / n)
  out["num_scored"] = int(n_P.sum())
  per_pattern = []
  for p in range(n_P.shape[0]):
    entry = {name: float(totals[key][p] / max(n_P[p], 1)) for name, key in pairs.items()}
    if unavail_PxN is not None:
      entry["unavailable"] = np.flatnonzero(unavail_PxN[p]).tolist()
    per_pattern.append(entry)
  out["per_pattern"] = per_pattern
  return out
