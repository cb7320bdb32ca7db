"""Numerical precision of every component's compute: ``config.precision``.

* ``highest``: float32 everywhere, matmuls and convolutions at full float32 precision on every
  backend, so a run on a GPU or TPU computes what it computes on a CPU (up to summation order).
* ``default``: float32 storage with the backend's default matmul precision: TF32 passes on
  NVIDIA GPUs since Ampere, bfloat16 passes on TPUs, full float32 on CPUs. Faster on those
  accelerators, and their numbers differ from the CPU's.
* ``bfloat16``: the forward and backward passes compute in bfloat16 (inputs, F's outputs and
  every component's variables are cast on the way in); parameters, optimizer state, losses and
  metric counts stay float32. About half the memory traffic of ``highest`` on accelerators;
  on CPUs XLA emulates much of it, so it is slower there.

The setting applies while a step is traced (``scope``), so it is part of the compiled program.
"""
from __future__ import annotations

import contextlib
from typing import Any

import jax
import jax.numpy as jnp

PRECISIONS = ("highest", "default", "bfloat16")


def check(name: str) -> None:
  if name not in PRECISIONS:
    raise ValueError(f"precision={name!r} is not one of {list(PRECISIONS)}")


def compute_dtype(name: str):
  """The dtype components compute in: bfloat16, or None (keep float32)."""
  check(name)
  return jnp.bfloat16 if name == "bfloat16" else None


@contextlib.contextmanager
def scope(name: str):
  """Matmul precision for everything traced inside (``highest`` pins float32 passes)."""
  check(name)
  if name == "highest":
    with jax.default_matmul_precision("highest"):
      yield
  else:
    yield


def cast(tree: Any, dtype) -> Any:
  """Floating leaves of ``tree`` as ``dtype`` (integers, keys and the rest unchanged)."""
  if dtype is None:
    return tree

  def leaf_cast(leaf):
    if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      return jnp.asarray(leaf, dtype)
    return leaf

  return jax.tree.map(leaf_cast, tree)
