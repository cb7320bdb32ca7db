"""Exact per-pattern counts of a scheme, every pattern in one jitted pass per batch of groups.

One jitted call per batch of groups evaluates every pattern: the workers' outputs (encoder, F
or F_P on the parities) once, then the decoder and the per-pattern counts vmapped over the
patterns, in ``jax.lax.map`` chunks when they would not fit (``make_counts_fn``). The loop over
patterns (``pattern_totals_loop``) is only the test oracle and the benchmark's baseline.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import baselines, coding, data, metrics, steps

# Elements of one chunk of decoded outputs (patterns × groups × k × classes): 64 MiB float32.
CHUNK_ELEMENTS = 1 << 24


def informative(recon_BxKxC: jax.Array) -> jax.Array:
  """Non-finite outputs become constant rows, and a constant row (no information, e.g. no
  available worker) ranks classes by index, so it cannot win top-k by ties (metrics._in_top)."""
  recon_BxKxC = jnp.where(jnp.isfinite(recon_BxKxC), recon_BxKxC, 0.0)
  constant_BxK = jnp.max(recon_BxKxC, -1) == jnp.min(recon_BxKxC, -1)
  order_C = -jnp.arange(recon_BxKxC.shape[-1], dtype=recon_BxKxC.dtype)
  return jnp.where(constant_BxK[..., None], order_C, recon_BxKxC)


def _batch_counts(variables, data_arrays, idx_BxK, weight_B, unavail_PxN, *, outputs, decoder,
                  systematic: bool, chunk: int | None):
  """Per-pattern counts (metrics.COUNT_KEYS, each (P,)) for one batch of groups.

  Scored slots: the unavailable data slots (systematic) or all k (non-systematic).
  """
  x_BxKxI, y_BxKxC, labels_BxK = steps.gather(data_arrays, idx_BxK)
  outs_BxNxC = outputs(variables, x_BxKxI, y_BxKxC)  # once for all patterns

  def one(unavail_N):
    recon_BxKxC = coding.decode_all(decoder, variables["decoder"], outs_BxNxC,
                                    unavail_N[None])[0]
    scored_1xN = unavail_N[None] if systematic else jnp.ones_like(unavail_N[None])
    counts = metrics.pattern_counts(informative(recon_BxKxC)[None], y_BxKxC, labels_BxK,
                                    scored_1xN, weight_B)
    return {key: value[0] for key, value in counts.items()}

  if chunk is None or chunk >= unavail_PxN.shape[0]:
    return jax.vmap(one)(unavail_PxN)
  return jax.lax.map(one, unavail_PxN, batch_size=chunk)


def make_counts_fn(scheme: baselines.Scheme, chunk: int | None = None):
  """The jitted ``fn(variables, data, idx_BxK, weight_B, unavail_PxN) -> counts``.

  Cached per (functions, chunk), so the same scheme with other variables (LeTCC's λ grid) or
  called again (the loop oracle) reuses its compilations.
  """
  return _jitted_counts(scheme.outputs, scheme.decoder, scheme.systematic, chunk)


@functools.lru_cache(maxsize=64)
def _jitted_counts(outputs, decoder, systematic, chunk):
  return jax.jit(functools.partial(_batch_counts, outputs=outputs, decoder=decoder,
                                   systematic=systematic, chunk=chunk))


def auto_chunk(num_patterns: int, batch_size: int, k: int, num_classes: int) -> int | None:
  """Patterns per ``lax.map`` step so a chunk's decoded outputs stay near CHUNK_ELEMENTS."""
  per_pattern = batch_size * k * num_classes
  chunk = max(1, CHUNK_ELEMENTS // per_pattern)
  return None if chunk >= num_patterns else chunk


def device_data(x_NxI, y_NxC, labels_N) -> dict[str, jax.Array]:
  return {"x": jnp.asarray(x_NxI), "y": jnp.asarray(y_NxC),
          "labels": jnp.asarray(labels_N, jnp.int32)}


def pattern_totals(scheme: baselines.Scheme, data_arrays, indices, k: int, unavail_PxN, *,
                   batch_size: int, counts_fn=None) -> dict[str, np.ndarray]:
  """Exact per-pattern counts over the groups of ``indices`` (group g = indices[g·k:(g+1)·k])."""
  idx_SxBxK, weight_SxB = data.group_indices(indices, k, batch_size, shuffle=False)
  if counts_fn is None:
    num_classes = data_arrays["y"].shape[-1]
    counts_fn = make_counts_fn(scheme, auto_chunk(len(unavail_PxN), batch_size, k, num_classes))
  unavail = jnp.asarray(unavail_PxN)
  # Dispatch every batch before reading any: the host never waits between steps.
  pending = [counts_fn(scheme.variables, data_arrays, idx, weight, unavail)
             for idx, weight in zip(idx_SxBxK, weight_SxB)]
  acc = metrics.Accumulator()
  for counts in pending:
    acc.add(counts)
  return acc.totals


def pattern_totals_loop(scheme: baselines.Scheme, data_arrays, indices, k: int, unavail_PxN, *,
                        batch_size: int) -> dict[str, np.ndarray]:
  """The same counts, one pattern at a time (workers' outputs recomputed for each): the test
  oracle and the benchmark's baseline."""
  counts_fn = make_counts_fn(scheme)
  per_pattern = [pattern_totals(scheme, data_arrays, indices, k, unavail_PxN[p:p + 1],
                                batch_size=batch_size, counts_fn=counts_fn)
                 for p in range(len(unavail_PxN))]
  return {key: np.concatenate([t[key] for t in per_pattern]) for key in per_pattern[0]}
