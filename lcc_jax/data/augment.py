"""CIFAR training augmentation as a pure, jittable function of already-normalised images.

Upstream (docs/upstream.md §Datasets and normalisation) applied ``RandomCrop(32, padding=4)`` to the
PIL image, i.e. *before* ``Normalize``: padded pixels are 0 in [0, 1] space and become −mean/std
after normalisation, which is what we pad with. Then ``RandomHorizontalFlip`` (p = 0.5). The
targets stay F(unaugmented x): the caller gathers them with the same indices as before.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

PAD = 4


def augment_cifar(rng: jax.Array, x_BxKxHxWxC: jax.Array, mean: Sequence[float],
                  std: Sequence[float]) -> jax.Array:
  """Random crop with 4-pixel padding (pad value −mean/std) and horizontal flip, per image."""
  shape = x_BxKxHxWxC.shape
  h, w, c = shape[-3:]
  x_NxHxWxC = x_BxKxHxWxC.reshape((-1, h, w, c))
  n = x_NxHxWxC.shape[0]
  fill_C = -jnp.asarray(mean, x_NxHxWxC.dtype) / jnp.asarray(std, x_NxHxWxC.dtype)
  padded = jnp.broadcast_to(fill_C, (n, h + 2 * PAD, w + 2 * PAD, c))
  padded = padded.at[:, PAD:PAD + h, PAD:PAD + w, :].set(x_NxHxWxC)
  crop_rng, flip_rng = jax.random.split(rng)
  offsets_Nx2 = jax.random.randint(crop_rng, (n, 2), 0, 2 * PAD + 1)
  flip_N = jax.random.bernoulli(flip_rng, 0.5, (n,))

  def one(image, offset_2, flip):
    crop = jax.lax.dynamic_slice(image, (offset_2[0], offset_2[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1, :], crop)

  return jax.vmap(one)(padded, offsets_Nx2, flip_N).reshape(shape)
