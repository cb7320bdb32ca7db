"""What the experiment families share: an upstream-style run, upstream's defaults, the full config.

A family (``learned_cc``, ``parity_models``, ``r_gt_1``) describes each entry as a ``Run`` and
gets its config from ``config(run)``; ``configs/upstream.py`` does the same with the runs that
``lcc_jax.legacy`` reads from upstream's JSON files.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from absl import logging
import ml_collections

from configs import default
from lcc_jax.data import facts

# Coders with parameters: the ones a run can train.
LEARNED_ENCODERS = ("mlp", "conv")
LEARNED_DECODERS = ("mlp",)


@dataclasses.dataclass(frozen=True)
class Run:
  """One upstream-style run, in registry names."""
  dataset: str
  model: str
  k: int
  encoder: str
  decoder: str
  loss: str
  epochs: int
  batch_size: int
  r: int = 1
  model_kwargs: dict = dataclasses.field(default_factory=dict)
  encoder_kwargs: dict = dataclasses.field(default_factory=dict)
  train_encoder: bool = True
  train_decoder: bool = True
  train_parity_model: bool = False
  parity_model: str = ""  # "" = F itself on the parities; "same" = F_P with F's architecture
  optimizer: str = "adam"
  lr: float = 1e-3
  weight_decay: float = 1e-5
  upstream_init: bool = True
  parity_init: str = "scratch"  # both originals train F_P from scratch
  checkpoint: str = ""
  warnings: tuple[str, ...] = ()


def batch_size(k: int) -> int:
  """Groups per step in both originals: 64 for k = 2, else 32."""
  return 64 if k == 2 else 32


def model_kwargs(model: str, dataset: str) -> dict:
  """Base-model kwargs upstream hard-codes per dataset (parity-models ``get_base_model``)."""
  if model == "resnet18":
    return {"variant": "cifar" if dataset in facts.AUGMENTED else "mnist"}
  if model == "resnet152":
    return {"variant": "cifar"}
  return {}


def check_choice(what: str, value, choices: Iterable) -> None:
  """A ValueError naming ``value`` and the choices, e.g. for a dataset a family does not cover."""
  choices = list(choices)
  if value not in choices:
    raise ValueError(f"{what}={value!r} is not covered by this config family; choose one of "
                     f"{choices}")


def config(run: Run, epochs: int = 0) -> ml_collections.ConfigDict:
  """``default.base()`` with the fields ``run`` sets; logs the run's warnings. ``epochs`` > 0
  replaces the run's (upstream's) epoch count."""
  if epochs < 0:
    raise ValueError(f"epochs must be >= 0 (0 = the family's upstream value), got {epochs}")
  for warning in run.warnings:
    logging.warning("%s", warning)
  c = default.base()
  c.k, c.r = run.k, run.r
  c.data.name = run.dataset
  c.data.augment = run.dataset in facts.AUGMENTED
  c.data.batch_size = run.batch_size
  c.base_model.name = run.model
  c.base_model.kwargs = dict(run.model_kwargs)
  c.base_model.checkpoint = run.checkpoint
  # impl picks the convolution implementation (ours, coders/conv.py); listed so that a locked
  # config accepts --config.encoder.kwargs.impl=xla|matmul|hybrid.
  c.encoder.name = run.encoder
  c.encoder.kwargs = ({"impl": "auto"} if run.encoder == "conv" else {}) | run.encoder_kwargs
  c.decoder.name = run.decoder
  c.parity_model.name = run.parity_model
  c.parity_model.init = run.parity_init
  c.upstream_init = run.upstream_init
  c.train.encoder = run.train_encoder
  c.train.decoder = run.train_decoder
  c.train.parity_model = run.train_parity_model
  c.loss = run.loss
  c.optim.name, c.optim.lr, c.optim.weight_decay = run.optimizer, run.lr, run.weight_decay
  c.num_epochs = epochs or run.epochs
  return c
