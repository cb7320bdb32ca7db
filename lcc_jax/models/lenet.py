"""``lenet5``: upstream's GCommands LeNet (parity-models ``train/base_models/lenet.py``)."""
from __future__ import annotations

import flax.linen as linen

from lcc_jax import nn, registry
from lcc_jax.models import layers


class LeNet(linen.Module):
  """conv5×5→20, pool, ReLU; conv5×5→20, pool, ReLU; fc→1000, ReLU; fc→classes (valid padding).

  Upstream's dropout is switched off (``self.dropout = False``), so there is none here.
  """
  num_classes: int
  image_shape: tuple[int, int, int]

  @linen.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x.reshape((x.shape[0],) + self.image_shape)
    x = linen.relu(layers.max_pool2(layers.conv(20, 5, name="conv1")(x)))
    x = linen.relu(layers.max_pool2(layers.conv(20, 5, name="conv2")(x)))
    x = linen.relu(layers.dense(1000, name="fc1")(layers.flatten_chw(x)))
    return layers.dense(self.num_classes, name="fc2")(x)


@registry.register("base_model", "lenet5")
def lenet5(*, input_shape, num_classes, image_shape=None):
  """LeNet on any image of at least 16×16 (28×28×1: 341,550 params; 161×101×1, 30 classes:
  16,321,570 with upstream's fc1 16280→1000)."""
  shape = layers.image_shape(input_shape, image_shape)
  if min(shape[:2]) < 16:
    raise ValueError(f"lenet5 needs images of at least 16×16, got {shape}")
  return nn.from_linen(LeNet(num_classes, shape), layers.sample_input(input_shape))
