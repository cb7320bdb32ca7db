"""Parameter-free F: a named jittable function, or a user's own, as base model ``"function"``.

Coded computation is not only for neural networks: with ``base_model.name = "function"`` and
``fn = NAME`` (or ``fn = "package.module:function"``) F is a fixed function and the code is
learned with a regression loss. Every function here is *per example*, ``f(x_D) -> y_C`` on the
flattened input (D = prod(input_shape)), and is ``jax.vmap``-ed over the batch.

Built-in names (``C`` = ``num_classes``):

* ``x_sin_x``, ``square``, ``cubic``: elementwise x·sin x, x², x³ (needs C = D).
* ``random_linear``: y = W x with a fixed W ~ N(0, 1/D) drawn from ``seed``.
* ``random_mlp``: y = W2 tanh(W1 x + b1) + b2, fixed weights drawn from ``seed``
  (W ~ N(0, 1/fan_in), b ~ N(0, 0.1²)), ``hidden`` units.
"""
from __future__ import annotations

import importlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import nn, registry

PerExampleFn = Callable[[jax.Array], jax.Array]


def _elementwise(f: PerExampleFn):
  def make(d: int, c: int, seed: int, hidden: int) -> PerExampleFn:
    del seed, hidden
    if c != d:
      raise ValueError(f"an elementwise function maps (D,) to (D,): num_classes={c} must equal "
                       f"the input size D={d}")
    return f

  return make


def _random_linear(d: int, c: int, seed: int, hidden: int) -> PerExampleFn:
  del hidden
  w_CxD = np.random.default_rng(seed).normal(0.0, 1.0 / np.sqrt(d), (c, d)).astype(np.float32)
  return lambda x_D: jnp.asarray(w_CxD) @ x_D


def _random_mlp(d: int, c: int, seed: int, hidden: int) -> PerExampleFn:
  rng = np.random.default_rng(seed)
  w1_HxD = rng.normal(0.0, 1.0 / np.sqrt(d), (hidden, d)).astype(np.float32)
  b1_H = rng.normal(0.0, 0.1, hidden).astype(np.float32)
  w2_CxH = rng.normal(0.0, 1.0 / np.sqrt(hidden), (c, hidden)).astype(np.float32)
  b2_C = rng.normal(0.0, 0.1, c).astype(np.float32)
  return lambda x_D: jnp.asarray(w2_CxH) @ jnp.tanh(jnp.asarray(w1_HxD) @ x_D + b1_H) + b2_C


# name -> maker(D, C, seed, hidden) -> per-example function.
FUNCTIONS: dict[str, Callable[[int, int, int, int], PerExampleFn]] = {
    "x_sin_x": _elementwise(lambda x: x * jnp.sin(x)),
    "square": _elementwise(jnp.square),
    "cubic": _elementwise(lambda x: x * x * x),
    "random_linear": _random_linear,
    "random_mlp": _random_mlp,
}


def resolve(fn: str, d: int, c: int, *, seed: int = 0, hidden: int = 64) -> PerExampleFn:
  """The per-example function named ``fn``: a key of ``FUNCTIONS`` or ``"module:function"``."""
  if fn in FUNCTIONS:
    return FUNCTIONS[fn](d, c, seed, hidden)
  if ":" not in fn:
    raise ValueError(f"unknown function {fn!r}; use one of {sorted(FUNCTIONS)} or a dotted "
                     "import path 'package.module:function' to your own jittable f(x_D) -> y_C")
  module_name, attr = fn.split(":", 1)
  try:
    return getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"cannot import function {fn!r} ({e}); the form is "
                     "'package.module:function' with the module on PYTHONPATH") from e


@registry.register("base_model", "function")
def function_model(*, input_shape, num_classes, fn="random_mlp", seed=0,
                   hidden=64) -> nn.ModelFns:
  """F = ``fn`` on each flattened example; no parameters (``init`` returns ``{}``)."""
  d = int(np.prod(input_shape))
  f = resolve(fn, d, num_classes, seed=seed, hidden=hidden)
  out = jax.eval_shape(f, jax.ShapeDtypeStruct((d,), jnp.float32))
  if out.shape != (num_classes,):
    raise ValueError(f"function {fn!r} maps ({d},) to {out.shape}, but num_classes="
                     f"{num_classes} needs ({num_classes},)")

  def apply_batch(x_BxI):
    return jax.vmap(f)(x_BxI.reshape((x_BxI.shape[0], d)).astype(jnp.float32))

  return nn.from_function(apply_batch)
