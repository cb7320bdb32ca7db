"""Datasets by name (registry kind ``"dataset"``): ``load(data_config) -> Dataset``.

Every dataset is small enough to live in memory (and on the accelerator) as one contiguous
float32 NHWC array per official split; the training loop gathers groups from it with the
index arrays of ``splits.group_indices``. Normalisation follows docs/upstream.md §Datasets and
normalisation.

Names: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` (tfds builders over the
original files, see ``builders.py``), ``digits`` (scikit-learn's 8×8 digits, embedded, the
offline default) and ``function`` (x from a sampler, labels argmax F(x) for a jittable F).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

import numpy as np

from lcc_jax import registry
from lcc_jax.data import augment as augment_lib
from lcc_jax.data import cache
from lcc_jax.data import facts
from lcc_jax.data import sources

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
DIGITS_TEST_PER_CLASS = 36  # digits test split: 360 images, train 1437 (facts.DATASETS)
DIGITS_SPLIT_SEED = 0

# The data-config fields read here and their defaults (None or "" in a config means default);
# other fields (batch sizes, ...) belong to the training loop and are ignored.
DEFAULTS = {
    "name": "digits",
    "data_dir": None,  # None: $TFDS_DATA_DIR, else ~/tensorflow_datasets
    "manual_dir": None,  # folder holding the original files (read instead of downloading)
    "val_size": None,  # None: 5000 (images), 300 (digits), num_train // 10 (function)
    "augment": False,  # CIFAR only: random crop (pad 4) + horizontal flip, see augment.py
    # `function` dataset only:
    "fn": "x_sin_x",  # a name of lcc_jax.models.function.FUNCTIONS or "module:function"
    "sampler": "normal",  # "normal": N(0, 1); "uniform": U(-1, 1)
    "input_dim": 16,
    "num_outputs": 16,
    "num_train": 10000,
    "num_test": 2000,
    "seed": 0,  # of the sampler
    "kwargs": {},  # keyword arguments of the dataset factory (a user's own, by import path)
}


@dataclasses.dataclass
class Dataset:
  """One dataset in memory: the official train and test splits, normalised float32 NHWC."""
  name: str
  x_train: np.ndarray  # the official train split (val is carved out of it by make_split)
  labels_train: np.ndarray  # int32
  x_test: np.ndarray
  labels_test: np.ndarray
  input_shape: tuple[int, ...]
  num_classes: int
  val_size: int  # examples for val (make_split rounds it up to a multiple of k)
  info: dict[str, Any] = dataclasses.field(default_factory=dict)  # sources, timings, normalisation
  # The training-time augmentation, augment(rng, x_BxKxI) -> x_BxKxI, or None.
  augment: Callable[..., Any] | None = None


def fields(data_config) -> dict[str, Any]:
  """The data config as a plain dict with every default filled in (for None or "" too)."""
  cfg = data_config.to_dict() if hasattr(data_config, "to_dict") else dict(data_config)
  return {**DEFAULTS, **{key: value for key, value in cfg.items() if value not in (None, "")}}


def data_dir(cfg: dict[str, Any]) -> str:
  folder = cfg.get("data_dir") or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return os.path.expanduser(folder)


def load(data_config) -> Dataset:
  """The dataset ``data_config.name``, prepared first if needed (image datasets only).

  A dataset named by import path is built once per data config: validation reads its shapes
  from the same object the run then trains on.
  """
  cfg = fields(data_config)
  if cfg["augment"] and cfg["name"] not in facts.AUGMENTED:
    raise ValueError(f"data.augment is defined for {facts.AUGMENTED} only (as upstream), not "
                     f"{cfg['name']!r}; set data.augment=False")
  if not registry.is_path(cfg["name"]):
    return registry.build("dataset", cfg["name"], config=cfg, **cfg["kwargs"])
  key = json.dumps(cfg, sort_keys=True, default=str)
  if key not in _USER_DATASETS:
    _USER_DATASETS.clear()  # one at a time: a dataset can be large
    _USER_DATASETS[key] = check(registry.build("dataset", cfg["name"], config=cfg,
                                               **cfg["kwargs"]), cfg["name"])
  return _USER_DATASETS[key]


_USER_DATASETS: dict[str, Dataset] = {}


def check(dataset: Dataset, name: str) -> Dataset:
  """A user's Dataset holds what the training loop needs; else a one-line ValueError."""
  def need(ok, what):
    if not ok:
      raise registry.ComponentError(f"dataset {name!r} returned a Dataset whose {what}")

  shape = tuple(dataset.input_shape)
  for split in ("train", "test"):
    x, labels = getattr(dataset, f"x_{split}"), getattr(dataset, f"labels_{split}")
    need(isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape[1:] == shape,
         f"x_{split} is not a float32 numpy array of shape (N,) + input_shape {shape} "
         f"(got {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')})")
    need(isinstance(labels, np.ndarray) and labels.shape == x.shape[:1]
         and np.issubdtype(labels.dtype, np.integer),
         f"labels_{split} is not an integer array of shape ({len(x)},)")
    need(labels.size == 0 or 0 <= labels.min() <= labels.max() < dataset.num_classes,
         f"labels_{split} are not class ids in [0, num_classes={dataset.num_classes})")
  need(len(dataset.x_test) >= 1, "test split is empty")
  return dataset


def check_available(data_config) -> None:
  """Raises ``sources.DataUnavailableError`` now, preparing nothing, if ``load`` would fail."""
  cfg = fields(data_config)
  if cfg["name"] in sources.SPECS:
    sources.check(cfg["name"], data_dir(cfg), cfg["manual_dir"])
  else:
    registry.get("dataset", cfg["name"])  # unknown names raise, listing the known ones


def input_spec(data_config) -> tuple[tuple[int, ...], int]:
  """(per-example input shape, classes) of the config's dataset, without reading it."""
  if data_config.name == "function":
    return (data_config.input_dim,), data_config.num_outputs
  if data_config.name in facts.DATASETS:
    known = facts.DATASETS[data_config.name]
    return known.shape, known.num_classes
  if registry.is_path(data_config.name):
    return _user_dataset_spec(data_config)
  raise registry.ComponentError(f"data.name={data_config.name!r}; known: "
                                f"{', '.join(sorted(['function', *facts.DATASETS]))}")


def _user_dataset_spec(data_config) -> tuple[tuple[int, ...], int]:
  """A user's dataset has no table of shapes: it is built (once, see ``load``)."""
  try:
    dataset = load(data_config)
  except registry.ComponentError as e:
    raise registry.ComponentError(f"data.name: {e}") from None
  except Exception as e:  # pylint: disable=broad-except  (the user's factory raised)
    raise registry.ComponentError(f"data.name={data_config.name!r}: the dataset factory raised "
                                  f"{type(e).__name__}: {registry.first_line(e)}") from None
  return tuple(dataset.input_shape), int(dataset.num_classes)


def _val_size(config: dict[str, Any], default: int) -> int:
  return default if config["val_size"] is None else int(config["val_size"])


def _image_dataset(name: str, *, config: dict[str, Any]) -> Dataset:
  folder = data_dir(config)
  how = sources.check(name, folder, config["manual_dir"])
  # tfds takes ~1 s to import; only the image datasets need it.
  from lcc_jax.data import builders  # pylint: disable=g-import-not-at-top
  prepare_s = builders.prepare(name, folder, config["manual_dir"])
  start = time.perf_counter()
  arrays, metadata = builders.read(name, folder)
  read_s = time.perf_counter() - start
  spec, known = sources.SPECS[name], facts.DATASETS[name]
  cifar = spec.kind != "idx"
  mean, std = (CIFAR_MEAN, CIFAR_STD) if cifar else ((0.0,), (1.0,))
  (x_train, labels_train), (x_test, labels_test) = arrays["train"], arrays["test"]
  return Dataset(
      name=name,
      x_train=_normalise(x_train, mean, std), labels_train=labels_train.astype(np.int32),
      x_test=_normalise(x_test, mean, std), labels_test=labels_test.astype(np.int32),
      input_shape=known.shape, num_classes=known.num_classes,
      val_size=_val_size(config, 5000),
      info={"data_dir": folder, "builder": spec.builder, "obtained": how,
            "source_files": metadata.get("source_files"), "prepare_seconds": prepare_s,
            "read_seconds": read_s, "normalisation": {"scale": 1 / 255, "mean": mean, "std": std}},
      augment=(functools.partial(augment_lib.augment_cifar, mean=mean, std=std)
               if config["augment"] else None),
  )


def _normalise(images_u8: np.ndarray, mean, std) -> np.ndarray:
  """uint8 → [0, 1] (ToTensor) → (x − mean) / std per channel (Normalize), float32 in place."""
  x = np.divide(images_u8, np.float32(255.0), dtype=np.float32)
  x -= np.asarray(mean, np.float32)
  x /= np.asarray(std, np.float32)
  return x


for _name in sources.SPECS:
  registry.register("dataset", _name)(functools.partial(_image_dataset, _name))


@registry.register("dataset", "digits")
def digits(*, config: dict[str, Any]) -> Dataset:
  """scikit-learn's 1797 8×8 digits in [0, 1]; fixed stratified test split of 36 per class."""
  import sklearn.datasets  # pylint: disable=g-import-not-at-top  (slow import, one user)
  bunch = sklearn.datasets.load_digits()
  x = np.ascontiguousarray((bunch.images / 16.0)[..., None], np.float32)
  labels = bunch.target.astype(np.int32)
  rng = np.random.default_rng(DIGITS_SPLIT_SEED)
  test = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))
                                 [:DIGITS_TEST_PER_CLASS] for c in range(10)]))
  train = np.setdiff1d(np.arange(len(x)), test)
  return Dataset(name="digits", x_train=x[train], labels_train=labels[train], x_test=x[test],
                 labels_test=labels[test], input_shape=facts.DATASETS["digits"].shape,
                 num_classes=facts.DATASETS["digits"].num_classes,
                 val_size=_val_size(config, 300),
                 info={"source": "sklearn.datasets.load_digits", "test_per_class":
                       DIGITS_TEST_PER_CLASS, "split_seed": DIGITS_SPLIT_SEED,
                       "normalisation": {"scale": 1 / 16}})


SAMPLERS = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "uniform": lambda rng, shape: rng.uniform(-1.0, 1.0, shape),
}


@registry.register("dataset", "function")
def function(*, config: dict[str, Any]) -> Dataset:
  """x_N×D from ``sampler`` (seeded), labels argmax F(x) with F = base model "function"."""
  if config["sampler"] not in SAMPLERS:
    raise ValueError(f"unknown data.sampler {config['sampler']!r}; known: {sorted(SAMPLERS)}")
  d, c = int(config["input_dim"]), int(config["num_outputs"])
  f = registry.build("base_model", "function", input_shape=(d,), num_classes=c, fn=config["fn"])
  rng = np.random.default_rng(config["seed"])
  sample = SAMPLERS[config["sampler"]]
  x_train = np.ascontiguousarray(sample(rng, (config["num_train"], d)), np.float32)
  x_test = np.ascontiguousarray(sample(rng, (config["num_test"], d)), np.float32)

  def labels(x):  # agreement of argmax is what accuracy means here
    return np.argmax(cache.cached_outputs(f.apply, {}, x, None, "function"), -1).astype(np.int32)

  return Dataset(name="function", x_train=x_train, labels_train=labels(x_train), x_test=x_test,
                 labels_test=labels(x_test), input_shape=(d,), num_classes=c,
                 val_size=_val_size(config, config["num_train"] // 10),
                 info={key: config[key] for key in ("fn", "sampler", "seed")})
