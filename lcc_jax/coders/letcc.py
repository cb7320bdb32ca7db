"""LeTCC smoothing-spline codes (Moradi, Tahmasebi, Maddah-Ali, NeurIPS 2024; docs/upstream.md
§LeTCC).

Encoder and decoder are cubic smoothing splines, fitted coordinate-wise with a shared λ:
u = argmin (1/n_eff)·Σ_i w_i (u(t_i) − v_i)² + λ∫u''(t)² dt, with nodes on [−1, 1] mapped to
t = (x + 1)/2 ∈ [0, 1] and n_eff = Σ_i w_i. Each fit is therefore one linear smoother matrix.
λ → 0 gives the natural cubic interpolating spline, λ → ∞ the weighted least-squares line. With
fewer than 2 available nodes the fit falls back to the constant through the one node (or zeros).

How the matrix is computed. docs/upstream.md §LeTCC writes the fit with the kernel R(s, t) =
min²(3·max − min)/6 as an (n+2)×(n+2) system; that system is ill-conditioned (float32 errors of
0.4 at 25 Chebyshev nodes). We solve the same minimisation in Green & Silverman's value /
second-derivative form, a well-conditioned (2n−2)×(2n−2) system (float32 errors ~1e-5 at 25
nodes): over the sorted nodes, f = values, γ = second derivatives at the interior nodes,

  [[W, D·Q], [Qᵀ, −R]]·[f; γ] = [W v; 0],   D_ii = n_eff·λ if w_i > 0 else 1,

Q (n×(n−2)) the second-difference matrix, R ((n−2)×(n−2)) tridiagonal, so Qᵀf = Rγ and the
penalty is γᵀRγ. An available row reads w_i(f_i − v_i) + n_eff·λ·(Qγ)_i = 0 (the normal
equations); a masked row (Qγ)_i = 0 leaves f_i free to follow the spline, which also makes
λ = 0 solvable. Masks keep static shapes under jit/vmap; node positions are static (numpy).
The tests check the result against the kernel form in float64 and against scipy.

Pure functions: ``smoother_matrix``, ``point_sets``, ``nonsystematic_encode``/``_decode``
(the paper's scheme: N coded inputs from K data nodes, K estimates from the available workers).
Registered as ``letcc``: a systematic variant in our layout, the same as ``berrut``'s (all
N = k + r points first-kind Chebyshev or equispaced, the first k are the data nodes).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import nn, registry
from lcc_jax.coders import berrut, channels

POINT_SETS = ("equispaced", "chebyshev")
SYSTEMATIC_POINTS = ("cheb1", "equispaced")
_HI = jax.lax.Precision.HIGHEST


def _spline_parts(x_N: np.ndarray, e_E: np.ndarray):
  """Static float64 pieces for sorted distinct nodes x (in t units) and evaluation points e.

  Returns Q (N, N−2), R (N−2, N−2) and the evaluation map (E, 2N−2) from [f; γ] to values:
  inside [x_i, x_{i+1}], u = a f_i + b f_{i+1} + ((a³−a)γ_i + (b³−b)γ_{i+1})h²/6; outside the
  nodes the natural spline continues as a straight line.
  """
  n, h = len(x_N), np.diff(x_N)
  q = np.zeros((n, n - 2))
  r = np.zeros((n - 2, n - 2))
  for j in range(n - 2):
    q[j:j + 3, j] = 1 / h[j], -1 / h[j] - 1 / h[j + 1], 1 / h[j + 1]
    r[j, j] = (h[j] + h[j + 1]) / 3
    if j + 1 < n - 2:
      r[j, j + 1] = r[j + 1, j] = h[j + 1] / 6
  f_ExN, g_ExN = np.zeros((len(e_E), n)), np.zeros((len(e_E), n))  # γ at the ends is 0
  for e, p in enumerate(e_E):
    if p < x_N[0]:  # u(x_0) + (p − x_0)·u'(x_0), u'(x_0) = (f_1 − f_0)/h − hγ_1/6
      d = p - x_N[0]
      f_ExN[e, :2] = 1 - d / h[0], d / h[0]
      g_ExN[e, 1] = -d * h[0] / 6
    elif p > x_N[-1]:  # u'(x_{n−1}) = (f_{n−1} − f_{n−2})/h + hγ_{n−2}/6
      d = p - x_N[-1]
      f_ExN[e, -2:] = -d / h[-1], 1 + d / h[-1]
      g_ExN[e, -2] = d * h[-1] / 6
    else:
      i = min(int(np.searchsorted(x_N, p, side="right")) - 1, n - 2)
      a, b = (x_N[i + 1] - p) / h[i], (p - x_N[i]) / h[i]
      f_ExN[e, i:i + 2] = a, b
      g_ExN[e, i:i + 2] = (a**3 - a) * h[i]**2 / 6, (b**3 - b) * h[i]**2 / 6
  return q, r, np.concatenate([f_ExN, g_ExN[:, 1:-1]], axis=1)


def smoother_matrix(nodes_N, eval_points_E, weights_mask_N=None, lam=0.0, dtype=None):
  """(E, N) matrix H: the smoothing spline through (nodes, v), evaluated at the points, is H·v.

  Args:
    nodes_N: N ≥ 2 distinct node positions in [−1, 1], any order (static).
    eval_points_E: where to evaluate (static); outside the nodes the spline is linear.
    weights_mask_N: w_i ≥ 0 (a 0/1 availability mask; may be traced); None = all ones.
    lam: the smoothing parameter λ (may be traced); 0 interpolates.
    dtype: of the result (default: JAX's default float).
  """
  nodes_N = np.asarray(nodes_N, np.float64)
  order = np.argsort(nodes_N)
  x_N = (nodes_N[order] + 1.0) / 2.0
  n = len(x_N)
  if n < 2 or np.any(np.diff(x_N) <= 0):
    raise ValueError(f"smoothing splines need >= 2 distinct nodes, got {nodes_N.tolist()}")
  e_E = (np.asarray(eval_points_E, np.float64) + 1.0) / 2.0
  dtype = dtype or jnp.result_type(float)
  q, r, basis = (jnp.asarray(a, dtype) for a in _spline_parts(x_N, e_E.reshape(-1)))
  w_N = (jnp.ones((n,), dtype) if weights_mask_N is None
         else jnp.asarray(weights_mask_N, dtype)[order])
  h_ExN = _smooth(q, r, basis, w_N, jnp.asarray(lam, dtype))
  return h_ExN[:, np.argsort(order)]  # columns back in the caller's node order


@jax.jit
def _smooth(q, r, basis, w_N, lam):
  """Solves the [f; γ] system for every unit value vector and evaluates at the points.

  Fewer than 2 weighted nodes leave the line undetermined: then the fit is the constant through
  the one node (zeros with none), so erasure sweeps beyond r stay finite.
  """
  n, dtype = w_N.shape[0], w_N.dtype
  count = jnp.sum(w_N > 0)
  w_safe_N = jnp.where(count >= 2, w_N, 1.0)
  d_N = jnp.where(w_safe_N > 0, jnp.sum(w_safe_N) * lam, 1.0)
  system = jnp.block([[jnp.diag(w_safe_N), d_N[:, None] * q], [q.T, -r]])
  rhs = jnp.concatenate([jnp.diag(w_safe_N), jnp.zeros((n - 2, n), dtype)], axis=0)
  h_ExN = jnp.matmul(basis, jnp.linalg.solve(system, rhs), precision=_HI)
  constant_ExN = jnp.broadcast_to((w_N > 0).astype(dtype), h_ExN.shape)
  return jnp.where(count >= 2, h_ExN, constant_ExN)


def point_sets(k: int, n: int, kind: str = "equispaced") -> tuple[np.ndarray, np.ndarray]:
  """(alpha (K,), beta (N,)) on [−1, 1]: equispaced (the theory's quasi-uniform design) or
  BACC's Chebyshev points (cheb1 data nodes, cheb2 "endpoints" worker points)."""
  if kind == "equispaced":
    return np.linspace(-1.0, 1.0, k), np.linspace(-1.0, 1.0, n)
  if kind == "chebyshev":
    return berrut.cheb1(k), berrut.cheb2(n)
  raise ValueError(f"unknown LeTCC point set {kind!r}; known: {list(POINT_SETS)}")


def nonsystematic_encode(x_BxKxI, n: int, lam_e: float = 0.0, kind: str = "equispaced"):
  """(B, K, ...) → (B, N, ...): worker i gets u_enc(beta_i)."""
  alpha, beta = point_sets(x_BxKxI.shape[1], n, kind)
  return berrut.apply_matrix(smoother_matrix(alpha, beta, None, lam_e, x_BxKxI.dtype), x_BxKxI)


def nonsystematic_decode(outs_BxNxC, avail_N, k: int, lam_d: float = 0.0,
                         kind: str = "equispaced"):
  """(B, N, C) → (B, K, C): u_dec fitted to the available outputs, evaluated at alpha."""
  alpha, beta = point_sets(k, outs_BxNxC.shape[1], kind)
  h_KxN = smoother_matrix(beta, alpha, avail_N, lam_d, outs_BxNxC.dtype)
  return berrut.apply_matrix(h_KxN, outs_BxNxC)


def systematic_points(k: int, r: int, points: str = "cheb1") -> np.ndarray:
  """N = k + r points; the first k are the data nodes."""
  if points == "cheb1":
    return berrut.cheb1(k + r)
  if points == "equispaced":
    return np.linspace(-1.0, 1.0, k + r)
  raise ValueError(f"unknown systematic point set {points!r}; known: {list(SYSTEMATIC_POINTS)}")


def _parity_matrix(points, k, lam, dtype):
  return smoother_matrix(points[:k], points[k:], None, lam, dtype)


@registry.register("encoder", "letcc")
def letcc_encoder(*, k, r, input_shape, num_classes=None, channel_mode="per_channel", lam=0.0,
                  points="cheb1"):
  """Parity i = u_enc(point_{k+i}), u_enc the smoothing spline (λ_e = ``lam``) of the data."""
  del num_classes
  channels.check_mode(channel_mode)
  if k < 2:
    raise ValueError(f"the 'letcc' encoder fits a spline through the k data nodes and needs "
                     f"k >= 2, got k={k}")
  pts = systematic_points(k, r, points)

  def encode(x_BxKxI):
    a_RxK = _parity_matrix(pts, k, lam, x_BxKxI.dtype)
    return channels.mix(x_BxKxI, a_RxK, tuple(input_shape), channel_mode)

  return nn.from_function(encode)


@registry.register("decoder", "letcc")
def letcc_decoder(*, k, r, num_classes=None, lam=0.0, points="cheb1", lam_e=0.0):
  """Unavailable data slots: u_dec (λ_d = ``lam``) through the available outputs at their node.

  ``lam_e`` (the encoder's λ) only defines ``parity_target``.
  """
  del num_classes
  pts = systematic_points(k, r, points)

  def decode(outs_BxNxC, avail_N):
    h_KxN = smoother_matrix(pts, pts[:k], avail_N, lam, outs_BxNxC.dtype)
    recon_BxKxC = berrut.apply_matrix(h_KxN, outs_BxNxC)
    return jnp.where(avail_N[None, :k, None], outs_BxNxC[:, :k], recon_BxKxC)

  def parity_target(y_BxKxC):
    """The encoder's smoother applied to the outputs (what a linear F would give)."""
    return berrut.apply_matrix(_parity_matrix(pts, k, lam_e, y_BxKxC.dtype), y_BxKxC)

  return nn.from_function(decode, parity_target=parity_target)
