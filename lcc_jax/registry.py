"""Names → factories for every pluggable component, registered or given by import path.

Kinds: ``base_model``, ``encoder``, ``decoder``, ``loss``, ``dataset``. Factories register on
import of their package (``lcc_jax.models``, ``lcc_jax.coders``, ...); ``build`` imports them
all first, so a caller never has to remember which module defines which name.

A name ``package.module:attribute`` is imported instead (the module on ``sys.path``) and used
like a registered factory. What each kind's factory receives and returns is in
docs/extending.md; in short, a component factory is called with the keyword arguments it
accepts among those lcc_jax passes (``PASSED``) plus the config's
kwargs, and may return a Flax Linen module, which is wrapped here with ``nn.from_linen``.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Any, Callable

KINDS = ("base_model", "encoder", "decoder", "loss", "dataset")
# Kinds whose factories build a model-like component (a ModelFns or a Linen module).
COMPONENT_KINDS = ("base_model", "encoder", "decoder")
# What lcc_jax may pass to a factory of each kind; each factory gets those it accepts.
SHARED = ("k", "r", "input_shape", "num_classes", "channel_mode", "upstream_init")
PASSED = {"base_model": ("input_shape", "num_classes"), "encoder": SHARED, "decoder": SHARED,
          "dataset": ("config",)}
_FACTORIES: dict[tuple[str, str], Callable[..., Any]] = {}
# Packages whose import registers factories (kept here so `names()` is complete).
_PROVIDERS = ("lcc_jax.models", "lcc_jax.coders", "lcc_jax.losses", "lcc_jax.data")


class ComponentError(ValueError):
  """An import path that does not lead to a usable factory, or a factory's wrong result."""


def register(kind: str, name: str):
  """Decorator: registers ``factory`` under (kind, name); a name is registered once."""
  if kind not in KINDS:
    raise ValueError(f"unknown registry kind {kind!r}; known: {list(KINDS)}")
  if is_path(name):
    raise ValueError(f"registered names cannot contain ':' ({name!r}): that form is an import "
                     "path")

  def wrap(factory):
    if (kind, name) in _FACTORIES:
      raise KeyError(f"{kind} {name!r} is registered twice")
    _FACTORIES[kind, name] = factory
    return factory

  return wrap


def _load_providers() -> None:
  for module in _PROVIDERS:
    importlib.import_module(module)


def is_path(name: str) -> bool:
  """Whether ``name`` is an import path ``package.module:attribute`` (not a registered name)."""
  return ":" in name


def names(kind: str) -> list[str]:
  """Sorted names registered for ``kind``."""
  _load_providers()
  return sorted(n for k, n in _FACTORIES if k == kind)


def get(kind: str, name: str) -> Callable[..., Any]:
  """The factory for (kind, name); an unknown name lists the known ones.

  Component and dataset factories come adapted (see ``_adapted``); a loss is the function.
  """
  _load_providers()
  if is_path(name):
    factory = load_path(kind, name)
  elif (kind, name) in _FACTORIES:
    factory = _FACTORIES[kind, name]
  else:
    raise KeyError(f"unknown {kind} {name!r}; known {kind} names: {names(kind)}, or an import "
                   "path 'package.module:attribute'")
  return factory if kind == "loss" else _adapted(kind, name, factory)


def build(kind: str, name: str, **kwargs) -> Any:
  return get(kind, name)(**kwargs)


def load_path(kind: str, path: str) -> Callable[..., Any]:
  """The callable that ``package.module:attribute`` names; every failure is one clear line."""
  module_name, _, attr = path.partition(":")
  if not module_name or not attr or ":" in attr:
    raise ComponentError(f"{kind} {path!r} is not of the form 'package.module:attribute'")
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    raise ComponentError(f"{kind} {path!r}: cannot import module {module_name!r} ({e}); put "
                         "the folder that holds it on PYTHONPATH") from None
  except Exception as e:  # pylint: disable=broad-except  (the user's module raised on import)
    raise ComponentError(f"{kind} {path!r}: importing {module_name!r} raised "
                         f"{type(e).__name__}: {first_line(e)}") from None
  try:
    value = functools.reduce(getattr, attr.split("."), module)
  except AttributeError:
    raise ComponentError(f"{kind} {path!r}: module {module_name!r} "
                         f"({getattr(module, '__file__', '?')}) has no attribute {attr!r}") from None
  if not callable(value):
    raise ComponentError(f"{kind} {path!r} is a {type(value).__name__}, not a callable "
                         f"{'loss' if kind == 'loss' else 'factory'}")
  return value


def describe(kind: str, name: str) -> dict[str, Any]:
  """What ``name`` resolved to, for run_info.json: the name, and for a path its source file."""
  if not is_path(name):
    return {"name": name}
  module = sys.modules.get(name.partition(":")[0])
  return {"name": name, "kind": kind, "file": getattr(module, "__file__", None)}


def _adapted(kind: str, name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
  """``factory`` called with only the lcc_jax arguments it takes, its result checked.

  The adapter's signature is the factory's plus every lcc_jax argument it lacks, so callers
  that pass what a signature accepts (``train_lib``) hand it the shapes a Linen module needs.
  """
  lcc_args = PASSED[kind]
  sig = inspect.signature(factory)
  params = sig.parameters
  takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
  extra = [inspect.Parameter(a, inspect.Parameter.KEYWORD_ONLY, default=None)
           for a in lcc_args if a not in params and not takes_any]

  def adapter(*args, **kwargs):
    given = {key: kwargs.pop(key) for key in lcc_args if key in kwargs}
    accepted = {key: v for key, v in given.items() if takes_any or key in params}
    return _checked(kind, name, factory(*args, **kwargs, **accepted), given)

  plain = [p for p in params.values() if p.kind != p.VAR_KEYWORD]
  var_kw = [p for p in params.values() if p.kind == p.VAR_KEYWORD]
  adapter.__signature__ = sig.replace(parameters=plain + extra + var_kw)
  adapter.__doc__, adapter.__name__ = factory.__doc__, getattr(factory, "__name__", name)
  adapter.__wrapped_factory__ = factory
  return adapter


def _checked(kind: str, name: str, result: Any, given: dict[str, Any]) -> Any:
  """A ModelFns (a Linen module wrapped) or a Dataset; anything else is a clear error."""
  if kind == "dataset":
    from lcc_jax.data import datasets  # pylint: disable=g-import-not-at-top
    if not isinstance(result, datasets.Dataset):
      raise ComponentError(f"dataset {name!r} returned a {type(result).__name__}; a dataset "
                           "factory returns an lcc_jax.data.Dataset")
    return result
  from lcc_jax import nn  # pylint: disable=g-import-not-at-top  (flax: only when building)
  if isinstance(result, nn.ModelFns):
    return result
  if isinstance(result, nn.linen.Module):
    return nn.from_linen(result, *_sample_inputs(kind, name, given))
  raise ComponentError(f"{kind} {name!r} returned a {type(result).__name__}; a {kind} factory "
                       "returns an lcc_jax.nn.ModelFns or a flax.linen.Module")


def _sample_inputs(kind: str, name: str, given: dict[str, Any]) -> tuple[Any, ...]:
  """Batch-of-one inputs of the shapes ``kind`` is applied to (see coding.py)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  needs = {"base_model": ("input_shape",), "encoder": ("k", "input_shape"),
           "decoder": ("k", "r", "num_classes")}[kind]
  missing = [a for a in needs if given.get(a) is None]
  if missing:
    raise ComponentError(f"{kind} {name!r} returned a Linen module; wrapping it needs "
                         f"{', '.join(missing)} (pass them to build)")
  if kind == "base_model":
    return (jnp.zeros((1,) + tuple(given["input_shape"]), jnp.float32),)
  if kind == "encoder":
    return (jnp.zeros((1, given["k"]) + tuple(given["input_shape"]), jnp.float32),)
  n = given["k"] + given["r"]
  return jnp.zeros((1, n, given["num_classes"]), jnp.float32), jnp.ones((n,), bool)


def first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__
