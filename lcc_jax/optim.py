"""Optimizers, built for the trainable subtree only (the only module that builds optax chains).

Upstream used ``torch.optim.Adam(lr=1e-3, weight_decay=1e-5)``: weight decay there is an L2 term
added to the gradient *before* Adam (not AdamW), hence ``add_decayed_weights`` first.
PyTorch ≥ 1.x and optax agree on eps placement (m̂ / (√v̂ + eps)); PyTorch 1.0 put eps on √v,
a difference of order eps that we do not reproduce.
"""
from __future__ import annotations

import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "adamw", "sgd")


SCHEDULES = ("constant", "cosine")


def make_tx(name: str = "adam", lr: float = 1e-3, weight_decay: float = 1e-5, b1: float = 0.9,
            b2: float = 0.999, eps: float = 1e-8, momentum: float = 0.0,
            grad_clip_norm: float = 0.0, lr_schedule: str = "constant",
            total_steps: int = 0) -> optax.GradientTransformation:
  """The optimizer named in the config (``config.optim``); ``lr_schedule="cosine"`` decays
  ``lr`` to 0 over ``total_steps`` (a cosine), "constant" keeps it."""
  if lr <= 0:
    raise ValueError(f"optim.lr must be positive, got {lr}")
  if lr_schedule not in SCHEDULES or (lr_schedule == "cosine" and total_steps < 1):
    raise ValueError(f"lr_schedule={lr_schedule!r} with total_steps={total_steps}; use one of "
                     f"{list(SCHEDULES)} (cosine: with total_steps >= 1)")
  if lr_schedule == "cosine":
    lr = optax.cosine_decay_schedule(lr, total_steps)
  if weight_decay < 0:
    raise ValueError(f"optim.weight_decay must be >= 0, got {weight_decay}")
  parts = []
  if grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  if name == "adam":
    if weight_decay:
      parts.append(optax.add_decayed_weights(weight_decay))  # PyTorch's coupled L2
    parts.append(optax.adam(lr, b1=b1, b2=b2, eps=eps))
  elif name == "adamw":
    parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  elif name == "sgd":
    if weight_decay:
      parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.sgd(lr, momentum=momentum or None))
  else:
    raise ValueError(f"unknown optimizer {name!r}; known: {list(OPTIMIZERS)}")
  return optax.chain(*parts)


def make_injectable_tx(name: str = "adam", lr: float = 1e-3, weight_decay: float = 1e-5,
                       b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                       momentum: float = 0.0,
                       grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """``make_tx`` with ``lr`` and ``weight_decay`` held in the optimizer state, so that each
  replica of a vmapped run can have its own (``set_hyperparams``)."""

  def chain(lr, weight_decay):
    parts = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []
    if name == "adamw":
      return optax.chain(*parts, optax.adamw(lr, b1=b1, b2=b2, eps=eps,
                                             weight_decay=weight_decay))
    # Adam and SGD: PyTorch's coupled L2 (weight decay 0 adds nothing).
    parts.append(optax.add_decayed_weights(weight_decay))
    if name == "adam":
      return optax.chain(*parts, optax.adam(lr, b1=b1, b2=b2, eps=eps))
    return optax.chain(*parts, optax.sgd(lr, momentum=momentum or None))

  make_tx(name, lr, weight_decay, b1, b2, eps, momentum, grad_clip_norm)  # the same checks
  return optax.inject_hyperparams(chain)(lr=lr, weight_decay=weight_decay)


def set_hyperparams(opt_state, **values):
  """``opt_state`` of ``make_injectable_tx`` with the hyperparameters in ``values``."""
  hyperparams = dict(opt_state.hyperparams)
  for key, value in values.items():
    hyperparams[key] = jnp.asarray(value, hyperparams[key].dtype)
  return opt_state._replace(hyperparams=hyperparams)
