"""Seeded, persisted train/val splits and the grouping of examples into coding groups.

Shape letters: S steps of an epoch, B groups per step (``batch_size``), K = k examples per
group. Upstream (docs/upstream.md §Splits and grouping) carved ``val_size`` (rounded up to a
multiple of k) examples out of the official train split with an *unseeded* shuffle; we seed it and
persist it in the workdir, so a resumed run and a later evaluation see the same split.
"""
from __future__ import annotations

import json
import os

import numpy as np

from lcc_jax import workdir as workdir_lib

SPLIT_FILE = "split.npz"


def round_up(n: int, k: int) -> int:
  return -(-n // k) * k


def make_split(num_train: int, k: int, val_size: int, seed: int, workdir: str | None, *,
               name: str = "", num_test: int | None = None) -> dict[str, np.ndarray]:
  """{"train": idx, "val": idx[, "test": idx]} into the official splits, int64.

  The official train split is truncated to a multiple of k, shuffled with ``seed``; the first
  ``val_size`` rounded up to a multiple of k indices are val, the rest train (upstream:
  MNIST k=3 → val 5001, train 54999). With ``num_test``, "test" is the first multiple of k of
  the official test split, in order. With a ``workdir`` the split is written to
  ``workdir/split.npz`` with its fingerprint; an existing file with a different fingerprint
  is an error (a workdir belongs to one dataset/k/seed).
  """
  fingerprint = json.dumps({"dataset": name, "num_train": num_train, "k": k,
                            "val_size": val_size, "seed": seed, "num_test": num_test},
                           sort_keys=True)
  path = os.path.join(workdir, SPLIT_FILE) if workdir else None
  if path and os.path.exists(path):
    return _load(path, fingerprint)
  usable = num_train // k * k
  num_val = round_up(val_size, k)
  if num_val >= usable:
    raise ValueError(f"val_size={val_size} (→ {num_val} for k={k}) leaves no training examples "
                     f"of {usable}; use a smaller data.val_size")
  perm = np.random.default_rng(seed).permutation(usable)
  split = {"val": perm[:num_val], "train": perm[num_val:]}
  if num_test is not None:
    split["test"] = np.arange(num_test // k * k)
  if path:
    with workdir_lib.atomic_file(path, "wb") as f:
      np.savez(f, fingerprint=np.array(fingerprint), **split)
  return split


def _load(path: str, fingerprint: str) -> dict[str, np.ndarray]:
  with np.load(path) as f:
    stored = str(f["fingerprint"])
    if stored != fingerprint:
      raise ValueError(f"{path} holds the split of {stored}, but this run asks for {fingerprint}; "
                       "use a new workdir (or delete split.npz to re-split this one)")
    return {key: f[key] for key in f.files if key != "fingerprint"}


def group_indices(indices: np.ndarray, k: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                  epoch: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """One epoch of coding groups: (idx_SxBxK int32, weight_SxB float32).

  ``indices`` (one split, into the dataset's arrays) is truncated to a multiple of k. With
  ``shuffle`` (training) the groups are redrawn from a generator keyed by (seed, epoch), so an
  epoch is reproducible on resume; without it (val, test) group g is indices[g*k:(g+1)*k].
  The last step is padded with weight-0 groups that repeat ``indices[0]``, so every step has
  the same shape and the step function compiles once. With ``process_count`` > 1 this
  process gets its ``batch_size / process_count`` columns of every step.
  """
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} must be divisible by process_count="
                     f"{process_count}; pick a batch size that is a multiple of it")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, {process_count})")
  indices = np.asarray(indices)[:len(indices) // k * k]
  fill = indices[0] if len(indices) else 0
  if shuffle:
    indices = indices[np.random.default_rng([seed, epoch]).permutation(len(indices))]
  groups_GxK = indices.reshape(-1, k)
  num_groups = len(groups_GxK)
  steps = -(-num_groups // batch_size)
  pad = steps * batch_size - num_groups
  idx_SxBxK = np.concatenate([groups_GxK, np.full((pad, k), fill, groups_GxK.dtype)])
  idx_SxBxK = idx_SxBxK.reshape(steps, batch_size, k).astype(np.int32)
  weight_SxB = (np.arange(steps * batch_size) < num_groups).astype(np.float32)
  weight_SxB = weight_SxB.reshape(steps, batch_size)
  local = batch_size // process_count
  cols = slice(process_index * local, (process_index + 1) * local)
  return np.ascontiguousarray(idx_SxBxK[:, cols]), np.ascontiguousarray(weight_SxB[:, cols])
