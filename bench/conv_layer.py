"""One dilated conv-encoder layer taken apart: which part of it is slow, per implementation.

The layer is the conv encoder's typical one (k = 2: 40 → 40 channels, 3×3, dilation 2) on a
batch of 64 MNIST-sized planes. Timed, interleaved: the forward pass, the input gradient and the
kernel gradient alone (each with XLA's convolution and with fast_conv's matmuls), and the
forward + both gradients of each conv encoder implementation (`impl=` xla, matmul, hybrid).
This is what chose ``impl="hybrid"`` for CPUs (BENCHMARKS.md).
"""
from __future__ import annotations

import jax

from lcc_jax.coders import fast_conv

from bench import common

BATCH, SIZE, CHANNELS, DILATION = 64, 28, 40, 2


def _timed(fn, *args):
  """run(n): n calls of the jitted ``fn``, blocking at the end."""
  jitted = jax.jit(fn)

  def run(n):
    for _ in range(n):
      out = jitted(*args)
    jax.block_until_ready(out)

  return run


def _conv_fn(impl: str):
  if impl == "xla":
    return lambda x, w: fast_conv.xla_conv(x, w, DILATION)
  return lambda x, w: fast_conv.dilated_conv(x, w, None, DILATION, chunk=fast_conv.CPU_CHUNK,
                                             xla_forward=impl == "hybrid")


def _both_grads(conv):
  def fn(x, w, dy):
    out, vjp = jax.vjp(conv, x, w)
    return out, vjp(dy)
  return fn


def _kernel_grad(conv):
  def fn(x, w, dy):
    return jax.vjp(lambda w: conv(x, w), w)[1](dy)
  return fn


def _input_grad(conv):
  def fn(x, w, dy):
    return jax.vjp(lambda x: conv(x, w), x)[1](dy)
  return fn


def run(quick: bool) -> tuple[list[dict], dict]:
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (BATCH, SIZE, SIZE, CHANNELS))
  w = jax.random.normal(keys[1], (3, 3, CHANNELS, CHANNELS)) * 0.05
  dy = jax.random.normal(keys[2], (BATCH, SIZE, SIZE, CHANNELS))
  xla, matmul = _conv_fn("xla"), _conv_fn("matmul")
  runs = {
      "forward: XLA's conv": _timed(xla, x, w),
      "forward: matmuls over patches": _timed(matmul, x, w),
      "input gradient: XLA's conv": _timed(_input_grad(xla), x, w, dy),
      "kernel gradient: XLA's conv": _timed(_kernel_grad(xla), x, w, dy),
      "kernel gradient: matmuls over patches": _timed(_kernel_grad(matmul), x, w, dy),
  }
  for impl in ("xla", "matmul", "hybrid"):
    runs[f"forward + both gradients: impl={impl}"] = _timed(_both_grads(_conv_fn(impl)), x, w, dy)
  timings = common.alternate(runs, *((3, 2) if quick else (7, 3)), warmup=1)
  flops = 2.0 * BATCH * SIZE * SIZE * 9 * CHANNELS * CHANNELS  # one conv-sized product
  bench = f"conv layer {CHANNELS}→{CHANNELS}, d={DILATION}, B={BATCH}, 28×28"
  rows = [{"bench": bench, "impl": name, **t.as_dict(),
           "ratio": flops * (3 if name.startswith("forward +") else 1) / t.median / 1e9,
           "ratio_label": "GFLOP/s"} for name, t in timings.items()]
  return rows, {"conv_layer_ms": {name: t.median * 1e3 for name, t in timings.items()}}
