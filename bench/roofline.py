"""The MLP k = 2 train step against this machine's own limits, measured in the same run.

Peak: the best float32 matmul rate XLA reaches here over a few shapes (large squares and the
step's own layer shapes). Bandwidth: the best of a numpy copy and a jitted, donated
``x·a + b`` over 256 MB (bytes read + written per second). The step's FLOPs are XLA's count
of the compiled step; its minimum bytes are counted by hand: every trainable parameter and
its two Adam moments read and written once (24 B per parameter), plus F's parameters and the
batch read once. Bound = max(FLOPs / peak, bytes / bandwidth); fraction = bound / measured.

On one thread every time here (peak, bandwidth, step) is process CPU time: on a shared machine
that is the time the work actually ran on its core, where wall time adds the slices other
processes took. With more threads CPU time sums over threads, so wall-clock times are used.
The step's wall-clock fractions are in the results too.
"""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lcc_jax import steps

from bench import cases, common

# (M, K, N): a large square, then the MLP k = 2 step's encoder layers at batch 64 (forward).
MATMUL_SHAPES = ((2048, 2048, 2048), (64, 1568, 1568), (64, 1568, 784))
STREAM_BYTES = 256 * 2**20


def _clock():
  """Process CPU time on one thread (the time actually run, see the docstring), else wall."""
  return time.process_time if len(os.sched_getaffinity(0)) == 1 else time.perf_counter


def _best_seconds(fn, repeats: int) -> float:
  clock = _clock()
  fn()
  best = float("inf")
  for _ in range(repeats):
    start = clock()
    fn()
    best = min(best, clock() - start)
  return best


def matmul_rates(repeats: int) -> dict[str, float]:
  """GFLOP/s of a jitted float32 matmul per shape (best of ``repeats``)."""
  rates = {}
  for m, k, n in MATMUL_SHAPES:
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
    inner = max(1, int(2e8 // (m * k * n)))  # small products: several per timing
    matmul = jax.jit(lambda a, b: a @ b)

    def run(a=a, b=b, inner=inner, matmul=matmul):
      for _ in range(inner):
        out = matmul(a, b)
      out.block_until_ready()

    rates[f"{m}x{k}x{n}"] = 2.0 * m * k * n * inner / _best_seconds(run, repeats) / 1e9
  return rates


def bandwidths(repeats: int) -> dict[str, float]:
  """GB/s (read + write) of a numpy copy and of a jitted streaming update, 256 MB each."""
  n = STREAM_BYTES // 4
  src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
  out = {"numpy_copy": 2 * STREAM_BYTES / _best_seconds(lambda: np.copyto(dst, src), repeats)}
  axpy = jax.jit(lambda x: x * 1.000001 + 1e-7, donate_argnums=0)
  box = [jnp.ones(n, jnp.float32)]

  def run():
    box[0] = axpy(box[0])
    box[0].block_until_ready()

  out["xla_axpy"] = 2 * STREAM_BYTES / _best_seconds(run, repeats) / 1e9
  out["numpy_copy"] /= 1e9
  return out


def step_min_bytes(loop: cases.TrainLoop) -> float:
  """Bytes any implementation must move per step (see the module docstring)."""
  frozen = sum(leaf.size for leaf in jax.tree.leaves(loop.frozen["base_model"]))
  batch = loop.idx[0].size * int(np.prod(loop.data["x"].shape[1:]))
  return 4.0 * (6 * loop.trainable_size() + frozen + batch)


def phases(loop: cases.TrainLoop, repeats: int, calls: int) -> dict[str, common.Timing]:
  """The step's two halves jitted apart: loss + gradients, and the optimizer update (donated)."""
  state, frozen, data, idx, weight, unavail = loop.args()

  def objective(params):
    x, y, labels = steps.gather(data, idx)
    variables = steps.all_variables(params, state.model_state, frozen)
    return steps.batch_loss(loop.code, variables, x, y, labels, weight, unavail, loss="kl",
                            train=False)[0]

  grad_fn = jax.jit(jax.value_and_grad(objective))
  grads = grad_fn(state.params)[1]

  def update(params, opt_state):
    updates, opt_state = loop.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  update_fn = jax.jit(update, donate_argnums=(0, 1))
  box = [jax.tree.map(jnp.copy, state.params), jax.tree.map(jnp.copy, state.opt_state)]

  def run_grad(n):
    for _ in range(n):
      out = grad_fn(state.params)
    jax.block_until_ready(out)

  def run_update(n):
    for _ in range(n):
      box[0], box[1] = update_fn(box[0], box[1])
    jax.block_until_ready(box)

  return common.alternate({"loss + gradients": run_grad, "optimizer update": run_update},
                          repeats, calls)


def run(quick: bool) -> tuple[list[dict], dict]:
  repeats = 3 if quick else 9
  peak_by_shape = matmul_rates(repeats)
  bw_by_kind = bandwidths(repeats)
  peak, bandwidth = max(peak_by_shape.values()), max(bw_by_kind.values())
  loop = cases.TrainLoop("mlp", 2, 1, 64)
  cost = loop.cost()
  min_bytes = step_min_bytes(loop)
  timing = common.alternate({"step": loop}, *((4, 4) if quick else (11, 10)))["step"]
  compute_s, memory_s = cost["flops"] / (peak * 1e9), min_bytes / (bandwidth * 1e9)
  bound = max(compute_s, memory_s)
  one_thread = len(os.sched_getaffinity(0)) == 1
  measured = timing.cpu_median if one_thread else timing.median
  fraction = bound / measured
  rows = [{"bench": "roofline: MLP k=2 step (B=64)", "impl": "lcc_jax", **timing.as_dict(),
           "ratio": fraction,
           "ratio_label": "bound / step " + ("CPU time" if one_thread else "wall time")}]
  for name, part in phases(loop, *((3, 3) if quick else (11, 10))).items():
    rows.append({"bench": "roofline: MLP k=2 step (B=64)", "impl": f"  of which {name}",
                 **part.as_dict()})
  details = {
      "matmul_gflops": peak_by_shape, "bandwidth_gbs": bw_by_kind,
      "peak_gflops": peak, "bandwidth_best_gbs": bandwidth,
      "step_flops_xla": cost["flops"], "step_bytes_xla": cost["bytes"],
      "step_min_bytes": min_bytes, "compute_bound_s": compute_s, "memory_bound_s": memory_s,
      "bound_s": bound, "step_measured_s": measured, "step_measured_is": (
          "process CPU time" if one_thread else "wall time"),
      "step_median_s": timing.median, "step_cpu_median_s": timing.cpu_median,
      "step_min_s": min(timing.wall), "fraction_of_wall_median": bound / timing.median,
      "fraction_of_min_wall": bound / min(timing.wall),
      # Compute and the optimizer's memory traffic do not overlap in one step, so the sum of
      # both is a tighter lower bound; reported beside the max the target is defined on.
      "fraction_of_sum_bound": (compute_s + memory_s) / measured,
  }
  return rows, {"roofline_fraction_mlp_k2": fraction, "roofline": details}
