"""Helpers shared by the experiment families: upstream-style runs → full configs."""
from __future__ import annotations

import dataclasses
from typing import Iterable

import ml_collections

from configs import default
from lcc_jax import legacy


def check_choice(what: str, value, choices: Iterable) -> None:
  """A ValueError naming ``value`` and the choices, e.g. for a dataset a family does not cover."""
  choices = list(choices)
  if value not in choices:
    raise ValueError(f"{what}={value!r} is not covered by this config family; choose one of "
                     f"{choices}")


def config(run: legacy.Run, epochs: int = 0) -> ml_collections.ConfigDict:
  """The full config of ``run``; ``epochs`` > 0 replaces the run's (upstream's) epoch count."""
  if epochs < 0:
    raise ValueError(f"epochs must be >= 0 (0 = the family's upstream value), got {epochs}")
  if epochs:
    run = dataclasses.replace(run, epochs=epochs)
  return legacy.to_config(run, default.base)
