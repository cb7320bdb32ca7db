r"""learned-cc's 64 shipped runs (docs/upstream.md §Config formats): learned encoder + MLP decoder,
F on parities.

  python train.py --config=configs/learned_cc.py --workdir=runs/learned_cc
  python train.py --config=configs/learned_cc.py:dataset=mnist,model=base-mlp --workdir=runs/lcc
  python train.py --workdir=runs/lcc \
      --config=configs/learned_cc.py:dataset=cifar10,model=resnet18,k=5,loss=xent,encoder=conv

The first runs all 64 entries one after another, each in WORKDIR/<dataset>/<model>/k<k>/<loss>/
<encoder>; keys given after ':' select entries (the second: the 12 MNIST base-mlp runs) and
`epochs=N` replaces upstream's epoch count in every entry. Datasets × models: mnist/base-mlp,
mnist/resnet18, mnist/logistic (kl only), fashion_mnist/base-mlp, fashion_mnist/resnet18,
cifar10/resnet18; k ∈ {2, 5}; loss kl (KL-Base), mse (MSE-Base), xent (XENT-Label); encoder mlp
or conv. Adam 1e-3 with L2 1e-5, batch 64 (k = 2) / 32 (k = 5) groups, 500 epochs (2000 for
CIFAR-10); encoder and decoder trained with upstream's init, F frozen.
"""
from __future__ import annotations

import ml_collections

from configs import common
from lcc_jax import sweep

DEFAULTS = dict(dataset="mnist", model="base-mlp", k=2, loss="kl", encoder="mlp", epochs=0)
PAIRS = (("mnist", "base-mlp"), ("mnist", "resnet18"), ("mnist", "logistic"),
         ("fashion_mnist", "base-mlp"), ("fashion_mnist", "resnet18"), ("cifar10", "resnet18"))
EPOCHS = {"mnist": 500, "fashion_mnist": 500, "cifar10": 2000}
K_VALUES = (2, 5)
LOSSES = ("kl", "mse", "xent")
ENCODERS = ("mlp", "conv")
# Every shipped ConvEncoder config sets intermediate_channels = 20 (c = 20·k channels).
ENCODER_KWARGS = {"conv": {"intermediate_channels_multiplier": 20}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = sweep.parse_arg(arg, **DEFAULTS)
  common.check_choice("dataset", a.dataset, EPOCHS)
  common.check_choice("loss", a.loss, LOSSES)
  common.check_choice("encoder", a.encoder, ENCODERS)
  run = common.Run(
      dataset=a.dataset, model=a.model, model_kwargs=common.model_kwargs(a.model, a.dataset),
      k=a.k, encoder=a.encoder, encoder_kwargs=ENCODER_KWARGS.get(a.encoder, {}),
      decoder="mlp", loss=a.loss, epochs=EPOCHS[a.dataset], batch_size=common.batch_size(a.k))
  return common.config(run, a.epochs)


def _runs() -> list[dict]:
  return [dict(dataset=dataset, model=model, k=k, loss=loss, encoder=encoder)
          for dataset, model in PAIRS
          for k in K_VALUES
          for loss in (("kl",) if model == "logistic" else LOSSES)
          for encoder in ENCODERS]


def get_sweep(arg: str | None = None) -> list[dict]:
  return sweep.select(_runs(), arg, DEFAULTS,
                      lambda run: "{dataset}/{model}/k{k}/{loss}/{encoder}".format(**run))
