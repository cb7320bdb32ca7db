"""Erasure-pattern sweeps of a trained run, the training-free baselines, reports and plots.

  python -m lcc_jax.evaluation --workdir=DIR [--workdir=DIR2 ...] [--beyond] [--baselines]
  python -m lcc_jax.evaluation --workdir=DIR --baseline_sweep [--sweep_k=2,3,4 --sweep_r=1]

Writes into DIR/eval/ (or --out): patterns.csv/.md (every pattern of fewer than, exactly and,
with --beyond, more than r unavailable outputs), unavailability.csv/.png (expected accuracy
seen by clients when each of the k + r workers is unavailable independently with probability
f), baselines.csv/.md/.png, comparison.csv/.md across several workdirs, baseline_sweep.*.
See docs/evaluate.md for the definitions.
"""
from absl import app, flags

from lcc_jax.evaluation import cli

cli.define_flags()
# Defined in cli: adopted here so that --help lists them, as it lists a script's own flags.
flags.adopt_module_key_flags(cli)
app.run(cli.main)
