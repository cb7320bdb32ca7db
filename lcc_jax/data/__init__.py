"""Datasets, seeded splits, k-grouping, augmentation and the F-output cache.

Importing registers the datasets (registry kind ``"dataset"``); tfds is imported only when an
image dataset is loaded. See docs/data.md.
"""
from lcc_jax.data import augment  # noqa: F401
from lcc_jax.data import cache  # noqa: F401
from lcc_jax.data import datasets  # noqa: F401
from lcc_jax.data import facts  # noqa: F401
from lcc_jax.data import sources  # noqa: F401
from lcc_jax.data import splits  # noqa: F401
from lcc_jax.data.augment import augment_cifar  # noqa: F401
from lcc_jax.data.cache import cached_outputs, variables_hash  # noqa: F401
from lcc_jax.data.datasets import Dataset, check_available, input_spec, load  # noqa: F401
from lcc_jax.data.sources import DataUnavailableError  # noqa: F401
from lcc_jax.data.splits import group_indices, make_split  # noqa: F401
