"""Erasure sweep: every pattern of a 10,000-image test set, one jitted pass vs a pattern loop.

One pass: ``steps.jit_eval_step`` with all P patterns per batch (encoder and F once, the
decoder vmapped over patterns). Loop: the same jitted step called with one pattern at a time,
test set after test set, as a sweep without the vmap would run. Every loop iteration does the
same work, so the loop is timed over ``loop_patterns`` of the P patterns and scaled by P (both
numbers are in the table). MLP code on MNIST-shaped synthetic data, F = base-mlp.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import erasure, steps

from bench import cases

TEST_SIZE = 10_000
BATCH = 250  # groups per evaluation batch; divides 10,000 / k for k = 4 and 8
SETTINGS = ((4, 2), (8, 3))


class Sweep:
  """The test set in fixed consecutive groups and the jitted evaluation step."""

  def __init__(self, k: int, r: int):
    self.code, variables = cases.build_code("mlp", k, r)
    self.data = cases.synthetic_data(self.code, variables, TEST_SIZE, seed=7)
    self.unavail = erasure.patterns(k, r)
    groups = TEST_SIZE // k
    idx = np.arange(groups * k, dtype=np.int32).reshape(groups, k)
    pad = -groups % BATCH
    idx = np.concatenate([idx, np.zeros((pad, k), np.int32)])
    weight = np.concatenate([np.ones(groups), np.zeros(pad)]).astype(np.float32)
    self.batches = [(jnp.asarray(idx[i:i + BATCH]), jnp.asarray(weight[i:i + BATCH]))
                    for i in range(0, len(idx), BATCH)]
    self.params = {n: variables[n]["params"] for n in ("encoder", "decoder")}
    self.frozen = {"base_model": variables["base_model"]}
    self.eval_step = steps.jit_eval_step(self.code, "kl")

  def _pass(self, unavail_PxN) -> list:
    return [self.eval_step(self.params, {}, self.frozen, self.data, idx, weight, unavail_PxN)
            for idx, weight in self.batches]

  def compile(self) -> None:
    """Compiles the step for all patterns and for one, on one batch (outside the timings)."""
    idx, weight = self.batches[0]
    for unavail in (self.unavail, self.unavail[:1]):
      jax.block_until_ready(self.eval_step(self.params, {}, self.frozen, self.data, idx, weight,
                                           jnp.asarray(unavail)))

  def one_pass(self) -> None:
    jax.block_until_ready(self._pass(jnp.asarray(self.unavail)))

  def loop(self, num_patterns: int) -> None:
    out = [self._pass(jnp.asarray(self.unavail[p:p + 1])) for p in range(num_patterns)]
    jax.block_until_ready(out)


def _median_seconds(fn, repeats: int) -> tuple[float, float, float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times)), min(times), max(times)


def run(quick: bool) -> tuple[list[dict], dict]:
  rows, headline = [], {}
  for k, r in SETTINGS:
    sweep = Sweep(k, r)
    num = len(sweep.unavail)
    loop_patterns = min(num, 1 if quick else 6)
    sweep.compile()
    repeats, loop_repeats = (2, 1) if quick else (5, 5)
    one, one_lo, one_hi = _median_seconds(sweep.one_pass, repeats)
    loop, loop_lo, loop_hi = _median_seconds(lambda: sweep.loop(loop_patterns), loop_repeats)
    per_pattern = loop / loop_patterns
    bench = f"erasure sweep: k={k} r={r} ({num} patterns), {TEST_SIZE} test images"
    rows.append({"bench": bench, "impl": "one jitted pass / batch", "median_s": one,
                 "min_s": one_lo, "max_s": one_hi, "repeats": repeats})
    rows.append({"bench": bench,
                 "impl": f"pattern loop ({loop_patterns} timed, ×{num / loop_patterns:.1f})",
                 "median_s": per_pattern * num, "min_s": loop_lo / loop_patterns * num,
                 "max_s": loop_hi / loop_patterns * num, "repeats": loop_repeats,
                 "ratio": per_pattern * num / one, "ratio_label": "loop time / one pass"})
    headline[f"sweep_speedup_vs_loop_k{k}r{r}"] = per_pattern * num / one
  return rows, headline
