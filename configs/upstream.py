r"""Runs an upstream JSON config unchanged: learned-cc's conf.json or a parity-models sweep JSON.

  python train.py --config=configs/upstream.py:path/to/conf.json --workdir=runs/x
  python train.py --config=configs/upstream.py:path/to/mnist-concat.json --workdir=runs/mnist-concat
  python train.py --workdir=runs/one \
      --config=configs/upstream.py:mnist-concat.json#mnist/resnet18/k4/parity_mse/concat-sub

A conf.json is one run (in WORKDIR). A sweep JSON is all its runs, in upstream's order, each in
WORKDIR/<dataset>/<model>/k<k>/<loss>/<encoder>-<decoder>; `#NAME` picks one. Overrides such as
--config.data.manual_dir=... apply as for any config. The mapping and the deliberate differences
from upstream are in lcc_jax/legacy.py and docs/configs.md.
"""
from __future__ import annotations

import os

import ml_collections

from configs import common
from lcc_jax import legacy

SEP = "#"


def _runs(arg: str | None) -> tuple[str, list[tuple[str, common.Run]]]:
  """(JSON path, its (name, Run) pairs, narrowed to the one named after '#')."""
  if not arg:
    raise ValueError("configs/upstream.py needs the JSON file: "
                     "--config=configs/upstream.py:path/to/conf.json")
  path, name = arg, ""
  if not os.path.isfile(arg) and SEP in arg:
    path, _, name = arg.rpartition(SEP)
  runs = legacy.read_runs(path)
  if name:
    chosen = [(n, run) for n, run in runs if n == name]
    if not chosen:
      raise ValueError(f"{path} has no run named {name!r}; its runs: {[n for n, _ in runs]}")
    runs = chosen
  return path, runs


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The run of a conf.json, or the first (or '#'-named) run of a sweep JSON."""
  _, runs = _runs(arg)
  return common.config(runs[0][1])


def get_sweep(arg: str | None = None) -> list[dict]:
  path, runs = _runs(arg)
  return [{"name": name, "arg": f"{path}{SEP}{name}" if name else path} for name, _ in runs]
