"""Our tfds builders (array_record, no TensorFlow) for the image datasets' original files.

tfds' own catalog builders for these datasets need TensorFlow (their ``tfds.load`` path does),
so we write array_record files from the original distribution files ourselves and read them
back with ``tfds.data_source``, which is pure numpy. The builders are registered as
``lcc_mnist``, ``lcc_fashion_mnist``, ``lcc_cifar10`` and ``lcc_cifar100`` so they never clash
with the catalog. Downloads go through tfds' download manager and are checked against
``checksums.tsv`` beside this file; local files (``manual_dir``, Debian's folders) are checked
by parsing instead, since Debian recompresses the ``.gz`` files.
"""
from __future__ import annotations

import os
import time

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from lcc_jax.data import facts, sources


class _OriginalFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Prepares one dataset of ``sources.SPECS`` from its original files, order preserved."""
  DATASET = ""  # key of sources.SPECS
  VERSION = tfds.core.Version(sources.VERSION)
  RELEASE_NOTES = {sources.VERSION: "From the original distribution files."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Put the original distribution files (names as published) in "
                                  "manual_dir; see lcc_jax/data/sources.py for the list.")

  def _info(self) -> tfds.core.DatasetInfo:
    spec, known = sources.SPECS[self.DATASET], facts.DATASETS[self.DATASET]
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.DATASET}, prepared by lcc_jax from {', '.join(spec.files)}.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=known.shape, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(num_classes=known.num_classes),
        }),
        supervised_keys=("image", "label"),
        homepage=spec.url,
        # Example i is record i: the official test order defines upstream's fixed test groups.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    spec = sources.SPECS[self.DATASET]
    paths = self._original_files(dl_manager, spec)
    self.info.metadata["source_files"] = {f: os.fspath(p) for f, p in paths.items()}
    if spec.kind == "idx":
      arrays = {"train": sources.read_idx_split(paths, "train"),
                "test": sources.read_idx_split(paths, "t10k")}
    else:
      arrays = sources.read_cifar(os.fspath(paths[spec.files[0]]), spec.kind)
    return {split: self._generate_examples(*xy) for split, xy in arrays.items()}

  def _original_files(self, dl_manager, spec: sources.Spec) -> dict:
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError:  # tfds' way of saying "no (non-empty) manual_dir"
      manual_dir = None
    folder = sources.find_local(spec, manual_dir)
    if folder:
      return {f: os.path.join(folder, f) for f in spec.files}
    return dl_manager.download({f: spec.url + f for f in spec.files})

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": int(label)}


class LccMnist(_OriginalFilesBuilder):
  DATASET = "mnist"


class LccFashionMnist(_OriginalFilesBuilder):
  DATASET = "fashion_mnist"


class LccCifar10(_OriginalFilesBuilder):
  DATASET = "cifar10"


class LccCifar100(_OriginalFilesBuilder):
  DATASET = "cifar100"


BUILDERS = {cls.DATASET: cls for cls in (LccMnist, LccFashionMnist, LccCifar10, LccCifar100)}


def prepare(name: str, data_dir: str, manual_dir: str | None) -> float:
  """Writes ``name`` into ``data_dir`` unless already there; returns the seconds it took."""
  builder = BUILDERS[name](data_dir=data_dir, file_format="array_record")
  if builder.is_prepared():
    return 0.0
  start = time.perf_counter()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=sources.find_local(sources.SPECS[name], manual_dir),
      try_download_gcs=False,  # our builder names are not on GCS; asking would only wait
      force_checksums_validation=True,
  ))
  return time.perf_counter() - start


def read(name: str, data_dir: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
  """({split: (images_NxHxWxC uint8, labels_N int64)}, tfds metadata) via ``tfds.data_source``."""
  spec = sources.SPECS[name]
  builder = BUILDERS[name](data_dir=data_dir)
  splits = tfds.data_source(spec.builder, split={"train": "train", "test": "test"},
                            data_dir=data_dir, download=False,
                            deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  arrays = {split: _parse(source, spec, facts.DATASETS[name].shape, builder.info.features)
            for split, source in splits.items()}
  return arrays, dict(builder.info.metadata or {})


def _parse(source, spec: sources.Spec, shape, features) -> tuple[np.ndarray, np.ndarray]:
  """All records of a split, parsed straight from their ``tf.Example`` protos.

  tfds' generic numpy decoding costs ~0.5 ms per example (30 s for Fashion-MNIST on a busy
  2-core machine); the image is one bytes field and the label one int64, so we take them from
  tfds' own proto class (no TensorFlow) and check record 0 against tfds' decoding.
  """
  records = source.__getitems__(list(range(len(source))))
  images, labels = [], []
  for record in records:
    feature = tf_example_pb2.Example.FromString(record).features.feature
    images.append(feature["image"].bytes_list.value[0])
    labels.append(feature["label"].int64_list.value[0])
  images_NxHxWxC = np.frombuffer(b"".join(images), np.uint8).reshape((-1,) + shape)
  labels_N = np.array(labels, np.int64)
  if records:
    reference = features.deserialize_example_np(records[0])
    if not (np.array_equal(reference["image"], images_NxHxWxC[0])
            and reference["label"] == labels_N[0]):
      raise RuntimeError(f"{spec.builder}: records do not parse as tfds {tfds.__version__} "
                         "decodes them; this tfds version changed its example format")
  return images_NxHxWxC, labels_N
