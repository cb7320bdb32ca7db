"""Berrut codes (BACC / ApproxIFER) against a plain-Python implementation of the formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax import erasure, registry
from lcc_jax.coders import berrut


def reference_weights(x, nodes, avail):
  """docs/upstream.md §Berrut decoding literally: available nodes sorted by value, sign
  (−1)^position."""
  order = [n for n in np.argsort(nodes) if avail[n]]
  for n in order:
    if x == nodes[n]:
      return np.eye(len(nodes))[n]
  w = np.zeros(len(nodes))
  for pos, n in enumerate(order):
    w[n] = (-1.0)**pos / (x - nodes[n])
  return w / w.sum()


def test_chebyshev_points():
  np.testing.assert_allclose(berrut.cheb1(3), [np.cos(np.pi / 6), 0.0, -np.cos(np.pi / 6)],
                             atol=1e-15)
  np.testing.assert_allclose(berrut.cheb2(3), [1.0, 0.0, -1.0], atol=1e-15)
  np.testing.assert_allclose(berrut.cheb2(4, "paper"), np.cos(np.arange(4) * np.pi / 4))
  with pytest.raises(ValueError, match="convention"):
    berrut.cheb2(4, "second")


def test_weights_match_reference_with_masks_and_any_node_order():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    nodes = berrut.cheb2(9)
    x_eval = np.concatenate([berrut.cheb1(4), [0.93, -0.2]])
    for _ in range(5):
      avail = rng.random(9) < 0.7
      avail[rng.integers(9)] = True
      want = np.stack([reference_weights(x, nodes, avail) for x in x_eval])
      got = np.asarray(berrut.berrut_weights(x_eval, nodes, avail))
      np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
      # Shuffled node order: the same interpolant (columns follow the nodes).
      perm = rng.permutation(9)
      shuffled = np.asarray(berrut.berrut_weights(x_eval, nodes[perm], avail[perm]))
      np.testing.assert_allclose(shuffled, got[:, perm], rtol=1e-12, atol=1e-12)


def test_interpolates_its_nodes_and_reproduces_constants():
  alpha = berrut.cheb1(5)
  x = np.random.default_rng(1).normal(size=(2, 5, 3, 3, 1)).astype(np.float32)
  # u(alpha_j) = X_j: encoding at the data nodes themselves returns the data exactly.
  u_at_nodes = berrut.apply_matrix(berrut.encoding_matrix(alpha, alpha), jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(u_at_nodes), x)
  # A constant F: every coded output is the same, and any decode returns it.
  n, const = 8, np.array([1.5, -2.0, 0.25], np.float32)
  outs = jnp.asarray(np.broadcast_to(const, (2, n, 3)).copy())
  for unavail in erasure.patterns(n, 0, "beyond")[:40]:
    avail = jnp.asarray(~unavail)
    if not bool(avail.any()):
      continue
    est = berrut.nonsystematic_decode(jnp.where(avail[None, :, None], outs, 0.0), avail, 5)
    np.testing.assert_allclose(np.asarray(est), np.broadcast_to(const, (2, 5, 3)), rtol=2e-5)


@pytest.mark.parametrize("convention", ["endpoints", "paper"])
@pytest.mark.parametrize("k,n", [(12, 25), (4, 9), (10, 13), (4, 8)])
def test_collisions_give_exact_unit_rows(k, n, convention):
  """A worker point on a data node computes that query uncoded (no division by zero)."""
  alpha, beta = berrut.cheb1(k), berrut.cheb2(n, convention)
  hits = [(i, j) for i in range(n) for j in range(k) if np.isclose(beta[i], alpha[j])]
  e = np.asarray(berrut.encoding_matrix(alpha, beta))
  assert np.all(np.isfinite(e))
  np.testing.assert_allclose(e.sum(axis=1), 1.0, rtol=1e-5)
  for i, j in hits:
    np.testing.assert_array_equal(e[i], np.eye(k)[j])
  # Decoding at alpha from all workers: unit rows where a worker sits on the node; removing
  # that worker leaves a finite interpolation.
  avail = np.ones(n, bool)
  d = np.asarray(berrut.decoding_matrix(beta, alpha, avail))
  for i, j in hits:
    np.testing.assert_array_equal(d[j], np.eye(n)[i])
  if hits:
    avail[hits[0][0]] = False
    d = np.asarray(berrut.decoding_matrix(beta, alpha, avail))
    assert np.all(np.isfinite(d)) and d[hits[0][1], hits[0][0]] == 0.0
  has_hits = {(12, 25, "endpoints"), (4, 9, "endpoints"), (10, 13, "endpoints"),
              (4, 8, "paper")}
  assert bool(hits) == ((k, n, convention) in has_hits)


def test_decoding_vmaps_over_masks():
  beta, alpha = berrut.cheb2(7), berrut.cheb1(5)
  masks = ~erasure.patterns(5, 2, "exactly")
  batched = jax.jit(jax.vmap(lambda m: berrut.decoding_matrix(beta, alpha, m)))(masks)
  for m, got in zip(masks, np.asarray(batched), strict=True):
    want = np.stack([reference_weights(x, beta, m) for x in alpha])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_systematic_pair_matches_reference():
  with jax.enable_x64(True):
    k, r = 3, 2
    points = np.cos((2 * np.arange(k + r) + 1) * np.pi / (2 * (k + r)))
    x = np.random.default_rng(2).normal(size=(2, k, 6))
    enc = registry.build("encoder", "berrut", k=k, r=r, input_shape=(6,))
    parity = np.asarray(enc.apply({}, jnp.asarray(x))[0])
    for i in range(r):
      w = reference_weights(points[k + i], points[:k], np.ones(k, bool))
      np.testing.assert_allclose(parity[:, i], np.einsum("j,bjd->bd", w, x), rtol=1e-12)
    dec = registry.build("decoder", "berrut", k=k, r=r, num_classes=4)
    outs = np.random.default_rng(3).normal(size=(2, k + r, 4))
    for unavail in erasure.patterns(k, r, "at_most"):
      avail = ~unavail
      masked = np.where(avail[None, :, None], outs, 0.0)
      recon = np.asarray(dec.apply({}, jnp.asarray(masked), jnp.asarray(avail))[0])
      for j in range(k):
        want = outs[:, j] if avail[j] else np.einsum(
            "n,bnc->bc", reference_weights(points[j], points, avail), masked)
        np.testing.assert_allclose(recon[:, j], want, rtol=1e-12, atol=1e-12)


def test_nonsystematic_code_recovers_constant_inputs_through_linear_f():
  """Equal queries → equal coded queries, so even a linear F's outputs decode exactly."""
  with jax.enable_x64(True):
    x = np.broadcast_to(np.random.default_rng(4).normal(size=(1, 1, 6)), (1, 4, 6))
    w = np.random.default_rng(5).normal(size=(6, 3))
    coded = berrut.nonsystematic_encode(jnp.asarray(x), 9, "paper")
    avail = np.ones(9, bool)
    avail[[2, 5]] = False
    est = berrut.nonsystematic_decode(coded @ w * avail[None, :, None], avail, 4, "paper")
    np.testing.assert_allclose(np.asarray(est), x @ w, rtol=1e-12)


@pytest.mark.parametrize("num_errors,stragglers", [(1, ()), (2, ()), (1, (6,))])
def test_byzantine_locator_finds_the_corrupted_workers(num_errors, stragglers):
  """With a linear F, f∘u is rational of degree (K−1, K−1): the locator is exact."""
  with jax.enable_x64(True):
    k = 4
    n = 2 * k + 2 * num_errors + len(stragglers) - 1
    rng = np.random.default_rng(6)
    coded = berrut.nonsystematic_encode(jnp.asarray(rng.normal(size=(1, k, 8))), n)
    outs = np.asarray(coded[0]) @ rng.normal(size=(8, 10))
    bad = [3, 7][:num_errors]
    outs[bad] += rng.normal(scale=50.0, size=(num_errors, 10))
    avail = np.ones(n, bool)
    avail[list(stragglers)] = False
    suspects = berrut.locate_errors(jnp.asarray(outs * avail[:, None]), avail,
                                    berrut.cheb2(n), k, num_errors)
    assert np.flatnonzero(np.asarray(suspects)).tolist() == bad
