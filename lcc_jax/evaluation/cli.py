"""The command line of the evaluation (``python -m lcc_jax.evaluation``, ``lcc-evaluate``)."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Sequence

import jax
import numpy as np

from lcc_jax import baselines, checkpoint, data, host_memory, workdir as workdir_lib
from lcc_jax.coders import berrut
from lcc_jax.evaluation import reports, runs, studies


def main(argv: Sequence[str]) -> int:
  from absl import flags
  FLAGS = flags.FLAGS
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  logging.getLogger().setLevel(logging.INFO if FLAGS.verbose else logging.WARNING)
  # XLA:CPU can hang with several executions in flight (jax-ml/jax#25861): run them one at a
  # time; each is large, so this costs nothing measurable.
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  # XLA:CPU's multi-threaded Eigen pool wedged twice (all threads in futex waits) in long LeTCC
  # sweeps (linalg.solve vmapped over thousands of patterns); single-threaded Eigen never did.
  host_memory.prepare_host(cpu_xla_flags=("--xla_cpu_multi_thread_eigen=false",))
  checkpoint.mute_orbax_failure_reports()  # a checkpoint that does not restore: one line
  workdirs = FLAGS.workdir or []
  if not workdirs:
    print("error: give at least one --workdir", file=sys.stderr)
    return 2
  default = baselines.SWEEP_NAMES if FLAGS.baseline_sweep else baselines.NAMES
  names = tuple(FLAGS.baseline_names or default)
  unknown = set(names) - set(baselines.NAMES)
  if unknown:
    print(f"error: unknown --baseline_names {sorted(unknown)}; known: {list(baselines.NAMES)}",
          file=sys.stderr)
    return 2
  grid = tuple(float(v) for v in FLAGS.lambdas)
  try:
    with contextlib.ExitStack() as locks:
      # It writes F's cached outputs (and eval/) into each workdir: no run may write beside it.
      for workdir in workdirs:
        locks.enter_context(workdir_lib.locked(workdir,
                                               "evaluation (python -m lcc_jax.evaluation)"))
      return _run_cli(FLAGS, workdirs, names, grid)
  except (ValueError, data.DataUnavailableError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def _run_cli(FLAGS, workdirs, names, grid) -> int:
  """What the flags ask for, on locked workdirs; raises ValueError on bad input."""
  if FLAGS.baseline_sweep:
    studies.baseline_sweep(workdirs[0], ks=[int(v) for v in FLAGS.sweep_k],
                           rs=[int(v) for v in FLAGS.sweep_r], names=names, out_dir=FLAGS.out,
                           batch_size=FLAGS.batch_size, grid=grid, val_limit=FLAGS.val_limit,
                           test_limit=FLAGS.test_limit, tail=FLAGS.sweep_tail,
                           curve_plots=[tuple(int(v) for v in kr.split(":"))
                                        for kr in FLAGS.curve_plots])
    print(f"wrote baseline_sweep.csv/.md/.png into {FLAGS.out or workdirs[0] + '/eval'}")
    return 0
  if FLAGS.byzantine_k:
    run = runs.load_run(workdirs[0], restore=False)
    out = FLAGS.out or os.path.join(workdirs[0], studies.EVAL_DIR)
    os.makedirs(out, exist_ok=True)
    rows = [studies.byzantine(run.base_fns, run.base_variables, run.test_arrays(),
                              np.arange(len(run.dataset.x_test)), int(k), int(a),
                              sigma=float(sigma), convention=FLAGS.byzantine_convention,
                              batch_size=FLAGS.batch_size or 500)
            for k in FLAGS.byzantine_k for a in FLAGS.byzantine_errors
            for sigma in FLAGS.byzantine_sigma]
    reports.write_table(os.path.join(out, "byzantine"), rows,
                        f"ApproxIFER with Byzantine workers: {run.dataset.name} "
                        f"{run.config.base_model.name} (test, every query scored)")
    print(f"wrote {out}/byzantine.csv/.md")
    return 0
  results = []
  for workdir in workdirs:
    out = (os.path.join(FLAGS.out, os.path.basename(os.path.normpath(workdir)))
           if FLAGS.out and len(workdirs) > 1 else FLAGS.out)
    results.append(studies.evaluate_workdir(workdir, out_dir=out, beyond=FLAGS.beyond,
                                            with_baselines=FLAGS.baselines, names=names,
                                            batch_size=FLAGS.batch_size, grid=grid,
                                            replica=None if FLAGS.replica < 0 else FLAGS.replica))
    code, spread = results[-1]["schemes"][0], results[-1].get("replicas_spread")
    if spread:
      print(f"{workdir}: {spread['degraded_top1']['count']} replicas: degraded top-1 "
            f"{spread['degraded_top1']['mean']:.4f} ± {spread['degraded_top1']['std']:.4f}, "
            f"agreement {spread['agreement']['mean']:.4f} ± {spread['agreement']['std']:.4f}, "
            f"F {code['base_top1']:.4f}")
    else:
      print(f"{workdir}: degraded top-1 {code['degraded_top1']:.4f}, agreement "
            f"{code['agreement']:.4f}, F {code['base_top1']:.4f}")
  if len(workdirs) > 1:
    out = FLAGS.out or os.path.join(workdirs[0], studies.EVAL_DIR)
    reports.write_table(os.path.join(out, "comparison"), studies.comparison_rows(results),
                        "Comparison across runs (test split)")
    print(f"wrote {out}/comparison.csv/.md")
  return 0


def define_flags():
  """The flags, defined only when a command runs: importing this module defines none."""
  from absl import flags
  flags.DEFINE_multi_string("workdir", None, "A trained workdir (repeat for a comparison).")
  flags.DEFINE_string("out", None, "Output folder (default: the first workdir's eval/).")
  flags.DEFINE_integer("replica", -1, "A replicated run (replicas.seeds > 1): evaluate only "
                       "this replica's best code (-1: every replica, with their spread).")
  flags.DEFINE_bool("beyond", False, "Also list patterns of more than r unavailable outputs.")
  flags.DEFINE_bool("baselines", False, "Evaluate the training-free baselines at the run's k, r.")
  flags.DEFINE_bool("baseline_sweep", False, "Sweep the baselines over --sweep_k × --sweep_r "
                    "on the first workdir's F.")
  flags.DEFINE_list("baseline_names", None, "Baselines to evaluate (default: all of "
                    "baselines.NAMES; for --baseline_sweep baselines.SWEEP_NAMES).")
  flags.DEFINE_list("sweep_k", [str(k) for k in range(2, 13)], "k values of --baseline_sweep.")
  flags.DEFINE_list("sweep_r", ["1", "2", "3"], "r values of --baseline_sweep.")
  flags.DEFINE_list("curve_plots", [], "--baseline_sweep: K:R settings whose client curves "
                    "are also plotted (unavailability_kK_rR.png), e.g. 8:1,2:1.")
  flags.DEFINE_float("sweep_tail", 1e-4, "--baseline_sweep: skip patterns of more unavailable "
                     "workers than the largest rate makes likelier than this (0: all 2^N).")
  flags.DEFINE_list("lambdas", [str(v) for v in baselines.LAMBDAS],
                    "LeTCC λ grid (λ_e × λ_d, chosen on val).")
  flags.DEFINE_list("byzantine_k", [], "Instead: ApproxIFER with Byzantine workers at these k "
                    "on the first workdir's F (N = 2k + 2A − 1 workers).")
  flags.DEFINE_list("byzantine_errors", ["1", "2", "3"], "Numbers A of Byzantine workers.")
  flags.DEFINE_list("byzantine_sigma", ["10", "100"], "Stds of the noise an adversary adds.")
  flags.DEFINE_enum("byzantine_convention", "paper", list(berrut.CONVENTIONS),
                    "Worker points: cos(iπ/N) ('paper', ApproxIFER's error scripts) or "
                    "cos(iπ/(N−1)).")
  flags.DEFINE_integer("batch_size", 0, "Groups per step (0: the run's data.eval_batch_size).")
  flags.DEFINE_integer("val_limit", 0, "Use only the first N val examples for λ (0: all).")
  flags.DEFINE_bool("verbose", False, "Log every scheme's summary (and orbax's messages).")
  flags.DEFINE_integer("test_limit", 0, "Baseline sweep: only the first N test examples "
                       "(0: all).")


def run():
  """The ``lcc-evaluate`` console script (= ``python -m lcc_jax.evaluation``)."""
  from absl import app
  define_flags()
  app.run(main)
