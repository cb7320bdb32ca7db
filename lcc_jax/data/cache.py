"""F's outputs on a split, computed once with the frozen F and cached on disk.

F never changes during coded-computation training, so its outputs on the data inputs are
computed once per split (upstream did the same, docs/upstream.md §F's outputs: raw logits, eval
mode) and stored as ``CACHE_DIR/TAG-KEY.npy``. KEY hashes F's variables, the inputs and the tag, so
a second run with the same F and data loads the file, and any other F computes afresh.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import workdir as workdir_lib


def variables_hash(variables) -> str:
  """sha256 of a variables pytree: every leaf's path, dtype, shape and bytes."""
  digest = hashlib.sha256()
  leaves, _ = jax.tree_util.tree_flatten_with_path(variables)
  for path, leaf in leaves:
    leaf = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}|".encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def cached_outputs(apply_fn: Callable, variables, x_NxI: np.ndarray, cache_dir: str | None,
                   tag: str, batch_size: int = 1024) -> np.ndarray:
  """F(x) as y_NxC float32, from ``cache_dir`` when this F, x and tag were seen before.

  Args:
    apply_fn: ``ModelFns.apply`` of F, ``apply(variables, x_BxI) -> (y_BxC, updates)``; it is
      run in inference mode (``train=False``).
    variables: F's variables.
    x_NxI: the split's inputs.
    cache_dir: where the ``.npy`` lives (the data dir or the workdir); None: no caching.
    tag: names the dataset and split, e.g. ``"fashion_mnist/train"``. For a parameter-free F
      (``base_model="function"``), whose variables are empty, the tag must also name the
      function (e.g. ``"function/x_sin_x/seed0/train"``).
    batch_size: examples per jitted call; the last batch is padded so it compiles once.
  """
  path = _cache_path(cache_dir, tag, variables, x_NxI) if cache_dir else None
  if path and os.path.exists(path):
    return np.load(path)
  y_NxC = _apply_batched(apply_fn, variables, x_NxI, batch_size)
  if path:
    with workdir_lib.atomic_file(path, "wb") as f:
      np.save(f, y_NxC)
  return y_NxC


def _cache_path(cache_dir, tag, variables, x_NxI) -> str:
  header = f"{tag}|{variables_hash(variables)}|{x_NxI.dtype}|{x_NxI.shape}|"
  digest = hashlib.sha256(header.encode())
  digest.update(np.ascontiguousarray(x_NxI).data)
  safe_tag = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
  return os.path.join(cache_dir, f"{safe_tag}-{digest.hexdigest()[:16]}.npy")


def _apply_batched(apply_fn, variables, x_NxI, batch_size):
  n = len(x_NxI)
  batch_size = max(1, min(batch_size, n))
  forward = jax.jit(lambda v, x: apply_fn(v, x, train=False)[0].astype(jnp.float32))
  outs = []
  for start in range(0, n, batch_size):
    x_BxI = x_NxI[start:start + batch_size]
    valid = len(x_BxI)
    if valid < batch_size:
      x_BxI = np.concatenate([x_BxI, np.repeat(x_BxI[:1], batch_size - valid, axis=0)])
    outs.append(np.asarray(forward(variables, x_BxI))[:valid])
  return np.ascontiguousarray(np.concatenate(outs))
