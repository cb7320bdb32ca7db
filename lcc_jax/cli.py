"""What train.py does with a config: run it, dry-run it, and turn input errors into one line."""
from __future__ import annotations

import os
import sys
import traceback


from lcc_jax import assembly, erasure, nn, run_control, train_lib, validate, workdir as workdir_lib

# Errors in the user's inputs: one line, exit status 2, no traceback unless --verbose.
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 1


def _input_errors() -> tuple[type[BaseException], ...]:
  from lcc_jax import data
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
    validate.check_shapes(config)
    input_shape, num_classes = input_spec(config.data)
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
  rows.append(("on parities", parity[0] if parity else "F itself", counts.get("parity_model", 0),
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


def input_spec(data_config) -> tuple[tuple[int, ...], int]:
  """Input shape (NHWC) and classes of the dataset, so a dry run needs no dataset file."""
  return validate.input_spec(data_config)


def _yes(name, trained):
  return "yes" if name in trained else "no"
