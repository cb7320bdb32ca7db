"""Checks, before anything is prepared, that a dataset's folders and original files are usable.

``check_data`` is called by ``validate.check_run``; each problem is a ``DataFileError`` whose
one-line message names the file or folder and the fix.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import zlib

from lcc_jax import registry
from lcc_jax.data import datasets, facts, sources

CHECKSUMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checksums.tsv")


class DataFileError(ValueError):
  """A dataset's folder is unusable or one of its local original files is damaged."""


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise DataFileError(message)


def check_data(data_config) -> None:
  """The dataset can be obtained, and local original files are intact, before preparing."""
  cfg = datasets.fields(data_config)
  name = cfg["name"]
  if name not in sources.SPECS:
    return
  spec, folder = sources.SPECS[name], datasets.data_dir(cfg)
  if sources.is_prepared(spec, folder):
    return
  if cfg["manual_dir"]:
    _require(os.path.isdir(cfg["manual_dir"]),
             f"data.manual_dir={cfg['manual_dir']} is not a folder; give the folder that holds "
             f"{', '.join(spec.files)}")
  _require(_writable(folder),
           f"data.data_dir={folder}: {name} must be prepared there once, but it is not "
           "writable; choose a writable --config.data.data_dir")
  datasets.check_available(data_config)
  local = sources.find_local(spec, cfg["manual_dir"])
  if local:  # a download is checked against checksums.tsv by tfds itself
    for filename in spec.files:
      _check_file(os.path.join(local, filename), spec, name)


def _writable(path: str) -> bool:
  """``path``, or the nearest folder above it that exists, can take new files."""
  probe = os.path.abspath(os.path.expanduser(path))
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


def _published_sha256() -> dict[str, str]:
  with open(CHECKSUMS) as f:
    rows = [line.split("\t") for line in f if line.strip()]
  return {url: sha for url, _, sha, *_ in rows}


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _check_file(path: str, spec: sources.Spec, name: str) -> None:
  """A file equal to the published one is fine; any other must parse as the format says.

  Debian recompresses the .gz files (other checksum, same content), so a checksum mismatch
  alone is not an error; one that also fails to parse is reported with both facts.
  """
  url = spec.url + os.path.basename(path)
  expected = _published_sha256().get(url)
  actual = _sha256(path)
  if actual == expected:
    return
  try:
    _parse(path, spec, name)
  except (OSError, EOFError, ValueError, KeyError, IndexError, zlib.error, tarfile.TarError,
          pickle.UnpicklingError) as e:
    published = (f"its sha256 {actual[:16]}… differs from the published {expected[:16]}… "
                 if expected else "")
    raise DataFileError(f"{path} is not an intact {name} file: {published}and it cannot be read "
                        f"({type(e).__name__}: {registry.first_line(e)}); replace it with the "
                        f"original from {url}") from None


def _parse(path: str, spec: sources.Spec, name: str) -> None:
  """Reads ``path`` as the dataset's readers do; a ValueError for shapes or labels out of range."""
  num_classes = facts.DATASETS[name].num_classes
  if spec.kind == "idx":
    magic = 0x803 if "images" in path else 0x801
    array = sources.read_idx(path, magic)
    want = facts.DATASETS[name].shape[:2] if magic == 0x803 else ()
    if array.shape[1:] != want:
      raise ValueError(f"holds arrays of shape {array.shape[1:]}, {name} needs {want}")
    if magic == 0x801 and array.size and array.max() >= num_classes:
      raise ValueError(f"has label {array.max()}, {name} has {num_classes} classes")
  else:
    for _, labels in sources.read_cifar(path, spec.kind).values():
      if labels.size and labels.max() >= num_classes:
        raise ValueError(f"has label {labels.max()}, {name} has {num_classes} classes")
