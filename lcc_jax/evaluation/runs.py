"""A trained workdir rebuilt as its run built it: config, data, split, F and the restored code."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from lcc_jax import baselines, checkpoint, coding, data, nn, optim, steps


@dataclasses.dataclass
class Run:
  """A workdir rebuilt as its run built it: config, data, split, F and (restored) code."""
  workdir: str
  config: ml_collections.ConfigDict
  dataset: data.Dataset
  split: dict[str, np.ndarray]
  base_fns: nn.ModelFns
  base_variables: Any
  y_train: np.ndarray
  y_test: np.ndarray
  code: coding.Code | None = None
  variables: dict[str, Any] | None = None
  checkpoint_step: int | None = None  # orbax step (the train step count)
  checkpoint_epoch: int | None = None

  @property
  def k(self) -> int:
    return int(self.config.k)

  @property
  def r(self) -> int:
    return int(self.config.r)

  def test_arrays(self) -> dict[str, np.ndarray]:
    return {"x": self.dataset.x_test, "y": self.y_test, "labels": self.dataset.labels_test}

  def train_arrays(self) -> dict[str, np.ndarray]:
    return {"x": self.dataset.x_train, "y": self.y_train, "labels": self.dataset.labels_train}

  def prior(self) -> np.ndarray:
    return baselines.class_prior(self.dataset.labels_train[self.split["train"]],
                                 self.dataset.num_classes)

  def rates(self) -> tuple[float, ...]:
    return tuple(float(f) for f in self.config.unavailability_rates)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{workdir} has no config.json: not a workdir written by train.py")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str, *, restore: bool = True) -> Run:
  """Rebuilds a run; with ``restore`` also its code at the best checkpoint (else the latest)."""
  # The driver imports evaluation.reports; the package imports the driver only when it runs.
  # lcc_jax/assembly.py is to replace these train_lib calls.
  from lcc_jax import train_lib
  config = read_config(workdir)
  dataset = data.load(config.data)
  split = data.make_split(len(dataset.x_train), config.k, config.data.val_size, config.seed,
                          workdir, name=dataset.name)
  base_fns = train_lib.build_base_model(config, dataset.input_shape, dataset.num_classes)
  has_f = (config.base_model.checkpoint or checkpoint.has_variables(
      os.path.join(workdir, "base")) or not jax.tree.leaves(base_fns.init(jax.random.PRNGKey(0))))
  if not has_f:
    raise ValueError(f"{workdir} holds no trained F (no base/ folder and no "
                     "base_model.checkpoint in its config); run train.py on it first")
  base_variables, _ = train_lib.load_or_train_base_model(config, dataset, split, workdir,
                                                         base_fns, progress=False)
  cache_dir = os.path.join(workdir, "cache")
  tag = train_lib.outputs_tag(config, dataset)
  y_train = data.cached_outputs(base_fns.apply, base_variables, dataset.x_train, cache_dir,
                                f"{tag}/train")
  y_test = data.cached_outputs(base_fns.apply, base_variables, dataset.x_test, cache_dir,
                               f"{tag}/test")
  run = Run(workdir, config, dataset, split, base_fns, base_variables, y_train, y_test)
  if restore:
    run.code, run.variables, run.checkpoint_step, run.checkpoint_epoch = _restore_code(run)
  return run


def _restore_code(run: Run):
  from lcc_jax import train_lib  # as in load_run, until lcc_jax/assembly.py replaces it
  config = run.config
  code = train_lib.build_code(config, run.dataset.input_shape, run.dataset.num_classes,
                              run.base_fns)
  rng = jax.random.PRNGKey(config.seed)
  variables = train_lib.init_code_variables(code, run.base_variables, jax.random.fold_in(rng, 1))
  tx = optim.make_tx(**config.optim.to_dict())
  state, frozen = steps.init_state(variables, train_lib.trainable_components(config), tx,
                                   jax.random.fold_in(rng, 2))
  directory = os.path.join(run.workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise ValueError(f"{run.workdir} holds no checkpoints/; train it first")
  with checkpoint.Checkpoints(directory, read_only=True) as ckpt:
    chosen = ckpt.best_step()
    if chosen is None:
      chosen = ckpt.latest_step()
    if chosen is None:
      raise ValueError(f"{directory} holds no checkpoint; train the run first")
    state, meta = ckpt.restore(chosen, state)
  variables = steps.all_variables(state.params, state.model_state, frozen)
  return code, variables, int(chosen), int(meta["epoch"])
