"""Issue 2: a train step over all C(k+r, r) − 1 erasure patterns costs about one pattern's.

MNIST-sized MLP code (D = 784, base-mlp F, batch 32), (k, r) = (4, 2): 14 patterns against
the first one alone, same jitted step otherwise. Only the small decoder is vmapped over the
patterns; the encoder and F run once either way.
"""
from __future__ import annotations

from lcc_jax import erasure

from bench import cases, common

K, R, BATCH = 4, 2, 32


def run(quick: bool) -> tuple[list[dict], dict]:
  unavail_PxN = erasure.patterns(K, R)
  runs = {f"all {len(unavail_PxN)} patterns": cases.TrainLoop("mlp", K, R, BATCH, unavail_PxN),
          "1 pattern": cases.TrainLoop("mlp", K, R, BATCH, unavail_PxN[:1])}
  repeats, calls = (4, 2) if quick else (11, 8)
  timings = common.alternate(runs, repeats, calls)
  all_t, one_t = timings.values()
  ratio = all_t.median / one_t.median
  rows = [{"bench": f"issue 2: train step, k={K} r={R} MLP code, B={BATCH}", "impl": impl,
           **t.as_dict(), "ratio": t.median / one_t.median, "ratio_label": "time / 1-pattern time"}
          for impl, t in timings.items()]
  return rows, {"all_vs_one_pattern_step_k4r2": ratio}
