"""What is known about each named dataset without reading it: the one table of dataset facts.

Validation reads shapes and split sizes from here, the loaders and tfds builders their feature
shapes, and the upstream readers (``lcc_jax.legacy``) their per-example sizes. The ``function``
dataset is not listed: its shapes come from its config. Where a dataset's original files are
and how to read them is ``sources.SPECS``.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Facts:
  shape: tuple[int, ...]  # per-example input, HWC
  num_classes: int
  num_train: int  # examples of the official train split (val is carved out of it)
  augmented: bool = False  # upstream's RandomCrop(32, 4) + flip on training inputs applies


DATASETS = {
    "digits": Facts((8, 8, 1), 10, 1437),
    "mnist": Facts((28, 28, 1), 10, 60000),
    "fashion_mnist": Facts((28, 28, 1), 10, 60000),
    "cifar10": Facts((32, 32, 3), 10, 50000, augmented=True),
    "cifar100": Facts((32, 32, 3), 100, 50000, augmented=True),
}
AUGMENTED = tuple(name for name, facts in DATASETS.items() if facts.augmented)
