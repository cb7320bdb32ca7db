"""The serving simulator against queueing theory, and the schemes against each other."""
import math

import numpy as np
import pytest

from lcc_jax.serving import schemes, service, simulate


def _timings(model, parity=None, coder=service.ShiftedExp(0.0, 0.0)):
  return service.Timings(model, parity or model, coder, coder)


def _run(name, rate, queries, timings, k=2, r=1, m=1, seed=0, **interference):
  spec = simulate.Spec(schemes.Scheme(name, k, r, m), rate, queries, timings,
                       service.Interference(**interference), seed=seed)
  return simulate.simulate(spec)


def _erlang_c(c: int, a: float) -> float:
  """P(an arrival waits) in M/M/c with offered load a = λ/μ."""
  tail = a**c / math.factorial(c) / (1 - a / c)
  return tail / (sum(a**n / math.factorial(n) for n in range(c)) + tail)


@pytest.mark.parametrize("c,rho", [(1, 0.5), (4, 0.7)])
def test_no_redundancy_is_mmc(c, rho):
  """Mean latency and waiting-time percentiles of M/M/c (μ = 1 per ms), within sampling error."""
  lam = rho * c
  result = _run("none", lam, 100_000, _timings(service.ShiftedExp(0.0, 1.0)), m=c)
  keep = slice(10_000, None)
  p_wait = _erlang_c(c, lam)
  decay = c - lam  # P(W_q > t) = p_wait · exp(−(cμ − λ) t)
  assert np.mean(result.latency_Q[keep]) == pytest.approx(1 + p_wait / decay, rel=0.04)
  for q in (0.9, 0.99):
    expected = math.log(p_wait / (1 - q)) / decay
    assert np.quantile(result.wait_Q[keep], q) == pytest.approx(expected, rel=0.06)
  assert np.mean(result.wait_Q[keep] > 0) == pytest.approx(p_wait, abs=0.02)


def test_coded_without_stragglers_has_no_redundancys_latency():
  """Constant service times, light load: every query's own output comes first, at the same time."""
  timings = _timings(service.ShiftedExp(10.0, 0.0), coder=service.ShiftedExp(0.5, 0.0))
  none = _run("none", 0.05, 4000, timings, k=2, m=12)
  coded = _run("coded", 0.05, 4000, timings, k=2, m=12)
  np.testing.assert_array_equal(coded.latency_Q, none.latency_Q)
  assert not coded.decoded_Q.any()


def _straggling(name, seed=0):
  timings = _timings(service.ShiftedExp(8.0, 2.0), coder=service.ShiftedExp(0.2, 0.0))
  inter = dict(fraction=0.05, slow_alpha=1.5, slow_min=3.0, slow_ms=500.0)
  rate = 0.6 * 12 / (10.0 * service.Interference(**inter).mean_factor)
  return _run(name, rate, 20_000, timings, k=2, m=12, seed=seed, **inter)


def test_coded_cuts_the_tail_when_instances_straggle():
  p999 = {name: simulate.summarize(_straggling(name))["p999_ms"]
          for name in ("none", "replication", "coded")}
  assert p999["coded"] < 0.5 * min(p999["none"], p999["replication"])


def test_a_fixed_seed_gives_identical_outputs():
  a, b, c = _straggling("hedged"), _straggling("hedged"), _straggling("hedged", seed=1)
  np.testing.assert_array_equal(a.answer_Q, b.answer_Q)
  assert not np.array_equal(a.answer_Q, c.answer_Q)


def test_lost_tasks_are_requeued_and_every_query_is_answered():
  timings = _timings(service.ShiftedExp(8.0, 2.0))
  for name in ("none", "coded", "approxifer"):
    result = _run(name, 0.5, 4000, timings, k=2, m=12, mtbf_ms=2000.0, repair_ms=500.0,
                  detect_ms=50.0)
    assert np.isfinite(result.answer_Q).all()
  # No redundancy waits out the detection of a lost task: its tail shows it.
  assert np.quantile(_run("none", 0.5, 4000, timings, m=12, mtbf_ms=2000.0, repair_ms=500.0,
                          detect_ms=50.0).latency_Q, 0.999) > 50.0


def test_bad_scheme_settings_are_refused():
  with pytest.raises(ValueError, match="unknown scheme"):
    schemes.check(["bogus"], 2, 1, 12)
  with pytest.raises(ValueError, match="whole"):
    schemes.check(["coded"], 5, 1, 12)
  with pytest.raises(ValueError, match="slow_alpha"):
    service.Interference(slow_alpha=1.0).check()
