"""lcc_jax: learning-based coded computation in JAX.

The pure functions, for a code of your own without the driver (docs/extending.md):

  patterns(k, r)                  erasure patterns, a bool array unavail_PxN (N = k + r)
  Code(encoder, decoder, base_model, parity_model=None)   the components, each a ModelFns
  ModelFns(init, apply)           a pure pair: init(rng) -> variables,
                                  apply(variables, *inputs, train=False) -> (out, updates)
  from_linen(module, *samples)    a Flax Linen module as a ModelFns
  from_function(fn)               a parameter-free component (or F) as a ModelFns
  encode, decode_all, forward     the coded computation: forward(code, variables, x_BxKxI,
                                  y_BxKxC, unavail_PxN) -> (recon_PxBxKxC, pout_BxRxC, updates)
  batch_loss                      forward + a reconstruction loss: jax.grad-able in variables
  reconstruction_loss, mse, kl, xent, parity_mse           the losses
  pattern_counts, summarize       per-pattern accuracy counts and their summary
  register, build, names          the registry of named components
  make_tx                         the optimizer (optax) the driver uses
  train_and_evaluate(config, workdir)                      the whole driver

Every function of a code is pure: ``jax.jit`` it, ``jax.vmap`` it, ``jax.grad`` through it.
The names resolve on first use (module ``__getattr__``), so ``import lcc_jax`` imports neither
JAX nor Flax, and ``import lcc_jax.host_memory`` stays light.
"""
from __future__ import annotations

import importlib

# public name -> module that defines it
_EXPORTS = {
    "patterns": "erasure", "count": "erasure", "from_list": "erasure",
    "Code": "coding", "encode": "coding", "decode_all": "coding", "forward": "coding",
    "ModelFns": "nn", "from_linen": "nn", "from_function": "nn", "count_params": "nn",
    "batch_loss": "steps",
    "reconstruction_loss": "losses", "mse": "losses", "kl": "losses", "xent": "losses",
    "parity_mse": "losses",
    "pattern_counts": "metrics", "summarize": "metrics",
    "register": "registry", "build": "registry", "names": "registry",
    "make_tx": "optim",
    "train_and_evaluate": "train_lib",
    "Dataset": "data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'lcc_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(f"lcc_jax.{_EXPORTS[name]}"), name)
  globals()[name] = value  # resolved once
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
