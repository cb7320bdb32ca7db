"""ParM's addition encoder and subtraction decoder (docs/upstream.md §Addition and subtraction), for
r = 1.

The parity is the pixel-wise sum of the k inputs; a parity model F_P is trained towards
Σ_i F(X_i), so one unavailable output is F_P(P) − Σ_{available i} F(X_i). For r > 1 use
``mds`` (its first parity is this sum).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lcc_jax import nn, registry
from lcc_jax.coders import channels


def require_r1(name: str, r: int) -> None:
  if r != 1:
    raise ValueError(f"the {name!r} code supports r = 1 only, got r={r}; use the 'mds' "
                     "encoder/decoder pair for r > 1 (its first parity is the plain sum)")


def sum_parity_target(y_BxKxC):
  """Σ_i F(X_i): what the parity model must output."""
  return jnp.sum(y_BxKxC, axis=1, keepdims=True)


def subtract(outs_BxNxC, avail_N):
  """Each unavailable data slot gets F_P(P) − Σ_{available i} F(X_i); the rest pass through."""
  k = outs_BxNxC.shape[1] - 1
  data_BxKxC = outs_BxNxC[:, :k]
  # Unavailable slots are already zero, so the plain sum is the sum over available ones.
  missing_Bx1xC = outs_BxNxC[:, k:] - jnp.sum(data_BxKxC, axis=1, keepdims=True)
  return jnp.where(avail_N[None, :k, None], data_BxKxC, missing_Bx1xC)


@registry.register("encoder", "sum")
def sum_encoder(*, k, r, input_shape, num_classes=None, channel_mode="per_channel"):
  """Pixel-wise sum; ``upstream`` mode sums upstream's rows of k planes (docs/upstream.md §Channel
  grouping)."""
  del num_classes
  require_r1("sum", r)
  channels.check_mode(channel_mode)
  ones_1xK = np.ones((1, k), np.float32)
  return nn.from_function(
      lambda x_BxKxI: channels.mix(x_BxKxI, ones_1xK, tuple(input_shape), channel_mode))


@registry.register("decoder", "sub")
def sub_decoder(*, k, r, num_classes=None):
  del k, num_classes
  require_r1("sub", r)
  return nn.from_function(subtract, parity_target=sum_parity_target)
