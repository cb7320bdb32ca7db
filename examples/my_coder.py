"""Example 1: an encoder and a decoder of your own, trained by lcc-train by import path.

  PYTHONPATH=examples lcc-train --config.encoder.name=my_coder:encoder \
      --config.decoder.name=my_coder:decoder --workdir=runs/my_coder

(from a checkout, ``python train.py`` takes the same flags). Each factory takes the keyword
arguments it wants among k, r, input_shape, num_classes, channel_mode, upstream_init (plus the
config's ``encoder.kwargs`` / ``decoder.kwargs``) and returns a Flax Linen module; lcc_jax wraps
it into a pure ``ModelFns`` (docs/extending.md says exactly what each kind receives).
"""
import flax.linen as linen
import jax.numpy as jnp


class MeanPlusEncoder(linen.Module):
  """Parity = mean of the k inputs plus a learned per-pixel correction, r times."""
  r: int

  @linen.compact
  def __call__(self, x_BxKxI, train: bool = False):
    del train  # no batch norm or dropout here
    b, k = x_BxKxI.shape[:2]
    flat_BxKxD = x_BxKxI.reshape(b, k, -1)
    d = flat_BxKxD.shape[-1]
    mean_BxD = jnp.mean(flat_BxKxD, axis=1)
    correction_BxRD = linen.Dense(self.r * d)(flat_BxKxD.reshape(b, k * d))
    parity_BxRxD = mean_BxD[:, None, :] + correction_BxRD.reshape(b, self.r, d)
    return parity_BxRxD.reshape((b, self.r) + x_BxKxI.shape[2:])


class GatedDecoder(linen.Module):
  """Reconstructs the k outputs from the k + r available ones; knows which are available."""
  k: int
  num_classes: int
  hidden: int

  @linen.compact
  def __call__(self, outs_BxNxC, avail_N, train: bool = False):
    del train
    b, n, _ = outs_BxNxC.shape
    features = jnp.concatenate([outs_BxNxC.reshape(b, -1),
                                jnp.broadcast_to(avail_N.astype(outs_BxNxC.dtype), (b, n))], -1)
    h = linen.relu(linen.Dense(self.hidden)(features))
    recon_BxKxC = linen.Dense(self.k * self.num_classes)(h).reshape(b, self.k, self.num_classes)
    # An available data output is passed through as it is; only the missing ones are decoded.
    keep_K = avail_N[:self.k, None]
    return jnp.where(keep_K, outs_BxNxC[:, :self.k], recon_BxKxC)


def encoder(*, r):
  return MeanPlusEncoder(r)


def decoder(*, k, num_classes, hidden=64):
  return GatedDecoder(k, num_classes, hidden)
