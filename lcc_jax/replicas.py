"""Many replicas of one code in one program (``replicas.seeds`` > 1).

Replica i (``i`` from ``replicas.first``) draws its initialisation, its data order and its
step keys from seed ``config.seed + i``, and may have its own ``optim.lr`` / ``weight_decay``
(``replicas.lr`` / ``replicas.weight_decay``); the data, the split, F and F's cached outputs
come from ``config.seed`` and are shared. Parameters, optimizer state, model state, keys and
the frozen components other than F carry a leading replica axis and the train and evaluation
steps are ``jax.vmap``-ed over it, so R replicas run as one program: on an accelerator one
small code no longer leaves most of the chip idle, and on any machine the per-step host and
dispatch cost is paid once for all of them. A run with ``replicas.first = i`` and
``seeds = 1`` is replica i on its own.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lcc_jax import assembly, optim, steps


@dataclasses.dataclass(frozen=True)
class Replicas:
  """Which replicas a run trains, and each one's optimizer settings where they differ."""
  indices: tuple[int, ...]
  seeds: tuple[int, ...]
  lr: tuple[float, ...] = ()            # () = optim.lr for all
  weight_decay: tuple[float, ...] = ()  # () = optim.weight_decay for all

  @property
  def count(self) -> int:
    return len(self.indices)

  @property
  def vmapped(self) -> bool:
    """One replica runs the plain (un-vmapped) steps: exactly a single run's program."""
    return self.count > 1

  @property
  def per_replica_optim(self) -> bool:
    return bool(self.lr or self.weight_decay)

  def settings(self, index: int) -> dict[str, float]:
    """The optimizer settings replica ``index`` has of its own (for the summary)."""
    position = self.indices.index(index)
    out = {}
    if self.lr:
      out["lr"] = self.lr[position]
    if self.weight_decay:
      out["weight_decay"] = self.weight_decay[position]
    return out


def from_config(config) -> Replicas:
  first, count = int(config.replicas.first), int(config.replicas.seeds)
  indices = tuple(range(first, first + count))
  return Replicas(indices, tuple(int(config.seed) + i for i in indices),
                  tuple(float(v) for v in config.replicas.lr),
                  tuple(float(v) for v in config.replicas.weight_decay))


def make_tx(config, replicas: Replicas) -> optax.GradientTransformation:
  """The configured optimizer; with per-replica settings, ``lr`` / ``weight_decay`` become
  state (``optax.inject_hyperparams``) so that each replica's slice holds its own values."""
  if not replicas.per_replica_optim:
    return assembly.make_tx(config)
  return optim.make_injectable_tx(**config.optim.to_dict())


def frozen_axes(frozen: dict[str, Any]) -> dict[str, int | None]:
  """vmap axes of the frozen variables: F is shared; other frozen parts are per replica."""
  return {name: None if name == "base_model" else 0 for name in frozen}


def init_state(run: assembly.Run, tx, replicas: Replicas):
  """(replica 0's variables, state, frozen) with a leading replica axis where it belongs."""
  config = run.config
  lr_R = replicas.lr or (config.optim.lr,) * replicas.count
  wd_R = replicas.weight_decay or (config.optim.weight_decay,) * replicas.count

  def own_optim(state, lr, weight_decay):
    """The replica's own optimizer settings, where it has them."""
    if not replicas.per_replica_optim:
      return state
    return state.replace(opt_state=optim.set_hyperparams(state.opt_state, lr=lr,
                                                         weight_decay=weight_decay))

  if not replicas.vmapped:
    variables, state, frozen = assembly.init_state(run, tx, seed=replicas.seeds[0])
    return variables, own_optim(state, lr_R[0], wd_R[0]), frozen
  trainable = assembly.trainable_components(config)

  def one(seed, lr, weight_decay):
    rng = jax.random.PRNGKey(seed)
    variables = assembly.init_code_variables(run.code, run.base_variables,
                                             jax.random.fold_in(rng, 1),
                                             assembly.parity_from_base(config))
    state, frozen = steps.init_state(variables, trainable, tx, jax.random.fold_in(rng, 2))
    del variables["base_model"], frozen["base_model"]  # F is shared, not stacked
    return variables, own_optim(state, lr, weight_decay), frozen

  variables, state, frozen = jax.jit(jax.vmap(one))(
      jnp.asarray(replicas.seeds, jnp.uint32), jnp.asarray(lr_R, jnp.float32),
      jnp.asarray(wd_R, jnp.float32))
  variables = dict(jax.tree.map(lambda v: v[0], variables), base_model=run.base_variables)
  return variables, state, dict(frozen, base_model=run.base_variables)


def stacked(tree, replicas: Replicas):
  """Host results with a replica axis in front, for one replica too (where it has none)."""
  return tree if replicas.vmapped else jax.tree.map(lambda v: np.asarray(v)[None], tree)


def replica(tree, position: int):
  """One replica's slice of a ``stacked`` tree."""
  return jax.tree.map(lambda v: v[position], tree)


# One dispatch for the whole state, not one per leaf.
@jax.jit
def keep_improved(improved_R, state, best):
  """``best`` with the replicas marked in ``improved_R`` replaced by their slice of ``state``."""
  def select(new, old):
    mask = improved_R.reshape(improved_R.shape + (1,) * (new.ndim - 1))
    return jnp.where(mask, new, old)
  return jax.tree.map(select, state, best)


# One dispatch (and one compiled program) for the whole state, not one per leaf.
copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))
