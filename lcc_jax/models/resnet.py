"""BasicBlock ResNets of the originals (parity-models ``train/base_models/resnet.py``).

``resnet18``: CIFAR variant (4 stages 64/128/256/512, 11,173,962 params at 10 classes) or the
3-stage MNIST variant (no layer4, fc 256→classes, 2,776,522 params). ``resnet152``: upstream's
misnamed BasicBlock [3, 8, 36, 3] CIFAR network (57,930,148 params at 100 classes).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as linen
import jax.numpy as jnp

from lcc_jax import nn, registry
from lcc_jax.models import layers

WIDTHS = (64, 128, 256, 512)
VARIANTS = ("cifar", "mnist")


class BasicBlock(linen.Module):
  """conv3×3-BN-ReLU-conv3×3-BN + shortcut (1×1 conv + BN when the shape changes), ReLU."""
  planes: int
  stride: int = 1

  @linen.compact
  def __call__(self, x, train: bool = False):
    out = layers.conv(self.planes, 3, self.stride, 1, use_bias=False, name="conv1")(x)
    out = linen.relu(layers.BatchNorm(name="bn1")(out, train))
    out = layers.conv(self.planes, 3, 1, 1, use_bias=False, name="conv2")(out)
    out = layers.BatchNorm(name="bn2")(out, train)
    if self.stride != 1 or x.shape[-1] != self.planes:
      x = layers.conv(self.planes, 1, self.stride, use_bias=False, name="downsample_0")(x)
      x = layers.BatchNorm(name="downsample_1")(x, train)
    return linen.relu(out + x)


class ResNet(linen.Module):
  """CIFAR stem (conv3×3 no bias, BN, ReLU, no max-pool), stages, global average pool, fc."""
  stage_sizes: Sequence[int]
  num_classes: int
  image_shape: tuple[int, int, int]

  @linen.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0],) + self.image_shape)
    x = layers.conv(64, 3, 1, 1, use_bias=False, name="conv1")(x)
    x = linen.relu(layers.BatchNorm(name="bn1")(x, train))
    for stage, (width, blocks) in enumerate(zip(WIDTHS, self.stage_sizes)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, stride, name=f"layer{stage + 1}_{block}")(x, train)
    # Upstream's AvgPool2d(4) / AvgPool2d(7) covers the whole final 4×4 / 7×7 map.
    x = jnp.mean(x, axis=(1, 2))
    return layers.dense(self.num_classes, name="fc")(x)


def _build(stage_sizes, input_shape, num_classes, variant, image_shape):
  shape = layers.image_shape(input_shape, image_shape)
  if variant is None:  # upstream ties the variant to the channels: 3 → CIFAR, 1 → MNIST
    variant = "mnist" if shape[-1] == 1 else "cifar"
  if variant not in VARIANTS:
    raise ValueError(f"unknown resnet variant {variant!r}; use one of {VARIANTS}")
  stages = tuple(stage_sizes) if variant == "cifar" else tuple(stage_sizes)[:3]
  module = ResNet(stages, num_classes, shape)
  return nn.from_linen(module, layers.sample_input(input_shape))


@registry.register("base_model", "resnet18")
def resnet18(*, input_shape, num_classes, variant=None, image_shape=None):
  """``variant``: "cifar" (4 stages) or "mnist" (3 stages); default "mnist" for 1 channel."""
  return _build((2, 2, 2, 2), input_shape, num_classes, variant, image_shape)


@registry.register("base_model", "resnet152")
def resnet152(*, input_shape, num_classes, variant="cifar", image_shape=None):
  """Upstream's "ResNet152" = BasicBlock [3, 8, 36, 3], CIFAR variant by default."""
  return _build((3, 8, 36, 3), input_shape, num_classes, variant, image_shape)
