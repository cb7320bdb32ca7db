"""Runs every benchmark, prints a table and, as the last line, the headline figures as JSON.

    python -m bench [--quick] [--threads N] [--only vs_torch,patterns,roofline,sweep]

(also ``python bench/run.py``). ``--quick`` takes under 3 minutes on a 2-core CPU. The torch
comparison needs ``pip install -r requirements-bench.txt``; without torch its figures are
null. Results are also written to ``bench/results/bench.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository root importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402  (no jax import: threads are set before jax loads)
from lcc_jax import host_memory  # noqa: E402  (imports no jax either)

BENCHES = ("vs_torch", "patterns", "roofline", "sweep", "loop")
# Opt-in (--only conv_layer): one conv-encoder layer's passes per implementation (~1 min);
# (--only precision): the Fashion-MNIST loop at each config.precision (for accelerators).
EXTRA = ("conv_layer", "precision", "replicas")
HEADLINE_KEYS = ("speedup_vs_torch_mlp_k2", "speedup_vs_torch_conv_k2", "speedup_vs_torch_mlp_k4",
                 "all_vs_one_pattern_step_k4r2", "sweep_speedup_vs_loop_k4r2",
                 "roofline_fraction_mlp_k2", "loop_us_per_step_tiny",
                 "epoch_vs_steps_mnist_mlp_k2")
MNIST_TRAIN, UPSTREAM_EPOCHS = 55_000, 500  # learned-cc's MNIST train split and epoch count
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench.json")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer repeats; < 3 min on 2 cores")
  parser.add_argument("--threads", type=int, default=1,
                      help="threads for XLA and PyTorch alike (default 1: the machine is shared)")
  parser.add_argument("--only", default=",".join(BENCHES),
                      help=f"comma-separated subset of {','.join(BENCHES + EXTRA)}")
  parser.add_argument("--both_convs", action=argparse.BooleanOptionalAction, default=None,
                      help="time the conv encoder with every implementation (hybrid, "
                      "fast_conv's matmuls, XLA's own), not only impl=auto's choice (default: "
                      "yes, except with --quick)")
  parser.add_argument("--torch_ftz", action=argparse.BooleanOptionalAction, default=True,
                      help="PyTorch flushes denormals to zero, as XLA's CPU backend does")
  parser.add_argument("--keep_freed_memory", action=argparse.BooleanOptionalAction, default=True,
                      help="glibc keeps freed memory for reuse (lcc_jax/host_memory.py), as "
                      "train.py does; applies to PyTorch in the same process too")
  parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the full results")
  args = parser.parse_args(argv)
  unknown = set(args.only.split(",")) - set(BENCHES + EXTRA)
  if unknown:
    parser.error(f"unknown --only entries {sorted(unknown)}; known: {list(BENCHES + EXTRA)}")
  return args


def _import_torch(threads: int, ftz: bool):
  """bench.torch_reference with torch set to ``threads`` threads, or None if torch is absent."""
  try:
    import torch
  except ImportError:
    return None
  torch.set_num_threads(threads)
  torch.set_flush_denormal(ftz)
  from bench import torch_reference
  return torch_reference


def cpu_model() -> str:
  """The CPU's model name (Linux), else the platform's processor string."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def mnist_run_hours(step_s: float, k: int, batch: int, epochs: int = UPSTREAM_EPOCHS) -> float:
  """Training-step time of an upstream MNIST run (430 steps per epoch for k = 2, B = 64)."""
  steps_per_epoch = math.ceil(MNIST_TRAIN // k / batch)
  return epochs * steps_per_epoch * step_s / 3600


def format_table(rows: list[dict]) -> str:
  lines = ["| benchmark | implementation | median ms | min–max ms | CPU ms | ratio |",
           "|---|---|---|---|---|---|"]
  for row in rows:
    cpu = f"{row['cpu_median_s'] * 1e3:.1f}" if "cpu_median_s" in row else "—"
    ratio = (f"{row['ratio']:.2f} ({row['ratio_label']})" if row.get("ratio") is not None
             else "—")
    lines.append(f"| {row['bench']} | {row['impl']} | {row['median_s'] * 1e3:.1f} | "
                 f"{row['min_s'] * 1e3:.1f}–{row['max_s'] * 1e3:.1f} | {cpu} | {ratio} |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  args = parse_args(argv)
  settings = common.configure_threads(args.threads)
  settings["keep_freed_memory"] = args.keep_freed_memory and host_memory.prepare_host()
  only = args.only.split(",")
  torch_module = _import_torch(args.threads, args.torch_ftz) if "vs_torch" in only else None

  import jax  # after configure_threads

  from bench import all_patterns, roofline, sweep, vs_torch

  started = time.perf_counter()
  info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
          "machine": f"{cpu_model()}, {settings['cores']} cores available",
          "threads": args.threads, "quick": args.quick, "jax": jax.__version__,
          "backend": jax.default_backend(), "load_average_start": common.load_average(),
          "xla_flags": settings["xla_flags"]}
  rows, headline, notes = [], {key: None for key in HEADLINE_KEYS}, []
  info["seconds_by_bench"] = seconds = {}

  def timed(name, fn, *fn_args):
    """Runs one benchmark, adds its rows to the table, returns its figures."""
    start = time.perf_counter()
    more_rows, more = fn(*fn_args)
    seconds[name] = time.perf_counter() - start
    print(f"[bench] {name}: {seconds[name]:.0f} s", file=sys.stderr, flush=True)
    rows.extend(more_rows)
    return more

  if "vs_torch" in only:
    if torch_module is None:
      notes.append("torch not installed: PyTorch figures are null "
                   "(pip install -r requirements-bench.txt)")
    else:
      import torch
      info["torch"] = torch.__version__
      info["torch_flush_denormal"] = args.torch_ftz
    both_convs = (not args.quick) if args.both_convs is None else args.both_convs
    more = timed("vs_torch", vs_torch.run, args.quick, torch_module, both_convs)
    headline.update(more)
    info["mnist_500_epochs_train_steps_h"] = {
        name: mnist_run_hours(more[f"step_s_{name}"], k, batch)
        for name, _, k, batch in vs_torch.CASES}
  if "patterns" in only:
    headline.update(timed("patterns", all_patterns.run, args.quick))
  def with_details(name, module, details_key):
    """Runs a bench whose figures hold one ``details_key`` entry for ``info``."""
    more = timed(name, module.run, args.quick)
    info[name] = more.pop(details_key)
    headline.update(more)

  if "roofline" in only:
    with_details("roofline", roofline, "roofline")
  if "sweep" in only:
    headline.update(timed("sweep", sweep.run, args.quick))
  if "loop" in only:
    from bench import loop  # imports the training loop and configs only when asked for
    with_details("loop", loop, "loop_details")
  if "precision" in only:
    from bench import precision
    info["precision"] = timed("precision", precision.run, args.quick)["precision"]
  if "replicas" in only:
    from bench import replicas
    with_details("replicas", replicas, "replicas_details")
  if "conv_layer" in only:
    from bench import conv_layer
    info.update(timed("conv_layer", conv_layer.run, args.quick))
  info["load_average_end"] = common.load_average()
  info["seconds"] = time.perf_counter() - started

  print(format_table(rows))
  if "roofline" in info:
    r = info["roofline"]
    print(f"\nroofline: peak {r['peak_gflops']:.1f} GFLOP/s, bandwidth "
          f"{r['bandwidth_best_gbs']:.1f} GB/s; step {r['step_flops_xla'] / 1e9:.2f} GFLOP, "
          f"{r['step_min_bytes'] / 1e6:.1f} MB minimum ({r['step_bytes_xla'] / 1e6:.1f} MB by "
          f"XLA); bound {r['bound_s'] * 1e3:.2f} ms vs {r['step_measured_s'] * 1e3:.2f} ms "
          f"({r['step_measured_is']})")
  if "mnist_500_epochs_train_steps_h" in info:
    estimate = ", ".join(f"{name} {h:.1f} h" for name, h in
                         info["mnist_500_epochs_train_steps_h"].items())
    print(f"\n500 MNIST epochs, training steps only (steps × median step): {estimate}")
  if "precision" in info:
    from bench import precision
    print("\n" + precision.table(info["precision"]))
  print(f"\n{args.threads} thread(s) for XLA and PyTorch; load average "
        f"{info['load_average_start']:.1f} → {info['load_average_end']:.1f}; "
        f"{info['seconds']:.0f} s")
  for note in notes:
    print(f"note: {note}")
  results = {"info": info, "rows": rows, "headline": headline, "notes": notes}
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
  summary = {key: headline.get(key) for key in HEADLINE_KEYS}
  summary["sweep_speedup_vs_loop_k8r3"] = headline.get("sweep_speedup_vs_loop_k8r3")
  summary.update({key: v for key, v in headline.items() if key.startswith("replicas_speedup")})
  summary["threads"] = args.threads
  if notes:
    summary["note"] = "; ".join(notes)
  print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}))
  return results


if __name__ == "__main__":
  main()
