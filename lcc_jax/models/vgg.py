"""``vgg11``: upstream's GCommands VGG11 with batch norm (parity-models ``base_models/vgg.py``)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as linen

from lcc_jax import nn, registry
from lcc_jax.models import layers

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(linen.Module):
  """cfg of conv3×3 p1 + BN + ReLU and max-pools; fc1 → 512 (no activation); fc2 → classes.

  Layers are named by their index in upstream's ``features`` Sequential (a conv entry takes
  three slots: conv, BN, ReLU; a pool one). Upstream's trailing AvgPool2d(1) is the identity.
  """
  cfg: Sequence[int | str]
  num_classes: int
  image_shape: tuple[int, int, int]

  @linen.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0],) + self.image_shape)
    index = 0
    for width in self.cfg:
      if width == "M":
        x = layers.max_pool2(x)
        index += 1
      else:
        x = layers.conv(width, 3, padding=1, name=f"features_{index}")(x)
        x = linen.relu(layers.BatchNorm(name=f"features_{index + 1}")(x, train))
        index += 3
    x = layers.dense(512, name="fc1")(layers.flatten_chw(x))
    return layers.dense(self.num_classes, name="fc2")(x)


@registry.register("base_model", "vgg11")
def vgg11(*, input_shape, num_classes, image_shape=None):
  """VGG11-BN; fc1's input size follows the image (7680 for GCommands' 161×101×1)."""
  shape = layers.image_shape(input_shape, image_shape)
  if min(shape[:2]) < 32:
    raise ValueError(f"vgg11 pools 5 times and needs images of at least 32×32, got {shape}")
  return nn.from_linen(VGG(VGG11, num_classes, shape), layers.sample_input(input_shape))
