"""LeTCC smoothing splines against scipy and an independent kernel-form implementation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import interpolate

from lcc_jax import coding, erasure, nn, registry
from lcc_jax.coders import berrut, letcc


def kernel_form(nodes, x_eval, w, lam):
  """docs/upstream.md §LeTCC literally: the (n+2)×(n+2) system with R(s,t) = min²(3max − min)/6."""
  t, te = (np.asarray(nodes) + 1) / 2, (np.asarray(x_eval) + 1) / 2

  def kern(s, u):
    lo, hi = np.minimum(s, u), np.maximum(s, u)
    return lo**2 * (3 * hi - lo) / 6

  n, w = len(t), np.asarray(w, float)
  tt = np.stack([np.ones(n), t], axis=1)
  system = np.block([[w[:, None] * kern(t[:, None], t[None]) + np.diag(
      np.where(w > 0, w.sum() * lam, 1.0)), w[:, None] * tt], [tt.T, np.zeros((2, 2))]])
  coef = np.linalg.solve(system, np.concatenate([np.diag(w), np.zeros((2, n))]))
  basis = np.concatenate([kern(te[:, None], t[None]), np.ones((len(te), 1)), te[:, None]], 1)
  return basis @ coef


def natural_spline(nodes, values, x_eval):
  """scipy's natural cubic spline, continued linearly outside the nodes (as the minimiser)."""
  order = np.argsort(nodes)
  x, y = np.asarray(nodes)[order], np.asarray(values)[order]
  spline = interpolate.CubicSpline(x, y, bc_type="natural")
  slope = spline.derivative()
  out = spline(x_eval)
  out = np.where(x_eval < x[0], y[0] + (x_eval - x[0]) * slope(x[0]), out)
  return np.where(x_eval > x[-1], y[-1] + (x_eval - x[-1]) * slope(x[-1]), out)


NODE_SETS = {"equispaced": np.linspace(-1, 1, 9), "cheb1": berrut.cheb1(9),
             "shuffled": berrut.cheb1(9)[[4, 0, 8, 2, 6, 1, 7, 3, 5]]}
MASKS = [np.ones(9, bool), np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], bool)]
X_EVAL = np.linspace(-1, 1, 13)


@pytest.mark.parametrize("nodes", sorted(NODE_SETS))
def test_zero_lambda_is_the_natural_interpolating_spline(nodes):
  with jax.enable_x64(True):
    pts = NODE_SETS[nodes]
    y = np.random.default_rng(0).normal(size=9)
    for mask in MASKS:
      h = np.asarray(letcc.smoother_matrix(pts, X_EVAL, mask, 0.0))
      np.testing.assert_allclose(h @ y, natural_spline(pts[mask], y[mask], X_EVAL), atol=1e-12)
      assert np.all(h[:, ~mask] == 0.0)
      at_nodes = np.asarray(letcc.smoother_matrix(pts, pts, mask, 0.0))
      np.testing.assert_allclose(at_nodes[np.ix_(mask, mask)], np.eye(mask.sum()), atol=1e-12)


def test_interpolates_in_float32_at_25_chebyshev_nodes():
  """The value/second-derivative form stays accurate where the kernel form fails in float32."""
  pts = berrut.cheb1(25)
  y = np.random.default_rng(1).normal(size=25)
  h = np.asarray(letcc.smoother_matrix(pts, pts, None, 0.0, jnp.float32))
  np.testing.assert_allclose(h @ y, y, atol=1e-4)


@pytest.mark.parametrize("lam", [1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("nodes", sorted(NODE_SETS))
def test_smoothing_matches_kernel_form_and_scipy(nodes, lam):
  with jax.enable_x64(True):
    pts = NODE_SETS[nodes]
    for mask in MASKS:
      h = np.asarray(letcc.smoother_matrix(pts, X_EVAL, mask, lam))
      np.testing.assert_allclose(h, kernel_form(pts, X_EVAL, mask, lam), atol=1e-9)
    # scipy minimises Σ(y − f)² + λ'∫f''(x)²dx on x ∈ [−1, 1]; ours (1/n)Σ + λ∫f''(t)²dt with
    # t = (x + 1)/2, i.e. λ' = 8·n·λ. Compare inside the nodes (scipy extrapolates cubically).
    y = np.random.default_rng(2).normal(size=9)
    order = np.argsort(pts)
    ref = interpolate.make_smoothing_spline(pts[order], y[order], lam=8 * 9 * lam)
    inside = (X_EVAL >= pts.min()) & (X_EVAL <= pts.max())
    got = np.asarray(letcc.smoother_matrix(pts, X_EVAL, None, lam)) @ y
    np.testing.assert_allclose(got[inside], ref(X_EVAL[inside]), atol=1e-8)


def test_large_lambda_is_the_least_squares_line():
  with jax.enable_x64(True):
    pts, mask = NODE_SETS["cheb1"], MASKS[1]
    y = np.random.default_rng(3).normal(size=9)
    slope, intercept = np.polyfit(pts[mask], y[mask], 1)
    got = np.asarray(letcc.smoother_matrix(pts, X_EVAL, mask, 1e9)) @ y
    np.testing.assert_allclose(got, intercept + slope * X_EVAL, atol=1e-6)


def test_lines_are_reproduced_for_every_lambda():
  pts = NODE_SETS["equispaced"]
  for lam in (0.0, 1e-3, 10.0):
    h = np.asarray(letcc.smoother_matrix(pts, X_EVAL, MASKS[1], lam))
    np.testing.assert_allclose(h @ (0.5 - 2.0 * pts), 0.5 - 2.0 * X_EVAL, atol=1e-4)


def test_vmaps_over_masks_and_lambdas():
  pts = NODE_SETS["cheb1"]
  masks = ~erasure.patterns(7, 2, "exactly")
  lams = np.linspace(0.0, 0.1, len(masks))
  batched = jax.jit(jax.vmap(lambda m, lam: letcc.smoother_matrix(pts, X_EVAL, m, lam)))(
      masks, lams)
  for i in (0, len(masks) // 2, len(masks) - 1):
    np.testing.assert_allclose(np.asarray(batched[i]),
                               kernel_form(pts, X_EVAL, masks[i], lams[i]), atol=2e-4)


def test_nonsystematic_code_shapes_and_lines():
  """Queries on a line in node space → coded queries on it too → a linear F decodes exactly."""
  with jax.enable_x64(True):
    k, n = 4, 7
    alpha, _ = letcc.point_sets(k, n)
    base, step = np.random.default_rng(4).normal(size=(2, 6))
    x = (base + alpha[:, None] * step)[None]
    coded = letcc.nonsystematic_encode(jnp.asarray(x), n, lam_e=0.1)
    assert coded.shape == (1, n, 6)
    w = np.random.default_rng(5).normal(size=(6, 3))
    avail = np.array([1, 1, 0, 1, 1, 0, 1], bool)
    est = letcc.nonsystematic_decode(coded @ w * avail[None, :, None], avail, k, lam_d=0.5)
    np.testing.assert_allclose(np.asarray(est), x @ w, atol=1e-10)


@pytest.mark.parametrize("points", ["cheb1", "equispaced"])
def test_systematic_pair_exact_for_inputs_on_a_line(points):
  with jax.enable_x64(True):
    k, r, shape = 3, 2, (5,)
    node = letcc.systematic_points(k, r, points)[:k]
    base, step = np.random.default_rng(6).normal(size=(2,) + shape)
    x = jnp.asarray((base + node[:, None] * step)[None])
    w = np.random.default_rng(7).normal(size=(5, 4))
    f = nn.ModelFns(init=lambda rng: {}, apply=lambda v, x, train=False: (x @ w, {}))
    enc = registry.build("encoder", "letcc", k=k, r=r, input_shape=shape, lam=0.3,
                         points=points)
    dec = registry.build("decoder", "letcc", k=k, r=r, num_classes=4, lam=0.01, points=points)
    code = coding.Code(encoder=enc, decoder=dec, base_model=f)
    y = x @ w
    unavail = erasure.patterns(k, r, "at_most")
    recon, _, _ = coding.forward(code, {"encoder": {}, "decoder": {}, "base_model": {}}, x, y,
                                 unavail)
    np.testing.assert_allclose(np.asarray(recon), np.broadcast_to(y, recon.shape), atol=1e-10)


def test_needs_two_distinct_nodes():
  with pytest.raises(ValueError, match="distinct"):
    letcc.smoother_matrix([0.0, 0.0, 0.5], [0.1])
  with pytest.raises(ValueError, match="k >= 2"):
    registry.build("encoder", "letcc", k=1, r=2, input_shape=(3,))
  with pytest.raises(ValueError, match="point set"):
    letcc.point_sets(3, 5, "random")


def test_fewer_than_two_nodes_falls_back_to_a_constant():
  pts = NODE_SETS["cheb1"]
  one = np.zeros(9, bool)
  one[4] = True
  h = np.asarray(letcc.smoother_matrix(pts, X_EVAL, one, 0.0))
  np.testing.assert_array_equal(h, np.broadcast_to(np.eye(9)[4], h.shape))
  h = np.asarray(letcc.smoother_matrix(pts, X_EVAL, np.zeros(9, bool), 0.1))
  np.testing.assert_array_equal(h, 0.0)
