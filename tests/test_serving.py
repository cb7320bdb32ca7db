"""The serving simulator against queueing theory, and the schemes against each other."""
import csv
import math
import os
import subprocess
import sys

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


# ------------------------------------------------------------------------------ command line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "lcc_jax.serving", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_cli_refuses_bad_input_in_one_line(tmp_path):
  for args in (["--schemes=bogus"], ["--bogus"], [f"--workdir={tmp_path}"], ["--scenario=zz"],
               ["--loads=1.5"], ["--ks=5"], ["--slow_alpha=0.5"], ["--service=measured"]):
    proc = _cli(f"--out={tmp_path}/o", *args)
    assert proc.returncode == 2, (args, proc.stderr)
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_cli_writes_the_report(tmp_path):
  proc = _cli(f"--out={tmp_path}", "--ks=2,4", "--loads=0.3,0.8", "--queries=2000")
  assert proc.returncode == 0, proc.stderr
  rows = _rows(tmp_path / "serving.csv")
  assert {"scheme", "arrival_rate", "p50_ms", "p99_ms", "p999_ms", "accuracy"} <= set(rows[0])
  assert len(rows) == 2 * len(schemes.NAMES) * 2
  assert (tmp_path / "serving.png").stat().st_size > 0
  assert "p99.9 − p50" in (tmp_path / "serving.md").read_text()


def test_cli_with_a_workdir_reports_what_clients_get(tmp_path):
  from configs import tiny
  from lcc_jax import train_lib
  workdir = str(tmp_path / "run")
  config = tiny.get_config("k=2,r=1,epochs=1")
  config.data.batch_size = 64
  summary = train_lib.train_and_evaluate(config, workdir, progress=False)
  proc = _cli(f"--workdir={workdir}", f"--out={tmp_path}/o", "--ks=2,3", "--loads=0.5",
              "--queries=2000", "--reps=20", "--schemes=none,coded,approxifer")
  assert proc.returncode == 0, proc.stderr
  rows = {(int(row["k"]), row["scheme"]): row for row in _rows(tmp_path / "o" / "serving.csv")}
  f_top1 = float(rows[2, "none"]["accuracy"])
  assert f_top1 == pytest.approx(summary["base_model"]["test_accuracy"], abs=0.01)
  assert rows[2, "coded"]["code"] == "code" and rows[3, "coded"]["code"] == "berrut"
  assert float(rows[2, "approxifer"]["decoded_fraction"]) == 1.0
  for row in rows.values():
    assert 0.0 <= float(row["accuracy"]) <= 1.0
