"""The pure forward pass of a coded computation: encode → F / F_P on parities → decode.

Shape letters: B groups in a batch, K = k data inputs, R = r parities, N = K + R outputs,
P erasure patterns, C outputs of F, I... the per-example input shape of F.

The encoder and the network on the parities run once per call; only the decoder is
``jax.vmap``-ed over the P patterns (or ``jax.lax.map``-ped in chunks when P is large), so an
all-pattern step costs little more than a one-pattern step.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcc_jax import nn


class Code(NamedTuple):
  """The components of one coded computation (all pure ``ModelFns``)."""
  encoder: nn.ModelFns
  decoder: nn.ModelFns
  base_model: nn.ModelFns
  parity_model: nn.ModelFns | None = None  # None: F itself runs on the parities.


def apply_per_example(fns: nn.ModelFns, variables, x_BxMxI: jax.Array, *, train: bool = False):
  """Runs a model on every one of the M examples of each group in one batched call."""
  b, m = x_BxMxI.shape[:2]
  out, updates = fns.apply(variables, x_BxMxI.reshape((b * m,) + x_BxMxI.shape[2:]), train=train)
  return out.reshape((b, m) + out.shape[1:]), updates


def encode(code: Code, variables, x_BxKxI: jax.Array, *, train: bool = False) -> jax.Array:
  parity_BxRxI, _ = code.encoder.apply(variables["encoder"], x_BxKxI, train=train)
  return parity_BxRxI


def parity_outputs(code: Code, variables, parity_BxRxI: jax.Array, *, train: bool = False):
  """F or the parity model F_P on every parity; returns (pout_BxRxC, F_P state updates)."""
  if code.parity_model is None:
    # F is frozen: it always runs in inference mode (batch norm on running statistics).
    pout_BxRxC, _ = apply_per_example(code.base_model, variables["base_model"], parity_BxRxI)
    return pout_BxRxC, {}
  return apply_per_example(code.parity_model, variables["parity_model"], parity_BxRxI,
                           train=train)


def decode_all(decoder: nn.ModelFns, dec_variables, outs_BxNxC: jax.Array,
               unavail_PxN: jax.Array, *, chunk: int | None = None) -> jax.Array:
  """Decodes under every pattern: unavailable slots are zeroed before the decoder sees them.

  Returns recon_PxBxKxC. ``chunk`` bounds memory for large P with ``jax.lax.map``.
  """

  def one(unavail_N):
    avail_N = jnp.logical_not(unavail_N)
    masked_BxNxC = jnp.where(avail_N[None, :, None], outs_BxNxC, 0.0)
    recon_BxKxC, _ = decoder.apply(dec_variables, masked_BxNxC, avail_N)
    return recon_BxKxC

  if chunk is None or chunk >= unavail_PxN.shape[0]:
    return jax.vmap(one)(unavail_PxN)
  return jax.lax.map(one, unavail_PxN, batch_size=chunk)


def forward(code: Code, variables, x_BxKxI: jax.Array, y_BxKxC: jax.Array,
            unavail_PxN: jax.Array, *, train: bool = False, chunk: int | None = None):
  """The whole coded computation for one batch of groups.

  Args:
    variables: dict with "encoder", "decoder", "base_model" and, if used, "parity_model".
    x_BxKxI: the data inputs, grouped.
    y_BxKxC: F's (precomputed) outputs on the data inputs.
    unavail_PxN: the erasure patterns.

  Returns:
    (recon_PxBxKxC, pout_BxRxC, updates) where ``updates`` holds the parity model's new
    batch-norm state in training mode.
  """
  parity_BxRxI = encode(code, variables, x_BxKxI, train=train)
  pout_BxRxC, updates = parity_outputs(code, variables, parity_BxRxI, train=train)
  outs_BxNxC = jnp.concatenate([y_BxKxC, pout_BxRxC.astype(y_BxKxC.dtype)], axis=1)
  recon_PxBxKxC = decode_all(code.decoder, variables["decoder"], outs_BxNxC, unavail_PxN,
                             chunk=chunk)
  return recon_PxBxKxC, pout_BxRxC, updates
