"""The embedded default: digits, a base-mlp-sized F, k = 2, r = 1 learned MLP code (KL-Base).

  python train.py                                  # same as --config=configs/default.py
  python train.py --config=configs/default.py --workdir=runs/default --config.k=3

Every other config starts from `base()` here and overrides what differs. Field comments say
where a name is resolved.
"""
from __future__ import annotations

import ml_collections


def base() -> ml_collections.ConfigDict:
  """All fields with their defaults; experiment configs override a few."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.k = 2                     # data inputs per coding group
  c.r = 1                     # parities per group (any r >= 1)

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"      # registry kind "dataset": digits, mnist, fashion_mnist, cifar10, ...
  c.data.kwargs = ml_collections.ConfigDict()  # for a dataset factory of your own (by path)
  c.data.data_dir = ""        # prepared tfds data; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  c.data.manual_dir = ""      # folder with the original distribution files (offline use)
  c.data.val_size = 5000      # carved from the train split, rounded up to a multiple of k
  c.data.augment = False      # CIFAR random crop + flip on encoder inputs (targets unaugmented)
  c.data.batch_size = 64      # groups per step, global over all devices and hosts
  c.data.eval_batch_size = 500  # groups per evaluation step
  # `function` dataset only: pairs (x, F(x)) for a jittable F named in base_model.kwargs.fn.
  c.data.fn = "x_sin_x"
  c.data.sampler = "normal"
  c.data.input_dim = 16
  c.data.num_outputs = 16
  c.data.num_train = 20000
  c.data.num_test = 4000

  c.base_model = ml_collections.ConfigDict()
  c.base_model.name = "base-mlp"  # registry kind "base_model" (or "package.module:factory")
  c.base_model.kwargs = ml_collections.ConfigDict()
  c.base_model.checkpoint = ""    # trained F: a workdir/base folder, or a PyTorch state dict
  # Recipe used when F must be trained first (into WORKDIR/base).
  c.base_model.epochs = 20
  c.base_model.batch_size = 128
  c.base_model.lr = 1e-3
  c.base_model.weight_decay = 0.0
  c.base_model.lr_schedule = "constant"  # or "cosine": lr decays to 0 over F's training

  c.encoder = ml_collections.ConfigDict({"name": "mlp", "kwargs": {}})  # registry kind "encoder"
  c.decoder = ml_collections.ConfigDict({"name": "mlp", "kwargs": {}})  # registry kind "decoder"
  # Network on the parities: "" = F itself (learned code); "same" = a parity model F_P with F's
  # architecture; or any base_model name.
  c.parity_model = ml_collections.ConfigDict({"name": "", "kwargs": {}})
  # How F_P starts: "base" = as a copy of F (needs F's architecture), "scratch" = from its
  # initialiser (both originals), "auto" = base where F_P has F's architecture (docs/training.md).
  c.parity_model.init = "auto"
  c.channel_mode = "per_channel"  # or "upstream" (docs/upstream.md §Channel grouping)
  # Learned coders: PyTorch-default init; True = upstream's init_weights, N(0, 0.01) kernels,
  # which learn far slower (docs/training.md, "Learning speed"; the upstream families set True).
  c.upstream_init = False

  c.train = ml_collections.ConfigDict()
  c.train.encoder = True
  c.train.decoder = True
  c.train.parity_model = False

  c.loss = "kl"                   # registry kind "loss": mse, kl, xent; or parity_mse
  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"
  c.optim.lr = 1e-3
  c.optim.weight_decay = 1e-5     # PyTorch-style L2 added to the gradient, as upstream
  c.optim.grad_clip_norm = 0.0

  c.patterns = ml_collections.ConfigDict()
  c.patterns.mode = "exactly"     # training patterns: exactly r unavailable ("at_most": 1..r)
  c.patterns.limit = 20000
  c.patterns.chunk = 0            # >0: decode patterns in chunks of this size (lax.map)

  c.num_epochs = 500
  c.time_limit_minutes = 0.0      # >0: stop after the epoch that passes this wall time
  # "Latest" checkpoints every this many epochs (0 = off) and/or minutes (0 = off), and at the
  # end; the best state is written with the next one. Saves are asynchronous.
  c.checkpoint_every = 0
  c.checkpoint_every_minutes = 1.0
  c.steps_per_dispatch = 0        # train steps per jitted call (one lax.scan); 0 = a whole epoch
  c.precision = "highest"         # or "default" (TF32 / bf16 matmul passes), "bfloat16" compute
  c.compilation_cache_dir = ""    # persistent XLA compilation cache, shared by runs ("" = none)
  c.best_metric = "val/degraded_top1"  # split/metric from metrics.jsonl, higher is better
  c.on_nonfinite = "stop"         # or "skip": skip steps whose loss is not finite, and count them
  c.eval_splits = ("val", "test")
  c.unavailability_rates = (0.01, 0.05, 0.1)

  # Replicas of the code trained in one program (vmapped): replica i draws its initialisation,
  # data order and step keys from seed + i (i from `first`); data, split and F are shared.
  c.replicas = ml_collections.ConfigDict()
  c.replicas.seeds = 1            # how many replicas; 1 = a single run, exactly as without
  c.replicas.first = 0            # index of the first replica (seeds=1, first=i: replica i alone)
  c.replicas.lr = ()              # per-replica optim.lr (one per replica), () = optim.lr for all
  c.replicas.weight_decay = ()    # per-replica optim.weight_decay, () = optim.weight_decay
  c.replicas.shard = False        # split the replicas over the devices (not the batch)

  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = -1
  c.distributed.process_id = -1
  c.distributed.shard_params_min_size = 0  # >0: shard kernels with more entries than this
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = base()
  c.data.val_size = 300
  c.base_model.kwargs = ml_collections.ConfigDict({"hidden": (200, 100)})
  c.base_model.epochs = 40
  c.num_epochs = 150
  return c
