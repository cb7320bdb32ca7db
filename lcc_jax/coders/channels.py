"""How the k inputs' channels are grouped into the planes a learned encoder sees.

Encoders work on planes: ``planes_MxKxD`` (M rows of k single-channel planes of D = H·W
values) → ``parity_MxRxD``. Images come as ``x_BxKxHxWxC`` (NHWC); vectors as ``x_BxKxD``.

* ``per_channel`` (default): row (b, c) holds channel c of the k images of group b, so the
  k red planes are encoded together, the k green planes together, ... (upstream's comments).
* ``upstream``: the originals' reshape of (B, k, C·H·W) to (C·B, k, H·W) without a transpose
  (docs/upstream.md §Channel grouping): rows are consecutive runs of k planes in the order i0.R,
  i0.G, i0.B, i1.R, ... Offered so published CIFAR numbers can be compared; identical to per_channel
  when C = 1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MODES = ("per_channel", "upstream")


def check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"unknown channel_mode {mode!r}; known: {list(MODES)}")


def to_planes(x_BxKxI: jax.Array, mode: str) -> jax.Array:
  """(B, K, H, W, C) or (B, K, D) → planes (M, K, D) with M = B·C (vectors: M = B)."""
  check_mode(mode)
  if x_BxKxI.ndim == 3:
    return x_BxKxI
  b, k, h, w, c = x_BxKxI.shape
  if mode == "per_channel":
    return jnp.transpose(x_BxKxI, (0, 4, 1, 2, 3)).reshape(b * c, k, h * w)
  chw_BxKxCxHxW = jnp.transpose(x_BxKxI, (0, 1, 4, 2, 3))
  return chw_BxKxCxHxW.reshape(b * c, k, h * w)


def from_planes(parity_MxRxD: jax.Array, input_shape: tuple[int, ...], mode: str) -> jax.Array:
  """Planes (M, R, D) → parities (B, R, H, W, C) (or (B, R, D) for vector inputs)."""
  check_mode(mode)
  if len(input_shape) == 1:
    return parity_MxRxD
  h, w, c = input_shape
  m, r, _ = parity_MxRxD.shape
  b = m // c
  if mode == "per_channel":
    return jnp.transpose(parity_MxRxD.reshape(b, c, r, h, w), (0, 2, 3, 4, 1))
  # Upstream views the (C·B, R, H·W) parity as images of C channel-major planes.
  return jnp.transpose(parity_MxRxD.reshape(b, r, c, h, w), (0, 1, 3, 4, 2))


def plane_size(input_shape: tuple[int, ...]) -> int:
  """D: the flattened size of one channel of one input (upstream's ``in_dim``)."""
  return input_shape[0] if len(input_shape) == 1 else input_shape[0] * input_shape[1]


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
  """(H, W, C) of an input; a vector of D = s² values is viewed as one s×s plane, as upstream."""
  if len(input_shape) == 3:
    return tuple(int(v) for v in input_shape)
  if len(input_shape) == 1:
    side = int(round(input_shape[0]**0.5))
    if side * side == input_shape[0]:
      return side, side, 1
  raise ValueError(f"input_shape {tuple(input_shape)} is neither an image (H, W, C) nor a "
                   "vector of a square number of values; this encoder needs images")


def mix(x_BxKxI: jax.Array, a_RxK: jax.Array, input_shape: tuple[int, ...],
        mode: str) -> jax.Array:
  """Parity j = Σ_i a_ji·(planes of input i), with the planes grouped by ``mode``."""
  planes_MxKxD = to_planes(x_BxKxI, mode)
  a_RxK = jnp.asarray(a_RxK, planes_MxKxD.dtype)
  # HIGHEST: a fixed code must combine exactly (no TF32/bf16 passes on accelerators).
  parity_MxRxD = jnp.einsum("rk,mkd->mrd", a_RxK, planes_MxKxD,
                            precision=jax.lax.Precision.HIGHEST)
  return from_planes(parity_MxRxD, tuple(input_shape), mode)
