"""The schemes an evaluation sweeps: the run's learned code, the training-free baselines
(LeTCC's λ tuned on val), each evaluated over every client pattern."""
from __future__ import annotations

import itertools
import logging
from typing import Sequence

import numpy as np

from lcc_jax import assembly, baselines, erasure
from lcc_jax.evaluation import accuracy, counting, patterns

log = logging.getLogger(__name__)


def evaluate_scheme(scheme: baselines.Scheme, arrays: dict[str, np.ndarray], indices, k: int,
                    r: int, *, batch_size: int, max_unavailable: int | None = None,
                    info=None) -> accuracy.Sweep:
  """Counts of ``scheme`` over every client pattern (up to ``max_unavailable``) on one split.

  ``arrays`` holds host ``x``, ``y`` (F's outputs) and ``labels`` of the split's dataset.
  """
  unavail_PxN = patterns.client_patterns(k, r, scheme.systematic, max_unavailable)
  device = counting.device_data(arrays["x"], arrays["y"], arrays["labels"])
  totals = counting.pattern_totals(scheme, device, indices, k, unavail_PxN,
                                   batch_size=batch_size)
  hits_K, groups = accuracy.slot_hits(arrays["y"], arrays["labels"], indices, k)
  return accuracy.Sweep(scheme.name, scheme.systematic, k, r, np.asarray(unavail_PxN), totals,
                        hits_K, groups, dict(info or {}))


def tune_letcc(scheme: baselines.Scheme, arrays, indices, k: int, r: int, *, batch_size: int,
               grid: Sequence[float] = baselines.LAMBDAS) -> tuple[baselines.Scheme, list]:
  """λ_e, λ_d maximising the exactly-r degraded top-1 on ``indices`` (val), jointly on a grid.

  Ties keep the first (smallest λ) in grid order. Returns (tuned scheme, [(λ_e, λ_d, top-1)]).
  """
  unavail_PxN = erasure.patterns(k, r) if scheme.systematic else patterns.subsets(k + r, [r])
  device = counting.device_data(arrays["x"], arrays["y"], arrays["labels"])
  chunk = counting.auto_chunk(len(unavail_PxN), batch_size, k, arrays["y"].shape[-1])
  counts_fn = counting.make_counts_fn(scheme, chunk)
  scores = []
  for lam_e, lam_d in itertools.product(grid, grid):
    candidate = baselines.with_lambdas(scheme, lam_e, lam_d)
    totals = counting.pattern_totals(candidate, device, indices, k, unavail_PxN,
                                     batch_size=batch_size, counts_fn=counts_fn)
    scores.append((lam_e, lam_d, float(totals["degraded_top1"].sum() / totals["n"].sum())))
  best = max(scores, key=lambda s: s[2])  # max keeps the first of equal scores
  return baselines.with_lambdas(scheme, best[0], best[1]), scores


def code_scheme(run: assembly.Run, name: str = "code") -> baselines.Scheme:
  c = run.config
  return baselines.from_code(name, run.code, run.variables,
                             f"{c.encoder.name}/{c.decoder.name}, {c.loss}, checkpoint of "
                             f"epoch {run.checkpoint_epoch}")


def run_baselines(run: assembly.Run, k: int, r: int, names: Sequence[str], *, batch_size: int,
                  grid: Sequence[float] = baselines.LAMBDAS, val_limit: int = 0,
                  test_limit: int = 0,
                  max_unavailable: int | None = None) -> list[accuracy.Sweep]:
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
