"""Data pipeline benchmark: Fashion-MNIST prepare/load times and the index/gather rate.

  PYTHONPATH=. .venv/bin/python bench/data_bench.py [--repeats=5] [--skip_prepare]

1. Cold prepare: ``data.load`` into an empty temporary data dir, from Debian's original files
   (/usr/share/datasets/fashion-mnist); reported as tfds prepare and read seconds.
2. Warm load: ``data.load`` again on the prepared dir (read + normalise only), ``--repeats``.
3. Gather: the training loop's input side for k=2, B=64 — one epoch of ``group_indices``
   (host) and one jitted device gather ``x[idx_BxK]`` per step from the train split held on the
   device (a host int32 idx_BxK per step, as the training step receives it), measured as
   groups per second over a whole epoch, ``--repeats`` epochs.
Prints one Markdown table (median and min–max of the repeats).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp

from lcc_jax import data


def _summary(values, unit):
  return (f"{statistics.median(values):.3g} {unit} "
          f"(min {min(values):.3g}, max {max(values):.3g}, n={len(values)})")


def _gather_epoch(x_dev, idx_SxBxK, gather):
  start = time.perf_counter()
  out = None
  for idx_BxK in idx_SxBxK:
    out = gather(x_dev, idx_BxK)
  out.block_until_ready()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--k", type=int, default=2)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--skip_prepare", action="store_true",
                      help="use --data_dir as is (no cold prepare)")
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = args.data_dir or tmp
    cfg = {"name": "fashion_mnist", "data_dir": data_dir}
    if not args.skip_prepare:
      start = time.perf_counter()
      ds = data.load(cfg)
      total = time.perf_counter() - start
      rows.append(("cold prepare + first load (1 run)",
                   f"{total:.1f} s (tfds prepare {ds.info['prepare_seconds']:.1f} s, "
                   f"read {ds.info['read_seconds']:.1f} s)"))
    loads = []
    for _ in range(max(1, args.repeats // 2)):
      start = time.perf_counter()
      ds = data.load(cfg)
      loads.append(time.perf_counter() - start)
    rows.append(("warm load (prepared)", _summary(loads, "s")))

  split = data.make_split(len(ds.x_train), args.k, ds.val_size, seed=0, workdir=None)
  host = []
  for epoch in range(args.repeats):
    start = time.perf_counter()
    idx_SxBxK, _ = data.group_indices(split["train"], args.k, args.batch_size, shuffle=True,
                                      epoch=epoch)
    host.append(time.perf_counter() - start)
  rows.append((f"group_indices, one train epoch ({idx_SxBxK.shape[0]} steps)",
               _summary([h * 1e3 for h in host], "ms")))

  x_dev = jax.device_put(ds.x_train)  # the split lives on the device; only indices travel
  gather = jax.jit(lambda x, idx: jnp.take(x, idx, axis=0))
  _gather_epoch(x_dev, idx_SxBxK[:2], gather)  # compile
  groups = idx_SxBxK.shape[0] * idx_SxBxK.shape[1]
  rates = [groups / _gather_epoch(x_dev, idx_SxBxK, gather) for _ in range(args.repeats)]
  rows.append((f"device gather x[idx_BxK], k={args.k}, B={args.batch_size}",
               _summary(rates, "groups/s")))

  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})\n")
  print("| measurement | result |\n| --- | --- |")
  for name, value in rows:
    print(f"| {name} | {value} |")


if __name__ == "__main__":
  main()
