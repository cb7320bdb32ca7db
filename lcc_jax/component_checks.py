"""Checks that the components a config names build and fit together, before any data.

Every component is built at its real size but only traced (``jax.eval_shape``: no compile, no
memory) at batch 1: F maps inputs to the dataset's classes, the encoder makes r parities of F's
input shape, the decoder maps k + r outputs to k reconstructions, the loss gives a scalar, each
component's kwargs are arguments its factory takes, and a trained F's checkpoint holds F's
architecture. Problems are ``ConfigError``s in one line naming the field and the fix.
"""
from __future__ import annotations

import inspect
import os

import jax
import jax.numpy as jnp

from lcc_jax import assembly, erasure, registry, steps
from lcc_jax.config_errors import ConfigError, require as _require
from lcc_jax.data.datasets import input_spec
from lcc_jax.registry import first_line


def _built(field: str, build):
  """``build()``, with a factory's complaint turned into a ConfigError naming ``field``."""
  try:
    return build()
  except (ValueError, TypeError, KeyError) as e:
    raise ConfigError(f"{field}: {first_line(e)}") from None


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
    raise ConfigError(f"cannot initialise the components {where}: {first_line(e)}") from None


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
                      f"{first_line(e)}") from None


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
                      f"{first_line(e)}") from None
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
      raise ConfigError(f"{field}: {first_line(e)}") from None
    except Exception as e:  # pylint: disable=broad-except  (torch's unpickling errors vary)
      raise ConfigError(f"{field} is not a PyTorch state dict of base_model {name!r}: "
                        f"{first_line(e)}; pass the weights F was trained with") from None
    return
  from lcc_jax import checkpoint  # pylint: disable=g-import-not-at-top
  _require(checkpoint.has_variables(path),
           f"{field} is a folder without a saved F (no {os.path.join(path, '0', 'variables')}); "
           "give the base folder of a finished run (WORKDIR/base)")
  try:
    saved = checkpoint.variables_spec(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"{field} cannot be read ({first_line(e)}); it was cut short or damaged: "
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
