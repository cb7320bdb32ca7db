"""Building blocks shared by the base models: PyTorch-exact batch norm and upstream init.

Every layer is named after its PyTorch counterpart with ``.`` written as ``_`` (``layer1_0``,
``downsample_1``, ``features_4``), so ``models/torch_import.py`` maps upstream state dicts by
name. Dense layers after a feature map flatten it channel-major, as PyTorch's ``view(B, -1)``
on NCHW does, so imported Linear weights are plain transposes.
"""
from __future__ import annotations

import math

import flax.linen as linen
import jax
import jax.numpy as jnp

from lcc_jax import nn


class BatchNorm(linen.Module):
  """PyTorch's ``BatchNorm1d/2d`` over the last (channel) axis.

  ``train=True`` normalises with the biased batch variance and moves the running statistics
  towards the batch ones, the variance with the *unbiased* estimate, as PyTorch does
  (``linen.BatchNorm`` uses the biased one). ``train=False`` uses the running statistics.
  """
  momentum: float = 0.9  # Flax convention (weight of the old value) = PyTorch momentum 0.1
  epsilon: float = 1e-5

  @linen.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    scale = self.param("scale", linen.initializers.ones, (c,))
    bias = self.param("bias", linen.initializers.zeros, (c,))
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,))
    running_var = self.variable("batch_stats", "var", jnp.ones, (c,))
    if train:
      n = x.size // c
      if n < 2:
        raise ValueError(f"batch norm in training mode needs > 1 value per channel, got {n} "
                         f"(input shape {x.shape}); use a larger batch or train=False")
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axes)
      var = jnp.mean(jnp.square(x - mean), axes)
      if not self.is_initializing():
        m = self.momentum
        running_mean.value = m * running_mean.value + (1 - m) * mean
        running_var.value = m * running_var.value + (1 - m) * var * (n / (n - 1))
    else:
      mean, var = running_mean.value, running_var.value
    return (x - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0, use_bias: bool = True,
         name: str | None = None) -> linen.Conv:
  """``nn.Conv2d`` with explicit symmetric padding (Flax's "SAME" pads stride-2 convs
  asymmetrically) and upstream's ``init_weights`` (xavier-uniform, gain √2; bias 0)."""
  return linen.Conv(features, (kernel, kernel), strides=(stride, stride),
                    padding=((padding, padding), (padding, padding)), use_bias=use_bias,
                    kernel_init=nn.conv_init, bias_init=nn.zeros, name=name)


def dense(features: int, name: str | None = None) -> linen.Dense:
  """``nn.Linear`` with upstream's ``init_weights`` (N(0, 0.01), bias 0)."""
  return linen.Dense(features, kernel_init=nn.linear_init, bias_init=nn.zeros, name=name)


def max_pool2(x_BxHxWxC):
  """``MaxPool2d(2)``: floor mode, an odd last row/column is dropped."""
  return linen.max_pool(x_BxHxWxC, (2, 2), strides=(2, 2), padding="VALID")


def flatten_chw(x):
  """(B, H, W, C) → (B, C·H·W) channel-major, as PyTorch flattens NCHW; (B, ...) → (B, -1)."""
  if x.ndim == 4:
    x = jnp.transpose(x, (0, 3, 1, 2))
  return x.reshape((x.shape[0], -1))


def image_shape(input_shape, image_shape=None) -> tuple[int, int, int]:
  """The (H, W, C) a conv model reshapes its per-example input to.

  (H, W, C) is used as is, (H, W) gets one channel; a flat (D,) input (NHWC order) needs
  ``image_shape`` unless D is a square, which is read as a grey D = S·S image.
  """
  input_shape = tuple(int(d) for d in input_shape)
  size = math.prod(input_shape)
  if image_shape is not None:
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or math.prod(image_shape) != size:
      raise ValueError(f"image_shape={image_shape} must be (H, W, C) with H·W·C = {size}, the "
                       f"size of input_shape={input_shape}")
    return image_shape
  if len(input_shape) == 3:
    return input_shape
  if len(input_shape) == 2:
    return input_shape + (1,)
  side = math.isqrt(size)
  if len(input_shape) == 1 and side * side == size:
    return (side, side, 1)
  raise ValueError(f"cannot read input_shape={input_shape} as an image; pass "
                   f"image_shape=(H, W, C) to the base model")


def sample_input(input_shape) -> jax.Array:
  """A batch of one zero example, for ``nn.from_linen``'s init."""
  return jnp.zeros((1,) + tuple(input_shape), jnp.float32)
