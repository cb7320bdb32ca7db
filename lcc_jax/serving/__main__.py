"""python -m lcc_jax.serving [--workdir=DIR] --out=OUT [--scenario=parm] [--schemes=...]

Without --workdir: parametric service times and no accuracy. With it: the run's F, code and
training-free baselines give the accuracy of every answer (lcc_jax.evaluation's per-pattern
counts on the test split) and, unless --service=parametric, the service times (measured here
at batch 1). Errors in the inputs print one line and exit with status 2, before any long work.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
import traceback

from absl import app, flags

from lcc_jax.serving import report, scenario as scenario_lib, schemes, service, simulate

EXIT_BAD_INPUT = 2

flags.DEFINE_string("workdir", None, "A trained run: accuracy and measured service times.")
flags.DEFINE_string("out", None, "Output folder for serving.csv/.md/.png.")
flags.DEFINE_string("scenario", "parm", f"One of {list(scenario_lib.SCENARIOS)}.")
flags.DEFINE_list("schemes", list(schemes.NAMES), "Schemes to simulate.")
flags.DEFINE_list("ks", None, "Group sizes k (default: the scenario's).")
flags.DEFINE_integer("r", None, "Parities per group (default: the scenario's).")
flags.DEFINE_integer("m", None, "Model instances without redundancy (default: the scenario's).")
flags.DEFINE_list("loads", None, "Offered loads in (0, 1) (default: the scenario's).")
flags.DEFINE_integer("queries", None, "Queries per simulation (default: the scenario's).")
flags.DEFINE_float("slow_fraction", None, "Fraction of time an instance is slowed.")
flags.DEFINE_float("slow_alpha", None, "Pareto shape of the slowdown factor (> 1).")
flags.DEFINE_float("slow_min", None, "Smallest slowdown factor (>= 1).")
flags.DEFINE_float("slow_len", None, "Mean slowed period, in mean service times of F.")
flags.DEFINE_float("mtbf", None, "Mean time between an instance's failures (same unit; inf: none).")
flags.DEFINE_float("repair", None, "Mean down time after a failure (same unit).")
flags.DEFINE_float("detect", None, "Delay before a lost task is re-queued (same unit).")
flags.DEFINE_enum("service", None, ["measured", "parametric"], "Service times (default: measured "
                  "with --workdir, else parametric).")
flags.DEFINE_float("shift_ms", 8.0, "Parametric: F's service time shift.")
flags.DEFINE_float("exp_ms", 2.0, "Parametric: mean of F's exponential part.")
flags.DEFINE_float("encode_ms", 0.2, "Parametric: encoding time per group.")
flags.DEFINE_float("decode_ms", 0.2, "Parametric: decoding time per group.")
flags.DEFINE_integer("reps", 2000, "Measured: timed calls per function.")
flags.DEFINE_integer("seed", 0, "Seed of every random stream of the simulation.")
flags.DEFINE_float("warmup", 0.1, "Fraction of the first queries left out of the statistics.")
flags.DEFINE_integer("batch_size", 0, "Groups per evaluation step (0: the run's).")
flags.DEFINE_bool("verbose", False, "Tracebacks for errors in the inputs.")
FLAGS = flags.FLAGS

FIELDS = ("r", "m", "queries", "slow_fraction", "slow_alpha", "slow_min", "slow_len", "mtbf",
          "repair", "detect")


def _bad_input(error, verbose: bool) -> int:
  if verbose:
    traceback.print_exc()
  print(f"error: {error}", file=sys.stderr)
  return EXIT_BAD_INPUT


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(_bad_input(e, "--verbose" in argv))


def _scenario() -> scenario_lib.Scenario:
  if FLAGS.scenario not in scenario_lib.SCENARIOS:
    raise ValueError(f"unknown --scenario {FLAGS.scenario!r}; known: "
                     f"{list(scenario_lib.SCENARIOS)}")
  changes = {f: getattr(FLAGS, f) for f in FIELDS if getattr(FLAGS, f) is not None}
  if FLAGS.ks:
    changes["ks"] = tuple(int(k) for k in FLAGS.ks)
  if FLAGS.loads:
    changes["loads"] = tuple(float(v) for v in FLAGS.loads)
  scenario = dataclasses.replace(scenario_lib.SCENARIOS[FLAGS.scenario], **changes)
  scenario.check()
  for k in scenario.ks:
    schemes.check(FLAGS.schemes, k, scenario.r, scenario.m)
  return scenario


def _parametric() -> service.Timings:
  for name in ("shift_ms", "exp_ms", "encode_ms", "decode_ms"):
    if getattr(FLAGS, name) < 0:
      raise ValueError(f"--{name} must be >= 0, got {getattr(FLAGS, name)}")
  if FLAGS.shift_ms + FLAGS.exp_ms <= 0:
    raise ValueError("F's mean service time (--shift_ms + --exp_ms) must be > 0")
  f = service.ShiftedExp(FLAGS.shift_ms, FLAGS.exp_ms)
  return service.Timings(f, f, service.ShiftedExp(FLAGS.encode_ms, 0.0),
                         service.ShiftedExp(FLAGS.decode_ms, 0.0))


def _workdir_setup(workdir: str, measured: bool, parametric: service.Timings):
  """``setup(name, k, r)`` from a run: accuracy tables per (k, r), timings per code."""
  import jax
  from lcc_jax import host_memory
  from lcc_jax.evaluation import runs
  from lcc_jax.serving import accuracy, measure
  # As lcc_jax.evaluation's command: one execution at a time (XLA:CPU hangs, jax-ml/jax#25861).
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  host_memory.keep_freed_memory()
  run = runs.load_run(workdir)
  f_ms = measure.model(run, reps=FLAGS.reps) if measured else None
  tables, times = {}, {}

  def setup(name, k, r):
    if (k, r) not in tables:
      tables[k, r] = accuracy.tables(run, FLAGS.schemes, k, r, batch_size=FLAGS.batch_size)
    code = accuracy.code_name(run, name, k, r)
    answers, sweep = tables[k, r][code]
    if measured and (code, k, r) not in times:
      times[code, k, r] = measure.timings(run, f_ms, code, k, r, sweep,
                                              reps=FLAGS.reps)
    return times.get((code, k, r), parametric), answers, code

  return setup


def _header(scenario, measured: bool, parametric: service.Timings) -> list[str]:
  s = scenario
  lines = [f"Command: `python -m lcc_jax.serving {shlex.join(sys.argv[1:])}`", "",
           f"Scenario `{s.name}`: m = {s.m} instances + m·r/k extra, r = {s.r}, k in "
           f"{list(s.ks)}; {s.queries} Poisson queries per point (first {FLAGS.warmup:.0%} "
           f"left out), batch 1, seed {FLAGS.seed}.",
           f"Interference: slowed {s.slow_fraction:.0%} of the time, factor "
           f"{s.slow_min:g}·Pareto({s.slow_alpha:g}), periods of {s.slow_len:g} mean service "
           f"times; fail-stop: mtbf {s.mtbf:g}, repair {s.repair:g}, detection {s.detect:g} "
           "(same unit).",
           f"Workdir: {os.path.abspath(FLAGS.workdir) if FLAGS.workdir else 'none (no accuracy)'}"
           "."]
  if measured:
    lines.append("Service times: measured here at batch 1 (jitted, after warm-up), "
                 f"{FLAGS.reps} calls per function, resampled.")
  else:
    lines.append(f"Service times: F = {parametric.model.shift_ms:g} ms + "
                 f"Exp({parametric.model.exp_ms:g} ms), encode {parametric.encode.mean:g} ms, "
                 f"decode {parametric.decode.mean:g} ms.")
  return lines


def main(argv) -> int:
  # absl turns INFO on; the evaluation's per-scheme summaries and orbax's messages are noise here.
  logging.getLogger().setLevel(logging.INFO if FLAGS.verbose else logging.WARNING)
  try:
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.out:
      raise ValueError("give --out=DIR")
    if FLAGS.workdir and not os.path.isfile(os.path.join(FLAGS.workdir, "config.json")):
      raise ValueError(f"{FLAGS.workdir} has no config.json: not a workdir written by train.py")
    if not 0 <= FLAGS.warmup < 1:
      raise ValueError(f"--warmup must be in [0, 1), got {FLAGS.warmup}")
    scenario = _scenario()
    parametric = _parametric()
    measured = (FLAGS.service or ("measured" if FLAGS.workdir else "parametric")) == "measured"
    if measured and not FLAGS.workdir:
      raise ValueError("--service=measured times a run's functions: give --workdir")
    if FLAGS.workdir:
      setup = _workdir_setup(FLAGS.workdir, measured, parametric)
    else:
      setup = lambda name, k, r: (parametric, simulate.NO_ACCURACY, "")
  except ValueError as e:
    return _bad_input(e, FLAGS.verbose)
  rows = scenario_lib.sweep(scenario, FLAGS.schemes, setup, seed=FLAGS.seed,
                            warmup=FLAGS.warmup)
  report.write_all(FLAGS.out, rows, _header(scenario, measured, parametric),
                   f"scenario {scenario.name}" + (f", {FLAGS.workdir}" if FLAGS.workdir else ""))
  print(f"wrote {FLAGS.out}/serving.csv, serving.md, serving.png ({len(rows)} rows)")
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
