"""Assembling a run: the one path from a config to its data, F, F's outputs, code and state.

Training (``train_lib``), evaluation (``lcc_jax.evaluation``), the dry run (``cli``) and the
config checks (``validate``) all build a run here, so a component is built the same way
wherever it is used. The builders at the top need no data (a dry run calls them with
``jax.eval_shape``); ``prepare`` loads the data and F; ``init_state`` gives the code's fresh
variables (``evaluation.runs`` restores them from a checkpoint). Nothing here places arrays on devices: that is
the caller's (``parallel``).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lcc_jax import (base_training, baselines, checkpoint, coding, data, erasure, nn, optim,
                     parallel, registry, steps)

log = logging.getLogger(__name__)
# How F_P starts: as a copy of F where it has F's architecture (auto), from its initialiser
# (scratch, as both originals), or as a copy of F (base).
PARITY_INITS = ("auto", "scratch", "base")


# ------------------------------------------------------------------------------ components


def _factory_kwargs(kind: str, name: str, candidates: dict, extra: dict) -> dict:
  """The keyword arguments a factory accepts, from the shared ``candidates`` plus ``extra``."""
  params = inspect.signature(registry.get(kind, name)).parameters
  takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
  kwargs = {key: v for key, v in candidates.items() if takes_any or key in params}
  return {**kwargs, **extra}


def kwargs_dict(cfg) -> dict:
  return cfg.kwargs.to_dict() if hasattr(cfg.kwargs, "to_dict") else dict(cfg.kwargs)


def parity_model_name(config) -> tuple[str, dict] | None:
  """(name, kwargs) of the network on the parities, or None when F itself runs there."""
  name = config.parity_model.name or ("same" if config.train.parity_model else "")
  if not name:
    return None
  if name == "same":
    return config.base_model.name, kwargs_dict(config.base_model)
  return name, kwargs_dict(config.parity_model)


def parity_is_base_architecture(config) -> bool:
  """Whether F_P is built exactly as F (same factory, same kwargs), so F's variables fit it."""
  return parity_model_name(config) == (config.base_model.name, kwargs_dict(config.base_model))


def parity_init(config) -> str:
  """"base" or "scratch": ``parity_model.init`` with "auto" resolved."""
  init = config.parity_model.init
  if init == "auto":
    return "base" if parity_is_base_architecture(config) else "scratch"
  return init


def parity_from_base(config) -> bool:
  """Whether F_P starts as a copy of F's variables."""
  return parity_init(config) == "base"


def build_base_model(config, input_shape, num_classes) -> nn.ModelFns:
  return registry.build("base_model", config.base_model.name, input_shape=tuple(input_shape),
                        num_classes=num_classes, **kwargs_dict(config.base_model))


def build_code(config, input_shape, num_classes, base_model: nn.ModelFns) -> coding.Code:
  """The Code (encoder, decoder, F, F_P) a config names."""
  shared = dict(k=config.k, r=config.r, input_shape=tuple(input_shape), num_classes=num_classes,
                channel_mode=config.channel_mode, upstream_init=config.upstream_init)
  encoder = registry.build("encoder", config.encoder.name, **_factory_kwargs(
      "encoder", config.encoder.name, shared, kwargs_dict(config.encoder)))
  decoder = registry.build("decoder", config.decoder.name, **_factory_kwargs(
      "decoder", config.decoder.name, shared, kwargs_dict(config.decoder)))
  parity = parity_model_name(config)
  parity_model = None
  if parity is not None:
    parity_model = registry.build("base_model", parity[0], input_shape=tuple(input_shape),
                                  num_classes=num_classes, **parity[1])
  return coding.Code(encoder, decoder, base_model, parity_model)


def init_code_variables(code: coding.Code, base_variables, rng,
                        from_base: bool = False) -> dict[str, Any]:
  """Fresh variables of the code; F_P from its initialiser, or a copy of F's variables."""
  enc_key, dec_key, par_key = jax.random.split(rng, 3)
  variables = {"encoder": code.encoder.init(enc_key), "decoder": code.decoder.init(dec_key),
               "base_model": base_variables}
  if code.parity_model is not None:
    # A copy, not F's own buffers: F_P's parameters are updated (and donated) by the train
    # step, while F stays frozen.
    variables["parity_model"] = (jax.tree.map(jnp.array, base_variables) if from_base
                                 else code.parity_model.init(par_key))
  return variables


def abstract_code(config, input_shape, num_classes) -> tuple[coding.Code, dict[str, Any]]:
  """(Code, its variables as ShapeDtypeStructs): every component built, nothing computed.

  ``jax.eval_shape`` runs no initialiser, so even a 31 M-parameter encoder costs no memory or
  time; the dry run and the config checks use it.
  """
  base = build_base_model(config, input_shape, num_classes)
  code = build_code(config, input_shape, num_classes, base)
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # a PRNGKey's shape
  return code, jax.eval_shape(lambda key: init_code_variables(
      code, base.init(key), key, parity_from_base(config)), key)


def component_sources(config) -> dict[str, dict]:
  """Each component's name and, for one given by import path, the file it came from."""
  fields = {"dataset": ("dataset", config.data.name), "loss": ("loss", config.loss),
            "base_model": ("base_model", config.base_model.name),
            "encoder": ("encoder", config.encoder.name),
            "decoder": ("decoder", config.decoder.name)}
  parity = parity_model_name(config)
  if parity:
    fields["parity_model"] = ("base_model", parity[0])
  return {field: registry.describe(kind, name) for field, (kind, name) in fields.items()}


def trainable_components(config) -> list[str]:
  return [name for name in steps.COMPONENTS if config.train[name]]


def parameter_counts(variables) -> dict[str, int]:
  return {f"{name}_params": nn.count_params(v) for name, v in variables.items()}


# ------------------------------------------------------------------------------ base model F


def has_base_model(config, workdir: str, fns: nn.ModelFns) -> bool:
  """Whether F needs no training: given by the config, trained into the workdir, or empty."""
  return bool(config.base_model.checkpoint or checkpoint.has_variables(
      os.path.join(workdir, "base")) or not jax.tree.leaves(fns.init(jax.random.PRNGKey(0))))


def load_or_train_base_model(config, dataset: data.Dataset, split, workdir: str, fns, *,
                             progress: bool) -> tuple[Any, dict]:
  """F's variables: from ``base_model.checkpoint``, from WORKDIR/base, or trained now."""
  rng = jax.random.PRNGKey(config.seed)
  source = config.base_model.checkpoint
  if source and os.path.isdir(source):
    variables, meta = checkpoint.load_variables(source, fns.init(rng))
    return variables, {**meta, "source": os.path.abspath(source)}
  if source:
    from lcc_jax.models import torch_import  # pylint: disable=g-import-not-at-top  (torch: optional)
    variables = torch_import.load_torch_state_dict(source, config.base_model.name,
                                                   dataset.input_shape, dataset.num_classes)
    return variables, {"source": os.path.abspath(source)}
  base_dir = os.path.join(workdir, "base")
  if not nn.count_params(fns.init(rng)) and not jax.tree.leaves(fns.init(rng)):
    return fns.init(rng), {"source": "parameter-free function"}
  if checkpoint.has_variables(base_dir):
    variables, meta = checkpoint.load_variables(base_dir, fns.init(rng))
    return variables, {**meta, "source": base_dir}
  log.info("no trained F in the config: training %s on %s into %s", config.base_model.name,
           dataset.name, base_dir)
  train_idx = split["train"]
  start = time.time()
  variables = base_training.train(
      fns, rng, dataset.x_train[train_idx], dataset.labels_train[train_idx],
      epochs=config.base_model.epochs, batch_size=config.base_model.batch_size,
      lr=config.base_model.lr, weight_decay=config.base_model.weight_decay, seed=config.seed,
      progress=progress, lr_schedule=config.base_model.lr_schedule)
  meta = {"trained_epochs": config.base_model.epochs, "train_time_s": time.time() - start,
          "val_accuracy": base_training.accuracy(fns, variables, dataset.x_train[split["val"]],
                                                  dataset.labels_train[split["val"]])}
  # Orbax saves are collective: every process takes part, with globally placed arrays.
  checkpoint.save_variables(base_dir, parallel.replicate(variables, parallel.make_mesh()), meta)
  return variables, {**meta, "source": base_dir}


def outputs_tag(config, dataset) -> str:
  """Cache tag of F's outputs (names the function too, for a parameter-free F)."""
  return f"{dataset.name}/{config.base_model.name}/{config.get('data').get('fn', '')}"


# ------------------------------------------------------------------------------ the run


@dataclasses.dataclass
class Run:
  """A run as assembled from its config: data, split, F and its outputs, code, patterns.

  ``variables`` / ``checkpoint_step`` / ``checkpoint_epoch`` are set by
  ``evaluation.runs.restore_code``.
  """
  workdir: str
  config: ml_collections.ConfigDict
  dataset: data.Dataset
  split: dict[str, np.ndarray]
  base_fns: nn.ModelFns
  base_variables: Any
  base_info: dict[str, Any]
  base_sha256: str
  y_train: np.ndarray
  y_test: np.ndarray
  code: coding.Code
  unavail_PxN: np.ndarray
  variables: dict[str, Any] | None = None
  checkpoint_step: int | None = None  # orbax step (the train step count)
  checkpoint_epoch: int | None = None

  @property
  def k(self) -> int:
    return int(self.config.k)

  @property
  def r(self) -> int:
    return int(self.config.r)

  @property
  def base_test_accuracy(self) -> float:
    return float(np.mean(np.argmax(self.y_test, -1) == self.dataset.labels_test))

  def train_arrays(self) -> dict[str, np.ndarray]:
    return {"x": self.dataset.x_train, "y": self.y_train, "labels": self.dataset.labels_train}

  def test_arrays(self) -> dict[str, np.ndarray]:
    return {"x": self.dataset.x_test, "y": self.y_test, "labels": self.dataset.labels_test}

  def prior(self) -> np.ndarray:
    return baselines.class_prior(self.dataset.labels_train[self.split["train"]],
                                 self.dataset.num_classes)

  def rates(self) -> tuple[float, ...]:
    return tuple(float(f) for f in self.config.unavailability_rates)


def prepare(config, workdir: str, *, progress: bool = False, train_base_model: bool = True) -> Run:
  """Loads the data, the split, F (trained now if need be and allowed) and F's outputs.

  F's outputs on every example are computed once and cached in WORKDIR/cache by F's hash.
  ``train_base_model=False`` (evaluation) raises a ValueError where F would have to be trained.
  """
  dataset = data.load(config.data)
  split = data.make_split(len(dataset.x_train), config.k, config.data.val_size, config.seed,
                          workdir, name=dataset.name)
  base_fns = build_base_model(config, dataset.input_shape, dataset.num_classes)
  if not train_base_model and not has_base_model(config, workdir, base_fns):
    raise ValueError(f"{workdir} holds no trained F (no base/ folder and no "
                     "base_model.checkpoint in its config); run train.py on it first")
  base_variables, base_info = load_or_train_base_model(config, dataset, split, workdir, base_fns,
                                                       progress=progress)
  cache_dir = os.path.join(workdir, "cache")
  tag = outputs_tag(config, dataset)
  y_train = data.cached_outputs(base_fns.apply, base_variables, dataset.x_train, cache_dir,
                                f"{tag}/train")
  y_test = data.cached_outputs(base_fns.apply, base_variables, dataset.x_test, cache_dir,
                               f"{tag}/test")
  code = build_code(config, dataset.input_shape, dataset.num_classes, base_fns)
  unavail_PxN = erasure.patterns(config.k, config.r, config.patterns.mode,
                                 limit=config.patterns.limit)
  return Run(workdir, config, dataset, split, base_fns, base_variables, base_info,
             data.variables_hash(base_variables), y_train, y_test, code, unavail_PxN)


def make_tx(config):
  return optim.make_tx(**config.optim.to_dict())


def init_state(run: Run, tx, seed: int | None = None) -> tuple[dict[str, Any], steps.TrainState,
                                                               Any]:
  """(variables, train state, frozen variables) of a fresh run, from ``seed`` (default:
  ``config.seed``)."""
  rng = jax.random.PRNGKey(run.config.seed if seed is None else seed)
  variables = init_code_variables(run.code, run.base_variables, jax.random.fold_in(rng, 1),
                                  parity_from_base(run.config))
  # Jitted: one program builds every optimizer moment, instead of one eager op per leaf.
  state, frozen = jax.jit(functools.partial(
      steps.init_state, trainable=trainable_components(run.config), tx=tx))(
          variables, rng=jax.random.fold_in(rng, 2))
  return variables, state, frozen
