"""Losses, exactly as upstream (docs/upstream.md §Losses), generalised to any erasure pattern.

A reconstruction loss is an elementwise function ``(recon_...xC, y_...xC, labels_...) -> (...)``
(summed over classes, as upstream's MaskedLoss did), reduced over the (group, unavailable data
slot) pairs of each pattern. Upstream averages over every such pair; with several unavailable
slots per pattern we keep exactly that: total = Σ_{p,b,j∈U_p} ℓ / Σ_p B·|U_p|.

Shape letters as in coding.py; U_PxK marks the unavailable data slots of each pattern.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lcc_jax import registry


@registry.register("loss", "mse")
def mse(recon_xC, y_xC, labels_x):
  """MSE-Base: squared error to F's logits, summed over classes."""
  del labels_x
  return jnp.sum(jnp.square(recon_xC - y_xC), axis=-1)


@registry.register("loss", "kl")
def kl(recon_xC, y_xC, labels_x):
  """KL-Base: KL(softmax(F(X)) ‖ softmax(recon)), summed over classes."""
  del labels_x
  log_p = jax.nn.log_softmax(y_xC, axis=-1)
  log_q = jax.nn.log_softmax(recon_xC, axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


@registry.register("loss", "xent")
def xent(recon_xC, y_xC, labels_x):
  """XENT-Label: cross-entropy of the reconstruction against the true label."""
  del y_xC
  log_q = jax.nn.log_softmax(recon_xC, axis=-1)
  return -jnp.take_along_axis(log_q, labels_x[..., None].astype(jnp.int32), axis=-1)[..., 0]


def unavailable_data(unavail_PxN: jax.Array, k: int) -> jax.Array:
  """U_PxK: the unavailable *data* slots of each pattern."""
  return unavail_PxN[:, :k]


def pattern_sums(elem_PxBxK: jax.Array, unavail_PxN: jax.Array, weight_B: jax.Array):
  """Per-pattern (sum of losses, number of scored pairs) over unavailable data slots.

  ``weight_B`` is 1 for real groups and 0 for padding (fixed-size last batches).
  """
  k = elem_PxBxK.shape[-1]
  scored_PxBxK = (unavailable_data(unavail_PxN, k)[:, None, :] * weight_B[None, :, None])
  scored_PxBxK = scored_PxBxK.astype(elem_PxBxK.dtype)
  # `where` rather than a product, so a non-finite value in an unscored slot cannot leak.
  sum_P = jnp.sum(jnp.where(scored_PxBxK > 0, elem_PxBxK, 0.0), axis=(1, 2))
  return sum_P, jnp.sum(scored_PxBxK, axis=(1, 2))


def reconstruction_loss(name: str, recon_PxBxKxC, y_BxKxC, labels_BxK, unavail_PxN, weight_B):
  """(scalar loss averaged over all scored pairs, per-pattern mean loss_P)."""
  elem_PxBxK = registry.get("loss", name)(recon_PxBxKxC, y_BxKxC[None], labels_BxK[None])
  sum_P, n_P = pattern_sums(elem_PxBxK, unavail_PxN, weight_B)
  return jnp.sum(sum_P) / jnp.maximum(jnp.sum(n_P), 1.0), sum_P / jnp.maximum(n_P, 1.0)


def parity_mse(pout_BxRxC, target_BxRxC, weight_B):
  """Upstream's parity-model loss: ``nn.MSELoss()`` (mean over groups, parities and classes)
  between F_P(parity) and the combination of F's outputs the fixed decoder needs."""
  sq_BxRxC = jnp.square(pout_BxRxC - target_BxRxC) * weight_B[:, None, None]
  count = jnp.maximum(jnp.sum(weight_B), 1.0) * pout_BxRxC.shape[1] * pout_BxRxC.shape[2]
  return jnp.sum(sq_BxRxC) / count
