"""The training-free baselines, checked by hand and through the evaluation harness."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax import baselines, nn
from lcc_jax.evaluation import schemes, studies
from lcc_jax.coders import berrut

C = 5
INPUT_SHAPE = (4, 4, 1)


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
  """XLA's optimisations off: these tests compile many tiny programs and run them once."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def _decode(scheme, outs_BxNxC, unavail_N):
  """The scheme's decoder on one pattern, unavailable outputs zeroed as the harness does."""
  masked = np.where(unavail_N[None, :, None], 0.0, outs_BxNxC).astype(np.float32)
  recon, _ = scheme.decoder.apply(scheme.variables["decoder"], jnp.asarray(masked),
                                  jnp.asarray(~unavail_N))
  return np.asarray(recon)


def test_class_prior_ranks_by_frequency_and_breaks_ties_by_index():
  prior = baselines.class_prior(np.array([3, 3, 1, 1, 0, 4, 4, 4]), 5)
  assert list(np.argsort(-prior)) == [4, 1, 3, 0, 2]


def test_replication_recovers_exactly_the_slots_with_an_available_copy():
  k, r = 3, 2  # extra workers 3, 4 copy data slots 0, 1; slot 2 has no copy
  assert baselines.replica_slots(k, r).tolist() == [0, 1]
  prior = np.array([0, 0, 0, 9, 0], np.float32)
  scheme = baselines.replication(k, r, prior)
  y = np.arange(1 * k * C, dtype=np.float32).reshape(1, k, C)
  outs = np.asarray(scheme.outputs(scheme.variables, None, jnp.asarray(y)))
  np.testing.assert_array_equal(outs[0, 3], y[0, 0])
  np.testing.assert_array_equal(outs[0, 4], y[0, 1])
  cases = {  # unavailable workers -> what each data slot gets: "own", "copy" or "prior"
      (0,): ("copy", "own", "own"),
      (0, 3): ("prior", "own", "own"),
      (1, 3): ("own", "copy", "own"),
      (0, 1, 4): ("copy", "prior", "own"),
      (2,): ("own", "own", "prior"),
      (0, 1, 2): ("copy", "copy", "prior"),
      (0, 1, 2, 3, 4): ("prior", "prior", "prior"),
  }
  for slots, expected in cases.items():
    unavail = np.zeros(k + r, bool)
    unavail[list(slots)] = True
    recon = _decode(scheme, outs, unavail)[0]
    for j, how in enumerate(expected):
      want = prior if how == "prior" else y[0, j]
      np.testing.assert_array_equal(recon[j], want, err_msg=f"{slots} slot {j}")


def test_no_redundancy_serves_the_prior_for_every_unavailable_slot():
  prior = np.array([0, 3, 0, 0, 1], np.float32)
  scheme = baselines.replication(2, 1, prior, copies=False)
  y = np.ones((1, 2, C), np.float32)
  outs = np.asarray(scheme.outputs(scheme.variables, None, jnp.asarray(y)))
  np.testing.assert_array_equal(outs[0, 2], 0.0)  # the extra worker idles
  recon = _decode(scheme, outs, np.array([True, False, False]))[0]
  np.testing.assert_array_equal(recon[0], prior)
  np.testing.assert_array_equal(recon[1], y[0, 1])


def _constant_f(c_C):
  return nn.from_function(lambda x: jnp.broadcast_to(jnp.asarray(c_C), (x.shape[0], C))
                          + 0.0 * jnp.sum(x))


def _arrays(num=24, seed=0):
  rng = np.random.default_rng(seed)
  return {"x": rng.normal(size=(num,) + INPUT_SHAPE).astype(np.float32),
          "labels": rng.integers(0, C, num).astype(np.int32)}


@pytest.mark.parametrize("name", ["berrut", "approxifer", "letcc-ns"])
def test_interpolating_codes_reproduce_a_constant_f_exactly(name):
  k, r = 3, 2
  c_C = np.array([0.3, -1.0, 2.5, 0.0, 1.2], np.float32)
  f = _constant_f(c_C)
  scheme = baselines.build(name, k, r, f, {}, INPUT_SHAPE, np.zeros(C, np.float32))
  if name in baselines.LETCC_NAMES:
    scheme = baselines.with_lambdas(scheme, 1e-3, 1e-2)  # smoothing keeps constants too
  arrays = _arrays()
  arrays["y"] = np.tile(c_C, (len(arrays["x"]), 1))
  sweep = schemes.evaluate_scheme(scheme, arrays, np.arange(24), k, r, batch_size=4)
  # Splines need two available points; Berrut one.
  need = 2 if name in baselines.LETCC_NAMES else 1
  ok = (k + r - sweep.sizes_P) >= need
  np.testing.assert_array_equal(sweep.rate("recon_top1")[ok], 1.0)
  # The decoded values themselves, not just their argmax.
  x = jnp.asarray(arrays["x"][:2 * k].reshape(2, k, *INPUT_SHAPE))
  outs = np.asarray(scheme.outputs(scheme.variables, x, jnp.asarray(arrays["y"][:2 * k]
                                                                    .reshape(2, k, C))))
  for unavail in sweep.unavail_PxN[ok]:
    np.testing.assert_allclose(_decode(scheme, outs, unavail),
                               np.broadcast_to(c_C, (2, k, C)), rtol=1e-4, atol=1e-4)


def test_approxifer_interpolates_at_its_nodes_through_the_harness():
  # (K, N) = (4, 9): cos(iπ/8) hits every data node cos((2j+1)π/8) at workers 1, 3, 5, 7, so
  # those workers compute F(X_j) uncoded and decoding there must give F's outputs exactly.
  k, r = 4, 5
  alpha, beta = berrut.cheb1(k), berrut.cheb2(k + r)
  hits = [int(np.argmin(np.abs(beta - a))) for a in alpha]
  assert hits == [1, 3, 5, 7] and np.allclose(beta[hits], alpha)
  f = nn.from_function(lambda x: jnp.tanh(x.reshape(x.shape[0], -1)[:, :C] * 3.0) +
                       jnp.sin(x.reshape(x.shape[0], -1)[:, C:2 * C]))
  arrays = _arrays(num=40, seed=3)
  arrays["y"] = np.asarray(f.apply({}, jnp.asarray(arrays["x"]))[0])
  scheme = baselines.approxifer(k, r, f, {})
  sweep = schemes.evaluate_scheme(scheme, arrays, np.arange(40), k, r, batch_size=5)
  nodes_available = ~sweep.unavail_PxN[:, hits].any(axis=1)
  assert nodes_available.sum() == 2**(k + r - k)
  np.testing.assert_array_equal(sweep.rate("recon_top1")[nodes_available], 1.0)
  # Away from the nodes the non-systematic code is only approximate.
  assert sweep.rate("recon_top1")[~nodes_available].min() < 1.0


def test_tune_letcc_keeps_the_best_of_the_grid_and_lambda_is_live():
  from tests.helpers import tiny_code
  k, r = 3, 1
  code, variables = tiny_code(k, r)
  arrays = _arrays(num=60, seed=5)
  arrays["y"] = np.asarray(code.base_model.apply(variables["base_model"],
                                                 jnp.asarray(arrays["x"]))[0])
  arrays["labels"] = np.argmax(arrays["y"], -1).astype(np.int32)
  scheme = baselines.letcc_nonsystematic(k, r, code.base_model, variables["base_model"])
  grid = (0.0, 1.0)
  tuned, scores = schemes.tune_letcc(scheme, arrays, np.arange(60), k, r, batch_size=10,
                                     grid=grid)
  assert len(scores) == len(grid)**2
  best = max(s[2] for s in scores)
  chosen = baselines.lambdas(tuned)
  assert [s[2] for s in scores if (s[0], s[1]) == chosen] == [best]
  assert len({round(s[2], 6) for s in scores}) > 1, "λ does not change the decoded outputs"


def test_byzantine_locator_finds_loud_adversaries_and_restores_accuracy():
  k, a = 3, 1  # N = 2k + 2A − 1 = 7 workers
  w = np.random.default_rng(7).normal(size=(16, C)).astype(np.float32) * 0.3
  f = nn.from_function(lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w))
  arrays = _arrays(num=60, seed=8)
  arrays["y"] = np.asarray(f.apply({}, jnp.asarray(arrays["x"]))[0])
  arrays["labels"] = np.argmax(arrays["y"], -1).astype(np.int32)
  # "paper" points: no worker sits on a data node (with "endpoints" at k = 3, N = 7, three
  # do, compute their query uncoded and shield it from the adversary).
  out = studies.byzantine(f, {}, arrays, np.arange(60), k, a, sigma=1e3, batch_size=8,
                          convention="paper")
  assert out["workers"] == 7
  assert out["location_rate"] >= 0.9, out
  assert out["attacked_top1"] < 0.6 < out["located_top1"], out
  assert abs(out["located_top1"] - out["clean_top1"]) <= 0.1, out


def test_unknown_baseline_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown baseline 'parm'"):
    baselines.build("parm", 2, 1, None, {}, INPUT_SHAPE, np.zeros(C))
