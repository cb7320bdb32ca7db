r"""A seconds-long run on the embedded digits, for tests and smoke checks.

  python train.py --config=configs/tiny.py --workdir=/tmp/tiny
  python train.py --config=configs/tiny.py:k=3,r=2 --workdir=/tmp/tiny_k3r2
  python train.py --workdir=/tmp/tiny_pm \
      --config=configs/tiny.py:encoder=sum,decoder=sub,parity_model=same,loss=parity_mse

F is a one-hidden-layer MLP (32 units) trained for 2 epochs; the code trains for `epochs` (2).
Trained parts follow the names: a learned encoder (mlp, conv) and decoder (mlp) are trained, and
the parity model whenever one is named ("same" or a base_model name; "" = F itself).
"""
from __future__ import annotations

import ml_collections

from configs import common, default
from lcc_jax import sweep

DEFAULTS = dict(k=2, r=1, encoder="mlp", decoder="mlp", loss="kl", parity_model="", epochs=2)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = sweep.parse_arg(arg, **DEFAULTS)
  c = default.base()
  c.k, c.r = a.k, a.r
  c.data.name = "digits"
  c.data.val_size = 100
  c.data.batch_size = 16
  c.data.eval_batch_size = 100
  c.base_model.kwargs = ml_collections.ConfigDict({"hidden": (32,)})
  c.base_model.epochs = 2
  c.encoder.name, c.decoder.name = a.encoder, a.decoder
  c.parity_model.name = a.parity_model
  c.train.encoder = a.encoder in common.LEARNED_ENCODERS
  c.train.decoder = a.decoder in common.LEARNED_DECODERS
  c.train.parity_model = bool(a.parity_model)
  if not (c.train.encoder or c.train.decoder or c.train.parity_model):
    raise ValueError(f"nothing to train with encoder={a.encoder!r}, decoder={a.decoder!r} and no "
                     "parity model; name a learned coder or set parity_model=same")
  c.loss = a.loss
  c.num_epochs = a.epochs
  return c
