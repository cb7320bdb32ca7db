"""What each answer is worth: accuracy tables from lcc_jax.evaluation's per-pattern counts.

The simulator asks, for a decoded answer, the accuracy under the set of outputs that had not
come back when the decoder started (always r of the k + r). These come from the run's test
split through the evaluation's exact sweeps: for a systematic code the degraded top-1 of the
pattern (over its unavailable data slots), for a non-systematic one the top-1 over all k
queries. An answer from a query's own output is worth F's accuracy.
"""
from __future__ import annotations

import numpy as np

from lcc_jax import assembly
from lcc_jax.evaluation import accuracy as evaluation_accuracy
from lcc_jax.evaluation import schemes as evaluation_schemes
from lcc_jax.serving import schemes as schemes_lib
from lcc_jax.serving import simulate

# The code behind ``coded`` when the run has none at this (k, r): systematic Berrut on its F.
STAND_IN = "berrut"


def from_sweep(sweep: evaluation_accuracy.Sweep) -> simulate.Answers:
  values_P = sweep.rate("degraded_top1") if sweep.systematic else sweep.client_P()
  decoded = {tuple(int(s) for s in np.flatnonzero(u)): float(v)
             for u, v in zip(sweep.unavail_PxN, values_P)}
  return simulate.Answers(sweep.base_accuracy, decoded)


def code_name(run: assembly.Run, name: str, k: int, r: int) -> str:
  """The evaluated scheme behind a serving scheme: the run's code, a baseline, or F alone."""
  if name == "coded":
    return "code" if (k, r) == (run.k, run.r) else STAND_IN
  return name if name in schemes_lib.NONSYSTEMATIC else "F"


def tables(run: assembly.Run, names, k: int, r: int, *, batch_size: int = 0):
  """{evaluated name: (Answers, Sweep)} for every code the schemes ``names`` need at (k, r)."""
  batch_size = batch_size or int(run.config.data.eval_batch_size)
  wanted = {code_name(run, n, k, r) for n in names}
  test_idx = np.arange(len(run.dataset.x_test))
  sweeps = {}
  if "code" in wanted:
    sweeps["code"] = evaluation_schemes.evaluate_scheme(evaluation_schemes.code_scheme(run),
                                                        run.test_arrays(), test_idx, k, r,
                                                        batch_size=batch_size)
  baselines = [n for n in ("none", STAND_IN, *schemes_lib.NONSYSTEMATIC)
               if n in wanted or (n == "none" and "F" in wanted)]
  sweeps.update(zip(baselines, evaluation_schemes.run_baselines(run, k, r, baselines,
                                                                batch_size=batch_size)))
  if "F" in wanted:  # F's own outputs only: any systematic sweep's base accuracy
    sweeps["F"] = sweeps["none"]
  return {name: (from_sweep(sweep), sweep) for name, sweep in sweeps.items()}
