"""What train.py does with a config: run it, dry-run it, and turn input errors, bad flags
included, into one line."""
from __future__ import annotations

import json
import os
import sys
import traceback

from lcc_jax import (assembly, component_checks, data, erasure, nn, registry, run_control,
                     train_lib, validate, workdir as workdir_lib)

# Errors in the user's inputs: one line, exit status 2, no traceback unless --verbose.
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 1


def _input_errors() -> tuple[type[BaseException], ...]:
  return (validate.ConfigError, workdir_lib.WorkdirError, data.DataUnavailableError, KeyError,
          ValueError)


def run(config, workdir: str, *, eval_only=False, overwrite=False, progress=True,
        verbose=False, profile_dir="") -> int:
  """Trains (or evaluates) one config; prints the headline numbers; returns the exit status."""
  from lcc_jax import checkpoint
  checkpoint.mute_orbax_failure_reports()  # a failed write is reported below, in one line
  try:
    summary = train_lib.train_and_evaluate(config, workdir, eval_only=eval_only,
                                           overwrite=overwrite, progress=progress,
                                           profile_dir=profile_dir)
  except run_control.TrainingStopped as e:
    print(f"stopped: {e}", file=sys.stderr)
    return EXIT_STOPPED
  except KeyboardInterrupt:  # SIGINT outside the epoch loop (set-up, F's training, plots)
    print("stopped: interrupted outside the training loop; every finished epoch is "
          "checkpointed: run the same command again to continue", file=sys.stderr)
    return EXIT_STOPPED
  except _input_errors() as e:
    if verbose:
      traceback.print_exc()
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
  if eval_only and "replicas" in summary:
    spread = summary["aggregate"]["test/degraded_top1"]
    print(f"evaluated {len(summary['replicas'])} replicas, each at its best epoch: test degraded "
          f"top-1 {spread['mean']:.4f} ± {spread['std']:.4f} [{spread['min']:.4f}, "
          f"{spread['max']:.4f}]")
    return 0
  if eval_only:
    print(f"evaluated checkpoint of epoch {summary['epoch']}: test degraded top-1 "
          f"{summary['test']['degraded_top1']:.4f}, reconstruction top-1 "
          f"{summary['test']['reconstruction_top1']:.4f}")
    return 0
  print(f"F ({summary['base_model']['name']}) test accuracy: "
        f"{summary['base_model']['test_accuracy']:.4f}")
  test = summary.get("test")
  if "replicas" in summary:
    _print_replicas(summary)
  elif test:
    print(f"code k={summary['k']} r={summary['r']} ({summary['encoder']}/{summary['decoder']}), "
          f"best epoch {summary['best_epoch']}: test degraded-mode top-1 "
          f"{test['degraded_top1']:.4f}, reconstruction top-1 {test['reconstruction_top1']:.4f}"
          f" over {summary['num_patterns']} patterns")
  written = [f for f in ("summary.json", "metrics.jsonl", "curves.png", "patterns.png")
             if os.path.exists(os.path.join(workdir, f))]  # no plots without code epochs
  print(f"wrote {workdir}/{', '.join(written)}")
  return 0


def _print_replicas(summary) -> None:
  aggregate, count = summary["aggregate"], len(summary["replicas"])
  diverged = [r["replica"] for r in summary["replicas"] if r["diverged"]]
  parts = [f"{name} {aggregate[key]['mean']:.4f} ± {aggregate[key]['std']:.4f} "
           f"[{aggregate[key]['min']:.4f}, {aggregate[key]['max']:.4f}]"
           for name, key in (("test degraded-mode top-1", "test/degraded_top1"),
                             ("reconstruction top-1", "test/reconstruction_top1"))
           if key in aggregate]
  print(f"code k={summary['k']} r={summary['r']} ({summary['encoder']}/{summary['decoder']}), "
        f"{count} replicas at their best epochs: " + ", ".join(parts)
        + f" (mean ± std [min, max]) over {summary['num_patterns']} patterns"
        + (f"; diverged: replicas {diverged}" if diverged else ""))


def dry_run(config, *, verbose=False):
  """Builds every component at its real size and counts parameters; touches no data files."""
  try:
    validate.check_config(config)
    component_checks.check_shapes(config)
    input_shape, num_classes = data.input_spec(config.data)
  except _input_errors() as e:
    if verbose:
      traceback.print_exc()
    print(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  _, shapes = assembly.abstract_code(config, input_shape, num_classes)
  counts = {name: nn.count_params(v) for name, v in shapes.items()}
  num_patterns = erasure.count(config.k, config.r, config.patterns.mode)
  trained = set(assembly.trainable_components(config))
  rows = [("component", "name", "params", "trained")]
  rows.append(("base_model F", config.base_model.name, counts["base_model"], "no (frozen)"))
  rows.append(("encoder", config.encoder.name, counts["encoder"], _yes("encoder", trained)))
  rows.append(("decoder", config.decoder.name, counts["decoder"], _yes("decoder", trained)))
  parity = assembly.parity_model_name(config)
  starts = " (starts as F)" if parity and assembly.parity_from_base(config) else ""
  rows.append(("on parities", (parity[0] + starts) if parity else "F itself",
               counts.get("parity_model", 0),
               _yes("parity_model", trained) if parity else "no (F frozen)"))
  width = [max(len(str(row[i])) for row in rows) for i in range(4)]
  for row in rows:
    print("  ".join(str(cell).ljust(w) for cell, w in zip(row, width)))
  print(f"dataset {config.data.name}: input {tuple(input_shape)}, {num_classes} classes; "
        f"k={config.k} r={config.r}: {num_patterns} erasure patterns ({config.patterns.mode})")
  parity_params = counts.get("parity_model", 0) if "parity_model" in trained else 0
  return {"encoder_params": counts["encoder"], "decoder_params": counts["decoder"],
          "base_model_params": counts["base_model"], "parity_model_params": parity_params,
          "num_patterns": num_patterns}


def _yes(name, trained):
  return "yes" if name in trained else "no"


class _FlagError(ValueError):
  """What is wrong with a ``--config`` or ``--config.FIELD=VALUE`` flag, in one line."""


def explain_flags_error(args: list[str], error: BaseException, default_config: str) -> str:
  """A one-line reason for a failure of absl's flag parsing (``--config`` and overrides)."""
  specs = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
  spec = specs[-1] if specs else default_config
  message = registry.first_line(error)
  try:
    config = _load_config(spec)
    for arg in args:
      if arg.startswith("--config.") and "=" in arg:
        _check_override(config, arg, message)
  except _FlagError as e:
    return str(e)
  return message


def _load_config(spec: str):
  """``get_config`` of a ``--config=FILE[:ARG]`` value, errors as _FlagError."""
  from lcc_jax import sweep
  path, _, arg = spec.partition(":")
  try:
    return sweep.load_module(path).get_config(arg or None)
  except json.JSONDecodeError as e:
    raise _FlagError(f"--config={spec}: not valid JSON ({e}); fix the file or pass an "
                     "upstream conf.json or sweep JSON") from None
  except Exception as e:  # pylint: disable=broad-except  (a config file is user code)
    raise _FlagError(f"--config={spec}: {type(e).__name__}: {registry.first_line(e)}") from None


def _check_override(config, arg: str, flag_error: str) -> None:
  """``--config.a.b=VALUE`` names a field of ``config``; ``flag_error`` is absl's complaint."""
  key, _, _ = arg[len("--config."):].partition("=")
  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    fields = list(node.keys()) if hasattr(node, "keys") else []
    if part not in fields:
      raise _FlagError(f"{arg}: the config has no field {'.'.join(parts[:i + 1])!r}; fields "
                       f"{'under ' + '.'.join(parts[:i]) if i else 'at the top'}: "
                       f"{', '.join(fields)}")
    node = node[part]
  if arg in flag_error:
    raise _FlagError(f"{arg}: not a valid {type(node).__name__} for {key} (the config has "
                     f"{key}={node!r}): {flag_error}")
