"""The one adapter from Flax modules to pure ``(init, apply)`` pairs.

Every component (F, F_P, encoder, decoder) is a ``ModelFns``:

* ``init(rng) -> variables``: a dict of collections, ``{"params": ...}`` plus any state
  collection such as ``"batch_stats"``; ``{}`` for parameter-free coders.
* ``apply(variables, *inputs, train=False) -> (output, updates)``: ``updates`` holds the new
  values of the non-``params`` collections when ``train`` is True and the component has
  state (batch norm in training mode), else ``{}``. Nothing is mutated in place.
* ``parity_target``: for fixed decoders, the combination of F's outputs that a parity model
  must learn to produce (``y_BxKxC -> target_BxRxC``); ``None`` otherwise.

We use Flax Linen because ``Module.init``/``Module.apply`` already *are* this pure pair, with
batch-norm state as an explicit collection; NNX would have to be staged out to the same thing
with ``nnx.split``/``nnx.merge`` (Flax's own advice for speed). Only this module and the
model/coder definitions import flax.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np

Variables = dict[str, Any]


class ModelFns(NamedTuple):
  init: Callable[[jax.Array], Variables]
  apply: Callable[..., tuple[jax.Array, Variables]]
  parity_target: Callable[[jax.Array], jax.Array] | None = None


def from_linen(module: linen.Module, *sample_inputs, parity_target=None) -> ModelFns:
  """Wraps a Linen module whose ``__call__`` takes ``(*inputs, train: bool)``.

  ``sample_inputs`` fix the shapes used by ``init`` (a batch of one is enough).
  """
  init_jit = jax.jit(lambda rng: _unfreeze(module.init(rng, *sample_inputs, train=False)))

  def apply(variables, *inputs, train=False):
    state_collections = [c for c in variables if c != "params"]
    if train and state_collections:
      out, updates = module.apply(variables, *inputs, train=True, mutable=state_collections)
      return out, _unfreeze(updates)
    return module.apply(variables, *inputs, train=train), {}

  return ModelFns(init=init_jit, apply=apply, parity_target=parity_target)


def from_function(fn: Callable[..., jax.Array], parity_target=None) -> ModelFns:
  """A parameter-free component (sum encoder, subtraction decoder, ...)."""
  return ModelFns(
      init=lambda rng: {},
      apply=lambda variables, *inputs, train=False: (fn(*inputs), {}),
      parity_target=parity_target,
  )


def merge_updates(variables: Variables, updates: Variables) -> Variables:
  """``variables`` with the collections in ``updates`` replaced."""
  return {**variables, **updates}


def count_params(variables: Variables) -> int:
  """Number of trainable parameters (the ``params`` collection only)."""
  leaves = jax.tree.leaves(variables.get("params", {}))
  return int(sum(np.prod(leaf.shape) for leaf in leaves))


def _unfreeze(tree):
  return jax.tree.map(lambda x: x, dict(tree)) if tree else {}


# Upstream's `init_weights` (docs/upstream.md §Weight init): Linear N(0, 0.01), bias 0; Conv
# xavier-uniform with gain √2 (variance scale 2, fan_avg); batch norm (1, 0), Flax's default.
linear_init = linen.initializers.normal(stddev=0.01)
conv_init = linen.initializers.variance_scaling(2.0, "fan_avg", "uniform")
zeros = linen.initializers.zeros


def torch_default_init(fan_in: int):
  """PyTorch's default Linear/Conv init: U(±1/√fan_in) for weight and bias."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init
