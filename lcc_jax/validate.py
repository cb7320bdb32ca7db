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
import os

import jax
import jax.numpy as jnp

from lcc_jax import assembly, erasure, optim, precision, registry, steps, workdir as workdir_lib
from lcc_jax.coders import channels
from lcc_jax.data import checks as data_checks
from lcc_jax.data import facts
from lcc_jax.data.datasets import input_spec

ACCURACIES = ("reconstruction_top1", "reconstruction_top5", "degraded_top1", "degraded_top5")
EVAL_SPLITS = ("val", "test")
# Fields whose default is one of these types must hold one of them.
_TYPES = {bool: (bool,), int: (int,), float: (int, float), str: (str, type(None)),
          tuple: (tuple, list), list: (tuple, list)}


class ConfigError(ValueError):
  """A bad config value, found before any work started."""


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


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
  _check_patterns(config)


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


# ------------------------------------------------------------------------------ shapes


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__


def _built(field: str, build):
  """``build()``, with a factory's complaint turned into a ConfigError naming ``field``."""
  try:
    return build()
  except (ValueError, TypeError, KeyError) as e:
    raise ConfigError(f"{field}: {_first_line(e)}") from None


def _shape(fn, *args):
  return jax.eval_shape(fn, *args)


def check_shapes(config) -> None:
  """Builds every component and checks at batch 1 that their shapes agree (no compile)."""
  input_shape, num_classes = input_spec(config.data)
  where = (f"(k={config.k}, r={config.r}, {config.data.name} input {tuple(input_shape)}, "
           f"{num_classes} classes)")
  _check_kwargs(config)
  code, variables = _build(config, input_shape, num_classes, where)
  _check_outputs(config, code, variables, tuple(input_shape), num_classes, where)
  if config.loss == steps.PARITY_LOSS:
    _require(code.decoder.parity_target is not None,
             f"loss=parity_mse needs a decoder that defines the parity model's target "
             f"(sub, mds, berrut, letcc); decoder.name={config.decoder.name!r} has none")
  marked = [n for n in steps.COMPONENTS if config.train[n]]
  _require(any(jax.tree.leaves(variables.get(n, {}).get("params", {})) for n in marked),
           f"nothing to train: the components marked trainable ({marked}) have no parameters "
           f"with encoder.name={config.encoder.name!r}, decoder.name={config.decoder.name!r}; "
           "name a learned coder or set parity_model.name=same with train.parity_model=True")
  _check_loss(code, variables, config, where)
  if config.base_model.checkpoint:
    check_base_checkpoint(config.base_model.checkpoint, variables["base_model"],
                          config.base_model.name, input_shape, num_classes,
                          dict(config.base_model.kwargs))


def _build(config, input_shape, num_classes, where: str):
  """(Code, variables as ShapeDtypeStructs) the run would build; factory errors named."""
  base = _built(f"base_model.name={config.base_model.name!r} with base_model.kwargs="
                f"{dict(config.base_model.kwargs)}",
                lambda: assembly.build_base_model(config, input_shape, num_classes))
  _built(f"encoder.name={config.encoder.name!r}, decoder.name={config.decoder.name!r}, "
         f"parity_model.name={config.parity_model.name!r} {where}",
         lambda: assembly.build_code(config, input_shape, num_classes, base))
  try:
    return assembly.abstract_code(config, input_shape, num_classes)
  except Exception as e:  # pylint: disable=broad-except  (any failure: the config cannot run)
    raise ConfigError(f"cannot initialise the components {where}: {_first_line(e)}") from None


def _check_outputs(config, code, variables, input_shape, num_classes, where: str) -> None:
  """F → classes; encoder → r inputs of F's shape; decoder: k + r outputs → k outputs."""
  k, r = config.k, config.r
  y = _apply(code.base_model, variables["base_model"],
             (jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32),),
             f"base_model.name={config.base_model.name!r}", where)
  _require(y.shape == (1, num_classes),
           f"base_model.name={config.base_model.name!r} outputs {y.shape[1:]} per example but "
           f"{config.data.name} has {num_classes} classes; fix base_model.kwargs")
  # F (or F_P, built with the same input shape and classes) then runs on the parities as on
  # any input: the encoder must make parities of F's per-example input shape.
  parity = _apply(code.encoder, variables["encoder"],
                  (jax.ShapeDtypeStruct((1, k) + input_shape, jnp.float32),),
                  f"encoder.name={config.encoder.name!r}", where)
  _require(parity.shape == (1, r) + input_shape,
           f"encoder.name={config.encoder.name!r} with encoder.kwargs="
           f"{dict(config.encoder.kwargs)} makes parities of shape {parity.shape[1:]} but F "
           f"takes r={r} inputs of shape {input_shape}; fix encoder.kwargs or k/r")
  recon = _apply(code.decoder, variables["decoder"],
                 (jax.ShapeDtypeStruct((1, k + r, num_classes), jnp.float32),
                  jax.ShapeDtypeStruct((k + r,), jnp.bool_)),
                 f"decoder.name={config.decoder.name!r}", where)
  _require(recon.shape == (1, k, num_classes),
           f"decoder.name={config.decoder.name!r} with decoder.kwargs="
           f"{dict(config.decoder.kwargs)} maps k+r={k + r} outputs of size {num_classes} to "
           f"{recon.shape[1:]}, not k={k} reconstructions ({k}, {num_classes}); fix "
           "decoder.kwargs or k/r")


def _check_kwargs(config) -> None:
  """Each component's kwargs are arguments its factory takes."""
  parity = config.parity_model.name
  fields = [("base_model", "base_model", config.base_model), ("encoder", "encoder", config.encoder),
            ("decoder", "decoder", config.decoder)]
  if parity not in ("", "same"):
    fields.append(("parity_model", "base_model", config.parity_model))
  if "kwargs" in config.data:
    fields.append(("data", "dataset", config.data))
  for field, kind, cfg in fields:
    params = inspect.signature(registry.get(kind, cfg.name)).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
      continue
    unknown = sorted(set(dict(cfg.kwargs)) - set(params))
    own = inspect.signature(registry.get(kind, cfg.name).__wrapped_factory__).parameters
    takes = [p for p in own if p not in ("input_shape", "num_classes", "config")]
    _require(not unknown,
             f"{field}.kwargs has {unknown}, which {kind} {cfg.name!r} does not take; it takes "
             f"{', '.join(takes) or 'none'}")


def _apply(fns, variables, inputs, what: str, where: str):
  try:
    return _shape(lambda v, *xs: fns.apply(v, *xs, train=False)[0], variables, *inputs)
  except Exception as e:  # pylint: disable=broad-except
    shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
    raise ConfigError(f"{what} cannot take inputs of shape {shapes} {where}: "
                      f"{_first_line(e)}") from None


def _check_loss(code, variables, config, where: str) -> None:
  """The loss per example, then the whole training objective at batch 1, as the train step
  computes them."""
  input_shape, num_classes = input_spec(config.data)
  unavail_PxN = erasure.patterns(config.k, config.r, config.patterns.mode,
                                 limit=config.patterns.limit)
  k = config.k
  out_BxKxC = jax.ShapeDtypeStruct((1, k, num_classes), jnp.float32)
  labels_BxK = jax.ShapeDtypeStruct((1, k), jnp.int32)
  try:
    if config.loss != steps.PARITY_LOSS:
      # As losses.reconstruction_loss calls it: (P, B, K, C) against (1, B, K, C).
      recon = jax.ShapeDtypeStruct((1, 1, k, num_classes), jnp.float32)
      elem = _shape(registry.get("loss", config.loss), recon, recon,
                    jax.ShapeDtypeStruct((1, 1, k), jnp.int32))
      _require(getattr(elem, "shape", None) == (1, 1, k),
               f"loss={config.loss!r} maps reconstructions of shape {recon.shape} to "
               f"{getattr(elem, 'shape', type(elem).__name__)}; a loss returns one value per "
               f"example, shape {recon.shape[:-1]} (reduced over the last axis, the classes)")
    value, _ = _shape(
        lambda v, x, y, labels, w: steps.batch_loss(code, v, x, y, labels, w, unavail_PxN,
                                                    loss=config.loss, train=False),
        variables, jax.ShapeDtypeStruct((1, k) + tuple(input_shape), jnp.float32), out_BxKxC,
        labels_BxK, jax.ShapeDtypeStruct((1,), jnp.float32))
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"loss={config.loss!r} cannot be computed for encoder "
                      f"{config.encoder.name!r} / decoder {config.decoder.name!r} {where}: "
                      f"{_first_line(e)}") from None
  _require(value.shape == (), f"loss={config.loss!r} is not a scalar ({value.shape})")


def check_base_checkpoint(path: str, template, name: str, input_shape, num_classes,
                          kwargs: dict) -> None:
  """``base_model.checkpoint`` exists and holds F of exactly this architecture."""
  field = f"base_model.checkpoint={path}"
  _require(os.path.exists(path),
           f"{field} does not exist; give a run's WORKDIR/base folder or a PyTorch state-dict "
           "file, or leave it empty to train F first")
  if os.path.isfile(path):
    from lcc_jax.models import torch_import  # pylint: disable=g-import-not-at-top
    try:
      torch_import.load_torch_state_dict(path, name, input_shape, num_classes, **kwargs)
    except ImportError as e:
      raise ConfigError(f"{field}: {_first_line(e)}") from None
    except Exception as e:  # pylint: disable=broad-except  (torch's unpickling errors vary)
      raise ConfigError(f"{field} is not a PyTorch state dict of base_model {name!r}: "
                        f"{_first_line(e)}; pass the weights F was trained with") from None
    return
  from lcc_jax import checkpoint  # pylint: disable=g-import-not-at-top
  _require(checkpoint.has_variables(path),
           f"{field} is a folder without a saved F (no {os.path.join(path, '0', 'variables')}); "
           "give the base folder of a finished run (WORKDIR/base)")
  try:
    saved = checkpoint.variables_spec(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"{field} cannot be read ({_first_line(e)}); it was cut short or damaged: "
                      "train F again (leave base_model.checkpoint empty)") from None
  wanted = {jax.tree_util.keystr(p): tuple(leaf.shape)
            for p, leaf in jax.tree_util.tree_flatten_with_path(template)[0]}
  diffs = [f"{key}: saved {saved.get(key)}, model needs {wanted.get(key)}"
           for key in sorted(set(saved) | set(wanted)) if saved.get(key) != wanted.get(key)]
  _require(not diffs,
           f"{field} holds another architecture than base_model {name!r} with base_model.kwargs="
           f"{kwargs} on input {tuple(input_shape)} ({len(diffs)} differences, e.g. "
           f"{'; '.join(diffs[:2])}); set base_model.name/kwargs to F's, or use another "
           "checkpoint")


# ------------------------------------------------------------------------------ devices


def check_devices(config, mesh) -> None:
  """Global batch sizes split evenly over the devices of the mesh."""
  devices = mesh.devices.size
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
  check_shapes(config)
  if mesh is not None:
    check_devices(config, mesh)
  data_checks.check_data(config.data)
  if workdir is not None:
    workdir_lib.check_workdir(workdir, config.to_dict(), overwrite=overwrite,
                              eval_only=eval_only)
