"""Berrut rational interpolation codes (BACC / ApproxIFER; docs/upstream.md §Berrut codes):
training-free, any r.

Berrut's interpolant through nodes z_n with values v_n is
r(x) = Σ_n s_n v_n/(x − z_n) / Σ_n s_n/(x − z_n), s_n = ±1 alternating in the nodes' value
order. It interpolates, has no real poles and is linear in the values, so encoding and decoding
are fixed matrices applied pixel-wise / logit-wise. It reproduces constants (not linear
functions).

Pure functions (jit/vmap-able; masks select the available nodes with static shapes):
``cheb1``, ``cheb2``, ``berrut_weights``, ``encoding_matrix``, ``decoding_matrix``, the
non-systematic code of ApproxIFER (``nonsystematic_encode``/``nonsystematic_decode``) and the
Byzantine error locator (``locate_errors``). Registered as ``berrut``: the systematic variant in
our (k data + r parity) layout (ApproxIFER's repository, ``WorkStation_MNIST_Systematic.py``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import nn, registry
from lcc_jax.coders import channels

CONVENTIONS = ("endpoints", "paper")
_HI = jax.lax.Precision.HIGHEST


def cheb1(k: int) -> np.ndarray:
  """First-kind Chebyshev points cos((2j+1)π/(2k)), j = 0..k−1 (ApproxIFER's data nodes)."""
  return np.cos((2 * np.arange(k) + 1) * np.pi / (2 * k))


def cheb2(n: int, convention: str = "endpoints") -> np.ndarray:
  """Worker points: cos(iπ/(n−1)) ("endpoints", BACC's ±1-inclusive set; default) or
  cos(iπ/n) ("paper", the set behind ApproxIFER's published accuracy figures), i = 0..n−1."""
  if convention == "endpoints":
    if n < 2:
      raise ValueError(f"the 'endpoints' convention needs n >= 2 points, got n={n}")
    return np.cos(np.arange(n) * np.pi / (n - 1))
  if convention == "paper":
    return np.cos(np.arange(n) * np.pi / n)
  raise ValueError(f"unknown Chebyshev convention {convention!r}; known: {list(CONVENTIONS)}")


@functools.partial(jax.jit, static_argnames="dtype")
def berrut_weights(x_eval_E, nodes_N, avail_N=None, dtype=None) -> jax.Array:
  """(E, N) matrix W with r(x_e) = Σ_n W[e, n]·v_n, through the available nodes only.

  Signs alternate over each node's position among the *available* nodes in value order, so any
  node order gives the same interpolant. An evaluation point on an available node gets that
  node's unit vector (the limit) instead of a division by zero; unavailable nodes get weight 0;
  a row with no available node is all zeros.
  """
  dtype = dtype or jnp.result_type(float)
  x_E = jnp.asarray(x_eval_E, dtype)
  nodes_N = jnp.asarray(nodes_N, dtype)
  avail_N = jnp.ones(nodes_N.shape, bool) if avail_N is None else jnp.asarray(avail_N, bool)
  rank_N = jnp.sum(avail_N[None, :] & (nodes_N[None, :] < nodes_N[:, None]), axis=1)
  sign_N = jnp.where(rank_N % 2 == 0, 1.0, -1.0).astype(dtype)
  diff_ExN = x_E[:, None] - nodes_N[None, :]
  # Chebyshev sets built with different formulas can coincide up to rounding (docs/upstream.md
  # §Berrut encoding).
  hit_ExN = avail_N[None, :] & (jnp.abs(diff_ExN) <= 4 * jnp.finfo(dtype).eps)
  s_ExN = jnp.where(avail_N[None, :], sign_N[None, :] / jnp.where(hit_ExN, 1.0, diff_ExN), 0.0)
  total_E = jnp.sum(s_ExN, axis=1, keepdims=True)
  w_ExN = s_ExN / jnp.where(total_E == 0, 1.0, total_E)
  hits_E = jnp.sum(hit_ExN, axis=1, keepdims=True)
  unit_ExN = hit_ExN / jnp.maximum(hits_E, 1).astype(dtype)
  return jnp.where(hits_E > 0, unit_ExN, w_ExN)


def encoding_matrix(alpha_K, beta_N, dtype=None) -> jax.Array:
  """E (N, K): coded query i is u(beta_i) = Σ_j E[i, j]·X_j."""
  return berrut_weights(beta_N, alpha_K, dtype=dtype)


def decoding_matrix(beta_N, alpha_K, avail_N, dtype=None) -> jax.Array:
  """D (K, N): estimate of F(X_j) = Σ_i D[j, i]·Y_i over the available workers."""
  return berrut_weights(alpha_K, beta_N, avail_N, dtype=dtype)


def apply_matrix(m_OxI, v_BxIx) -> jax.Array:
  """(B, I, ...) → (B, O, ...): the matrix applied along axis 1 (pixel- or logit-wise)."""
  v_BxIxF = v_BxIx.reshape(v_BxIx.shape[:2] + (-1,))
  out = jnp.einsum("oi,bif->bof", jnp.asarray(m_OxI, v_BxIx.dtype), v_BxIxF, precision=_HI)
  return out.reshape((v_BxIx.shape[0], m_OxI.shape[0]) + v_BxIx.shape[2:])


def nonsystematic_encode(x_BxKxI, n: int, convention: str = "endpoints") -> jax.Array:
  """ApproxIFER's encoder: N coded queries X~_i = u(beta_i) from K queries at cheb1 nodes."""
  k = x_BxKxI.shape[1]
  return apply_matrix(encoding_matrix(cheb1(k), cheb2(n, convention), x_BxKxI.dtype), x_BxKxI)


def nonsystematic_decode(outs_BxNxC, avail_N, k: int, convention: str = "endpoints"):
  """ApproxIFER's decoder: all K estimates from the available outputs (others are ignored)."""
  n = outs_BxNxC.shape[1]
  d_KxN = decoding_matrix(cheb2(n, convention), cheb1(k), avail_N, outs_BxNxC.dtype)
  return apply_matrix(d_KxN, outs_BxNxC)


def locate_errors(outs_NxC, avail_N, points_N, k: int, num_errors: int) -> jax.Array:
  """Byzantine locator (docs/upstream.md §Byzantine decoding): bool (N,) marking the ``num_errors``
  suspect workers.

  Per output coordinate c, fits P(z) = y·Q(z) over the available points with
  deg P = deg Q = m − 1, m = k + num_errors, Q's constant Chebyshev coefficient fixed to 1
  (least squares in the Chebyshev basis, better conditioned than monomials). The available
  points with the smallest |Q| are that coordinate's suspects; the ``num_errors`` workers
  suspected by most coordinates win (ties: lower index). Needs at least 2m − 1 available
  outputs to locate reliably (N = 2K + 2A + S − 1 in ApproxIFER).
  """
  m = k + num_errors
  cheb_NxM = np.polynomial.chebyshev.chebvander(np.asarray(points_N, np.float64), m - 1)
  return _locate(outs_NxC, jnp.asarray(avail_N, bool), jnp.asarray(cheb_NxM, outs_NxC.dtype),
                 num_errors)


@functools.partial(jax.jit, static_argnames="num_errors")
def _locate(outs_NxC, avail_N, cheb_NxM, num_errors):
  m = cheb_NxM.shape[1]
  y_CxN = outs_NxC.T
  # Unknowns [p_0..p_{m-1}, q_1..q_{m-1}]: Σ p_t T_t(z_i) − y_i Σ_{t≥1} q_t T_t(z_i) = y_i.
  lhs_CxNxU = jnp.concatenate(
      [jnp.broadcast_to(cheb_NxM, y_CxN.shape + (m,)), -y_CxN[..., None] * cheb_NxM[:, 1:]],
      axis=-1) * avail_N[:, None]
  coef_CxU = jnp.einsum("cun,cn->cu", jnp.linalg.pinv(lhs_CxNxU), y_CxN * avail_N, precision=_HI)
  q_CxN = 1.0 + jnp.einsum("nt,ct->cn", cheb_NxM[:, 1:], coef_CxU[:, m:], precision=_HI)
  score_CxN = jnp.where(avail_N, jnp.abs(q_CxN), jnp.inf)
  _, suspects_CxA = jax.lax.top_k(-score_CxN, num_errors)
  votes_N = jnp.zeros(avail_N.shape, jnp.int32).at[suspects_CxA.reshape(-1)].add(1)
  _, chosen_A = jax.lax.top_k(votes_N, num_errors)
  return jnp.zeros(avail_N.shape, bool).at[chosen_A].set(True)


def systematic_points(k: int, r: int) -> np.ndarray:
  """All N = k + r points are cheb1(N); the first k are the data nodes, the rest parities."""
  return cheb1(k + r)


@registry.register("encoder", "berrut")
def berrut_encoder(*, k, r, input_shape, num_classes=None, channel_mode="per_channel"):
  """Systematic Berrut: parity i = u(point_{k+i}), u interpolating the k data nodes."""
  del num_classes
  channels.check_mode(channel_mode)
  points = systematic_points(k, r)

  def encode(x_BxKxI):
    e_RxK = berrut_weights(points[k:], points[:k], dtype=x_BxKxI.dtype)
    return channels.mix(x_BxKxI, e_RxK, tuple(input_shape), channel_mode)

  return nn.from_function(encode)


@registry.register("decoder", "berrut")
def berrut_decoder(*, k, r, num_classes=None):
  """Each unavailable data slot is interpolated at its own node from all available outputs."""
  del num_classes
  points = systematic_points(k, r)

  def decode(outs_BxNxC, avail_N):
    d_KxN = berrut_weights(points[:k], points, avail_N, outs_BxNxC.dtype)
    recon_BxKxC = apply_matrix(d_KxN, outs_BxNxC)
    return jnp.where(avail_N[None, :k, None], outs_BxNxC[:, :k], recon_BxKxC)

  def parity_target(y_BxKxC):
    """The outputs' own interpolant at the parity points (what a linear F would give)."""
    return apply_matrix(berrut_weights(points[k:], points[:k], dtype=y_BxKxC.dtype), y_BxKxC)

  return nn.from_function(decode, parity_target=parity_target)
