"""Erasure-pattern sweeps of a trained run, the training-free baselines, reports and plots.

  python -m lcc_jax.evaluate --workdir=DIR [--workdir=DIR2 ...] [--beyond] [--baselines]
  python -m lcc_jax.evaluate --workdir=DIR --baseline_sweep [--sweep_k=2,3,4 --sweep_r=1]

Writes into DIR/eval/ (or --out): patterns.csv/.md (every pattern of fewer than, exactly and,
with --beyond, more than r unavailable outputs), unavailability.csv/.png (expected accuracy
seen by clients when each of the k + r workers is unavailable independently with probability
f), baselines.csv/.md/.png, comparison.csv/.md across several workdirs, baseline_sweep.*.
See docs/evaluate.md for the definitions.

One jitted call per batch of groups evaluates every pattern: the workers' outputs (encoder, F
or F_P on the parities) once, then the decoder and the per-pattern counts vmapped over the
patterns, in ``jax.lax.map`` chunks when they would not fit (``make_counts_fn``). The loop over
patterns (``pattern_totals_loop``) is only the test oracle and the benchmark's baseline.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lcc_jax import (assembly, baselines, checkpoint, coding, data, erasure, host_memory,
                     metrics, nn, steps, workdir as workdir_lib)
from lcc_jax.coders import berrut

log = logging.getLogger(__name__)

RATES_GRID = np.round(np.linspace(0.0, 0.5, 51), 4)
# The client curve enumerates all 2^N patterns; beyond this many workers that is too many.
MAX_WORKERS = 16
# Elements of one chunk of decoded outputs (patterns × groups × k × classes): 64 MiB float32.
CHUNK_ELEMENTS = 1 << 24
EVAL_DIR = "eval"


# ------------------------------------------------------------------------------ patterns


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


# ------------------------------------------------------------------------------ one pass


def _informative(recon_BxKxC: jax.Array) -> jax.Array:
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
    counts = metrics.pattern_counts(_informative(recon_BxKxC)[None], y_BxKxC, labels_BxK,
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


# ------------------------------------------------------------------------------ one scheme


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


def evaluate_scheme(scheme: baselines.Scheme, arrays: dict[str, np.ndarray], indices, k: int,
                    r: int, *, batch_size: int, max_unavailable: int | None = None,
                    info=None) -> Sweep:
  """Counts of ``scheme`` over every client pattern (up to ``max_unavailable``) on one split.

  ``arrays`` holds host ``x``, ``y`` (F's outputs) and ``labels`` of the split's dataset.
  """
  unavail_PxN = client_patterns(k, r, scheme.systematic, max_unavailable)
  device = device_data(arrays["x"], arrays["y"], arrays["labels"])
  totals = pattern_totals(scheme, device, indices, k, unavail_PxN, batch_size=batch_size)
  hits_K, groups = slot_hits(arrays["y"], arrays["labels"], indices, k)
  return Sweep(scheme.name, scheme.systematic, k, r, np.asarray(unavail_PxN), totals, hits_K,
               groups, dict(info or {}))


def tune_letcc(scheme: baselines.Scheme, arrays, indices, k: int, r: int, *, batch_size: int,
               grid: Sequence[float] = baselines.LAMBDAS) -> tuple[baselines.Scheme, list]:
  """λ_e, λ_d maximising the exactly-r degraded top-1 on ``indices`` (val), jointly on a grid.

  Ties keep the first (smallest λ) in grid order. Returns (tuned scheme, [(λ_e, λ_d, top-1)]).
  """
  unavail_PxN = erasure.patterns(k, r) if scheme.systematic else subsets(k + r, [r])
  device = device_data(arrays["x"], arrays["y"], arrays["labels"])
  counts_fn = make_counts_fn(scheme, auto_chunk(len(unavail_PxN), batch_size, k,
                                                arrays["y"].shape[-1]))
  scores = []
  for lam_e, lam_d in itertools.product(grid, grid):
    candidate = baselines.with_lambdas(scheme, lam_e, lam_d)
    totals = pattern_totals(candidate, device, indices, k, unavail_PxN, batch_size=batch_size,
                            counts_fn=counts_fn)
    scores.append((lam_e, lam_d, float(totals["degraded_top1"].sum() / totals["n"].sum())))
  best = max(scores, key=lambda s: s[2])  # max keeps the first of equal scores
  return baselines.with_lambdas(scheme, best[0], best[1]), scores


def byzantine(f: nn.ModelFns, f_variables, arrays, indices, k: int, num_errors: int, *,
              stragglers: int = 0, sigma: float = 10.0, convention: str = "endpoints",
              batch_size: int = 500, seed: int = 0) -> dict[str, Any]:
  """ApproxIFER with ``num_errors`` Byzantine workers (docs/upstream.md §Byzantine decoding), every
  query scored.

  N = 2k + 2A + S − 1 workers; per group, S stragglers and then A adversaries among the rest
  are drawn uniformly (seeded); an adversary adds N(0, σ²) noise to each of its outputs. Reports
  the every-query top-1 without adversaries, with them, and after the locator
  (``berrut.locate_errors``) drops its A suspects, plus how often it finds exactly them.
  """
  n = 2 * k + 2 * num_errors + stragglers - 1
  points_N = berrut.cheb2(n, convention)
  scheme = baselines.approxifer(k, n - k, f, f_variables, convention)
  device = device_data(arrays["x"], arrays["y"], arrays["labels"])
  idx_SxBxK, weight_SxB = data.group_indices(indices, k, batch_size, shuffle=False)

  @jax.jit
  def step(variables, idx_BxK, weight_B, avail_BxN, adv_BxN, noise_BxNxC):
    x_BxKxI, y_BxKxC, labels_BxK = steps.gather(device, idx_BxK)
    outs_BxNxC = scheme.outputs(variables, x_BxKxI, y_BxKxC)
    bad_BxNxC = outs_BxNxC + adv_BxN[..., None] * noise_BxNxC
    suspects_BxN = jax.vmap(lambda o, a: berrut.locate_errors(o, a, points_N, k, num_errors))(
        bad_BxNxC, avail_BxN)
    decode = jax.vmap(lambda o, a: berrut.nonsystematic_decode(o[None], a, k, convention)[0])
    hits = {}
    for name, outs, avail in (("clean", outs_BxNxC, avail_BxN), ("attacked", bad_BxNxC, avail_BxN),
                              ("located", bad_BxNxC, avail_BxN & ~suspects_BxN)):
      pred_BxK = jnp.argmax(_informative(decode(jnp.where(avail[..., None], outs, 0.0), avail)), -1)
      hits[name] = jnp.sum((pred_BxK == labels_BxK) * weight_B[:, None])
    hits["found"] = jnp.sum(jnp.all(suspects_BxN == adv_BxN, axis=1) * weight_B)
    return hits

  rng = np.random.default_rng(seed)
  acc = metrics.Accumulator()
  for idx_BxK, weight_B in zip(idx_SxBxK, weight_SxB):
    order_BxN = np.argsort(rng.random((len(idx_BxK), n)), axis=1)
    avail_BxN = np.ones((len(idx_BxK), n), bool)
    np.put_along_axis(avail_BxN, order_BxN[:, :stragglers], False, axis=1)
    adv_BxN = np.zeros_like(avail_BxN)
    np.put_along_axis(adv_BxN, order_BxN[:, stragglers:stragglers + num_errors], True, axis=1)
    noise = sigma * rng.standard_normal((len(idx_BxK), n, arrays["y"].shape[-1]))
    acc.add(step(scheme.variables, idx_BxK, weight_B, avail_BxN, adv_BxN,
                 noise.astype(np.float32)))
  totals = acc.totals
  groups = int(np.sum(weight_SxB))
  out = {"k": k, "byzantine": num_errors, "stragglers": stragglers, "workers": n,
         "sigma": sigma, "convention": convention}
  for name in ("clean", "attacked", "located"):
    out[f"{name}_top1"] = float(totals[name] / (groups * k))
  out["location_rate"] = float(totals["found"] / groups)
  return out


# ------------------------------------------------------------------------------ a trained run


Run = assembly.Run


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{workdir} has no config.json: not a workdir written by train.py")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str, *, restore: bool = True) -> Run:
  """Rebuilds a run; with ``restore`` also its code at the best checkpoint (else the latest)."""
  run = assembly.prepare(read_config(workdir), workdir, train_base_model=False)
  return assembly.restore(run) if restore else run


def code_scheme(run: Run) -> baselines.Scheme:
  c = run.config
  return baselines.from_code("code", run.code, run.variables,
                             f"{c.encoder.name}/{c.decoder.name}, {c.loss}, checkpoint of "
                             f"epoch {run.checkpoint_epoch}")


def run_baselines(run: Run, k: int, r: int, names: Sequence[str], *, batch_size: int,
                  grid: Sequence[float] = baselines.LAMBDAS, val_limit: int = 0,
                  test_limit: int = 0, max_unavailable: int | None = None) -> list[Sweep]:
  """Every named baseline for (k, r) on the run's F and test split (LeTCC λ tuned on val)."""
  sweeps = []
  test_idx = _limited(np.arange(len(run.dataset.x_test)), test_limit)
  val_idx = _limited(run.split["val"], val_limit)
  for name in names:
    scheme = baselines.build(name, k, r, run.base_fns, run.base_variables,
                             run.dataset.input_shape, run.prior(), run.config.channel_mode)
    info = {}
    if name in baselines.LETCC_NAMES:
      scheme, _ = tune_letcc(scheme, run.train_arrays(), val_idx, k, r, batch_size=batch_size,
                             grid=grid)
      info["lam_e"], info["lam_d"] = baselines.lambdas(scheme)
    info["description"] = scheme.description
    sweeps.append(evaluate_scheme(scheme, run.test_arrays(), test_idx, k, r,
                                  batch_size=batch_size, max_unavailable=max_unavailable,
                                  info=info))
    log.info("%s k=%d r=%d: %s", name, k, r, sweeps[-1].summary(run.rates()))
  return sweeps


def _limited(indices, limit: int):
  return np.asarray(indices)[:limit] if limit else np.asarray(indices)


# ------------------------------------------------------------------------------ reports


def _fmt(value) -> str:
  if isinstance(value, (bool, np.bool_)):
    return "yes" if value else "no"
  if isinstance(value, (float, np.floating)):
    return f"{value:.4f}"
  return str(value)


def write_table(path_stem: str, rows: list[dict], title: str = "", note: str = "",
                markdown: bool = True) -> None:
  """``path_stem``.csv (full precision) and .md (4 decimals) with the rows' keys as columns."""
  columns = list(dict.fromkeys(key for row in rows for key in row))
  with open(path_stem + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  if not markdown:
    return
  lines = [f"# {title}", ""] if title else []
  if note:
    lines += [note, ""]
  lines.append("| " + " | ".join(columns) + " |")
  lines.append("|" + "---|" * len(columns))
  lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
  with open(path_stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_unavailability(sweeps: Sequence[Sweep], path: str, title: str = "") -> None:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for sweep in sweeps:
    style = "-" if sweep.systematic else "--"
    ax.plot(RATES_GRID, sweep.expected(RATES_GRID), style, label=sweep.name)
  ax.axhline(sweeps[0].base_accuracy, color="k", lw=0.8, ls=":",
             label=f"F, all available ({sweeps[0].base_accuracy:.3f})")
  ax.set_xlabel("probability f that each worker is unavailable")
  ax.set_ylabel("expected top-1 accuracy seen by clients")
  ax.set_xlim(0, 0.5)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_baselines(rows: list[dict], path: str, rates, title: str = "") -> None:
  """Bars per scheme: degraded top-1 and the expected top-1 at each rate."""
  plt = _pyplot()
  keys = ["degraded_top1"] + [f"expected_top1@{f:g}" for f in rates]
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows) + 2), 4.5))
  width = 0.8 / len(keys)
  for i, key in enumerate(keys):
    ax.bar([x + (i - (len(keys) - 1) / 2) * width for x in range(len(rows))],
           [row[key] for row in rows], width, label=key)
  ax.axhline(rows[0]["base_top1"], color="k", lw=0.8, ls=":", label="F")
  ax.set_xticks(range(len(rows)), [row["scheme"] + ("" if row["systematic"] else "*")
                                    for row in rows])
  ax.set_ylim(0, 1.12)
  ax.set_ylabel("top-1 accuracy")
  ax.legend(fontsize=7, loc="upper center", ncol=len(keys) + 1)
  ax.set_title(title + " (* non-systematic: every query decoded)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_sweep(rows: list[dict], path: str, key: str, title: str = "") -> None:
  """``key`` against k, one line per (scheme, r)."""
  plt = _pyplot()
  rs = sorted({row["r"] for row in rows})
  fig, axes = plt.subplots(1, len(rs), figsize=(5 * len(rs), 4), squeeze=False)
  for ax, r in zip(axes[0], rs):
    for scheme in dict.fromkeys(row["scheme"] for row in rows):
      mine = [row for row in rows if row["r"] == r and row["scheme"] == scheme]
      points = sorted((row["k"], row[key]) for row in mine)
      systematic = str(mine[0]["systematic"]) == "True"  # bool, or text from a CSV
      ax.plot(*zip(*points), "-" if systematic else "--", marker="o", ms=3,
              label=scheme + ("" if systematic else " *"))
    ax.set_title(f"r = {r}")
    ax.set_xlabel("k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(key)
  axes[0][-1].legend(fontsize=7)
  fig.suptitle(title + " (* non-systematic: every query decoded)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _title(run: Run) -> str:
  c = run.config
  return (f"{run.dataset.name} {c.base_model.name} k={c.k} r={c.r} "
          f"{c.encoder.name}/{c.decoder.name} {c.loss}")


def _curve_rows(sweeps: Sequence[Sweep]) -> list[dict]:
  curves = {s.name: s.expected(RATES_GRID) for s in sweeps}
  agree = {s.name: s.expected(RATES_GRID, "recon_top1") for s in sweeps}
  rows = []
  for i, f in enumerate(RATES_GRID):
    row = {"f": float(f), "F": sweeps[0].base_accuracy}
    row.update({name: float(v[i]) for name, v in curves.items()})
    row.update({f"{name}_agreement": float(v[i]) for name, v in agree.items()})
    rows.append(row)
  return rows


def evaluate_workdir(workdir: str, *, out_dir: str | None = None, beyond: bool = False,
                     with_baselines: bool = False, names: Sequence[str] = baselines.NAMES,
                     batch_size: int = 0, grid: Sequence[float] = baselines.LAMBDAS) -> dict:
  """The sweep of one run's code (and baselines at its k, r); writes the eval/ reports."""
  run = load_run(workdir)
  out_dir = out_dir or os.path.join(workdir, EVAL_DIR)
  os.makedirs(out_dir, exist_ok=True)
  batch_size = batch_size or int(run.config.data.eval_batch_size)
  rates, title = run.rates(), _title(run)
  test_idx = np.arange(len(run.dataset.x_test))
  code = evaluate_scheme(code_scheme(run), run.test_arrays(), test_idx, run.k, run.r,
                         batch_size=batch_size, info={"checkpoint_epoch": run.checkpoint_epoch})
  write_table(os.path.join(out_dir, "patterns"), code.pattern_rows(beyond),
              f"Erasure patterns: {title} (test)",
              f"F top-1 {code.base_accuracy:.4f}; checkpoint of epoch {run.checkpoint_epoch}; "
              "scored: (group, unavailable data slot) pairs")
  sweeps = [code]
  if with_baselines:
    sweeps += run_baselines(run, run.k, run.r, names, batch_size=batch_size, grid=grid)
    rows = [s.summary(rates) for s in sweeps]
    write_table(os.path.join(out_dir, "baselines"), rows, f"Baselines at equal workers: {title}",
                "degraded_*: exactly-r patterns (non-systematic: every query); agreement: "
                "top-1 equal to F's")
    plot_baselines(rows, os.path.join(out_dir, "baselines.png"), rates, title)
  write_table(os.path.join(out_dir, "unavailability"), _curve_rows(sweeps),
              f"Expected client top-1 vs unavailability rate f: {title}")
  plot_unavailability(sweeps, os.path.join(out_dir, "unavailability.png"), title)
  result = {"workdir": os.path.abspath(workdir), "title": title,
            "checkpoint_step": run.checkpoint_step, "checkpoint_epoch": run.checkpoint_epoch,
            "dataset": run.dataset.name,
            "base_model": run.config.base_model.name, "encoder": run.config.encoder.name,
            "decoder": run.config.decoder.name, "loss": run.config.loss,
            "parity_model": (assembly.parity_model_name(run.config) or ("",))[0],
            "schemes": [s.summary(rates) for s in sweeps]}
  workdir_lib.write_json(os.path.join(out_dir, "eval.json"), result)
  return result


def comparison_rows(results: Sequence[dict]) -> list[dict]:
  rows = []
  for result in results:
    code = result["schemes"][0]
    row = {"workdir": result["workdir"], "dataset": result["dataset"],
           "base_model": result["base_model"], "k": code["k"], "r": code["r"],
           "encoder": result["encoder"], "decoder": result["decoder"], "loss": result["loss"],
           "parity_model": result["parity_model"], "F_top1": code["base_top1"],
           "degraded_top1": code["degraded_top1"], "agreement": code["agreement"]}
    row.update({key: v for key, v in code.items() if key.startswith("expected_top1@")})
    rows.append(row)
  return rows


def baseline_sweep(workdir: str, *, ks: Sequence[int], rs: Sequence[int],
                   names: Sequence[str], out_dir: str | None = None, batch_size: int = 0,
                   grid: Sequence[float] = baselines.LAMBDAS, val_limit: int = 0,
                   test_limit: int = 0, tail: float = 0.0,
                   curve_plots: Sequence[tuple[int, int]] = ()) -> list[dict]:
  """The training-free baselines over k × r on the run's F; writes baseline_sweep.*.

  ``tail`` > 0 skips the patterns of more unavailable workers than the largest reported rate
  makes likelier than ``tail`` (``tail_cut``): the expected accuracies are then exact to
  within ``omitted_mass`` (a column), at a fraction of the 2^N patterns. Every client curve
  goes to baseline_curves.csv; those of ``curve_plots`` (k, r) also to a PNG each.
  """
  run = load_run(workdir, restore=False)
  out_dir = out_dir or os.path.join(workdir, EVAL_DIR)
  os.makedirs(out_dir, exist_ok=True)
  batch_size = batch_size or int(run.config.data.eval_batch_size)
  title = f"{run.dataset.name} {run.config.base_model.name}: training-free baselines"
  rows, curves = [], []
  for r in rs:
    for k in ks:
      cut = tail_cut(k + r, max(run.rates()), tail) if tail > 0 else None
      sweeps = run_baselines(run, k, r, names, batch_size=batch_size, grid=grid,
                             val_limit=val_limit, test_limit=test_limit, max_unavailable=cut)
      rows += [sweep.summary(run.rates()) for sweep in sweeps]
      for sweep in sweeps:
        curves += [{"k": k, "r": r, "scheme": sweep.name, "systematic": sweep.systematic,
                    "f": float(f), "expected_top1": float(e), "omitted_mass": float(o)}
                   for f, e, o in zip(RATES_GRID, sweep.expected(RATES_GRID),
                                      sweep.omitted(RATES_GRID))]
      if (k, r) in curve_plots:
        plot_unavailability(sweeps, os.path.join(out_dir, f"unavailability_k{k}_r{r}.png"),
                            f"{title}, k={k} r={r}")
      # Rewritten after every setting, so a long sweep's finished part is already on disk.
      write_table(os.path.join(out_dir, "baseline_sweep"), rows, title,
                  "degraded_*: exactly-r patterns (non-systematic: every query with r "
                  "stragglers)")
      write_table(os.path.join(out_dir, "baseline_curves"), curves, markdown=False)
      log.info("baseline sweep: k=%d r=%d done", k, r)
  plot_sweep(rows, os.path.join(out_dir, "baseline_sweep.png"), "degraded_top1", title)
  return rows


# ------------------------------------------------------------------------------ command line


def main(argv: Sequence[str]) -> int:
  from absl import flags
  FLAGS = flags.FLAGS
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  logging.getLogger().setLevel(logging.INFO if FLAGS.verbose else logging.WARNING)
  # XLA:CPU can hang with several executions in flight (jax-ml/jax#25861): run them one at a
  # time; each is large, so this costs nothing measurable.
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  # XLA:CPU's multi-threaded Eigen pool wedged twice (all threads in futex waits) in long LeTCC
  # sweeps (linalg.solve vmapped over thousands of patterns); single-threaded Eigen never did.
  host_memory.prepare_host(cpu_xla_flags=("--xla_cpu_multi_thread_eigen=false",))
  checkpoint.mute_orbax_failure_reports()  # a checkpoint that does not restore: one line
  workdirs = FLAGS.workdir or []
  if not workdirs:
    print("error: give at least one --workdir", file=sys.stderr)
    return 2
  default = baselines.SWEEP_NAMES if FLAGS.baseline_sweep else baselines.NAMES
  names = tuple(FLAGS.baseline_names or default)
  unknown = set(names) - set(baselines.NAMES)
  if unknown:
    print(f"error: unknown --baseline_names {sorted(unknown)}; known: {list(baselines.NAMES)}",
          file=sys.stderr)
    return 2
  grid = tuple(float(v) for v in FLAGS.lambdas)
  try:
    with contextlib.ExitStack() as locks:
      # It writes F's cached outputs (and eval/) into each workdir: no run may write beside it.
      for workdir in workdirs:
        locks.enter_context(workdir_lib.locked(workdir, "evaluation (python -m lcc_jax.evaluate)"))
      return _run_cli(FLAGS, workdirs, names, grid)
  except (ValueError, data.DataUnavailableError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def _run_cli(FLAGS, workdirs, names, grid) -> int:
  """What the flags ask for, on locked workdirs; raises ValueError on bad input."""
  if FLAGS.baseline_sweep:
    baseline_sweep(workdirs[0], ks=[int(v) for v in FLAGS.sweep_k],
                   rs=[int(v) for v in FLAGS.sweep_r], names=names, out_dir=FLAGS.out,
                   batch_size=FLAGS.batch_size, grid=grid, val_limit=FLAGS.val_limit,
                   test_limit=FLAGS.test_limit, tail=FLAGS.sweep_tail,
                   curve_plots=[tuple(int(v) for v in kr.split(":"))
                                for kr in FLAGS.curve_plots])
    print(f"wrote baseline_sweep.csv/.md/.png into {FLAGS.out or workdirs[0] + '/eval'}")
    return 0
  if FLAGS.byzantine_k:
    run = load_run(workdirs[0], restore=False)
    out = FLAGS.out or os.path.join(workdirs[0], EVAL_DIR)
    os.makedirs(out, exist_ok=True)
    rows = [byzantine(run.base_fns, run.base_variables, run.test_arrays(),
                      np.arange(len(run.dataset.x_test)), int(k), int(a), sigma=float(sigma),
                      convention=FLAGS.byzantine_convention,
                      batch_size=FLAGS.batch_size or 500)
            for k in FLAGS.byzantine_k for a in FLAGS.byzantine_errors
            for sigma in FLAGS.byzantine_sigma]
    write_table(os.path.join(out, "byzantine"), rows,
                f"ApproxIFER with Byzantine workers: {run.dataset.name} "
                f"{run.config.base_model.name} (test, every query scored)")
    print(f"wrote {out}/byzantine.csv/.md")
    return 0
  results = []
  for workdir in workdirs:
    out = (os.path.join(FLAGS.out, os.path.basename(os.path.normpath(workdir)))
           if FLAGS.out and len(workdirs) > 1 else FLAGS.out)
    results.append(evaluate_workdir(workdir, out_dir=out, beyond=FLAGS.beyond,
                                    with_baselines=FLAGS.baselines, names=names,
                                    batch_size=FLAGS.batch_size, grid=grid))
    code = results[-1]["schemes"][0]
    print(f"{workdir}: degraded top-1 {code['degraded_top1']:.4f}, agreement "
          f"{code['agreement']:.4f}, F {code['base_top1']:.4f}")
  if len(workdirs) > 1:
    out = FLAGS.out or os.path.join(workdirs[0], EVAL_DIR)
    write_table(os.path.join(out, "comparison"), comparison_rows(results),
                "Comparison across runs (test split)")
    print(f"wrote {out}/comparison.csv/.md")
  return 0


def _define_flags():
  from absl import flags
  flags.DEFINE_multi_string("workdir", None, "A trained workdir (repeat for a comparison).")
  flags.DEFINE_string("out", None, "Output folder (default: the first workdir's eval/).")
  flags.DEFINE_bool("beyond", False, "Also list patterns of more than r unavailable outputs.")
  flags.DEFINE_bool("baselines", False, "Evaluate the training-free baselines at the run's k, r.")
  flags.DEFINE_bool("baseline_sweep", False, "Sweep the baselines over --sweep_k × --sweep_r "
                    "on the first workdir's F.")
  flags.DEFINE_list("baseline_names", None, "Baselines to evaluate (default: all of "
                    "baselines.NAMES; for --baseline_sweep baselines.SWEEP_NAMES).")
  flags.DEFINE_list("sweep_k", [str(k) for k in range(2, 13)], "k values of --baseline_sweep.")
  flags.DEFINE_list("sweep_r", ["1", "2", "3"], "r values of --baseline_sweep.")
  flags.DEFINE_list("curve_plots", [], "--baseline_sweep: K:R settings whose client curves "
                    "are also plotted (unavailability_kK_rR.png), e.g. 8:1,2:1.")
  flags.DEFINE_float("sweep_tail", 1e-4, "--baseline_sweep: skip patterns of more unavailable "
                     "workers than the largest rate makes likelier than this (0: all 2^N).")
  flags.DEFINE_list("lambdas", [str(v) for v in baselines.LAMBDAS],
                    "LeTCC λ grid (λ_e × λ_d, chosen on val).")
  flags.DEFINE_list("byzantine_k", [], "Instead: ApproxIFER with Byzantine workers at these k "
                    "on the first workdir's F (N = 2k + 2A − 1 workers).")
  flags.DEFINE_list("byzantine_errors", ["1", "2", "3"], "Numbers A of Byzantine workers.")
  flags.DEFINE_list("byzantine_sigma", ["10", "100"], "Stds of the noise an adversary adds.")
  flags.DEFINE_enum("byzantine_convention", "paper", list(berrut.CONVENTIONS),
                    "Worker points: cos(iπ/N) ('paper', ApproxIFER's error scripts) or "
                    "cos(iπ/(N−1)).")
  flags.DEFINE_integer("batch_size", 0, "Groups per step (0: the run's data.eval_batch_size).")
  flags.DEFINE_integer("val_limit", 0, "Use only the first N val examples for λ (0: all).")
  flags.DEFINE_bool("verbose", False, "Log every scheme's summary (and orbax's messages).")
  flags.DEFINE_integer("test_limit", 0, "Baseline sweep: only the first N test examples "
                       "(0: all).")


def run():
  """The ``lcc-evaluate`` console script (= ``python -m lcc_jax.evaluate``)."""
  from absl import app
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
