"""Dilated 3×3 convolution as matmuls over patches (im2col), for CPUs.

XLA's CPU convolutions are slow for the dilated ConvEncoder (docs/upstream.md §Conv encoder), above
all in their backward pass. Here the convolution is nine shifted slices concatenated along channels
("patches") and one ``jnp.dot`` with the kernel seen as a (9·C_in, C_out) matrix, and so is
each half of its backward pass:

* kernel gradient: patches(x)ᵀ · dy, one kernel row (three taps) at a time;
* input gradient: the transposed convolution, which for stride 1 and symmetric padding is the
  same dilated convolution of dy with the kernel flipped in space and its channels swapped,
  i.e. patches(dy) · W_flipped — no nine-fold "col2im" scatter.

Patches are nine times the size of the activations (72 MB per layer for a batch of 64 MNIST
planes and 40 channels), so the batch is processed ``chunk`` images at a time (``lax.map`` /
``lax.scan``): each chunk's patches stay in cache, are rebuilt in the backward pass instead
of being stored, and the work is dominated by the matmuls. ``chunk=None`` keeps the plain
whole-batch form (left to autodiff), better where memory is fast (GPUs).

``xla_forward=True`` (the conv encoder's ``impl="hybrid"``) keeps XLA's convolution for the
forward pass and the input gradient, which XLA's CPU backend runs near its matmul rate, and
uses the patches only for the kernel gradient, XLA's weak spot (one 40 → 40 channel layer,
batch 64, one thread, `python -m bench --only conv_layer`: forward 20 ms and input gradient
22 ms with XLA, kernel gradient 67 ms with XLA and 33 ms here; the whole encoder's train step
is 4.6× faster this way than with XLA's convolution throughout).

The result equals ``jax.lax.conv_general_dilated`` with padding = dilation, stride 1, up to
float rounding (tests/test_fast_conv.py checks values and gradients).
"""
from __future__ import annotations

import functools
from typing import Callable

import flax.linen as linen
import jax
import jax.numpy as jnp

# Images per chunk on CPUs: one 28×28 plane × 40 channels gives 1.1 MB of patches (an L2);
# measured faster than 2 or more per chunk on a 2-core EPYC.
CPU_CHUNK = 1


def patches(x_NxHxWxC: jax.Array, dilation: int) -> jax.Array:
  """(N, H, W, 9·C): the 3×3 dilated neighbourhood of every pixel, zero outside the image.

  Channel block t = 3·i + j holds the input shifted by ((i−1)·d, (j−1)·d), the row-major tap
  order of an HWIO kernel, so ``kernel.reshape(9·C, C_out)`` lines up with it.
  """
  _, h, w, _ = x_NxHxWxC.shape
  d = dilation
  padded = jnp.pad(x_NxHxWxC, ((0, 0), (d, d), (d, d), (0, 0)))
  taps = [padded[:, i * d:i * d + h, j * d:j * d + w, :] for i in range(3) for j in range(3)]
  return jnp.concatenate(taps, axis=-1)


def _conv(x_NxHxWxCin, kernel_TxCout, dilation):
  """The convolution of a (chunk of a) batch with a kernel already shaped (9·C_in, C_out)."""
  n, h, w, c_in = x_NxHxWxCin.shape
  cols_MxT = patches(x_NxHxWxCin, dilation).reshape(n * h * w, 9 * c_in)
  return jnp.dot(cols_MxT, kernel_TxCout).reshape(n, h, w, kernel_TxCout.shape[1])


def _flipped(kernel_3x3xCinxCout):
  """The kernel of the transposed convolution: flipped in space, in/out channels swapped."""
  c_in, c_out = kernel_3x3xCinxCout.shape[2:]
  return jnp.transpose(kernel_3x3xCinxCout[::-1, ::-1], (0, 1, 3, 2)).reshape(9 * c_out, c_in)


def _chunks(x_NxHxWxC, chunk):
  """The batch as scan inputs: (N/chunk, chunk, H, W, C), zero-padding N up to a multiple of
  ``chunk``; for ``chunk=1`` the (N, H, W, C) batch itself, scanned image by image.

  A size-1 chunk axis would cost a copy of every activation: XLA's layout assignment gives
  such arrays a layout that differs from the plain one only in where the size-1 axis goes, and
  copies between the two (≈ 1.3 ms per 8 MB activation on one core, BENCHMARKS.md).
  """
  if chunk == 1:
    return x_NxHxWxC
  n = x_NxHxWxC.shape[0]
  pad = -n % chunk
  if pad:
    x_NxHxWxC = jnp.pad(x_NxHxWxC, ((0, pad),) + ((0, 0),) * 3)
  return x_NxHxWxC.reshape((-1, chunk) + x_NxHxWxC.shape[1:])


def _as_batch(xc):
  """One scanned chunk as a (chunk, H, W, C) batch (a single image gets its batch axis back)."""
  return xc[None] if xc.ndim == 3 else xc


def _per_chunk(fn):
  """``fn`` on (chunk, H, W, C) batches, mapped over what ``_chunks`` yields."""
  def on_chunk(*chunks):
    out = fn(*map(_as_batch, chunks))
    return out[0] if chunks[0].ndim == 3 else out
  return on_chunk


def _unchunk(y_chunks, n):
  """Inverse of ``_chunks`` (drops the padding)."""
  if y_chunks.ndim == 4:
    return y_chunks
  return y_chunks.reshape((-1,) + y_chunks.shape[2:])[:n]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _chunked_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation, chunk):
  c_in, c_out = kernel_3x3xCinxCout.shape[2:]
  kernel_TxCout = kernel_3x3xCinxCout.reshape(9 * c_in, c_out)
  y = jax.lax.map(_per_chunk(lambda xc: _conv(xc, kernel_TxCout, dilation)),
                  _chunks(x_NxHxWxCin, chunk))
  return _unchunk(y, x_NxHxWxCin.shape[0])


def _chunked_conv_fwd(x_NxHxWxCin, kernel_3x3xCinxCout, dilation, chunk):
  # Residuals are the inputs only: patches are rebuilt chunk by chunk in the backward pass.
  return (_chunked_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation, chunk),
          (x_NxHxWxCin, kernel_3x3xCinxCout))


def _kernel_grad_chunk(xc, dyc, dilation):
  """(C_out, 9·C_in): one scanned chunk's kernel gradient, patches(x)ᵀ·dy, by kernel rows.

  Rather than all nine taps (nine copies of x), three column shifts of the padded x are put
  side by side, R = (N, H + 2d, W, 3·C_in); kernel row i's three taps are then R's rows
  i·d .. i·d + H, a contiguous block, and dy against it gives their gradient. A third of the
  copying of ``patches``; 10 % faster on one core (BENCHMARKS.md).
  """
  xc_NxHxWxCin, dyc_NxHxWxCout = _as_batch(xc), _as_batch(dyc)
  n, h, w, c_in = xc_NxHxWxCin.shape
  c_out, d = dyc_NxHxWxCout.shape[-1], dilation
  padded = jnp.pad(xc_NxHxWxCin, ((0, 0), (d, d), (d, d), (0, 0)))
  shifts_NxPxWx3C = jnp.concatenate([padded[:, :, j * d:j * d + w] for j in range(3)], axis=-1)
  # dy transposed for real (the barrier keeps XLA from folding the transpose into the dots,
  # which would then contract the long row axis of both operands: a slow generic kernel).
  dy_CoutxM = jax.lax.optimization_barrier(dyc_NxHxWxCout.reshape(-1, c_out).T)
  rows = [jnp.dot(dy_CoutxM, shifts_NxPxWx3C[:, i * d:i * d + h].reshape(n * h * w, 3 * c_in))
          for i in range(3)]
  return jnp.concatenate(rows, axis=1)


def _chunked_conv_bwd(dilation, chunk, residuals, dy_NxHxWxCout):
  x_NxHxWxCin, kernel_3x3xCinxCout = residuals
  n, c_in, c_out = x_NxHxWxCin.shape[0], *kernel_3x3xCinxCout.shape[2:]
  flipped_TxCin = _flipped(kernel_3x3xCinxCout)

  def one_chunk(dkernel_CoutxT, chunk_inputs):
    xc, dyc = chunk_inputs
    dkernel_CoutxT = dkernel_CoutxT + _kernel_grad_chunk(xc, dyc, dilation)
    return dkernel_CoutxT, _per_chunk(lambda dyc: _conv(dyc, flipped_TxCin, dilation))(dyc)

  dkernel_CoutxT, dx = jax.lax.scan(
      one_chunk, jnp.zeros((c_out, 9 * c_in), kernel_3x3xCinxCout.dtype),
      (_chunks(x_NxHxWxCin, chunk), _chunks(dy_NxHxWxCout, chunk)))
  return _unchunk(dx, n), dkernel_CoutxT.T.reshape(kernel_3x3xCinxCout.shape)


_chunked_conv.defvjp(_chunked_conv_fwd, _chunked_conv_bwd)


def xla_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation):
  """XLA's own convolution with the same semantics (padding = dilation, stride 1)."""
  d = dilation
  return jax.lax.conv_general_dilated(x_NxHxWxCin, kernel_3x3xCinxCout, (1, 1),
                                      ((d, d), (d, d)), rhs_dilation=(d, d),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _hybrid_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation, chunk):
  return xla_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation)


def _hybrid_conv_fwd(x_NxHxWxCin, kernel_3x3xCinxCout, dilation, chunk):
  return (xla_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation),
          (x_NxHxWxCin, kernel_3x3xCinxCout))


def _hybrid_conv_bwd(dilation, chunk, residuals, dy_NxHxWxCout):
  x_NxHxWxCin, kernel_3x3xCinxCout = residuals
  c_in, c_out = kernel_3x3xCinxCout.shape[2:]
  # The input gradient is a forward convolution of dy, which XLA does well.
  _, input_vjp = jax.vjp(lambda x: xla_conv(x, kernel_3x3xCinxCout, dilation), x_NxHxWxCin)

  def one_chunk(dkernel_CoutxT, chunk_inputs):
    return dkernel_CoutxT + _kernel_grad_chunk(*chunk_inputs, dilation), None

  dkernel_CoutxT, _ = jax.lax.scan(
      one_chunk, jnp.zeros((c_out, 9 * c_in), kernel_3x3xCinxCout.dtype),
      (_chunks(x_NxHxWxCin, chunk), _chunks(dy_NxHxWxCout, chunk)))
  return (input_vjp(dy_NxHxWxCout)[0],
          dkernel_CoutxT.T.reshape(kernel_3x3xCinxCout.shape))


_hybrid_conv.defvjp(_hybrid_conv_fwd, _hybrid_conv_bwd)


def dilated_conv(x_NxHxWxCin: jax.Array, kernel_3x3xCinxCout: jax.Array, bias: jax.Array | None,
                 dilation: int, *, chunk: int | None = CPU_CHUNK,
                 xla_forward: bool = False) -> jax.Array:
  """SAME-sized, stride-1 dilated 3×3 convolution (NHWC input, HWIO kernel) via matmuls.

  Args:
    x_NxHxWxCin: the input batch.
    kernel_3x3xCinxCout: the kernel (``linen.Conv``'s HWIO layout).
    bias: (C_out,) or None.
    dilation: the kernel dilation d; the padding is d on every side (output size = input size).
    chunk: images per chunk (see the module docstring); None: the whole batch at once.
    xla_forward: XLA's convolution for the forward pass and the input gradient, matmuls over
      patches only for the kernel gradient (the part XLA's CPU backend is slow at).
  """
  if kernel_3x3xCinxCout.shape[:2] != (3, 3):
    raise ValueError(f"dilated_conv needs a 3×3 HWIO kernel, got shape "
                     f"{kernel_3x3xCinxCout.shape}")
  if not isinstance(dilation, int) or dilation < 1:
    raise ValueError(f"dilation must be a positive int, got {dilation!r}")
  if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
    raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")
  c_in = x_NxHxWxCin.shape[-1]
  if kernel_3x3xCinxCout.shape[2] != c_in:
    raise ValueError(f"kernel expects {kernel_3x3xCinxCout.shape[2]} input channels, the input "
                     f"has {c_in}")
  if xla_forward:
    out = _hybrid_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation, chunk or x_NxHxWxCin.shape[0])
  elif chunk is None or chunk >= x_NxHxWxCin.shape[0]:
    out = _conv(x_NxHxWxCin, kernel_3x3xCinxCout.reshape(9 * c_in, -1), dilation)
  else:
    out = _chunked_conv(x_NxHxWxCin, kernel_3x3xCinxCout, dilation, chunk)
  return out if bias is None else out + bias


class MatmulConv(linen.Module):
  """Drop-in for a stride-1, SAME-padded ``linen.Conv`` (3×3 dilated or 1×1) built on matmuls.

  Its parameters are ``kernel`` (HWIO) and ``bias``, the names and shapes ``linen.Conv`` uses,
  so variables, checkpoints and imported PyTorch weights are interchangeable with it.
  """
  features: int
  kernel_size: int = 3
  dilation: int = 1
  kernel_init: Callable = linen.initializers.lecun_normal()
  bias_init: Callable = linen.initializers.zeros
  chunk: int | None = CPU_CHUNK
  xla_forward: bool = False  # see dilated_conv

  @linen.compact
  def __call__(self, x_NxHxWxCin):
    c_in = x_NxHxWxCin.shape[-1]
    size = self.kernel_size
    if size not in (1, 3):
      raise ValueError(f"MatmulConv supports 1×1 and 3×3 kernels, got {size}")
    kernel = self.param("kernel", self.kernel_init, (size, size, c_in, self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    if size == 1:
      return jnp.dot(x_NxHxWxCin, kernel[0, 0]) + bias
    return dilated_conv(x_NxHxWxCin, kernel, bias, self.dilation, chunk=self.chunk,
                        xla_forward=self.xla_forward)
