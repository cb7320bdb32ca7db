"""Learned dilated convolutional encoder (docs/upstream.md §Conv encoder; identical in both
originals).

The k inputs' planes are stacked as k input channels; seven SAME-sized 3×3 convolutions (the
last one 1×1) with dilations 1, 1, 2, 4, 8, 1 widen the receptive field to 35×35 and map them
to r output channels, one per parity plane.
"""
from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp

from lcc_jax import nn, registry
from lcc_jax.coders import channels, fast_conv

DILATIONS = (1, 1, 2, 4, 8, 1)
# Convolution implementations selectable with `impl=`: XLA's native convolution; the same
# convolution as matmuls over patches (coders/fast_conv.py); or "hybrid", XLA's convolution
# with the kernel gradient as matmuls over patches, the one part XLA's CPU backend is slow at
# (BENCHMARKS.md). "auto" takes hybrid on CPU and XLA's convolution (cuDNN) on accelerators.
# Same variables either way, so checkpoints move freely.
IMPLS = ("auto", "xla", "matmul", "hybrid")


def resolve_impl(impl: str) -> str:
  """"auto" → the faster implementation for the default backend; others unchanged."""
  if impl not in IMPLS:
    raise ValueError(f"unknown conv encoder impl {impl!r}; known: {list(IMPLS)}")
  if impl == "auto":
    return "hybrid" if jax.default_backend() == "cpu" else "xla"
  return impl


class ConvEncoder(linen.Module):
  """(M, K, H·W) planes → NHWC (M, H, W, K) → dilated convs → (M, R, H·W)."""
  k: int
  r: int
  input_shape: tuple[int, ...]
  channel_mode: str = "per_channel"
  intermediate_channels_multiplier: int = 20
  upstream_init: bool = True
  impl: str = "xla"  # "xla", "matmul" or "hybrid"; conv_encoder resolves "auto"

  @linen.compact
  def __call__(self, x_BxKxI, train: bool = False):
    del train
    h, w, _ = channels.image_shape(self.input_shape)
    planes_MxKxD = channels.to_planes(x_BxKxI, self.channel_mode)
    m = planes_MxKxD.shape[0]
    act = jnp.transpose(planes_MxKxD.reshape(m, self.k, h, w), (0, 2, 3, 1))  # (M, H, W, K)
    width = self.intermediate_channels_multiplier * self.k
    for i, dilation in enumerate(DILATIONS):  # (M, H, W, c) after the first layer
      act = linen.relu(self._conv(width, 3, dilation, act.shape[-1], f"Conv_{i}")(act))
    out_MxHxWxR = self._conv(self.r, 1, 1, width, f"Conv_{len(DILATIONS)}")(act)
    parity_MxRxD = jnp.transpose(out_MxHxWxR, (0, 3, 1, 2)).reshape(m, self.r, h * w)
    return channels.from_planes(parity_MxRxD, self.input_shape, self.channel_mode)

  def _conv(self, features: int, size: int, dilation: int, in_features: int,
            name: str) -> linen.Module:
    """One stride-1 SAME-sized convolution (padding = dilation for 3×3, as upstream).

    The single place where another ``impl`` would plug in (bench/ subclasses it already).
    """
    if self.upstream_init:
      kernel_init, bias_init = nn.conv_init, nn.zeros
    else:  # parity-models's learned coders skipped init_weights (upstream.md §Known upstream bugs)
      kernel_init = bias_init = nn.torch_default_init(in_features * size * size)
    if self.impl in ("matmul", "hybrid"):
      chunk = fast_conv.CPU_CHUNK if jax.default_backend() == "cpu" else None
      return fast_conv.MatmulConv(features, size, dilation, kernel_init, bias_init, chunk,
                                  xla_forward=self.impl == "hybrid", name=name)
    pad = dilation * (size // 2)
    return linen.Conv(features, (size, size), kernel_dilation=(dilation, dilation),
                      padding=((pad, pad), (pad, pad)), kernel_init=kernel_init,
                      bias_init=bias_init, name=name)


@registry.register("encoder", "conv")
def conv_encoder(*, k, r, input_shape, num_classes=None, channel_mode="per_channel",
                 intermediate_channels_multiplier=20, upstream_init=True, impl="auto"):
  """Upstream's ConvEncoder; vector inputs of s² values are viewed as s×s planes."""
  del num_classes
  channels.check_mode(channel_mode)
  channels.image_shape(tuple(input_shape))  # fails early on a non-image shape
  module = ConvEncoder(k, r, tuple(input_shape), channel_mode, intermediate_channels_multiplier,
                       upstream_init, resolve_impl(impl))
  return nn.from_linen(module, jnp.zeros((1, k) + tuple(input_shape), jnp.float32))
