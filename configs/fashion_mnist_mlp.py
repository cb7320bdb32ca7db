"""Fashion-MNIST, base-mlp F, k = 2, r = 1 learned code with KL-Base (learned-cc's recipe).

  python train.py --config=configs/fashion_mnist_mlp.py --workdir=runs/fmnist_mlp
  python train.py --config=configs/fashion_mnist_mlp.py:encoder=conv --workdir=runs/fmnist_conv

The learned_cc entry fashion_mnist/base-mlp/k2/kl/<encoder> as a single run: MLP (or dilated
conv) encoder, MLP decoder, F itself on the parity, Adam 1e-3 with L2 1e-5, batch 64, 500 epochs
(`epochs=N` to change). Without --config.base_model.checkpoint, F is trained first.
"""
from __future__ import annotations

import ml_collections

from configs import learned_cc
from lcc_jax import sweep

DEFAULTS = dict(encoder="mlp", epochs=0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = sweep.parse_arg(arg, **DEFAULTS)
  return learned_cc.get_config(sweep.format_arg(
      dataset="fashion_mnist", model="base-mlp", k=2, loss="kl", encoder=a.encoder,
      epochs=a.epochs))
