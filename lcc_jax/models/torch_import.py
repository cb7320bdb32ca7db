"""Upstream PyTorch weights (``base_model_trained_files``) → variables of our base models.

Layers carry their PyTorch names with ``.`` written as ``_`` (see ``models/layers.py``), so a
state-dict key is found from the Flax path: ``params/layer1_0/downsample_0/kernel`` ←
``layer1.0.downsample.0.weight``. Dense-only models (``base-mlp``, ``logistic``) take the
Linear layers in state-dict order instead, because the two originals named them differently.
``torch`` is optional: it is imported only to read a file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lcc_jax import nn, registry

# Checkpoint dicts that wrap the state dict (kuangliu/pytorch-cifar saves {"net": ..., "acc":}).
_WRAPPER_KEYS = ("state_dict", "net", "model", "base_model")
# (collection, Flax leaf name) → PyTorch leaf name.
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_INSTALL_HINT = ("reading a PyTorch weights file needs the optional torch package: "
                 "pip install torch==2.13.0 (a CPU build is enough)")


def load_torch_state_dict(path_or_dict, name: str, input_shape, num_classes: int,
                          **model_kwargs) -> nn.Variables:
  """Variables for base model ``name`` from an upstream PyTorch state dict.

  Args:
    path_or_dict: a file written by ``torch.save`` (legacy ``.t7`` pickle or zip ``.pth``), or
      a mapping of names to tensors / numpy arrays. A ``module.`` prefix (DataParallel), a
      wrapping dict such as ``{"net": ...}`` and kuangliu/pytorch-cifar's ``linear.*`` /
      ``*.shortcut.*`` names are accepted.
    name, input_shape, num_classes, model_kwargs: as for ``registry.build("base_model", ...)``.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` (batch_stats only for models with batch norm).

  Raises:
    ImportError: ``path_or_dict`` is a path and torch is not installed.
    ValueError: a tensor is missing, left over or of the wrong shape (all are listed).
  """
  fns = registry.build("base_model", name, input_shape=tuple(input_shape),
                       num_classes=num_classes, **model_kwargs)
  template = traverse_util.flatten_dict(jax.eval_shape(fns.init, jax.random.key(0)))
  state = _rename(_unwrap(_read(path_or_dict)))
  if all(path[1].startswith("Dense_") for path in template):
    state = _dense_by_order(state)
  flat, missing, bad_shapes, used = {}, [], [], set()
  for path, spec in template.items():
    key = _torch_key(path)
    if key not in state:
      missing.append(key)
      continue
    used.add(key)
    value = _to_flax_layout(path[-1], state[key])
    if value.shape != spec.shape:
      bad_shapes.append(f"{key}: {state[key].shape} → {value.shape}, model needs {spec.shape}")
      continue
    flat[path] = jnp.asarray(value, spec.dtype)
  unmatched = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
  if missing or bad_shapes or unmatched:
    raise ValueError(f"state dict does not fit base model {name!r} (input_shape="
                     f"{tuple(input_shape)}, num_classes={num_classes}, {model_kwargs}): "
                     f"missing {missing}; wrong shapes {bad_shapes}; unmatched {unmatched}")
  return traverse_util.unflatten_dict(flat)


def _read(path_or_dict) -> Mapping[str, Any]:
  if isinstance(path_or_dict, Mapping):
    return path_or_dict
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(_INSTALL_HINT) from e
  # weights_only: a state dict needs no arbitrary unpickling (PyTorch's safe loader).
  return torch.load(path_or_dict, map_location="cpu", weights_only=True)


def _is_tensor(value) -> bool:
  return getattr(value, "ndim", 0) > 0


def _unwrap(tree: Mapping[str, Any]) -> Mapping[str, Any]:
  """The state dict inside wrapping checkpoint dicts."""
  while not any(_is_tensor(v) for v in tree.values()):
    key = next((k for k in _WRAPPER_KEYS if isinstance(tree.get(k), Mapping)), None)
    if key is None:
      raise ValueError(f"no state dict found: top-level keys {list(tree)} hold no tensors and "
                       f"none of {list(_WRAPPER_KEYS)} is a dict")
    tree = tree[key]
  return tree


def _rename(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Strips ``module.``; kuangliu's ``linear``→``fc``, ``shortcut``→``downsample`` (upstream.md
  §Base models)."""
  keys = list(state)
  strip = bool(keys) and all(k.startswith("module.") for k in keys)
  renamed = {}
  for key in keys:
    parts = key.split(".")[1:] if strip else key.split(".")
    if parts[0] == "linear":
      parts[0] = "fc"
    if len(parts) > 2 and parts[2] == "shortcut":
      parts[2] = "downsample"
    new = ".".join(parts)
    if new in renamed:
      raise ValueError(f"state dict keys collide after renaming: {new!r}")
    renamed[new] = _to_numpy(state[key])
  return renamed


def _to_numpy(value) -> np.ndarray:
  """A copy: ``Tensor.numpy()`` and ``jnp.asarray`` may share memory with the torch model."""
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().numpy()
  return np.array(value, copy=True)


def _dense_by_order(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Renames the i-th Linear layer (2-D ``*weight``, in state-dict order) to ``Dense.i``."""
  split = {key: key.rpartition(".")[::2] for key in state}  # key → (prefix, leaf)
  linear = [p for key, (p, leaf) in split.items() if leaf == "weight" and state[key].ndim == 2]
  names = {prefix: f"Dense.{i}" for i, prefix in enumerate(linear)}
  return {(f"{names[p]}.{leaf}" if p in names else key): value
          for (key, value), (p, leaf) in zip(state.items(), split.values())}


def _torch_key(path: tuple[str, ...]) -> str:
  collection, *modules, leaf = path
  return ".".join([m.replace("_", ".") for m in modules] + [_LEAF_NAMES[collection, leaf]])


def _to_flax_layout(leaf: str, value: np.ndarray) -> np.ndarray:
  """Conv OIHW → HWIO; Linear (out, in) → (in, out); vectors unchanged."""
  if leaf == "kernel" and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if leaf == "kernel" and value.ndim == 2:
    return value.T
  return value
