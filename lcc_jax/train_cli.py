"""The training command: ``lcc-train`` once installed, ``python train.py`` in a checkout.

Flags and config, nothing else (the work is in lcc_jax.train_lib).

  lcc-train                                                  # the embedded default (digits)
  lcc-train --config=configs/NAME.py[:ARGS] --workdir=DIR [--config.FIELD=VALUE ...]
  lcc-train --config=configs/upstream.py:path/to/conf.json --workdir=DIR
  lcc-train --config=... --dry_run                           # build, count, train nothing

``--config=configs/NAME.py`` names a shipped config from any folder: a path that does not exist
there is looked up in the installed ``configs`` package.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback

from absl import app, flags
from ml_collections import config_flags



def _configs_dir() -> str:
  import configs  # the shipped configs: beside lcc_jax, in a checkout and once installed
  return os.path.dirname(os.path.abspath(configs.__file__))


_DEFAULT_CONFIG = os.path.join(_configs_dir(), "default.py")


def resolve_config_flag(argv: list[str]) -> list[str]:
  """``argv`` with ``--config=configs/NAME.py[:ARG]`` pointing at the shipped file when no
  such file exists relative to the current folder."""
  out = []
  for arg in argv:
    if arg.startswith("--config="):
      path, colon, rest = arg[len("--config="):].partition(":")
      relative = os.path.normpath(path).split(os.sep)
      shipped = os.path.join(_configs_dir(), *relative[1:])
      if relative[0] == "configs" and not os.path.exists(path) and os.path.exists(shipped):
        arg = f"--config={shipped}{colon}{rest}"
    out.append(arg)
  return out


def _bad_input(argv, error) -> int:
  """One line on stderr (a traceback too with --verbose); exit status 2."""
  from lcc_jax import cli
  if any(arg in ("--verbose", "--verbose=true") for arg in argv):
    traceback.print_exception(error)
  print(f"error: {cli.explain_flags_error(argv[1:], error, _DEFAULT_CONFIG)}", file=sys.stderr)
  return cli.EXIT_BAD_INPUT


try:  # config_flags applies --config.FIELD=VALUE overrides to the default right here
  config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Python config file[:arg].",
                                  lock_config=True)
except Exception as e:  # pylint: disable=broad-except
  sys.exit(_bad_input(sys.argv, e))
flags.DEFINE_string("workdir", "runs/default", "Folder for checkpoints, metrics and plots.")
flags.DEFINE_bool("dry_run", False, "Build what the config names, print parameter counts and the "
                  "number of erasure patterns; train nothing, touch no dataset.")
flags.DEFINE_bool("eval_only", False, "Evaluate the best (or latest) checkpoint of --workdir.")
flags.DEFINE_bool("overwrite", False, "Delete a run of another config in --workdir first.")
flags.DEFINE_integer("sweep_index", -1, "Run only this entry of the config's sweep.")
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors in the inputs.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_string("profile_dir", "", "Write a jax.profiler trace of one chunk of training "
                    "steps (the second epoch's first) into this folder (TensorBoard / Perfetto).")
FLAGS = flags.FLAGS


def _entries():
  """(name, config) pairs: a sweep's entries (each with the --config.FIELD overrides applied),
  or the single run."""
  from lcc_jax import sweep
  path, _, arg = config_flags.get_config_filename(FLAGS["config"]).partition(":")
  entries = sweep.load_entries(path, arg or None)
  if len(entries) == 1 and entries[0][0] == "":
    return [("", FLAGS.config)]
  overrides = config_flags.get_override_values(FLAGS["config"])
  for _, config in entries:
    config.update_from_flattened_dict(overrides)
  if FLAGS.sweep_index >= 0:
    if FLAGS.sweep_index >= len(entries):
      raise app.UsageError(f"--sweep_index={FLAGS.sweep_index} but the sweep has "
                           f"{len(entries)} entries (0..{len(entries) - 1})")
    entries = [entries[FLAGS.sweep_index]]
  return entries


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except  (bad flags, or a config file's error)
    sys.exit(_bad_input(argv, e))


def main(argv):
  logging.getLogger().setLevel(logging.INFO if FLAGS.verbose else logging.WARNING)
  from lcc_jax import cli, host_memory
  host_memory.prepare_host()  # before the first computation, CPU backend only (see its module)
  try:
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments: {argv[1:]}")
    entries = _entries()
  except Exception as e:  # pylint: disable=broad-except  (a config file is user code)
    return _bad_input(sys.argv, e)
  status = 0
  for name, config in entries:
    workdir = os.path.join(FLAGS.workdir, name) if name else FLAGS.workdir
    if FLAGS.dry_run:
      result = cli.dry_run(config)
    else:
      result = cli.run(config, workdir, eval_only=FLAGS.eval_only, overwrite=FLAGS.overwrite,
                       progress=FLAGS.progress, verbose=FLAGS.verbose,
                       profile_dir=FLAGS.profile_dir)
    if isinstance(result, int):
      status = max(status, result)
    elif result is not None:
      print(json.dumps(result))
  return status


def run():
  """The ``lcc-train`` console script."""
  sys.argv = resolve_config_flag(sys.argv)
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
