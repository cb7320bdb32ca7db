"""Checks a whole run before any data is prepared, anything compiled or anything written.

``check_run`` runs every check, cheapest first: the config's names, types and ranges; the
components' shapes at batch 1 (``jax.eval_shape``: no compile, no memory) and F's checkpoint;
the batch against the devices; then the dataset's files (``data.checks``) and the workdir
(``workdir.check_workdir``). Every problem of the config is a ``ConfigError`` whose one-line
message names the field, the bad value and the fix (the data and workdir checks raise their own
ValueErrors, worded alike); train.py prints it and exits with status 2, and the workdir is left
untouched.
"""
from __future__ import annotations

import inspect
import math

import jax

from lcc_jax import (assembly, component_checks, erasure, optim, precision, registry, steps,
                     workdir as workdir_lib)
from lcc_jax.config_errors import ConfigError, require as _require
from lcc_jax.coders import channels
from lcc_jax.data import checks as data_checks
from lcc_jax.data import facts

ACCURACIES = ("reconstruction_top1", "reconstruction_top5", "degraded_top1", "degraded_top5")
EVAL_SPLITS = ("val", "test")
# Fields whose default is one of these types must hold one of them.
_TYPES = {bool: (bool,), int: (int,), float: (int, float), str: (str, type(None)),
          tuple: (tuple, list), list: (tuple, list)}




def _name(kind: str, field: str, name: str) -> None:
  """A registered name, or an import path that imports to a callable."""
  if registry.is_path(name):
    try:
      registry.get(kind, name)
    except registry.ComponentError as e:
      raise ConfigError(f"{field}: {e}") from None
    return
  known = registry.names(kind)
  _require(name in known, f"{field}={name!r} is not a known {kind}; known: {', '.join(known)}, "
                          "or an import path 'package.module:attribute'")


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and key != "kwargs":
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


# ------------------------------------------------------------------------------ config values


def check_types(config) -> None:
  """Every field of ``configs/default.py`` holds a value of its default's type."""
  from configs import default  # pylint: disable=g-import-not-at-top
  defaults = _flatten(default.base().to_dict())
  values = _flatten(config.to_dict())
  for field, default_value in defaults.items():
    if field not in values or type(default_value) not in _TYPES:
      continue
    value, allowed = values[field], _TYPES[type(default_value)]
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    _require(ok, f"{field} must be of type {type(default_value).__name__} (like the default "
                 f"{default_value!r}), got {value!r} ({type(value).__name__})")


def _get(tree, dotted: str):
  """``tree["a"]["b"]`` for "a.b" in a dict or ConfigDict; None when a part is missing."""
  for part in dotted.split("."):
    if not hasattr(tree, "keys") or part not in tree:
      return None
    tree = tree[part]
  return tree


def _positive(field: str, value, *, allow_zero: bool = False) -> None:
  ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
  _require(ok, f"{field} must be {'>= 0' if allow_zero else 'positive'} and finite, got "
               f"{value!r}")


def check_config(config) -> None:
  """Names, types, ranges and the agreements between fields that need no model."""
  check_types(config)
  _check_names(config)
  _check_ranges(config)
  _check_data_config(config)
  _check_training(config)
  _check_evaluation(config)
  _check_replicas(config)


def _check_names(config) -> None:
  _name("dataset", "data.name", config.data.name)
  _name("base_model", "base_model.name", config.base_model.name)
  _name("encoder", "encoder.name", config.encoder.name)
  _name("decoder", "decoder.name", config.decoder.name)
  if config.parity_model.name not in ("", "same"):
    _name("base_model", "parity_model.name", config.parity_model.name)
  _require(config.channel_mode in channels.MODES,
           f"channel_mode={config.channel_mode!r}; known: {', '.join(channels.MODES)}")
  if config.loss != steps.PARITY_LOSS:
    _name("loss", "loss", config.loss)
  _require(config.optim.name in optim.OPTIMIZERS,
           f"optim.name={config.optim.name!r}; known: {', '.join(optim.OPTIMIZERS)}")
  _require(config.on_nonfinite in ("stop", "skip"),
           f"on_nonfinite={config.on_nonfinite!r}; use 'stop' or 'skip'")
  _require(config.base_model.lr_schedule in optim.SCHEDULES,
           f"base_model.lr_schedule={config.base_model.lr_schedule!r}; use one of "
           f"{', '.join(optim.SCHEDULES)}")
  _require(config.precision in precision.PRECISIONS,
           f"precision={config.precision!r}; use one of {', '.join(precision.PRECISIONS)}")


def _check_ranges(config) -> None:
  for field, low in (("k", 1), ("r", 1), ("seed", 0), ("num_epochs", 0), ("checkpoint_every", 0),
                     ("steps_per_dispatch", 0),
                     ("base_model.epochs", 0), ("base_model.batch_size", 1),
                     ("distributed.shard_params_min_size", 0)):
    value = _get(config, field)
    _require(value is not None and value >= low, f"{field} must be >= {low}, got {value}")
  _positive("optim.lr", config.optim.lr)
  _positive("base_model.lr", config.base_model.lr)
  for field in ("optim.weight_decay", "optim.grad_clip_norm", "base_model.weight_decay",
                "time_limit_minutes", "checkpoint_every_minutes"):
    if _get(config, field) is not None:
      _positive(field, _get(config, field), allow_zero=True)


def _check_training(config) -> None:
  _require(any(config.train[c] for c in steps.COMPONENTS),
           "nothing to train: set at least one of train.encoder, train.decoder, "
           "train.parity_model to True")
  if config.loss == steps.PARITY_LOSS:
    _require(bool(config.train.parity_model),
             "loss=parity_mse trains a parity model: set train.parity_model=True")
  _check_parity_init(config)
  _check_patterns(config)


def _check_parity_init(config) -> None:
  init = config.parity_model.init
  _require(init in assembly.PARITY_INITS,
           f"parity_model.init={init!r}; use one of {list(assembly.PARITY_INITS)}")
  if init == "base":
    _require(assembly.parity_is_base_architecture(config),
             "parity_model.init=base copies F into F_P, which needs a parity model with F's "
             "architecture: set parity_model.name=same (or train.parity_model=True)")


def _check_replicas(config) -> None:
  replicas = config.replicas
  _require(replicas.seeds >= 1 and replicas.first >= 0,
           f"replicas.seeds={replicas.seeds}, replicas.first={replicas.first}: use seeds >= 1 "
           "replicas and a first index >= 0")
  for field in ("lr", "weight_decay"):
    values = list(replicas[field])
    _require(len(values) in (0, replicas.seeds),
             f"replicas.{field} has {len(values)} values for replicas.seeds={replicas.seeds}: "
             f"give one per replica, or none to use optim.{field} for all")
    _require(all(isinstance(v, (int, float)) and (v > 0 if field == "lr" else v >= 0)
                 for v in values),
             f"replicas.{field}={values}: each must be a number "
             + ("> 0" if field == "lr" else ">= 0"))


def _check_evaluation(config) -> None:
  splits = list(config.eval_splits)
  _require(bool(splits) and set(splits) <= set(EVAL_SPLITS) and len(set(splits)) == len(splits),
           f"eval_splits={splits}; use a non-empty subset of {list(EVAL_SPLITS)} without repeats")
  split, _, key = config.best_metric.partition("/")
  _require(split in ("val", "test", "train") and key in ACCURACIES,
           f"best_metric={config.best_metric!r}; use SPLIT/METRIC such as val/degraded_top1 "
           f"(metrics: {', '.join(ACCURACIES)})")
  _require(split in splits or split == "train",
           f"best_metric={config.best_metric!r} needs {split!r} in eval_splits {splits}")
  rates = list(config.unavailability_rates)
  _require(all(isinstance(f, (int, float)) and 0 <= f <= 1 for f in rates),
           f"unavailability_rates={rates}: each rate is a probability in [0, 1]")


def _check_data_config(config) -> None:
  data = config.data
  for field in ("batch_size", "eval_batch_size", "val_size"):
    _require(data[field] >= 1, f"data.{field} must be >= 1, got {data[field]}")
  if data.augment:
    _require(data.name in ("cifar10", "cifar100"),
             f"data.augment=True is defined for cifar10 and cifar100 only (as upstream), not "
             f"data.name={data.name!r}; set data.augment=False")
  if data.name == "function":
    from lcc_jax.data import datasets  # pylint: disable=g-import-not-at-top
    _require(data.sampler in datasets.SAMPLERS,
             f"data.sampler={data.sampler!r}; known: {', '.join(datasets.SAMPLERS)}")
    for field in ("input_dim", "num_outputs", "num_train", "num_test"):
      _require(data[field] >= 1, f"data.{field} must be >= 1, got {data[field]}")
    if config.base_model.name == "function":
      fn = dict(config.base_model.kwargs).get("fn", _default_kwarg("base_model", "function", "fn"))
      _require(fn == data.fn,
               f"data.fn={data.fn!r} labels the function dataset but base_model.kwargs.fn={fn!r} "
               f"is F; set both to the same function, e.g. --config.data.fn={fn}")
  num_train = (data.num_train if data.name == "function" else
               facts.DATASETS[data.name].num_train if data.name in facts.DATASETS else None)
  if num_train:
    usable = num_train // config.k * config.k
    num_val = -(-data.val_size // config.k) * config.k
    _require(num_val < usable,
             f"data.val_size={data.val_size} (→ {num_val} for k={config.k}) leaves none of the "
             f"{usable} training examples of {data.name}; use a smaller data.val_size")


def _default_kwarg(kind: str, name: str, arg: str):
  return inspect.signature(registry.get(kind, name)).parameters[arg].default


def _check_patterns(config) -> None:
  _require(config.patterns.mode in erasure.MODES[:2],
           f"patterns.mode={config.patterns.mode!r}; training uses one of: exactly, at_most")
  _require(config.patterns.limit >= 1 and config.patterns.chunk >= 0,
           f"patterns.limit must be >= 1 and patterns.chunk >= 0, got "
           f"{config.patterns.limit} and {config.patterns.chunk}")
  num = erasure.count(config.k, config.r, config.patterns.mode)
  _require(num <= config.patterns.limit,
           f"k={config.k}, r={config.r} ({config.patterns.mode}) has {num} erasure patterns, more "
           f"than patterns.limit={config.patterns.limit}; lower k or r, or raise "
           f"--config.patterns.limit={num} if you mean it")


# ------------------------------------------------------------------------------ devices


def check_devices(config, mesh) -> None:
  """Global batch sizes (or, with ``replicas.shard``, the replicas) split evenly over the
  devices of the mesh."""
  devices = mesh.devices.size
  if config.replicas.shard:
    seeds = config.replicas.seeds
    _require(seeds % devices == 0 and jax.process_count() == 1
             and not config.distributed.shard_params_min_size,
             f"replicas.shard=True splits the replicas.seeds={seeds} replicas over the {devices} "
             f"devices of one process ({jax.process_count()} here), without "
             "distributed.shard_params_min_size: use a multiple of the devices, e.g. "
             f"--config.replicas.seeds={-(-seeds // devices) * devices}, or replicas.shard=False")
    return
  for field in ("batch_size", "eval_batch_size"):
    value = config.data[field]
    fix = -(-value // devices) * devices
    _require(value % devices == 0,
             f"data.{field}={value} must be a multiple of the {devices} devices "
             f"({jax.process_count()} process(es)): each device takes an equal share; e.g. "
             f"--config.data.{field}={fix}")


# ------------------------------------------------------------------------------ everything


def check_run(config, workdir: str | None, *, mesh=None, overwrite: bool = False,
              eval_only: bool = False) -> None:
  """Every check of a run, cheapest first; raises ConfigError (or a subclass of ValueError
  naming the problem) before anything is prepared, compiled or written.

  ``workdir=None`` skips the workdir checks (processes other than the first).
  """
  check_config(config)
  component_checks.check_shapes(config)
  if mesh is not None:
    check_devices(config, mesh)
  data_checks.check_data(config.data)
  if workdir is not None:
    workdir_lib.check_workdir(workdir, config.to_dict(), overwrite=overwrite,
                              eval_only=eval_only)
