"""Checks a whole config and the workdir before any data is prepared or anything compiled.

Every problem is a ``ConfigError`` whose message names the field, the bad value and the fix;
train.py prints it as one line and exits with status 2.
"""
from __future__ import annotations

import os

from lcc_jax import erasure, optim, registry, steps
from lcc_jax.coders import channels


class ConfigError(ValueError):
  """A bad config value, flag or workdir, found before any work started."""


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _name(kind: str, field: str, name: str) -> None:
  known = registry.names(kind)
  _require(name in known, f"{field}={name!r} is not a known {kind}; known: {', '.join(known)}")


def check_config(config) -> None:
  """Names, types, ranges and the agreements between fields."""
  for field in ("k", "r", "seed", "num_epochs", "checkpoint_every"):
    value = config[field]
    _require(isinstance(value, int) and not isinstance(value, bool),
             f"{field} must be an integer, got {value!r}")
  _require(config.k >= 1, f"k must be >= 1, got {config.k}")
  _require(config.r >= 1, f"r must be >= 1, got {config.r}")
  _require(config.num_epochs >= 0, f"num_epochs must be >= 0, got {config.num_epochs}")
  _require(config.checkpoint_every >= 1,
           f"checkpoint_every must be >= 1, got {config.checkpoint_every}")
  _name("dataset", "data.name", config.data.name)
  _name("base_model", "base_model.name", config.base_model.name)
  _name("encoder", "encoder.name", config.encoder.name)
  _name("decoder", "decoder.name", config.decoder.name)
  if config.parity_model.name not in ("", "same"):
    _name("base_model", "parity_model.name", config.parity_model.name)
  _require(config.channel_mode in channels.MODES,
           f"channel_mode={config.channel_mode!r}; known: {', '.join(channels.MODES)}")
  losses_known = registry.names("loss") + [steps.PARITY_LOSS]
  _require(config.loss in losses_known,
           f"loss={config.loss!r} is not a known loss; known: {', '.join(losses_known)}")
  _require(config.optim.name in optim.OPTIMIZERS,
           f"optim.name={config.optim.name!r}; known: {', '.join(optim.OPTIMIZERS)}")
  _require(config.optim.lr > 0, f"optim.lr must be positive, got {config.optim.lr}")
  for field in ("batch_size", "eval_batch_size"):
    value = config.data[field]
    _require(isinstance(value, int) and value >= 1,
             f"data.{field} must be a positive integer, got {value!r}")
  _require(any(config.train[c] for c in steps.COMPONENTS),
           "nothing to train: set at least one of train.encoder, train.decoder, "
           "train.parity_model to True")
  _require(config.patterns.mode in erasure.MODES[:2],
           f"patterns.mode={config.patterns.mode!r}; training uses one of: exactly, at_most")
  try:
    erasure.count(config.k, config.r, config.patterns.mode)
    erasure.patterns(config.k, config.r, config.patterns.mode, limit=config.patterns.limit)
  except ValueError as e:
    raise ConfigError(f"patterns: {e}") from None
  _require(config.on_nonfinite in ("stop", "skip"),
           f"on_nonfinite={config.on_nonfinite!r}; use 'stop' or 'skip'")
  split, _, key = config.best_metric.partition("/")
  _require(split in ("val", "test", "train") and key in (
      "reconstruction_top1", "reconstruction_top5", "degraded_top1", "degraded_top5"),
           f"best_metric={config.best_metric!r}; use SPLIT/METRIC such as val/degraded_top1")
  _require(split in config.eval_splits or split == "train",
           f"best_metric={config.best_metric!r} needs {split!r} in eval_splits "
           f"{list(config.eval_splits)}")
  if config.loss == steps.PARITY_LOSS:
    _require(bool(config.train.parity_model),
             "loss=parity_mse trains a parity model: set train.parity_model=True")


def check_workdir(workdir: str) -> None:
  """The workdir (or the nearest existing parent) must be writable."""
  _require(bool(workdir), "--workdir is empty; give a folder for checkpoints and metrics")
  probe = os.path.abspath(workdir)
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  _require(os.path.isdir(probe), f"--workdir {workdir}: {probe} exists and is not a folder")
  _require(os.access(probe, os.W_OK | os.X_OK),
           f"--workdir {workdir} is not writable ({probe}); choose a folder you can write to")
