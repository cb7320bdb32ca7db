"""Exports a trained run for deployment: encoder, decoder, F and F_P as StableHLO.

  python -m lcc_jax.export --workdir=DIR --out=OUT [--platforms=cpu,cuda]

Writes OUT/{encode,base_model,parity_model,decode}.stablehlo (``jax.export``, batch dimension
symbolic), their variables as OUT/*.npz (leaves a0, a1, ... in argument order) and
OUT/manifest.json: k, r, input shape, normalisation, classes, erasure patterns, argument
specs, versions and variable hashes. ``load`` (from ``lcc_jax.exported``, which imports only
jax and numpy) returns callables that reproduce the run's forward pass. See docs/serving.md.
"""
from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from lcc_jax import assembly, erasure, workdir as workdir_lib
from lcc_jax.evaluation import runs
from lcc_jax.exported import MANIFEST, load, variables_hash  # noqa: F401  (load: the API)

FORMAT_VERSION = 1
EXIT_BAD_INPUT = 2
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def components(run: assembly.Run) -> dict[str, tuple[Callable, Any]]:
  """name -> (fn(variables, *inputs), variables): the pieces a server calls separately."""
  code, v = run.code, run.variables

  def encode(variables, x_BxKxI):
    return code.encoder.apply(variables, x_BxKxI)[0]

  def base_model(variables, x_BxI):
    return run.base_fns.apply(variables, x_BxI)[0]

  def decode(variables, outs_BxNxC, avail_N):
    # As coding.decode_all: the decoder never sees an unavailable output's values.
    masked_BxNxC = jnp.where(avail_N[None, :, None], outs_BxNxC, 0.0)
    return code.decoder.apply(variables, masked_BxNxC, avail_N)[0]

  out = {"encode": (encode, v["encoder"]), "base_model": (base_model, run.base_variables),
         "decode": (decode, v["decoder"])}
  if code.parity_model is not None:
    out["parity_model"] = (lambda variables, x_BxI: code.parity_model.apply(variables, x_BxI)[0],
                           v["parity_model"])
  return out


def input_specs(run: assembly.Run, batch) -> dict[str, list[jax.ShapeDtypeStruct]]:
  k, n, shape = run.k, run.k + run.r, tuple(run.dataset.input_shape)
  f32 = jnp.float32
  one = [jax.ShapeDtypeStruct((batch,) + shape, f32)]
  return {"encode": [jax.ShapeDtypeStruct((batch, k) + shape, f32)], "base_model": one,
          "parity_model": one,
          "decode": [jax.ShapeDtypeStruct((batch, n, run.dataset.num_classes), f32),
                     jax.ShapeDtypeStruct((n,), jnp.bool_)]}


INPUT_NAMES = {"encode": ["x_BxKxI"], "base_model": ["x_BxI"], "parity_model": ["parity_BxI"],
               "decode": ["outs_BxNxC", "avail_N"]}


def flat_function(fn, variables):
  """fn over the variables' flat leaves then the inputs, and the leaves with their paths."""
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
  paths = [jax.tree_util.keystr(p) for p, _ in paths_leaves]
  leaves = [np.asarray(leaf) for _, leaf in paths_leaves]

  def flat(*args):
    return fn(jax.tree_util.tree_unflatten(treedef, args[:len(leaves)]), *args[len(leaves):])

  return flat, paths, leaves


def _spec(x) -> dict:
  return {"shape": [d if isinstance(d, int) else str(d) for d in x.shape],
          "dtype": str(np.dtype(x.dtype))}


def export_run(workdir: str, out: str, platforms: Sequence[str] = ("cpu",)) -> dict:
  """Writes the modules, variables and manifest of ``workdir``'s best checkpoint into ``out``."""
  run = runs.load_run(workdir)
  os.makedirs(out, exist_ok=True)
  batch, = jax.export.symbolic_shape("b")
  specs = input_specs(run, batch)
  functions = {}
  for name, (fn, variables) in components(run).items():
    flat, paths, leaves = flat_function(fn, variables)
    args = [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves] + specs[name]
    module = jax.export.export(jax.jit(flat), platforms=tuple(platforms))(*args)
    with open(os.path.join(out, f"{name}.stablehlo"), "wb") as f:
      f.write(module.serialize())
    np.savez(os.path.join(out, f"{name}.npz"), **{f"a{i}": leaf for i, leaf in enumerate(leaves)})
    functions[name] = {
        "module": f"{name}.stablehlo", "variables_file": f"{name}.npz",
        "variables": [{"path": p, **_spec(leaf)} for p, leaf in zip(paths, leaves)],
        "variables_sha256": variables_hash(paths, leaves),
        "inputs": [{"name": n, **_spec(s)} for n, s in zip(INPUT_NAMES[name], specs[name])],
        "outputs": [_spec(o) for o in module.out_avals],
        "platforms": list(module.platforms),
        "calling_convention_version": module.calling_convention_version}
  manifest = _manifest(run, functions)
  workdir_lib.write_json(os.path.join(out, MANIFEST), manifest)
  return manifest


def _manifest(run: assembly.Run, functions: dict) -> dict:
  c = run.config
  patterns = erasure.patterns(run.k, run.r, c.patterns.mode, limit=c.patterns.limit)
  return {
      "format_version": FORMAT_VERSION,
      "k": run.k, "r": run.r, "dataset": run.dataset.name,
      "input_shape": list(run.dataset.input_shape), "input_dtype": "float32",
      "normalisation": run.dataset.info.get("normalisation", {}),
      "num_classes": run.dataset.num_classes,
      "erasure_patterns": [np.flatnonzero(p).tolist() for p in patterns],
      "pattern_mode": c.patterns.mode,
      "slots": f"outputs 0..{run.k - 1} are F on the data, {run.k}..{run.k + run.r - 1} the "
               "parity network on the encoder's parities (parity_model, or base_model when "
               "no parity model was trained)",
      "calling_convention": "each module takes its variables' leaves (the .npz entries a0, "
                            "a1, ... in order) and then its inputs; 'b' is the symbolic batch",
      "base_model": c.base_model.name, "encoder": c.encoder.name, "decoder": c.decoder.name,
      "has_parity_model": "parity_model" in functions,
      "checkpoint_epoch": run.checkpoint_epoch,
      "versions": {"python": platform.python_version(), "jax": jax.__version__,
                   "jaxlib": jaxlib.__version__,
                   "numpy": np.__version__},
      "functions": functions}


def main(argv) -> int:
  from absl import flags
  FLAGS = flags.FLAGS
  logging.getLogger().setLevel(logging.WARNING)  # absl's INFO: orbax's restore chatter
  try:
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir or not FLAGS.out:
      raise ValueError("give --workdir=DIR and --out=OUT")
    unknown = sorted(set(FLAGS.platforms) - set(PLATFORMS))
    if unknown:
      raise ValueError(f"unknown --platforms {unknown}; known: {list(PLATFORMS)}")
    runs.read_config(FLAGS.workdir)  # a clear error for a folder that is not a workdir
    manifest = export_run(FLAGS.workdir, FLAGS.out, FLAGS.platforms)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  print(f"wrote {FLAGS.out}/{MANIFEST} and {', '.join(manifest['functions'])} (.stablehlo, .npz)")
  return 0


def _parse_flags(argv):
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("workdir", None, "A trained run (its best checkpoint is exported).")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_list("platforms", ["cpu", "cuda"], "Platforms the modules are lowered for.")
  app.run(main, flags_parser=_parse_flags)
