"""A trained workdir rebuilt as its run built it (``assembly.prepare``), with its code restored
at the best checkpoint; in a replicated run, any replica's best."""
from __future__ import annotations

import dataclasses
import json
import os

import ml_collections

from lcc_jax import assembly, checkpoint, replicas as replicas_lib, steps, workdir as workdir_lib


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{workdir} has no config.json: not a workdir written by train.py")
  with open(path) as f:
    return ml_collections.ConfigDict(workdir_lib.with_new_fields(json.load(f)))


def load_run(workdir: str, *, restore: bool = True, replica: int | None = None) -> assembly.Run:
  """Rebuilds a run; with ``restore`` also its code at the best checkpoint (else the latest):
  replica ``replica`` of a replicated run (default: its first)."""
  run = assembly.prepare(read_config(workdir), workdir, train_base_model=False)
  return restore_code(run, replica) if restore else run


def replica_indices(run: assembly.Run) -> list[int]:
  """The replicas of a replicated run (``replicas.seeds`` > 1); [] for a single run."""
  reps = replicas_lib.from_config(run.config)
  return list(reps.indices) if reps.vmapped else []


def restore_code(run: assembly.Run, replica: int | None = None) -> assembly.Run:
  """``run`` with its code's variables at the best checkpoint (else the latest), read-only."""
  reps = replicas_lib.from_config(run.config)
  if replica is not None and replica not in reps.indices:
    raise ValueError(f"--replica={replica}: {run.workdir} holds replicas {list(reps.indices)}")
  _, state, frozen = replicas_lib.init_state(run, replicas_lib.make_tx(run.config, reps), reps)
  directory = os.path.join(run.workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise ValueError(f"{run.workdir} holds no checkpoints/; train it first")
  with checkpoint.Checkpoints(directory, read_only=True) as ckpt:
    chosen = ckpt.best_step()
    if chosen is None:
      chosen = ckpt.latest_step()
    if chosen is None:
      raise ValueError(f"{directory} holds no checkpoint; train the run first")
    template = {"latest": state, "best": state} if reps.vmapped else state
    state, meta = ckpt.restore(chosen, template)
  epoch = meta["epoch"]
  if reps.vmapped:  # every replica's best state is stacked in "best"
    position = reps.indices.index(reps.indices[0] if replica is None else replica)
    state = replicas_lib.replica(state["best"], position)
    axes = replicas_lib.frozen_axes(frozen)
    frozen = {name: v if axes[name] is None else replicas_lib.replica(v, position)
              for name, v in frozen.items()}
    epoch = meta["best_epoch"][position]
  return dataclasses.replace(run, variables=steps.all_variables(state.params, state.model_state,
                                                                frozen),
                             checkpoint_step=int(chosen), checkpoint_epoch=int(epoch))
