"""Evaluation of trained runs: erasure-pattern sweeps, the training-free baselines, reports.

The command is ``python -m lcc_jax.evaluation`` (``lcc-evaluate``); docs/evaluate.md has its
outputs and definitions. One concern per module:

  patterns   the erasure patterns a client can meet, subsets, the tail cut (NumPy only)
  counting   exact per-pattern counts of a scheme: every pattern in one jitted pass per batch
  accuracy   ``Sweep``: one scheme's counts, its per-pattern and expected client accuracy
  schemes    the run's code as a scheme, the baselines (LeTCC's λ tuned on val), evaluate_scheme
  runs       ``Run``, ``load_run``: a workdir rebuilt as its run built it
  studies    a workdir's evaluation, the baseline sweep over k × r, the Byzantine study
  reports    CSV/Markdown tables and every PNG plot (the training driver's too)
  cli        the command line

Import the module you need: this package imports none of them (nor JAX) by itself.
"""
