"""Training the base model F itself, when a config names no trained F.

Upstream never shipped its base-model recipes (docs/upstream.md §Base models); ours is plain
supervised training: Adam on the softmax cross-entropy, batch-norm statistics updated in training
mode, seeded shuffles per epoch. base-mlp on MNIST with the default recipe (20 epochs) reaches
upstream's 97.9 % test accuracy.
"""
from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from lcc_jax import nn, optim


def _loss(fns: nn.ModelFns, params, other, x_BxI, labels_B, weight_B):
  logits_BxC, updates = fns.apply({**other, "params": params}, x_BxI, train=True)
  xent_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)
  return jnp.sum(xent_B * weight_B) / jnp.maximum(jnp.sum(weight_B), 1.0), updates


def _step(variables, opt_state, x_NxI, labels_N, idx_B, weight_B, *, fns, tx):
  params = variables["params"]
  other = {c: v for c, v in variables.items() if c != "params"}
  (value, updates), grads = jax.value_and_grad(
      functools.partial(_loss, fns), has_aux=True)(params, other, x_NxI[idx_B], labels_N[idx_B],
                                                   weight_B)
  step_updates, opt_state = tx.update(grads, opt_state, params)
  return {**other, **updates, "params": optax.apply_updates(params, step_updates)}, opt_state, value


@functools.partial(jax.jit, static_argnums=0)
def _predict(fns: nn.ModelFns, variables, x_BxI):
  return jnp.argmax(fns.apply(variables, x_BxI)[0], axis=-1)


def accuracy(fns: nn.ModelFns, variables, x_NxI, labels_N, batch_size: int = 1000) -> float:
  """Top-1 accuracy of F (inference mode) on a whole split."""
  correct = 0
  for start in range(0, len(x_NxI), batch_size):
    pred = _predict(fns, variables, jnp.asarray(x_NxI[start:start + batch_size]))
    correct += int(np.sum(np.asarray(pred) == labels_N[start:start + batch_size]))
  return correct / max(len(x_NxI), 1)


def train(fns: nn.ModelFns, rng, x_NxI: np.ndarray, labels_N: np.ndarray, *, epochs: int,
          batch_size: int, lr: float, weight_decay: float, seed: int, progress: bool = True,
          lr_schedule: str = "constant"):
  """Trains F from its initialisation; returns its variables. ``lr_schedule="cosine"``
  decays ``lr`` to 0 over the whole training."""
  variables = fns.init(rng)
  n = len(x_NxI)
  num_steps = -(-n // batch_size)
  tx = optim.make_tx("adam", lr=lr, weight_decay=weight_decay, lr_schedule=lr_schedule,
                     total_steps=epochs * num_steps)
  opt_state = tx.init(variables["params"])
  step = jax.jit(functools.partial(_step, fns=fns, tx=tx), donate_argnums=(0, 1))
  x_dev, labels_dev = jnp.asarray(x_NxI), jnp.asarray(labels_N)
  for epoch in range(epochs):
    order = np.random.default_rng([seed, epoch]).permutation(n)
    order = np.concatenate([order, np.zeros(num_steps * batch_size - n, order.dtype)])
    weight = (np.arange(num_steps * batch_size) < n).astype(np.float32)
    bar = tqdm(range(num_steps), desc=f"F epoch {epoch + 1}/{epochs}", disable=not progress,
               leave=False)
    for s in bar:
      rows = slice(s * batch_size, (s + 1) * batch_size)
      variables, opt_state, value = step(variables, opt_state, x_dev, labels_dev,
                                         jnp.asarray(order[rows]), jnp.asarray(weight[rows]))
    logging.info("F epoch %d: last batch loss %.4f", epoch + 1, float(value))
  return variables
