r"""Codes with r > 1 parities (neither original supports r > 1; docs/upstream.md §Erasure patterns).

  python train.py --config=configs/r_gt_1.py --workdir=runs/r_gt_1
  python train.py --config=configs/r_gt_1.py:code=mds,r=3 --workdir=runs/r_gt_1
  python train.py --workdir=runs/r2 \
      --config=configs/r_gt_1.py:dataset=cifar10,model=resnet18,k=4,r=2,code=conv

Entries run in WORKDIR/<dataset>/<model>/k<k>/r<r>/<code>; keys after ':' select entries and
`epochs=N` replaces the default epochs. Codes:
* mds: the real-valued systematic MDS code (parity j = Σ_i a_ji X_i, ParM's addition code for
  r = 1) with one parity model F_P (F's architecture, starting as a copy of F) trained towards A·F(X) with
  the parity MSE, as parity-models' add runs (500 epochs MNIST / F-MNIST, 1000 CIFAR-10).
  Swept for r ∈ {2, 3}.
* mlp / conv: learned encoder + MLP decoder with F itself on the r parities, KL-Base, as
  learned-cc (500 / 2000 epochs) but with PyTorch-default initialisation. mlp is swept for r = 2; conv is available by config string.
Training uses every pattern of exactly r unavailable outputs (C(k+r, r) − 1 per group).
k ∈ {2, 3, 4}; mnist/base-mlp, fashion_mnist/base-mlp, cifar10/resnet18; 27 runs in all.
"""
from __future__ import annotations

import ml_collections

from configs import common
from lcc_jax import sweep

DEFAULTS = dict(dataset="mnist", model="base-mlp", k=2, r=2, code="mds", epochs=0)
CODES = {"mds": ("mds", "mds"), "mlp": ("mlp", "mlp"), "conv": ("conv", "mlp")}
PAIRS = (("mnist", "base-mlp"), ("fashion_mnist", "base-mlp"), ("cifar10", "resnet18"))
K_VALUES = (2, 3, 4)
SWEPT_R = {"mds": (2, 3), "mlp": (2,)}
DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")


def upstream_epochs(dataset: str, code: str) -> int:
  """parity-models' epochs for mds (500; CIFAR 1000), learned-cc's for learned codes (500; 2000)."""
  if dataset in ("mnist", "fashion_mnist"):
    return 500
  return 1000 if code == "mds" else 2000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = sweep.parse_arg(arg, **DEFAULTS)
  common.check_choice("dataset", a.dataset, DATASETS)
  common.check_choice("code", a.code, CODES)
  encoder, decoder = CODES[a.code]
  learned = a.code != "mds"
  run = common.Run(
      dataset=a.dataset, model=a.model, model_kwargs=common.model_kwargs(a.model, a.dataset),
      k=a.k, r=a.r, encoder=encoder, decoder=decoder,
      loss="kl" if learned else "parity_mse",
      epochs=upstream_epochs(a.dataset, a.code), batch_size=common.batch_size(a.k),
      train_encoder=learned, train_decoder=learned, train_parity_model=not learned,
      parity_model="" if learned else "same",
      # lcc_jax's defaults, not upstream's (neither original has r > 1; docs/training.md,
      # "Learning speed"): PyTorch-default init for the coders, F_P starts as a copy of F.
      upstream_init=False, parity_init="auto")
  return common.config(run, a.epochs)


def _runs() -> list[dict]:
  return [dict(dataset=dataset, model=model, k=k, r=r, code=code)
          for code, r_values in SWEPT_R.items()
          for dataset, model in PAIRS
          for k in K_VALUES
          for r in r_values]


def get_sweep(arg: str | None = None) -> list[dict]:
  return sweep.select(_runs(), arg, DEFAULTS,
                      lambda run: "{dataset}/{model}/k{k}/r{r}/{code}".format(**run))
