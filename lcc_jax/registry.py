"""Names → factories for every pluggable component.

Kinds: ``base_model``, ``encoder``, ``decoder``, ``loss``, ``dataset``. Factories register on
import of their package (``lcc_jax.models``, ``lcc_jax.coders``, ...); ``build`` imports them
all first, so a caller never has to remember which module defines which name.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

KINDS = ("base_model", "encoder", "decoder", "loss", "dataset")
_FACTORIES: dict[tuple[str, str], Callable[..., Any]] = {}
# Packages whose import registers factories (kept here so `names()` is complete).
_PROVIDERS = ("lcc_jax.models", "lcc_jax.coders", "lcc_jax.losses", "lcc_jax.data")


def register(kind: str, name: str):
  """Decorator: registers ``factory`` under (kind, name); a name is registered once."""
  if kind not in KINDS:
    raise ValueError(f"unknown registry kind {kind!r}; known: {list(KINDS)}")

  def wrap(factory):
    if (kind, name) in _FACTORIES:
      raise KeyError(f"{kind} {name!r} is registered twice")
    _FACTORIES[kind, name] = factory
    return factory

  return wrap


def _load_providers() -> None:
  for module in _PROVIDERS:
    importlib.import_module(module)


def names(kind: str) -> list[str]:
  """Sorted names registered for ``kind``."""
  _load_providers()
  return sorted(n for k, n in _FACTORIES if k == kind)


def get(kind: str, name: str) -> Callable[..., Any]:
  """The factory for (kind, name); an unknown name lists the known ones."""
  _load_providers()
  if (kind, name) not in _FACTORIES:
    raise KeyError(f"unknown {kind} {name!r}; known {kind} names: {names(kind)}")
  return _FACTORIES[kind, name]


def build(kind: str, name: str, **kwargs) -> Any:
  return get(kind, name)(**kwargs)
