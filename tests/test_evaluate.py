"""The one-pass sweep, the client unavailability curve, and the workdir reports."""
import csv
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lcc_jax import baselines, coding, erasure, train_lib
from lcc_jax.evaluation import accuracy, counting, patterns, reports, runs, schemes, studies
from tests.helpers import tiny_code

INPUT_SHAPE = (4, 4, 1)
C = 5


def _arrays(code, variables, num, seed=0):
  """Inputs, F's outputs, and labels that agree with F about 60 % of the time."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num,) + INPUT_SHAPE).astype(np.float32)
  y = np.asarray(code.base_model.apply(variables["base_model"], jnp.asarray(x))[0])
  labels = np.where(rng.random(num) < 0.6, np.argmax(y, -1), rng.integers(0, C, num))
  return {"x": x, "y": y, "labels": labels.astype(np.int32)}


def _schemes(k, r):
  code, variables = tiny_code(k, r)
  learned = baselines.from_code("code", code, variables)
  ns = baselines.approxifer(k, r, code.base_model, variables["base_model"])
  return code, variables, [learned, ns]


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
  """XLA's optimisations off: these tests compile many tiny programs and run them once."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def _numpy_counts(code, variables, arrays, k, unavail_PxN):
  """Independent oracle: coding.forward per pattern, then the counts in numpy."""
  g = len(arrays["x"]) // k
  x = jnp.asarray(arrays["x"].reshape(g, k, *INPUT_SHAPE))
  y = arrays["y"].reshape(g, k, C)
  labels = arrays["labels"].reshape(g, k)
  recon = np.asarray(jax.jit(coding.forward, static_argnums=0)(
      code, variables, x, jnp.asarray(y), unavail_PxN)[0])
  counts = {"n": [], "degraded_top1": [], "recon_top1": []}
  for p, unavail in enumerate(unavail_PxN):
    lost = unavail[:k]
    pred = np.argmax(recon[p][:, lost], -1)
    counts["n"].append(g * lost.sum())
    counts["degraded_top1"].append(np.sum(pred == labels[:, lost]))
    counts["recon_top1"].append(np.sum(pred == np.argmax(y[:, lost], -1)))
  return counts


def test_one_pass_sweep_equals_the_loop_oracle():
  k, r = 3, 2
  code, variables, candidates = _schemes(k, r)
  arrays = _arrays(code, variables, 15 * k)
  device = counting.device_data(arrays["x"], arrays["y"], arrays["labels"])
  indices = np.arange(15 * k)
  for scheme in candidates:
    unavail_PxN = patterns.client_patterns(k, r, scheme.systematic)
    loop = counting.pattern_totals_loop(scheme, device, indices, k, unavail_PxN, batch_size=4)
    for chunk in (None, 3):  # one vmap, and lax.map over chunks of 3 patterns
      fn = counting.make_counts_fn(scheme, chunk)
      one_pass = counting.pattern_totals(scheme, device, indices, k, unavail_PxN, batch_size=4,
                                         counts_fn=fn)
      assert set(one_pass) == set(loop)
      for key in loop:
        np.testing.assert_array_equal(one_pass[key], loop[key], err_msg=f"{scheme.name} {key}")
    if scheme.systematic:
      for key, values in _numpy_counts(code, variables, arrays, k, unavail_PxN).items():
        np.testing.assert_array_equal(loop[key], values, err_msg=key)


def _client_predictions(scheme, arrays, k, r):
  """argmax of what a client gets, for every group and every one of the 2^N patterns."""
  g = len(arrays["x"]) // k
  x = jnp.asarray(arrays["x"][:g * k].reshape(g, k, *INPUT_SHAPE))
  y = arrays["y"][:g * k].reshape(g, k, C)
  outs = np.asarray(jax.jit(scheme.outputs)(scheme.variables, x, jnp.asarray(y)))
  decode = jax.jit(scheme.decoder.apply)
  all_PxN = patterns.subsets(k + r, range(k + r + 1))
  preds = []
  for unavail in all_PxN:
    masked = np.where(unavail[None, :, None], 0.0, outs).astype(np.float32)
    recon, _ = decode(scheme.variables["decoder"], jnp.asarray(masked), jnp.asarray(~unavail))
    pred = np.argmax(np.asarray(recon), -1)
    if scheme.systematic:
      pred = np.where(unavail[None, :k], pred, np.argmax(y, -1))
    preds.append(pred)
  return all_PxN, np.stack(preds)  # (2^N, N), (2^N, G, K)


@pytest.mark.parametrize("which", [0, 1])
def test_unavailability_curve_equals_a_monte_carlo_simulation(which):
  k, r, f, trials = 3, 2, 0.3, 400
  code, variables, candidates = _schemes(k, r)
  scheme = candidates[which]
  arrays = _arrays(code, variables, 20 * k, seed=2)
  sweep = schemes.evaluate_scheme(scheme, arrays, np.arange(20 * k), k, r, batch_size=8)
  all_PxN, pred_PxGxK = _client_predictions(scheme, arrays, k, r)
  labels_GxK = arrays["labels"].reshape(-1, k)
  # Each trial: every worker of every group fails independently with probability f.
  rng = np.random.default_rng(0)
  weights = 2**np.arange(k + r)[::-1]
  row_of = {int(code_): p for p, code_ in enumerate(all_PxN @ weights)}
  acc = []
  for _ in range(trials):
    failed_GxN = rng.random((len(labels_GxK), k + r)) < f
    rows = [row_of[int(c)] for c in failed_GxN @ weights]
    correct = pred_PxGxK[rows, np.arange(len(rows))] == labels_GxK
    acc.append(correct.mean(axis=1))
  acc = np.concatenate(acc)
  expected = float(sweep.expected([f])[0])
  stderr = acc.std() / np.sqrt(len(acc))
  assert abs(acc.mean() - expected) < 4 * stderr + 1e-9, (acc.mean(), expected, stderr)
  # And the exact expectation by brute force over all 2^N patterns.
  exact = sum(erasure.probability(all_PxN[p:p + 1], f)[0] * np.mean(pred_PxGxK[p] == labels_GxK)
              for p in range(len(all_PxN)))
  np.testing.assert_allclose(expected, exact, rtol=1e-10)


def test_no_redundancy_and_replication_curves_have_their_closed_forms():
  k, r = 2, 1
  code, variables, _ = _schemes(k, r)
  arrays = _arrays(code, variables, 40, seed=4)
  prior = baselines.class_prior(arrays["labels"], C)
  default = int(np.argmax(prior))
  idx_GxK = np.arange(40).reshape(-1, k)
  own_K = np.mean(np.argmax(arrays["y"][idx_GxK], -1) == arrays["labels"][idx_GxK], axis=0)
  prior_K = np.mean(arrays["labels"][idx_GxK] == default, axis=0)
  for copies in (False, True):
    scheme = baselines.replication(k, r, prior, copies=copies)
    sweep = schemes.evaluate_scheme(scheme, arrays, np.arange(40), k, r, batch_size=7)
    for f in (0.0, 0.1, 0.37):
      lost0 = f * f if copies else f  # slot 0 has a copy on worker 2
      want = ((1 - lost0) * own_K[0] + lost0 * prior_K[0] + (1 - f) * own_K[1] +
              f * prior_K[1]) / 2
      np.testing.assert_allclose(sweep.expected([f])[0], want, rtol=1e-10)
    # A tail cut (at most 1 unavailable worker) undercounts by at most the mass it omits.
    cut = schemes.evaluate_scheme(scheme, arrays, np.arange(40), k, r, batch_size=7,
                                  max_unavailable=1)
    rates = np.array([0.05, 0.3])
    full, low, omitted = sweep.expected(rates), cut.expected(rates), cut.omitted(rates)
    np.testing.assert_allclose(omitted, 1 - (1 - rates)**3 - 3 * rates * (1 - rates)**2)
    assert np.all(low <= full + 1e-12) and np.all(full <= low + omitted + 1e-12)
    assert cut.summary([0.3])["max_unavailable"] == 1


def test_tail_cut_bounds_the_binomial_tail():
  assert patterns.tail_cut(15, 0.1, 1e-4) == 7  # P(X > 7) = 3.4e-5, P(X > 6) = 3.1e-4
  assert patterns.tail_cut(3, 0.5, 0.0) == 3


# ------------------------------------------------------------------------------ a workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A seconds-long trained run: digits, tiny F, k = 2, r = 2 learned MLP code, 1 epoch."""
  from configs import tiny
  config = tiny.get_config("k=2,r=2,epochs=1")
  config.base_model.kwargs = ml_collections.ConfigDict({"hidden": (16,)})
  config.base_model.epochs = 1
  config.data.batch_size = 64
  path = str(tmp_path_factory.mktemp("run"))
  train_lib.train_and_evaluate(config, path, progress=False)
  return path


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_workdir_reports(workdir, tmp_path):
  k, r = 2, 2
  names = ("replication", "approxifer")
  result = studies.evaluate_workdir(workdir, out_dir=str(tmp_path), beyond=True,
                                    with_baselines=True, names=names)
  rows = _read_csv(tmp_path / "patterns.csv")
  assert len(rows) == erasure.count(k, r, "at_most") + erasure.count(k, r, "beyond")
  listed = [" ".join(map(str, s)) for s in erasure.unavailable_slots(np.concatenate(
      [erasure.patterns(k, r, "at_most"), erasure.patterns(k, r, "beyond")]))]
  assert [row["unavailable"] for row in rows] == listed
  assert [row["set"] for row in rows].count("exactly") == erasure.count(k, r, "exactly")
  assert [row["set"] for row in rows].count("beyond") == erasure.count(k, r, "beyond")
  curve = _read_csv(tmp_path / "unavailability.csv")
  assert len(curve) == len(accuracy.RATES_GRID)
  assert {"code", *names} <= set(curve[0])
  assert float(curve[0]["code"]) == pytest.approx(float(curve[0]["F"]))  # f = 0: F's accuracy
  for name in ("patterns.md", "unavailability.png", "baselines.md", "baselines.png",
               "eval.json"):
    assert os.path.exists(tmp_path / name)
  table = _read_csv(tmp_path / "baselines.csv")
  assert [row["scheme"] for row in table] == ["code", *names]
  assert [row["systematic"] for row in table] == ["True", "True", "False"]
  # The restored code is the run's: its numbers equal the run's own test summary.
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  code = result["schemes"][0]
  assert code["degraded_top1"] == pytest.approx(summary["test"]["degraded_top1"], abs=1e-9)
  assert code["agreement"] == pytest.approx(summary["test"]["reconstruction_top1"], abs=1e-9)
  reports.write_table(str(tmp_path / "comparison"), studies.comparison_rows([result, result]))
  assert len(_read_csv(tmp_path / "comparison.csv")) == 2


def test_baseline_sweep_reports(workdir, tmp_path):
  rows = studies.baseline_sweep(workdir, ks=[2, 3], rs=[1], names=("none", "berrut"),
                                out_dir=str(tmp_path), test_limit=90, curve_plots=[(3, 1)])
  assert [(row["k"], row["scheme"]) for row in rows] == [
      (2, "none"), (2, "berrut"), (3, "none"), (3, "berrut")]
  assert len(_read_csv(tmp_path / "baseline_sweep.csv")) == 4
  assert len(_read_csv(tmp_path / "baseline_curves.csv")) == 4 * len(accuracy.RATES_GRID)
  for name in ("baseline_sweep.png", "unavailability_k3_r1.png"):
    assert os.path.exists(tmp_path / name)


def test_too_many_workers_is_a_clear_error():
  with pytest.raises(ValueError, match="at most 16 workers"):
    patterns.client_patterns(15, 2, True)


def test_a_folder_that_is_not_a_workdir_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="has no config.json"):
    runs.load_run(str(tmp_path))
