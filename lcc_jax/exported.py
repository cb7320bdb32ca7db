"""Loads a coded computation exported by ``lcc_jax.export``: jax, numpy and json only.

  from lcc_jax import exported
  m = exported.load("OUT")
  parity_BxRxI = m.encode(x_BxKxI)                 # inputs normalised as manifest says
  y_BxC = m.base_model(x_BxI); p_BxC = m.parity_model(parity_BxI)
  recon_BxKxC = m.decode(outs_BxNxC, avail_N)      # outs: k data outputs, then r parities

Nothing here imports flax or the rest of lcc_jax, so a serving process needs only jax. Each
function is a serialized StableHLO module (``jax.export``) whose arguments are its variables'
leaves, in the manifest's order, then its inputs; the batch dimension is symbolic. The
variables are checked against the manifest's hashes when loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

MANIFEST = "manifest.json"


class Model(NamedTuple):
  encode: Callable[..., Any]
  base_model: Callable[..., Any]
  parity_model: Callable[..., Any]  # F itself when no parity model was trained
  decode: Callable[..., Any]
  manifest: dict


def variables_hash(paths: Sequence[str], leaves: Sequence[np.ndarray]) -> str:
  """sha256 over every leaf's path, dtype, shape and bytes (little-endian, C order)."""
  h = hashlib.sha256()
  for path, leaf in zip(paths, leaves):
    leaf = np.ascontiguousarray(leaf)
    h.update(f"{path}|{leaf.dtype.str}|{list(leaf.shape)}|".encode())
    h.update(leaf.astype(leaf.dtype.newbyteorder("<")).tobytes())
  return h.hexdigest()


def _function(folder: str, entry: dict) -> Callable[..., Any]:
  with open(os.path.join(folder, entry["module"]), "rb") as f:
    module = jax.export.deserialize(bytearray(f.read()))
  names = [leaf["path"] for leaf in entry["variables"]]
  with np.load(os.path.join(folder, entry["variables_file"])) as stored:
    leaves = [stored[f"a{i}"] for i in range(len(names))]
  if variables_hash(names, leaves) != entry["variables_sha256"]:
    raise ValueError(f"{entry['variables_file']} does not match the manifest's hash")
  device_leaves = [jax.numpy.asarray(leaf) for leaf in leaves]
  return lambda *inputs: module.call(*device_leaves, *inputs)


def load(folder: str) -> Model:
  with open(os.path.join(folder, MANIFEST)) as f:
    manifest = json.load(f)
  fns = {name: _function(folder, entry) for name, entry in manifest["functions"].items()}
  return Model(fns["encode"], fns["base_model"], fns.get("parity_model", fns["base_model"]),
               fns["decode"], manifest)
