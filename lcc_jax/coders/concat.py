"""ParM's concatenation encoder (docs/upstream.md §Concatenation), generalised from k ∈ {2, 4} to
any k.

Each input is downsized to one cell of a rows×cols grid and the cells are tiled into one parity
of F's input size, row-major (k = 2: left | right; k = 4: TL, TR, BL, BR, as upstream). The grid
is the most square factorisation of k with rows ≤ cols (k = 3: 1×3, k = 6: 2×3). Paired with
the ``sub`` decoder (parity target Σ_i F(X_i)); r = 1 only.

Channel modes: per_channel tiles channel c of the k inputs into parity channel c; upstream tiles
upstream's rows of k planes (docs/upstream.md §Channel grouping; k = 2 on RGB: parity channel 0 =
[i0.R | i0.G]).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lcc_jax import nn, registry
from lcc_jax.coders import channels, summation


def grid(k: int) -> tuple[int, int]:
  """(rows, cols): the most square factorisation of k with rows ≤ cols."""
  rows = max(d for d in range(1, int(k**0.5) + 1) if k % d == 0)
  return rows, k // rows


def tile(x_BxKxI: jax.Array, input_shape: tuple[int, ...], mode: str) -> jax.Array:
  """Resizes the k inputs (bilinear, antialiased) and tiles them into one parity (B, 1, I)."""
  h, w, c = channels.image_shape(input_shape)
  b, k = x_BxKxI.shape[:2]
  rows, cols = grid(k)
  ch, cw = h // rows, w // cols
  img_BxKxHxWxC = x_BxKxI.reshape(b, k, h, w, c)
  # Bilinear resizing is linear with unit-sum weights, so it commutes with the normalisation
  # upstream applied after resizing (up to PIL's uint8 rounding; docs/upstream.md §Porting notes).
  small_BxKxhxwxC = jax.image.resize(img_BxKxHxWxC, (b, k, ch, cw, c), "bilinear",
                                     antialias=True)
  planes_MxKxd = channels.to_planes(small_BxKxhxwxC, mode)
  m = planes_MxKxd.shape[0]
  cells = planes_MxKxd.reshape(m, rows, cols, ch, cw)
  plane_MxHxW = jnp.transpose(cells, (0, 1, 3, 2, 4)).reshape(m, 1, h * w)
  parity = channels.from_planes(plane_MxHxW, (h, w, c), mode)
  return parity.reshape((b, 1) + tuple(input_shape))


@registry.register("encoder", "concat")
def concat_encoder(*, k, r, input_shape, num_classes=None, channel_mode="per_channel"):
  del num_classes
  summation.require_r1("concat", r)
  channels.check_mode(channel_mode)
  h, w, _ = channels.image_shape(tuple(input_shape))
  rows, cols = grid(k)
  if h % rows or w % cols:
    raise ValueError(f"the concat encoder tiles k={k} inputs as a {rows}×{cols} grid, which "
                     f"needs H={h} divisible by {rows} and W={w} divisible by {cols}; pick "
                     "another k or resize the inputs")
  return nn.from_function(lambda x_BxKxI: tile(x_BxKxI, tuple(input_shape), channel_mode))
