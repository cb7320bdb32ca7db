"""The two upstream JSON config formats (docs/upstream.md §Config formats) → lcc_jax configs.

* learned-cc: one ``conf.json`` per run (``BaseModel``, ``Encoder``, ``Loss``, ... given as
  dotted class paths, ``ec_k``, ``batch_size``, ``final_epoch``, ``base_model_file``, ...).
* parity-models: one sweep JSON (``num_epoch``, ``k_vals``, ``enc_dec_types``, ``datasets``,
  ``models``, ``losses``, ``train_*``): every combination is one run, in upstream's loop order.

Class paths map to registry names through the explicit tables below; anything else is a
ValueError that lists what is supported. Deliberate differences from upstream (each logged as a
warning when it applies): ``train_parity_model=false`` runs F itself on the parities (upstream
ran a randomly initialised frozen copy of F, docs/upstream.md §Known upstream bugs); a
``base_model_file`` that cannot be read is left out, so train.py trains F first;
``continue_from_file`` (a PyTorch checkpoint) is ignored.

Each run is read into a ``configs.common.Run``, the description the experiment families in
``configs/`` share; ``configs.common.config`` turns it into a full config (``configs/upstream.py``
does both). Shapes and classes of the datasets come from ``lcc_jax.data.facts``.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from typing import Any, Mapping

from configs import common
from lcc_jax.data import facts

# Class paths of both repositories (learned-cc's coders.mlp_coder / coders.conv_encoder,
# parity-models' coders.mlp / coders.conv) → registry names.
ENCODERS = {
    "coders.mlp_coder.MLPEncoder": "mlp",
    "coders.mlp.MLPEncoder": "mlp",
    "coders.conv_encoder.ConvEncoder": "conv",
    "coders.conv.ConvEncoder": "conv",
    "coders.summation.AdditionEncoder": "sum",
    "coders.image.ConcatenationEncoder": "concat",
}
DECODERS = {
    "coders.mlp_coder.MLPDecoder": "mlp",
    "coders.mlp.MLPDecoder": "mlp",
    "coders.summation.SubtractionDecoder": "sub",
}
LOSSES = {
    "loss.kldiv.KLDivLoss": "kl",
    "torch.nn.MSELoss": "mse",  # "parity_mse" when the decoder is not trained, as upstream
    "torch.nn.CrossEntropyLoss": "xent",
}
OPTIMIZERS = {"torch.optim.Adam": "adam", "torch.optim.AdamW": "adamw", "torch.optim.SGD": "sgd"}
OPTIMIZER_ARGS = ("lr", "weight_decay")
BASE_MODELS = {
    "base_models.base_mlp.BaseMLP": "base-mlp",
    # learned-cc's base_models/logistic.py (its class name is not recorded; both spellings).
    "base_models.logistic.Logistic": "logistic",
    "base_models.logistic.LogisticRegression": "logistic",
    "base_models.resnet.ResNet18": "resnet18",
    "base_models.resnet.ResNet152": "resnet152",
}
DATASET_CLASSES = {
    "datasets.code_dataset.MNISTCodeDataset": "mnist",
    "datasets.code_dataset.FashionMNISTCodeDataset": "fashion_mnist",
    "datasets.code_dataset.CIFAR10CodeDataset": "cifar10",
    "datasets.code_dataset.CIFAR100CodeDataset": "cifar100",
    "datasets.code_dataset.CatDogCodeDataset": "cat_v_dog",
    "datasets.gcommands_dataset.GCommandsCodeDataset": "gcommands",
}
# parity-models sweep names (its train.py hard-codes them) → registry names.
SWEEP_DATASETS = {"mnist": "mnist", "fashion-mnist": "fashion_mnist", "cifar10": "cifar10",
                  "cifar100": "cifar100", "cat_v_dog": "cat_v_dog", "gcommands": "gcommands"}
SWEEP_MODELS = {"base-mlp": "base-mlp", "resnet18": "resnet18", "resnet152": "resnet152"}
# upstream's train.py asserts these pairings.
MODEL_ONLY_FOR = {"resnet152": "cifar100", "vgg11": "gcommands", "lenet": "gcommands"}
UNSUPPORTED_DATASETS = {
    "cat_v_dog": "Cat v Dog came from upstream's S3 bucket, which needs AWS credentials "
                 "(docs/upstream.md §Known upstream bugs); lcc_jax has no offline source for it",
    "gcommands": "Google Speech Commands needs audio preprocessing (STFT spectrograms) that "
                 "lcc_jax does not implement, and lcc_jax has no offline source for it "
                 "(upstream's loader is also broken on master, docs/upstream.md §Known "
                 "upstream bugs)",
}
SUPPORTED_DATASETS = sorted(set(DATASET_CLASSES.values()) - set(UNSUPPORTED_DATASETS))

LEARNED_CC_KEYS = ("BaseModel", "Dataset", "Decoder", "DecoderOptimizer", "Encoder",
                   "EncoderOptimizer", "Loss", "base_model_file", "base_model_input_size",
                   "batch_size", "ec_k", "ec_r", "final_epoch", "save_dir")
LEARNED_CC_OPTIONAL = ("continue_from_file",)
SWEEP_KEYS = ("num_epoch", "k_vals", "enc_dec_types", "datasets", "models", "losses",
              "train_encoder", "train_parity_model", "train_decoder")
PARITY_BUG_NOTE = ("train_parity_model=false: F itself runs on the parities; upstream ran a "
                   "randomly initialised, frozen copy of F there (bug, docs/upstream.md §Known "
                   "upstream bugs)")


def read_runs(path: str) -> list[tuple[str, common.Run]]:
  """(name, Run) for every run of an upstream JSON file, in upstream's order."""
  with open(path) as f:
    conf = json.load(f)
  if not isinstance(conf, dict):
    raise ValueError(f"{path}: an upstream config is a JSON object, got {type(conf).__name__}")
  if "num_epoch" in conf or "k_vals" in conf:
    return _sweep_runs(conf, path)
  if "ec_k" in conf or "BaseModel" in conf:
    return [("", _learned_cc_run(conf, path))]
  raise ValueError(f"{path}: neither a learned-cc conf.json (keys {list(LEARNED_CC_KEYS)}) nor a "
                   f"parity-models sweep JSON (keys {list(SWEEP_KEYS)})")


def _check_keys(conf: Mapping, required, optional, where: str) -> None:
  unknown = sorted(set(conf) - set(required) - set(optional))
  missing = [key for key in required if key not in conf]
  if unknown or missing:
    raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}; supported keys: "
                     f"{list(required) + list(optional)}")


def _lookup(table: Mapping[str, str], key: Any, what: str, where: str) -> str:
  if not isinstance(key, str) or key not in table:
    supported = sorted(k for k, v in table.items() if v not in UNSUPPORTED_DATASETS)
    raise ValueError(f"{where}: unsupported {what} {key!r}; supported: {supported}")
  return table[key]


def _int(value: Any, what: str, where: str, low: int = 1) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < low:
    raise ValueError(f"{where}: {what} must be an integer >= {low}, got {value!r}")
  return value


def _bool(value: Any, what: str, where: str) -> bool:
  if not isinstance(value, bool):
    raise ValueError(f"{where}: {what} must be true or false, got {value!r}")
  return value


def _list(value: Any, what: str, where: str) -> list:
  if not isinstance(value, list) or not value:
    raise ValueError(f"{where}: {what} must be a non-empty list, got {value!r}")
  return value


def _class_spec(spec: Any, what: str, where: str) -> tuple[str, dict]:
  """(class path, args) of a ``{"class": ..., "args": {...}}`` object."""
  if not isinstance(spec, dict):
    raise ValueError(f"{where}: {what} must be an object with 'class' (and 'args'), got {spec!r}")
  _check_keys(spec, ("class",), ("args",), f"{where}: {what}")
  args = spec.get("args", {})
  if not isinstance(args, dict):
    raise ValueError(f"{where}: {what}.args must be an object, got {args!r}")
  return spec["class"], dict(args)


def _dataset(name: str, where: str) -> str:
  if name in UNSUPPORTED_DATASETS:
    raise ValueError(f"{where}: dataset {name!r} is not supported: {UNSUPPORTED_DATASETS[name]}. "
                     f"Supported datasets: {SUPPORTED_DATASETS}")
  return name


def _no_args(args: dict, what: str, where: str) -> None:
  if args:
    raise ValueError(f"{where}: {what} takes no args in lcc_jax, got {args}")


def _base_model(cls: str, args: dict, dataset: str, where: str) -> tuple[str, dict]:
  """Registry name and kwargs of a BaseModel spec; ``num_classes`` must match the dataset."""
  model = _lookup(BASE_MODELS, cls, "BaseModel class", where)
  args = dict(args)
  expected = facts.DATASETS[dataset].num_classes
  num_classes = args.pop("num_classes", expected)
  if num_classes != expected:
    raise ValueError(f"{where}: BaseModel num_classes={num_classes!r} but {dataset} has "
                     f"{expected} classes")
  kwargs = {}
  if model in ("resnet18", "resnet152") and "size_for_cifar" in args:
    kwargs["variant"] = "cifar" if _bool(args.pop("size_for_cifar"), "size_for_cifar",
                                         where) else "mnist"
  if args:
    raise ValueError(f"{where}: unsupported BaseModel args {sorted(args)} for {cls}; supported: "
                     "num_classes, and size_for_cifar for ResNets")
  return model, kwargs


def _encoder(cls: str, args: dict, where: str) -> tuple[str, dict]:
  name = _lookup(ENCODERS, cls, "Encoder class", where)
  args = dict(args)
  kwargs = {}
  if name == "conv" and "intermediate_channels" in args:
    # learned-cc's arg; parity-models fixes the same multiplier at 20.
    kwargs["intermediate_channels_multiplier"] = _int(args.pop("intermediate_channels"),
                                                      "intermediate_channels", where)
  _no_args(args, f"Encoder {cls} (beyond intermediate_channels for ConvEncoder)", where)
  return name, kwargs


def _loss(cls: str, train_decoder: bool, where: str) -> str:
  name = _lookup(LOSSES, cls, "Loss class", where)
  if train_decoder:
    return name
  if name != "mse":
    raise ValueError(f"{where}: {cls} needs a trained decoder (train_decoder=true); with a fixed "
                     "decoder only torch.nn.MSELoss (the parity-model loss) is supported, as "
                     "upstream")
  return "parity_mse"


def _optimizer(spec: Any, what: str, where: str) -> tuple[str, float, float]:
  cls, args = _class_spec(spec, what, where)
  name = _lookup(OPTIMIZERS, cls, f"{what} class", where)
  unknown = sorted(set(args) - set(OPTIMIZER_ARGS))
  if unknown:
    raise ValueError(f"{where}: unsupported {what} args {unknown}; supported: "
                     f"{list(OPTIMIZER_ARGS)}")
  return name, float(args.get("lr", 1e-3)), float(args.get("weight_decay", 0.0))


def _find_file(rel: str, json_path: str) -> str:
  """``rel`` as an absolute path if readable: as given, from the working directory, or from any
  folder above the JSON file (upstream resolved it from the repository root)."""
  if not rel:
    return ""
  if os.path.isabs(rel):
    candidates = [rel]
  else:
    here = os.path.dirname(os.path.abspath(json_path))
    ancestors = [here]
    while os.path.dirname(ancestors[-1]) != ancestors[-1]:
      ancestors.append(os.path.dirname(ancestors[-1]))
    candidates = [os.path.join(os.getcwd(), rel)] + [os.path.join(d, rel) for d in ancestors]
  for candidate in candidates:
    if os.path.isfile(candidate) and os.access(candidate, os.R_OK):
      return os.path.abspath(candidate)
  return ""


def _checkpoint(rel: str, json_path: str) -> tuple[str, tuple[str, ...]]:
  found = _find_file(rel, json_path)
  if found or not rel:
    return found, ()
  return "", (f"base_model_file {rel!r} is not readable (looked in the working directory and "
              f"the folders above {json_path}); F will be trained first",)


def _learned_cc_run(conf: dict, path: str) -> common.Run:
  where = f"{path} (learned-cc conf.json)"
  _check_keys(conf, LEARNED_CC_KEYS, LEARNED_CC_OPTIONAL, where)
  ds_cls, ds_args = _class_spec(conf["Dataset"], "Dataset", where)
  dataset = _dataset(_lookup(DATASET_CLASSES, ds_cls, "Dataset class", where), where)
  _no_args(ds_args, "Dataset", where)
  model, kwargs = _base_model(*_class_spec(conf["BaseModel"], "BaseModel", where), dataset, where)
  encoder, encoder_kwargs = _encoder(*_class_spec(conf["Encoder"], "Encoder", where), where)
  dec_cls, dec_args = _class_spec(conf["Decoder"], "Decoder", where)
  decoder = _lookup(DECODERS, dec_cls, "Decoder class", where)
  _no_args(dec_args, "Decoder", where)
  if encoder not in common.LEARNED_ENCODERS or decoder not in common.LEARNED_DECODERS:
    raise ValueError(f"{where}: learned-cc trains the encoder and the decoder, so both must be "
                     f"learned ones (encoders {list(common.LEARNED_ENCODERS)}, decoders "
                     f"{list(common.LEARNED_DECODERS)}); got {encoder!r} and {decoder!r}")
  loss_cls, loss_args = _class_spec(conf["Loss"], "Loss", where)
  _no_args(loss_args, "Loss", where)
  optimizers = {what: _optimizer(conf[what], what, where)
                for what in ("EncoderOptimizer", "DecoderOptimizer")}
  if len(set(optimizers.values())) > 1:
    raise ValueError(f"{where}: lcc_jax trains all parts with one optimizer, but "
                     f"EncoderOptimizer and DecoderOptimizer differ: {optimizers}")
  optimizer, lr, weight_decay = optimizers["EncoderOptimizer"]
  _check_input_size(conf["base_model_input_size"], dataset, where)
  checkpoint, warnings = _checkpoint(conf["base_model_file"], path)
  if "continue_from_file" in conf:
    warnings += (f"continue_from_file {conf['continue_from_file']!r} is a PyTorch trainer "
                 "checkpoint and is ignored; an lcc_jax run resumes when train.py is rerun with "
                 "the same --workdir",)
  return common.Run(
      dataset=dataset, model=model, model_kwargs=kwargs,
      k=_int(conf["ec_k"], "ec_k", where), r=_int(conf["ec_r"], "ec_r", where),
      encoder=encoder, encoder_kwargs=encoder_kwargs, decoder=decoder,
      loss=_loss(loss_cls, True, where),
      epochs=_int(conf["final_epoch"], "final_epoch", where),
      batch_size=_int(conf["batch_size"], "batch_size", where),
      optimizer=optimizer, lr=lr, weight_decay=weight_decay,
      checkpoint=checkpoint, warnings=warnings)


def _check_input_size(size: Any, dataset: str, where: str) -> None:
  expected = math.prod(facts.DATASETS[dataset].shape)
  if (not isinstance(size, list) or not size or size[0] != -1
      or not all(isinstance(d, int) and d > 0 for d in size[1:])
      or math.prod(size[1:]) != expected):
    raise ValueError(f"{where}: base_model_input_size must be [-1, ...] with {expected} values per "
                     f"{dataset} example, got {size!r}")


def _sweep_runs(conf: dict, path: str) -> list[tuple[str, common.Run]]:
  where = f"{path} (parity-models sweep JSON)"
  _check_keys(conf, SWEEP_KEYS, (), where)
  epochs = _int(conf["num_epoch"], "num_epoch", where)
  k_vals = [_int(k, "each of k_vals", where) for k in _list(conf["k_vals"], "k_vals", where)]
  flags = {part: _bool(conf[f"train_{part}"], f"train_{part}", where)
           for part in ("encoder", "decoder", "parity_model")}
  if not any(flags.values()):
    raise ValueError(f"{where}: train_encoder, train_decoder and train_parity_model are all false; "
                     "nothing would be trained")
  pairs = []
  for pair in _list(conf["enc_dec_types"], "enc_dec_types", where):
    if not isinstance(pair, list) or len(pair) != 2:
      raise ValueError(f"{where}: each of enc_dec_types is [encoder class, decoder class], "
                       f"got {pair!r}")
    pairs.append((_encoder(pair[0], {}, where)[0],
                  _lookup(DECODERS, pair[1], "decoder class", where)))
  for encoder, decoder in pairs:
    for part, name, learned in (("encoder", encoder, common.LEARNED_ENCODERS),
                                ("decoder", decoder, common.LEARNED_DECODERS)):
      if flags[part] and name not in learned:
        raise ValueError(f"{where}: train_{part}=true but {part} {name!r} has no parameters; "
                         f"trainable {part}s: {list(learned)}")
  datasets = [_dataset(_lookup(SWEEP_DATASETS, d, "dataset", where), where)
              for d in _list(conf["datasets"], "datasets", where)]
  models = [_sweep_model(m, where) for m in _list(conf["models"], "models", where)]
  losses = [_loss(l, flags["decoder"], where) for l in _list(conf["losses"], "losses", where)]
  warnings = () if flags["parity_model"] else (PARITY_BUG_NOTE,)
  upstream_names = {v: k for k, v in SWEEP_DATASETS.items()}
  runs = []
  for dataset, model, k, loss, (encoder, decoder) in itertools.product(
      datasets, models, k_vals, losses, pairs):
    if model in MODEL_ONLY_FOR and MODEL_ONLY_FOR[model] != dataset:
      raise ValueError(f"{where}: upstream's train.py runs model {model!r} only on dataset "
                       f"{MODEL_ONLY_FOR[model]!r}, not {dataset!r}")
    rel = f"base_model_trained_files/{upstream_names[dataset]}/{model}/model.t7"
    checkpoint, missing = _checkpoint(rel, path)
    name = f"{dataset}/{model}/k{k}/{loss}/{encoder}-{decoder}"
    runs.append((name, common.Run(
        dataset=dataset, model=model, model_kwargs=common.model_kwargs(model, dataset), k=k,
        encoder=encoder, decoder=decoder, loss=loss, epochs=epochs,
        batch_size=common.batch_size(k),
        train_encoder=flags["encoder"], train_decoder=flags["decoder"],
        train_parity_model=flags["parity_model"],
        parity_model="same" if flags["parity_model"] else "",
        upstream_init=False,  # parity-models skipped init_weights for its coders (a bug)
        checkpoint=checkpoint, warnings=warnings + missing)))
  return runs


def _sweep_model(name: Any, where: str) -> str:
  if name in MODEL_ONLY_FOR and name not in SWEEP_MODELS:
    raise ValueError(f"{where}: model {name!r} is upstream's {MODEL_ONLY_FOR[name]} model, and "
                     f"that dataset is not supported; supported models: {sorted(SWEEP_MODELS)}")
  return _lookup(SWEEP_MODELS, name, "model", where)
