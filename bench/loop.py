"""The training loop's own cost: real ``train_and_evaluate`` runs against the bare jitted step.

Two figures (the headline JSON of ``python -m bench --only loop``):

* ``loop_us_per_step_tiny``: a digits-sized code (8×8 inputs, base-mlp F, MLP encoder and
  decoder, k = 2, batch 64; the embedded default's shapes), trained by the real loop; the
  training part of each epoch (``time_s`` of its ``metrics.jsonl`` train entry: index upload,
  the chunked steps, reading their metrics) divided by its steps. Epoch 1 (compilation) is left
  out; median over the others. Beside it, the same step jitted alone and called back to back
  with its indices already on the device (``isolated_step_us_tiny``).
* ``epoch_vs_steps_mnist_mlp_k2``: one Fashion-MNIST-sized training epoch of the k = 2 MLP code
  (the real files when prepared, else synthetic MNIST-sized images), ``time_s`` of the train
  entry against its number of steps times the isolated step's median time.

F is trained for one epoch only (its accuracy does not matter here); each run writes into a
temporary workdir with the default checkpoint policy.
"""
from __future__ import annotations

import gzip
import json
import os
import statistics
import tempfile
import time

import numpy as np

from bench import cases, common


def _train_entries(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [e for e in map(json.loads, f) if e["split"] == "train"]


def summary(workdir: str) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def train(config, workdir: str) -> tuple[list[dict], float]:
  """(train entries of metrics.jsonl, wall seconds) of a real run in ``workdir``."""
  from lcc_jax import train_lib
  start = time.perf_counter()
  train_lib.train_and_evaluate(config, workdir, progress=False)
  return _train_entries(workdir), time.perf_counter() - start


def _run(config) -> tuple[list[dict], float]:
  with tempfile.TemporaryDirectory() as workdir:
    return train(config, os.path.join(workdir, "run"))


def _tiny_config(epochs: int):
  from configs import default
  config = default.get_config()
  config.base_model.epochs = 1
  config.num_epochs = epochs
  return config


CARRIED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            ".gpu_data")


def _write_idx(path: str, array: np.ndarray) -> None:
  header = np.array([0x800 | array.ndim, *array.shape], ">u4").tobytes()
  with gzip.open(path, "wb", compresslevel=1) as f:
    f.write(header + array.tobytes())


def _synthetic_fashion_mnist(folder: str) -> str:
  """Random images and labels in Fashion-MNIST's own files and sizes (60,000 + 10,000)."""
  rng = np.random.default_rng(0)
  os.makedirs(folder, exist_ok=True)
  for prefix, n in (("train", 60_000), ("t10k", 10_000)):
    _write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"),
               rng.integers(0, 256, (n, 28, 28), np.uint8))
    _write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"),
               rng.integers(0, 10, n, np.uint8))
  return folder


def mnist_config(epochs: int, scratch: str):
  """configs/fashion_mnist_mlp.py; synthetic files of the same sizes where the real ones are
  not to be had (e.g. a GPU machine without the dataset)."""
  from configs import fashion_mnist_mlp
  from lcc_jax import data
  config = fashion_mnist_mlp.get_config(f"epochs={epochs}")
  config.base_model.epochs = 1
  if os.path.isdir(CARRIED_DATA):  # brought along by bench/gpu.sh --prepare
    config.data.manual_dir = CARRIED_DATA
    config.data.data_dir = os.path.join(scratch, "prepared")
    return config
  try:
    data.check_available(config.data)
  except data.DataUnavailableError:
    config.data.manual_dir = _synthetic_fashion_mnist(os.path.join(scratch, "synthetic"))
    config.data.data_dir = os.path.join(scratch, "prepared")
  return config


def _isolated_step_s(encoder_input_shape, batch: int, repeats: int, calls: int) -> common.Timing:
  loop = cases.TrainLoop("mlp", 2, 1, batch, input_shape=encoder_input_shape)
  return common.alternate({"step": loop}, repeats, calls)["step"]


def steps_in(entry: dict) -> int:
  return round(entry["time_s"] * entry["steps_per_s"])


def mnist_name(config) -> str:
  synthetic = config.data.manual_dir.endswith("synthetic")
  return "synthetic Fashion-MNIST-sized" if synthetic else "Fashion-MNIST"


def _scan_step_s(batch: int, num_steps: int, repeats: int) -> common.Timing:
  """One step inside a ``num_steps``-step ``steps.train_chunk`` (the loop's own program, with no
  host work at all): the floor of the loop's per-step cost."""
  import jax
  import jax.numpy as jnp
  from lcc_jax import steps
  base = cases.TrainLoop("mlp", 2, 1, batch, input_shape=(8, 8, 1), num=1437)
  chunk = steps.jit_train_chunk(base.code, base.tx, "kl")
  rng = np.random.default_rng(0)
  idx = jnp.asarray(rng.integers(0, 1437, (num_steps, batch, 2)), jnp.int32)
  weight = jnp.ones((num_steps, batch), jnp.float32)
  state = base.state

  def run_chunks(n: int) -> None:
    nonlocal state
    for _ in range(n):
      state, per_step, _ = chunk(state, base.frozen, base.data, idx, weight,
                                 jnp.int32(int(state.step)), base.unavail, num_steps=num_steps)
    jax.block_until_ready(per_step)

  timing = common.alternate({"scan": run_chunks}, repeats, 1)["scan"]
  return common.Timing([w / num_steps for w in timing.wall], [c / num_steps for c in timing.cpu])


def run(quick: bool) -> tuple[list[dict], dict]:
  tiny_epochs, mnist_epochs = (20, 2) if quick else (60, 3)
  tiny_entries, tiny_total = _run(_tiny_config(tiny_epochs))
  tiny_loop_s = statistics.median(1 / e["steps_per_s"] for e in tiny_entries[1:])
  tiny_steps = steps_in(tiny_entries[-1])
  tiny_step = _isolated_step_s((8, 8, 1), 64, 5 if quick else 9, 50)
  tiny_scan = _scan_step_s(64, 180, 5 if quick else 9)

  with tempfile.TemporaryDirectory() as scratch:
    config_mnist = mnist_config(mnist_epochs, scratch)
    mnist_entries, mnist_total = _run(config_mnist)
  mnist_epoch_s = statistics.median(e["time_s"] for e in mnist_entries[1:])
  mnist_steps = steps_in(mnist_entries[-1])
  mnist_step = _isolated_step_s((28, 28, 1), 64, 3 if quick else 5, 10)
  ratio = mnist_epoch_s / (mnist_steps * mnist_step.median)

  bench_tiny = "loop: digits-sized k=2 MLP code, B=64"
  mnist_data = mnist_name(config_mnist)
  bench_mnist = f"loop: {mnist_data} k=2 MLP code, B=64"
  rows = [
      {"bench": bench_tiny, "impl": f"training loop, per step ({tiny_steps} steps/epoch)",
       "median_s": tiny_loop_s, "min_s": min(1 / e["steps_per_s"] for e in tiny_entries[1:]),
       "max_s": max(1 / e["steps_per_s"] for e in tiny_entries[1:]),
       "ratio": tiny_loop_s / tiny_step.median, "ratio_label": "loop / isolated step"},
      {"bench": bench_tiny, "impl": "isolated jitted step, back to back", **tiny_step.as_dict()},
      {"bench": bench_tiny, "impl": "one step inside a 180-step scan (no host work)",
       **tiny_scan.as_dict()},
      {"bench": bench_mnist, "impl": f"training part of an epoch ({mnist_steps} steps)",
       "median_s": mnist_epoch_s, "min_s": min(e["time_s"] for e in mnist_entries[1:]),
       "max_s": max(e["time_s"] for e in mnist_entries[1:]), "ratio": ratio,
       "ratio_label": "epoch / (steps × isolated step)"},
      {"bench": bench_mnist, "impl": "steps × isolated step", "median_s": mnist_steps *
       mnist_step.median, "min_s": mnist_steps * min(mnist_step.wall),
       "max_s": mnist_steps * max(mnist_step.wall)},
  ]
  figures = {"loop_us_per_step_tiny": tiny_loop_s * 1e6,
             "isolated_step_us_tiny": tiny_step.median * 1e6,
             "scan_step_us_tiny": tiny_scan.median * 1e6,
             "epoch_vs_steps_mnist_mlp_k2": ratio,
             "loop_details": {"tiny_run_total_s": tiny_total, "tiny_epochs": tiny_epochs,
                              "tiny_train_time_s": [e["time_s"] for e in tiny_entries],
                              "mnist_dataset": mnist_data,
                              "mnist_run_total_s": mnist_total,
                              "mnist_train_time_s": [e["time_s"] for e in mnist_entries],
                              "mnist_step": mnist_step.as_dict(),
                              "mnist_500_epochs_train_min": 500 * mnist_epoch_s / 60,
                              "tiny_loop_us_all_epochs": [1e6 / e["steps_per_s"]
                                                          for e in tiny_entries]}}
  return rows, figures
