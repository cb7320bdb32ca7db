"""Learned MLP encoder and decoder (docs/upstream.md §MLP encoder, §MLP decoder; identical in both
originals)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as linen
import jax.numpy as jnp

from lcc_jax import nn, registry
from lcc_jax.coders import channels


class _Dense(linen.Module):
  """Dense layers with ReLU between them (none after the last)."""
  widths: Sequence[int]
  upstream_init: bool = True

  @linen.compact
  def __call__(self, h, train: bool = False):
    del train
    for i, width in enumerate(self.widths):
      if self.upstream_init:
        kernel_init, bias_init = nn.linear_init, nn.zeros
      else:  # parity-models' learned coders skipped init_weights (upstream.md §Known upstream bugs)
        kernel_init = bias_init = nn.torch_default_init(h.shape[-1])
      h = linen.Dense(width, kernel_init=kernel_init, bias_init=bias_init)(h)
      if i < len(self.widths) - 1:
        h = linen.relu(h)
    return h


class MLPEncoder(linen.Module):
  """(M, K, D) planes → flatten → Dense(K·D) → ReLU → Dense(R·D) → (M, R, D)."""
  k: int
  r: int
  input_shape: tuple[int, ...]
  channel_mode: str = "per_channel"
  upstream_init: bool = True

  @linen.compact
  def __call__(self, x_BxKxI, train: bool = False):
    d = channels.plane_size(self.input_shape)
    planes_MxKxD = channels.to_planes(x_BxKxI, self.channel_mode)
    m = planes_MxKxD.shape[0]
    flat = _Dense((self.k * d, self.r * d), self.upstream_init)(planes_MxKxD.reshape(m, -1))
    return channels.from_planes(flat.reshape(m, self.r, d), self.input_shape, self.channel_mode)


class MLPDecoder(linen.Module):
  """(B, N, C) → flatten → Dense(N·C) ReLU Dense(K·C) ReLU Dense(K·C) → (B, K, C)."""
  k: int
  r: int
  num_classes: int
  upstream_init: bool = True

  @linen.compact
  def __call__(self, outs_BxNxC, avail_N=None, train: bool = False):
    del avail_N  # a learned decoder sees zeros in unavailable slots, as upstream
    n, c, b = self.k + self.r, self.num_classes, outs_BxNxC.shape[0]
    widths = (n * c, self.k * c, self.k * c)
    return _Dense(widths, self.upstream_init)(outs_BxNxC.reshape(b, -1)).reshape(b, self.k, c)


@registry.register("encoder", "mlp")
def mlp_encoder(*, k, r, input_shape, num_classes=None, channel_mode="per_channel",
                upstream_init=True):
  del num_classes
  channels.check_mode(channel_mode)
  module = MLPEncoder(k, r, tuple(input_shape), channel_mode, upstream_init)
  return nn.from_linen(module, jnp.zeros((1, k) + tuple(input_shape), jnp.float32))


@registry.register("decoder", "mlp")
def mlp_decoder(*, k, r, num_classes, upstream_init=True):
  module = MLPDecoder(k, r, num_classes, upstream_init)
  return nn.from_linen(module, jnp.zeros((1, k + r, num_classes), jnp.float32),
                       jnp.ones((k + r,), bool))
