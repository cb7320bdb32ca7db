"""Losses against direct numpy evaluations of docs/upstream.md §Losses, and gradients vs finite
differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax import erasure, losses, metrics

RNG = np.random.default_rng(0)


def _np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_elem(name, recon_C, y_C, label):
  if name == "mse":
    return np.sum((recon_C - y_C)**2)
  if name == "kl":
    p, q = _np_softmax(y_C), _np_softmax(recon_C)
    return np.sum(p * (np.log(p) - np.log(q)))
  return -np.log(_np_softmax(recon_C)[label])


def _case(k, r, b=5, c=7):
  unavail_PxN = erasure.patterns(k, r)
  p = unavail_PxN.shape[0]
  return (RNG.normal(size=(p, b, k, c)), RNG.normal(size=(b, k, c)),
          RNG.integers(0, c, size=(b, k)), unavail_PxN)


@pytest.mark.parametrize("name", ["mse", "kl", "xent"])
@pytest.mark.parametrize("k,r", [(2, 1), (3, 2)])
def test_loss_matches_numpy_formula(name, k, r):
  recon, y, labels, unavail_PxN = _case(k, r)
  weight_B = np.array([1, 1, 1, 1, 0.0])  # the last group is padding
  total, per_pattern = losses.reconstruction_loss(name, recon, y, labels, unavail_PxN, weight_B)
  terms, per_p = [], []
  for p, unavail_N in enumerate(unavail_PxN):
    these = [_np_elem(name, recon[p, b, j], y[b, j], labels[b, j])
             for b in range(4) for j in range(k) if unavail_N[j]]
    terms += these
    per_p.append(np.mean(these))
  np.testing.assert_allclose(total, np.mean(terms), rtol=1e-5)
  np.testing.assert_allclose(per_pattern, per_p, rtol=1e-5)


def test_r1_equals_upstream_masked_loss():
  # Upstream: sum(loss * mask) / count_nonzero(mask) with the one-hot (k, k) mask per group.
  k, b, c = 3, 4, 6
  recon, y, labels, unavail_PxN = _case(k, 1, b, c)
  diff = np.sum((recon - y[None])**2, axis=-1)  # (P, B, K), P == k
  mask = np.eye(k)[:, None, :] * np.ones((1, b, 1))
  expected = np.sum(diff * mask) / np.count_nonzero(mask)
  total, _ = losses.reconstruction_loss("mse", recon, y, labels, unavail_PxN, np.ones(b))
  np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_parity_mse_is_torch_mean_mse():
  pout, target = RNG.normal(size=(6, 1, 10)), RNG.normal(size=(6, 1, 10))
  np.testing.assert_allclose(losses.parity_mse(pout, target, np.ones(6)),
                             np.mean((pout - target)**2), rtol=1e-5)


@pytest.mark.parametrize("name", ["mse", "kl", "xent"])
def test_gradient_matches_finite_differences(name):
  recon, y, labels, unavail_PxN = _case(2, 2, b=2, c=3)
  with jax.enable_x64(True):
    recon64 = jnp.asarray(recon, jnp.float64)

    def f(z):
      return losses.reconstruction_loss(name, z, jnp.asarray(y), jnp.asarray(labels),
                                        unavail_PxN, jnp.ones(2))[0]

    grad = np.asarray(jax.grad(f)(recon64))
    eps = 1e-6
    flat = np.asarray(recon64).ravel()
    for i in RNG.choice(flat.size, 25, replace=False):
      up, down = flat.copy(), flat.copy()
      up[i] += eps
      down[i] -= eps
      fd = (f(up.reshape(recon.shape)) - f(down.reshape(recon.shape))) / (2 * eps)
      np.testing.assert_allclose(grad.ravel()[i], fd, rtol=1e-6, atol=1e-9)


def test_metrics_counts_by_hand():
  # One group, k = 2, r = 1, C = 6; pattern 0 erases slot 0, pattern 1 erases slot 1.
  y = np.zeros((1, 2, 6)); y[0, 0, 2] = 5; y[0, 1, 4] = 5           # F predicts 2 and 4
  labels = np.array([[2, 1]])
  recon = np.zeros((2, 1, 2, 6))
  recon[0, 0, 0] = [0, 1, 9, 2, 3, 4]   # slot 0 → argmax 2: agrees with F and label
  recon[1, 0, 1] = [6, 0, 1, 2, 3, 4]   # slot 1 → argmax 0; F's 4 is 2nd, label 1 is last
  counts = metrics.pattern_counts(recon, y, labels, erasure.patterns(2, 1), np.ones(1))
  got = {key: np.asarray(v).tolist() for key, v in counts.items()}
  assert got == {"n": [1, 1], "recon_top1": [1, 0], "recon_top5": [1, 1],
                 "degraded_top1": [1, 0], "degraded_top5": [1, 0]}


def test_accumulated_counts_are_exact_over_batches():
  acc = metrics.Accumulator()
  acc.add({"n": np.array([3, 1]), "recon_top1": np.array([1, 1]), "recon_top5": np.array([3, 1]),
           "degraded_top1": np.array([0, 1]), "degraded_top5": np.array([2, 1])})
  acc.add({"n": np.array([1, 3]), "recon_top1": np.array([1, 0]), "recon_top5": np.array([1, 3]),
           "degraded_top1": np.array([1, 0]), "degraded_top5": np.array([1, 1])})
  summary = metrics.summarize(acc.totals, erasure.patterns(2, 1))
  assert summary["reconstruction_top1"] == 3 / 8  # not the mean of batch means (0.5 and 0.25)
  assert summary["per_pattern"][0]["reconstruction_top1"] == 2 / 4
  assert summary["per_pattern"][1]["unavailable"] == [1]
