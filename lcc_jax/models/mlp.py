"""Fully connected base models: upstream's ``base-mlp`` (784-200-100-10) and ``logistic``."""
from __future__ import annotations

from typing import Sequence

import flax.linen as linen

from lcc_jax import nn, registry
from lcc_jax.models import layers


class MLP(linen.Module):
  """Flatten → Dense/ReLU per hidden size → Dense(num_classes); raw logits out.

  Images are flattened channel-major like upstream's NCHW ``view(-1, 784)`` (the same order as
  NHWC for one channel), so PyTorch Linear weights import as plain transposes.
  """
  hidden: Sequence[int]
  num_classes: int
  upstream_init: bool = True

  @linen.compact
  def __call__(self, x, train: bool = False):
    del train
    h = layers.flatten_chw(x)
    for width in self.hidden:
      h = linen.relu(self._dense(width, h.shape[-1])(h))
    return self._dense(self.num_classes, h.shape[-1])(h)

  def _dense(self, width, fan_in):
    if self.upstream_init:
      return linen.Dense(width, kernel_init=nn.linear_init, bias_init=nn.zeros)
    init = nn.torch_default_init(fan_in)
    return linen.Dense(width, kernel_init=init, bias_init=init)


@registry.register("base_model", "base-mlp")
def base_mlp(*, input_shape, num_classes, hidden=(200, 100), upstream_init=True):
  del upstream_init  # F and F_P are always initialised as upstream's `init_weights`.
  return nn.from_linen(MLP(tuple(hidden), num_classes), layers.sample_input(input_shape))


@registry.register("base_model", "logistic")
def logistic(*, input_shape, num_classes):
  return nn.from_linen(MLP((), num_classes), layers.sample_input(input_shape))
