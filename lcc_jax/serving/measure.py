"""Service times measured on this machine: the run's own jitted F, F_P, encoder and decoder.

Each function is jitted, called at batch 1 until compiled and warm, then timed call by call
(to ``block_until_ready``); the simulator resamples these times (``service.Empirical``).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import assembly, coding, registry
from lcc_jax.coders import berrut, letcc
from lcc_jax.serving import service

WARMUP = 20


def times_ms(fn, *args, reps: int = 200) -> service.Empirical:
  for _ in range(WARMUP):
    jax.block_until_ready(fn(*args))
  samples = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    samples.append((time.perf_counter() - start) * 1e3)
  return service.Empirical(tuple(samples))


def _coders(run: assembly.Run, code_name: str, k: int, r: int, sweep):
  """(encode(x_1xKxI), decode(outs_1xNxC, avail_N)) of the evaluated code ``code_name``."""
  n, shape = k + r, tuple(run.dataset.input_shape)
  if code_name == "code":
    code, v = run.code, run.variables
    return (lambda x: coding.encode(code, v, x),
            lambda outs, avail: code.decoder.apply(v["decoder"], outs, avail)[0])
  if code_name == "berrut":
    enc = registry.build("encoder", "berrut", k=k, r=r, input_shape=shape,
                         channel_mode=run.config.channel_mode)
    dec = registry.build("decoder", "berrut", k=k, r=r)
    return lambda x: enc.apply({}, x)[0], lambda outs, avail: dec.apply({}, outs, avail)[0]
  if code_name == "approxifer":
    return (lambda x: berrut.nonsystematic_encode(x, n),
            lambda outs, avail: berrut.nonsystematic_decode(outs, avail, k))
  if code_name == "letcc-ns":
    lam_e, lam_d = sweep.info["lam_e"], sweep.info["lam_d"]
    return (lambda x: letcc.nonsystematic_encode(x, n, lam_e),
            lambda outs, avail: letcc.nonsystematic_decode(outs, avail, k, lam_d))
  raise ValueError(f"no coders to time for {code_name!r}")


def model(run: assembly.Run, *, reps: int) -> service.Empirical:
  """F on one query: measured once per run, so every scheme sees the same F."""
  f = jax.jit(lambda x: run.base_fns.apply(run.base_variables, x)[0])
  return times_ms(f, jnp.asarray(run.dataset.x_test[:1]), reps=reps)


def timings(run: assembly.Run, f_ms: service.Empirical, code_name: str, k: int, r: int,
            sweep=None, *, reps: int) -> service.Timings:
  """F (``f_ms``), the network on a parity (F_P or F), the code's encoder and decoder."""
  if code_name == "F":
    none = service.ShiftedExp(0.0, 0.0)
    return service.Timings(f_ms, f_ms, none, none)
  x_1xKxI = jnp.asarray(run.dataset.x_test[:k][None])
  parity = f_ms
  if code_name == "code" and run.code.parity_model is not None:
    fp = jax.jit(lambda x: run.code.parity_model.apply(run.variables["parity_model"], x)[0])
    parity = times_ms(fp, x_1xKxI[:, 0], reps=reps)
  encode, decode = _coders(run, code_name, k, r, sweep)
  shape = (1, k + r, run.dataset.num_classes)
  outs_1xNxC = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  avail_N = jnp.asarray(np.arange(k + r) != 0)  # slot 0 missing: the decoder has work
  return service.Timings(f_ms, parity, times_ms(jax.jit(encode), x_1xKxI, reps=reps),
                         times_ms(jax.jit(decode), outs_1xNxC, avail_N, reps=reps))
