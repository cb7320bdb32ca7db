"""Erasure-pattern sweep: one pass over all patterns against a loop over patterns.

  PYTHONPATH=. .venv/bin/python bench/eval_bench.py [--repeats=3] [--out=bench/results/evaluate.md]

For (k, r) = (4, 2) and (8, 3), on 10,000 synthetic MNIST-shaped test images (base-mlp F,
random weights; the counts, not the accuracies, matter here) grouped into 500 groups per step,
every pattern of exactly r unavailable outputs (14 and 164 patterns) is evaluated by

* one pass (``counting.pattern_totals``): per batch, the encoder and F on the parities once,
  the decoder and the per-pattern counts vmapped over all patterns, one jitted call;
* the loop (``counting.pattern_totals_loop``): per pattern, the whole pass again (encoder, F on
  the parities, decoder, counts), one jitted call per batch and pattern.

Two codes: ``learned`` (learned-cc: MLP encoder, F on the parities, MLP decoder) and
``parity`` (ParM generalised: fixed MDS encoder, a base-mlp parity model F_P, MDS decoder).
Compilation is excluded (one warm-up call each). Where a loop would take too long
(``--loop_patterns``) only its first patterns are timed and the loop time is that × P / m,
which is exact up to noise because every iteration does the same work; the table says so.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import jax
import numpy as np

from lcc_jax import baselines, coding, erasure, registry
from lcc_jax.evaluation import counting

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
NUM_TEST = 10_000


def _code(kind: str, k: int, r: int):
  f = registry.build("base_model", "base-mlp", input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  # Scale upstream's N(0, 0.01) init so the logits are not all ~0 (ties would flatter nothing,
  # but realistic magnitudes keep argmax honest).
  f_vars = jax.tree.map(lambda w: 30.0 * w, f.init(keys[0]))
  if kind == "learned":
    enc = registry.build("encoder", "mlp", k=k, r=r, input_shape=INPUT_SHAPE)
    dec = registry.build("decoder", "mlp", k=k, r=r, num_classes=NUM_CLASSES)
    code = coding.Code(enc, dec, f)
    variables = {"encoder": enc.init(keys[1]), "decoder": dec.init(keys[2]), "base_model": f_vars}
  else:
    enc = registry.build("encoder", "mds", k=k, r=r, input_shape=INPUT_SHAPE)
    dec = registry.build("decoder", "mds", k=k, r=r)
    code = coding.Code(enc, dec, f, parity_model=f)
    variables = {"encoder": {}, "decoder": {}, "base_model": f_vars,
                 "parity_model": jax.tree.map(lambda w: 1.1 * w, f_vars)}
  return code, variables


def _timed(fn, warmup, repeats: int):
  """(seconds of each repeat, the last result); ``warmup`` compiles first."""
  warmup()
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return times, result


def bench(kind: str, k: int, r: int, repeats: int, loop_repeats: int, loop_patterns: int,
          batch: int = 500) -> dict:
  code, variables = _code(kind, k, r)
  scheme = baselines.from_code(kind, code, variables)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(NUM_TEST,) + INPUT_SHAPE).astype(np.float32)
  y = np.asarray(jax.jit(lambda v, x: code.base_model.apply(v, x)[0])(variables["base_model"], x))
  labels = rng.integers(0, NUM_CLASSES, NUM_TEST).astype(np.int32)
  device = counting.device_data(x, y, labels)
  indices = np.arange(NUM_TEST)
  unavail_PxN = erasure.patterns(k, r)
  p = len(unavail_PxN)
  counts_fn = counting.make_counts_fn(scheme)
  one_pass = lambda: counting.pattern_totals(scheme, device, indices, k, unavail_PxN,  # noqa
                                             batch_size=batch, counts_fn=counts_fn)
  one, a = _timed(one_pass, one_pass, repeats)
  m = min(p, loop_patterns) if loop_patterns else p
  loop = lambda patterns: counting.pattern_totals_loop(  # noqa: E731
      scheme, device, indices, k, patterns, batch_size=batch)
  times, b = _timed(lambda: loop(unavail_PxN[:m]), lambda: loop(unavail_PxN[:1]), loop_repeats)
  loop_times = [t * p / m for t in times]
  # Same counts either way (on the patterns the loop ran).
  assert all(np.array_equal(a[key][:m], b[key]) for key in a), "one pass and loop disagree"
  return {"code": kind, "k": k, "r": r, "batch": batch, "patterns": p, "one": one,
          "loop": loop_times, "loop_timed": m}


def _fmt(values) -> str:
  return (f"{statistics.median(values):.3g} s ({min(values):.3g}–{max(values):.3g}, "
          f"n={len(values)})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3, help="repeats of the one pass")
  parser.add_argument("--loop_repeats", type=int, default=2, help="repeats of the loop")
  parser.add_argument("--loop_patterns", type=int, default=0,
                      help="time only this many loop iterations of each setting (0: all)")
  parser.add_argument("--learned_loop_patterns", type=int, default=8,
                      help="the same for the learned code at (8, 3), whose loop takes ~1 h")
  parser.add_argument("--batch", type=int, default=500, help="groups per step")
  parser.add_argument("--codes", default="parity,learned")
  parser.add_argument("--out", default="bench/results/evaluate.md")
  args = parser.parse_args()
  rows = []
  for kind in args.codes.split(","):
    for k, r in ((4, 2), (8, 3)):
      limit = args.learned_loop_patterns if (kind, k) == ("learned", 8) else args.loop_patterns
      rows.append(bench(kind, k, r, args.repeats, args.loop_repeats, limit, args.batch))
      row = rows[-1]
      print(kind, k, r, _fmt(row["one"]), _fmt(row["loop"]), flush=True)
  lines = [
      "# Erasure-pattern sweep: one pass vs loop over patterns", "",
      f"Date: {datetime.date.today()}. Machine: 2-core CPU (shared with other jobs), "
      f"jax {jax.__version__}, {jax.devices()[0].platform}.",
      "Command: `PYTHONPATH=. .venv/bin/python bench/eval_bench.py "
      f"--repeats={args.repeats} --loop_repeats={args.loop_repeats} "
      f"--loop_patterns={args.loop_patterns} "
      f"--learned_loop_patterns={args.learned_loop_patterns} --batch={args.batch} "
      f"--codes={args.codes}`", "",
      f"{NUM_TEST:,} synthetic MNIST-shaped test images, {args.batch} groups per step, all "
      "patterns "
      "of exactly r unavailable outputs; seconds per full sweep of the test split, median "
      "(min–max, repeats); compilation excluded.", "",
      "| code | k | r | patterns | one pass | loop over patterns | speed-up (medians) |",
      "|---|---|---|---|---|---|---|"]
  for row in rows:
    note = (f" (timed {row['loop_timed']} of {row['patterns']} patterns, × {row['patterns']}"
            f"/{row['loop_timed']})" if row["loop_timed"] < row["patterns"] else "")
    speedup = statistics.median(row["loop"]) / statistics.median(row["one"])
    lines.append(f"| {row['code']} | {row['k']} | {row['r']} | {row['patterns']} | "
                 f"{_fmt(row['one'])} | {_fmt(row['loop'])}{note} | {speedup:.1f}× |")
  lines += ["", "parity: fixed MDS encoder, base-mlp parity model F_P, MDS decoder. learned: "
            "learned-cc's MLP encoder (k·784 → k·784 → r·784), F on the parities, MLP decoder."]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    f.write("\n".join(lines) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
