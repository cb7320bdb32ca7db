"""Serving schemes to compare at equal workers: k data queries on N = k + r workers.

A ``Scheme`` says what the N workers return for a group of k queries (``outputs``) and how the
k predictions are rebuilt from whichever of them are available (``decoder``, a ``ModelFns``
whose ``apply(variables["decoder"], outs_BxNxC, avail_N)`` sees unavailable outputs zeroed, as
in ``coding.decode_all``). Systematic schemes send query j unchanged to worker j, so a client
gets F's own prediction whenever that worker is available and the decoder only matters for the
unavailable ones; a non-systematic scheme (ApproxIFER, LeTCC) codes every query, so all k
predictions are approximate even with every worker available (docs/upstream.md §Fair comparisons).

Baselines (all training-free, on the same frozen F):
* ``none``: no redundancy; an unavailable query gets the class prior (most frequent training
  class first, ranked by training frequency for top-5).
* ``replication``: extra worker i runs a copy of data query i mod k (round-robin); an
  unavailable query is recovered iff one of its copies is available, else the prior.
* ``berrut`` / ``approxifer`` (+ ``approxifer-paper``): Berrut rational interpolation,
  systematic (ApproxIFER's repository variant) and non-systematic with the second-kind worker
  points cos(iπ/(N−1)) (``cos(iπ/N)`` for ``-paper``), docs/upstream.md §Berrut codes.
* ``letcc`` / ``letcc-ns``: cubic smoothing splines (docs/upstream.md §LeTCC), systematic on the
  first-kind Chebyshev points and non-systematic on equispaced points; λ_e and λ_d live in the
  variables (traced), so a λ grid compiles once.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import coding, nn, registry
from lcc_jax.coders import berrut, channels, letcc

NAMES = ("none", "replication", "berrut", "approxifer", "approxifer-paper", "letcc", "letcc-ns")
# The k × r sweep leaves out the second Berrut convention (it doubles nothing new).
SWEEP_NAMES = ("none", "replication", "berrut", "approxifer", "letcc", "letcc-ns")
LETCC_NAMES = ("letcc", "letcc-ns")
# λ grid for LeTCC's λ_e × λ_d (chosen jointly on val, as NeRCC does; 0 interpolates).
LAMBDAS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


class Scheme(NamedTuple):
  """One way to serve k queries on k + r workers (see the module docstring)."""
  name: str
  systematic: bool
  # outputs(variables, x_BxKxI, y_BxKxC) -> outs_BxNxC: what the N workers return.
  outputs: Callable[..., jax.Array]
  decoder: nn.ModelFns
  variables: dict[str, Any]
  description: str = ""


def _decoder(fn) -> nn.ModelFns:
  """A fixed decoder ``fn(dec_variables, outs_BxNxC, avail_N)`` whose variables may be traced."""
  return nn.ModelFns(init=lambda rng: {},
                     apply=lambda variables, outs, avail_N, train=False: (
                         fn(variables, outs, avail_N), {}))


def _systematic_outputs(code: coding.Code):
  """F's outputs on the data, then F or F_P on the encoder's parities (coding.forward's)."""

  def outputs(variables, x_BxKxI, y_BxKxC):
    parity_BxRxI = coding.encode(code, variables, x_BxKxI)
    pout_BxRxC, _ = coding.parity_outputs(code, variables, parity_BxRxI)
    return jnp.concatenate([y_BxKxC, pout_BxRxC.astype(y_BxKxC.dtype)], axis=1)

  return outputs


def from_code(name: str, code: coding.Code, variables, description: str = "") -> Scheme:
  """A (learned or fixed) systematic code: data workers run F, parity workers F or F_P."""
  return Scheme(name, True, _systematic_outputs(code), code.decoder, variables, description)


def class_prior(labels_train: np.ndarray, num_classes: int) -> np.ndarray:
  """Scores ranking classes by training frequency (ties: lower class first), float32 (C,)."""
  counts_C = np.bincount(np.asarray(labels_train), minlength=num_classes).astype(np.float64)
  return (counts_C - np.arange(num_classes) / (2.0 * num_classes)).astype(np.float32)


def replica_slots(k: int, r: int) -> np.ndarray:
  """The data slot each extra worker copies: i mod k (round-robin)."""
  return np.arange(r) % k


def _fallback(outs_BxNxC, prior_C, k, rep_RxK, avail_N):
  """Data slot j: its own output, else the first available copy's, else the prior."""
  avail_K, avail_R = avail_N[:k], avail_N[k:]
  copies_RxK = rep_RxK * avail_R[:, None]
  count_K = jnp.sum(copies_RxK, axis=0)
  copy_BxKxC = jnp.einsum("rk,brc->bkc", copies_RxK / jnp.maximum(count_K, 1.0),
                          outs_BxNxC[:, k:], precision=jax.lax.Precision.HIGHEST)
  prior_BxKxC = jnp.broadcast_to(prior_C.astype(outs_BxNxC.dtype), copy_BxKxC.shape)
  recovered_BxKxC = jnp.where(count_K[None, :, None] > 0, copy_BxKxC, prior_BxKxC)
  return jnp.where(avail_K[None, :, None], outs_BxNxC[:, :k], recovered_BxKxC)


def replication(k: int, r: int, prior_C: np.ndarray, *, copies: bool = True) -> Scheme:
  """Replication (``copies``) or no redundancy (the r extra workers idle)."""
  slots_R = replica_slots(k, r)
  rep_RxK = np.zeros((r, k), np.float32)
  if copies:
    rep_RxK[np.arange(r), slots_R] = 1.0

  def outputs(variables, x_BxKxI, y_BxKxC):
    del variables, x_BxKxI
    # A copy of query j returns exactly F(X_j); idle workers return nothing (zeros).
    return jnp.concatenate([y_BxKxC, y_BxKxC[:, slots_R] * rep_RxK.sum(1)[None, :, None]], 1)

  decoder = _decoder(lambda v, outs, avail_N: _fallback(outs, v["prior"], k, rep_RxK, avail_N))
  if copies:
    name, text = "replication", f"extra worker i copies data query i mod k ({slots_R.tolist()})"
  else:
    name, text = "none", "no redundancy: an unavailable query gets the class prior"
  return Scheme(name, True, outputs, decoder, {"decoder": {"prior": jnp.asarray(prior_C)}},
                text)


def berrut_systematic(k, r, f: nn.ModelFns, f_variables, input_shape,
                      channel_mode="per_channel") -> Scheme:
  """ApproxIFER's systematic variant: all N points first-kind Chebyshev, the first k data."""
  code = coding.Code(
      registry.build("encoder", "berrut", k=k, r=r, input_shape=tuple(input_shape),
                     channel_mode=channel_mode),
      registry.build("decoder", "berrut", k=k, r=r), f)
  return from_code("berrut", code, {"encoder": {}, "decoder": {}, "base_model": f_variables},
                   "systematic Berrut, cheb1(k + r) points, data on the first k")


def _coded_outputs(f: nn.ModelFns, encode):
  """F on the N coded queries ``encode(variables, x_BxKxI) -> coded_BxNxI``."""

  def outputs(variables, x_BxKxI, y_BxKxC):
    del y_BxKxC
    outs_BxNxC, _ = coding.apply_per_example(f, variables["base_model"],
                                             encode(variables, x_BxKxI))
    return outs_BxNxC

  return outputs


def approxifer(k, r, f: nn.ModelFns, f_variables, convention="endpoints") -> Scheme:
  """Non-systematic Berrut (BACC/ApproxIFER): cheb1(k) data nodes, cheb2(k + r) workers."""
  n = k + r
  outputs = _coded_outputs(f, lambda v, x: berrut.nonsystematic_encode(x, n, convention))
  decoder = _decoder(lambda v, outs, avail_N: berrut.nonsystematic_decode(outs, avail_N, k,
                                                                          convention))
  name = "approxifer" if convention == "endpoints" else f"approxifer-{convention}"
  return Scheme(name, False, outputs, decoder, {"decoder": {}, "base_model": f_variables},
                f"non-systematic Berrut, worker points cheb2 {convention!r}")


def letcc_systematic(k, r, f: nn.ModelFns, f_variables, input_shape, lam_e=0.0, lam_d=0.0,
                     channel_mode="per_channel") -> Scheme:
  """Smoothing-spline parities at the last r of cheb1(k + r); λ_e, λ_d in the variables."""
  pts = letcc.systematic_points(k, r, "cheb1")

  def encode(variables, x_BxKxI):
    a_RxK = letcc.smoother_matrix(pts[:k], pts[k:], None, variables["lam_e"], x_BxKxI.dtype)
    return channels.mix(x_BxKxI, a_RxK, tuple(input_shape), channel_mode)

  def outputs(variables, x_BxKxI, y_BxKxC):
    pout_BxRxC, _ = coding.apply_per_example(f, variables["base_model"],
                                             encode(variables, x_BxKxI))
    return jnp.concatenate([y_BxKxC, pout_BxRxC.astype(y_BxKxC.dtype)], axis=1)

  def decode(variables, outs_BxNxC, avail_N):
    h_KxN = letcc.smoother_matrix(pts, pts[:k], avail_N, variables["lam"], outs_BxNxC.dtype)
    recon_BxKxC = berrut.apply_matrix(h_KxN, outs_BxNxC)
    return jnp.where(avail_N[None, :k, None], outs_BxNxC[:, :k], recon_BxKxC)

  return Scheme("letcc", True, outputs, _decoder(decode),
                _lam_variables(f_variables, lam_e, lam_d),
                "systematic smoothing splines on cheb1(k + r), data on the first k")


def letcc_nonsystematic(k, r, f: nn.ModelFns, f_variables, lam_e=0.0, lam_d=0.0,
                        kind="equispaced") -> Scheme:
  """LeTCC as published: every worker gets u_enc(beta_i); equispaced alpha, beta on [−1, 1]."""
  n = k + r
  outputs = _coded_outputs(
      f, lambda v, x: letcc.nonsystematic_encode(x, n, v["lam_e"], kind))
  decoder = _decoder(lambda v, outs, avail_N: letcc.nonsystematic_decode(outs, avail_N, k,
                                                                         v["lam"], kind))
  return Scheme("letcc-ns", False, outputs, decoder, _lam_variables(f_variables, lam_e, lam_d),
                f"non-systematic smoothing splines, {kind} points")


def _lam_variables(f_variables, lam_e, lam_d) -> dict[str, Any]:
  return {"base_model": f_variables, "lam_e": jnp.float32(lam_e),
          "decoder": {"lam": jnp.float32(lam_d)}}


def with_lambdas(scheme: Scheme, lam_e: float, lam_d: float) -> Scheme:
  """The same LeTCC scheme (same functions, so no recompilation) with other λ_e, λ_d."""
  variables = _lam_variables(scheme.variables["base_model"], lam_e, lam_d)
  return scheme._replace(variables=variables)


def lambdas(scheme: Scheme) -> tuple[float, float]:
  """(λ_e, λ_d), printed as the grid gave them (float32's shortest repr, not 0.0010000000474)."""
  return tuple(float(str(np.float32(v))) for v in (scheme.variables["lam_e"],
                                                   scheme.variables["decoder"]["lam"]))


def build(name: str, k: int, r: int, f: nn.ModelFns, f_variables, input_shape, prior_C,
          channel_mode="per_channel") -> Scheme:
  """The baseline ``name`` (one of NAMES) for k data queries on k + r workers."""
  if name == "none":
    return replication(k, r, prior_C, copies=False)
  if name == "replication":
    return replication(k, r, prior_C)
  if name == "berrut":
    return berrut_systematic(k, r, f, f_variables, input_shape, channel_mode)
  if name == "approxifer":
    return approxifer(k, r, f, f_variables, "endpoints")
  if name == "approxifer-paper":
    return approxifer(k, r, f, f_variables, "paper")
  if name == "letcc":
    return letcc_systematic(k, r, f, f_variables, input_shape, channel_mode=channel_mode)
  if name == "letcc-ns":
    return letcc_nonsystematic(k, r, f, f_variables)
  raise ValueError(f"unknown baseline {name!r}; known: {list(NAMES)}")
