"""Config strings and sweeps: ``--config=configs/FILE.py:ARG`` → the runs to do.

A *config string* is ``key=value,key=value,...`` (a bare ``key`` means ``key=True``), typed by
the defaults the config file declares (big_vision's ``parse_arg``). A config file with
``get_sweep(arg)`` is a *sweep*: a list of entries ``{"name": "mnist/base-mlp/k2/kl/mlp",
"arg": "<config string for get_config>"}``; each entry runs in its own sub-workdir
``WORKDIR/<name>``. In the families' ``get_sweep(arg)``, keys of ``arg`` that the sweep varies
select entries and the other keys are passed on to every selected entry (``select``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

import ml_collections

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
# One path segment of an entry name: no spaces, no separators other than "/", never "." or "..".
_SEGMENT = re.compile(r"[A-Za-z0-9_+=.-]+")


def _typed(key: str, text: str, default: Any) -> Any:
  """``text`` converted to the type of ``default`` (str when the default is None)."""
  if isinstance(default, bool):
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise ValueError(f"config string: {key}={text!r} is not a bool; use one of {_TRUE + _FALSE}")
  for kind in (int, float):
    if isinstance(default, kind):
      try:
        return kind(text)
      except ValueError:
        raise ValueError(f"config string: {key}={text!r} is not a valid {kind.__name__}") from None
  if default is None or isinstance(default, str):
    return text
  raise TypeError(f"config string key {key!r}: defaults must be bool, int, float, str or None, "
                  f"got {type(default).__name__}")


def given(arg: str | None, **defaults) -> dict[str, Any]:
  """Only the keys written in ``arg``, typed by ``defaults``; unknown keys are an error."""
  values = {}
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    key, has_value, text = part.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"config string: unknown key {key!r} in {arg!r}; known keys: "
                       f"{sorted(defaults)}")
    if key in values:
      raise ValueError(f"config string: key {key!r} given twice in {arg!r}")
    if not has_value and not isinstance(defaults[key], bool):
      raise ValueError(f"config string: {key!r} needs a value ({key}=...) in {arg!r}")
    values[key] = _typed(key, text.strip(), defaults[key]) if has_value else True
  return values


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """``defaults`` updated with the config string ``arg``, e.g. ``parse_arg("k=5", k=2)``."""
  return ml_collections.ConfigDict({**defaults, **given(arg, **defaults)})


def format_arg(**values) -> str:
  """The config string for ``values`` (the inverse of ``parse_arg``)."""
  for key, value in values.items():
    if any(ch in str(value) for ch in ",="):
      raise ValueError(f"config string values cannot contain ',' or '=': {key}={value!r}")
  return ",".join(f"{key}={value}" for key, value in values.items())


def select(runs: Sequence[Mapping[str, Any]], arg: str | None, defaults: Mapping[str, Any],
           name: Callable[[Mapping[str, Any]], str]) -> list[dict[str, str]]:
  """Sweep entries for ``runs`` (dicts of config-string values), filtered by ``arg``.

  Keys of ``arg`` that the runs set keep only the runs with those values; the other keys are
  added to every entry's config string (e.g. ``epochs=3``). An ``arg`` that sets every swept key
  is one run even when the sweep does not list it.
  """
  wanted = given(arg, **defaults)
  swept = list(dict.fromkeys(key for run in runs for key in run))
  filters = {k: v for k, v in wanted.items() if k in swept}
  extra = {k: v for k, v in wanted.items() if k not in swept}
  chosen = [run for run in runs if all(run.get(k) == v for k, v in filters.items())]
  if not chosen and set(filters) == set(swept):
    chosen = [{k: filters[k] for k in swept}]
  if not chosen:
    values = {k: sorted({str(run[k]) for run in runs if k in run}) for k in sorted(swept)}
    raise ValueError(f"no sweep entry has {filters}; the sweep's values: {values}")
  return [{"name": name(run), "arg": format_arg(**run, **extra)} for run in chosen]


def check_names(names: Sequence[str]) -> None:
  """Entry names must be unique relative paths without '.' or '..' ("" only when alone)."""
  if len(set(names)) != len(names):
    dupes = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(f"sweep entry names must be unique; repeated: {dupes}")
  for name in names:
    if name == "" and len(names) == 1:
      continue
    segments = name.split("/")
    if not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
      raise ValueError(f"sweep entry name {name!r} is not a safe relative path: use segments of "
                       "letters, digits and _+=.- joined by '/', without '.' or '..'")


def load_module(config_path: str):
  """Imports a config file by path, as absl's config_flags does."""
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"config file {config_path!r} not found")
  digest = hashlib.sha1(os.path.abspath(config_path).encode()).hexdigest()[:12]
  spec = importlib.util.spec_from_file_location(f"_lcc_config_{digest}", config_path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses and pickling look their module up there
  spec.loader.exec_module(module)
  return module


def load_entries(config_path: str,
                 arg: str | None = None) -> list[tuple[str, ml_collections.ConfigDict]]:
  """Every (sub-workdir name, config) the file asks for: all sweep entries selected by ``arg``
  when it has ``get_sweep``, else ``[("", get_config(arg))]``."""
  module = load_module(config_path)
  if not hasattr(module, "get_sweep"):
    return [("", module.get_config(arg))]
  entries = module.get_sweep(arg)
  if not entries:
    raise ValueError(f"{config_path}: get_sweep({arg!r}) returned no entries")
  for entry in entries:
    if set(entry) != {"name", "arg"}:
      raise ValueError(f"{config_path}: sweep entries are {{'name', 'arg'}} dicts, got {entry}")
  check_names([entry["name"] for entry in entries])
  return [(entry["name"], module.get_config(entry["arg"])) for entry in entries]
