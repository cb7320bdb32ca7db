"""Tiny files in the datasets' original formats, written the way their publishers wrote them."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile

import numpy as np


def write_idx(path: str, array: np.ndarray) -> None:
  """IDX: magic (0x08 = ubyte, then ndim), big-endian uint32 dims, raw bytes; gzipped."""
  header = np.array([0x800 | array.ndim, *array.shape], ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def write_mnist_files(folder: str, num_train: int = 12, num_test: int = 6, seed: int = 0):
  """The four MNIST/Fashion-MNIST files; returns (train_images, train_labels, test_..., ...)."""
  rng = np.random.default_rng(seed)
  arrays = (rng.integers(0, 256, (num_train, 28, 28), np.uint8),
            rng.integers(0, 10, num_train, np.uint8),
            rng.integers(0, 256, (num_test, 28, 28), np.uint8),
            rng.integers(0, 10, num_test, np.uint8))
  os.makedirs(folder, exist_ok=True)
  names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
  for name, array in zip(names, arrays):
    write_idx(os.path.join(folder, name), array)
  return arrays


def write_cifar_tarball(folder: str, kind: str, per_batch: int = 3, seed: int = 0):
  """cifar-10-python.tar.gz (5 train batches + test) or cifar-100-python.tar.gz (train, test).

  Rows are channel-major uint8 (3072 = 1024 R + 1024 G + 1024 B), as published. Returns
  (train_images_NxHxWxC, train_labels, test_images, test_labels) in NHWC.
  """
  rng = np.random.default_rng(seed)
  cifar10 = kind == "cifar10"
  top = "cifar-10-batches-py" if cifar10 else "cifar-100-python"
  members = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if cifar10
             else ["train", "test"])
  label_key = b"labels" if cifar10 else b"fine_labels"
  num_classes = 10 if cifar10 else 100
  out = {}
  path = os.path.join(folder, "cifar-10-python.tar.gz" if cifar10 else "cifar-100-python.tar.gz")
  os.makedirs(folder, exist_ok=True)
  with tarfile.open(path, "w:gz") as tar:
    for member in members:
      rows = rng.integers(0, 256, (per_batch, 3072), np.uint8)
      labels = [int(v) for v in rng.integers(0, num_classes, per_batch)]
      batch = {b"batch_label": member.encode(), b"data": rows, label_key: labels}
      if not cifar10:
        batch[b"coarse_labels"] = [v // 5 for v in labels]
      payload = pickle.dumps(batch, protocol=2)
      info = tarfile.TarInfo(f"{top}/{member}")
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
      out[member] = (rows, labels)
  train = [out[m] for m in members if m not in ("test_batch", "test")]
  test = out["test_batch" if cifar10 else "test"]

  def nhwc(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

  return (nhwc(np.concatenate([r for r, _ in train])), np.concatenate([l for _, l in train]),
          nhwc(test[0]), np.asarray(test[1]))
