"""The original distribution files of the image datasets: where they are and how to read them.

No tfds here: ``check`` decides in milliseconds whether a dataset can be prepared (already
prepared, original files in a local folder, or the download site answers), so that an offline
run without files fails at once instead of after tfds' ~200 s of download retries.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import tarfile
import threading
from typing import Sequence

import numpy as np

VERSION = "1.0.0"  # of our tfds builders; part of the prepared data's path.
_PROBE_TIMEOUT_S = 1.0


@dataclasses.dataclass(frozen=True)
class Spec:
  """One dataset's original files; ``builder`` is our tfds name (clear of tfds' catalog).

  Shapes and classes are in ``facts.DATASETS``."""
  builder: str
  files: tuple[str, ...]
  url: str  # base URL: file f is downloaded from url + f.
  kind: str  # "idx" (four IDX .gz files) or "cifar10" / "cifar100" (python tarball)
  auto_dirs: tuple[str, ...] = ()  # searched after manual_dir (Debian packages)


IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

SPECS = {
    "mnist": Spec("lcc_mnist", IDX_FILES, "https://storage.googleapis.com/cvdf-datasets/mnist/",
                  "idx"),
    "fashion_mnist": Spec(
        "lcc_fashion_mnist", IDX_FILES,
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "idx",
        auto_dirs=("/usr/share/datasets/fashion-mnist",)),  # Debian: dataset-fashion-mnist
    "cifar10": Spec("lcc_cifar10", ("cifar-10-python.tar.gz",),
                    "https://www.cs.toronto.edu/~kriz/", "cifar10"),
    "cifar100": Spec("lcc_cifar100", ("cifar-100-python.tar.gz",),
                     "https://www.cs.toronto.edu/~kriz/", "cifar100"),
}


class DataUnavailableError(FileNotFoundError):
  """A dataset is not prepared and its original files can be neither found nor downloaded."""


def is_prepared(spec: Spec, data_dir: str) -> bool:
  """What tfds' ``builder.is_prepared()`` checks, without importing tfds."""
  return os.path.exists(os.path.join(data_dir, spec.builder, VERSION, "dataset_info.json"))


def find_local(spec: Spec, manual_dir: str | None) -> str | None:
  """The first of ``manual_dir`` and the spec's automatic folders holding every file."""
  for folder in ([manual_dir] if manual_dir else []) + list(spec.auto_dirs):
    if all(os.path.isfile(os.path.join(folder, f)) for f in spec.files):
      return folder
  return None


def reachable(url: str, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
  """One HEAD request, no retries, bounded even when name resolution hangs."""
  import requests  # pylint: disable=g-import-not-at-top  (only needed on this path)

  answer = []

  def probe():
    try:
      answer.append(requests.head(url, timeout=timeout_s, allow_redirects=True).ok)
    except requests.RequestException:
      answer.append(False)

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout_s + 0.2)
  return bool(answer and answer[0])


def check(name: str, data_dir: str, manual_dir: str | None) -> str:
  """How ``name`` will be obtained: "prepared", "local" or "download"; raises if none works."""
  spec = SPECS[name]
  if is_prepared(spec, data_dir):
    return "prepared"
  if find_local(spec, manual_dir):
    return "local"
  if reachable(spec.url + spec.files[0]):
    return "download"
  raise DataUnavailableError(_unavailable_message(name, spec, data_dir, manual_dir))


def _unavailable_message(name: str, spec: Spec, data_dir: str, manual_dir: str | None) -> str:
  searched = [f"data.manual_dir={manual_dir} lacks {_missing(spec, manual_dir)}" if manual_dir
              else "data.manual_dir is not set"]
  searched += [f"{folder} lacks {_missing(spec, folder)}" for folder in spec.auto_dirs]
  debian = (f" (Debian: `apt-get install dataset-{name.replace('_', '-')}` puts them in "
            f"{spec.auto_dirs[0]}, which is found automatically)" if spec.auto_dirs else "")
  return (
      f"dataset {name!r} is not prepared in {data_dir} and its original files "
      f"{', '.join(spec.files)} are unavailable: {'; '.join(searched)}; and {spec.url} cannot "
      f"be reached. Provide them in one of two ways: (1) put {', '.join(spec.files)} in a folder "
      f"and pass --config.data.manual_dir=FOLDER{debian}; or (2) run once with network access, "
      f"and they are downloaded from {spec.url} and checked against their sha256 checksums. "
      f"Either way the dataset is prepared once into {data_dir}.")


def _missing(spec: Spec, folder: str) -> str:
  return ", ".join(f for f in spec.files if not os.path.isfile(os.path.join(folder, f)))


def read_idx(path: str, magic: int) -> np.ndarray:
  """An IDX array (big-endian header: magic, then one uint32 per dimension) from a .gz file."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  header = np.frombuffer(raw, ">u4", count=1)[0]
  if header != magic:
    raise ValueError(f"{path}: IDX magic number {header:#x}, expected {magic:#x}; "
                     "is this the original (uncompressed-then-gzipped) file?")
  ndim = magic & 0xFF
  dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != np.prod(dims):
    raise ValueError(f"{path}: header says {dims} bytes of data, file holds {data.size}")
  return data.reshape(dims)


def read_idx_split(folder_or_paths, prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """(images_NxHxWx1 uint8, labels_N int64) of the "train" or "t10k" IDX pair."""
  images = read_idx(_path(folder_or_paths, f"{prefix}-images-idx3-ubyte.gz"), 0x803)
  labels = read_idx(_path(folder_or_paths, f"{prefix}-labels-idx1-ubyte.gz"), 0x801)
  if len(images) != len(labels):
    raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels")
  return images[..., None], labels.astype(np.int64)


def _path(folder_or_paths, filename: str) -> str:
  if isinstance(folder_or_paths, dict):
    return os.fspath(folder_or_paths[filename])
  return os.path.join(folder_or_paths, filename)


class _ArrayUnpickler(pickle.Unpickler):
  """Loads dicts, lists, bytes and numpy arrays only: a tarball cannot run code on us."""
  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"),
              ("_codecs", "encode")}  # how Python 3 pickles bytes at protocol 2

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}; not a CIFAR file")
    return super().find_class(module, name)


def read_cifar(tar_path: str, kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{"train"/"test": (images_NxHxWxC uint8, labels_N int64)} from a CIFAR python tarball."""
  train_members = ([f"data_batch_{i}" for i in range(1, 6)] if kind == "cifar10" else ["train"])
  test_members = ["test_batch"] if kind == "cifar10" else ["test"]
  label_key = b"labels" if kind == "cifar10" else b"fine_labels"
  batches = {}
  with tarfile.open(tar_path, "r:gz") as tar:
    for member in tar:
      base = os.path.basename(member.name)
      if member.isfile() and base in train_members + test_members:
        batches[base] = _ArrayUnpickler(io.BytesIO(tar.extractfile(member).read()),
                                        encoding="bytes").load()
  missing = [m for m in train_members + test_members if m not in batches]
  if missing:
    raise ValueError(f"{tar_path} lacks {missing}; is it the CIFAR *python* version?")
  return {split: _stack_cifar([batches[m] for m in members], label_key)
          for split, members in (("train", train_members), ("test", test_members))}


def _stack_cifar(batches: Sequence[dict], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
  data = np.concatenate([np.asarray(b[b"data"], np.uint8) for b in batches])
  labels = np.concatenate([np.asarray(b[label_key], np.int64) for b in batches])
  # Rows are channel-major (1024 R, 1024 G, 1024 B); we store NHWC.
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels
