"""One process of the 2-process tests (tests/test_multiprocess.py); also the 1-process reference.

  python tests/multiprocess_worker.py step OUT_DIR PORT NUM_PROCESSES PROCESS_ID
  python tests/multiprocess_worker.py train OUT_DIR PORT NUM_PROCESSES PROCESS_ID

step: trains the tiny code of tests/helpers.py for a few steps on fixed global batches, each
process feeding only its rows, then evaluates; writes OUT_DIR/params_<id>.npz and
OUT_DIR/counts_<id>.npz, and (process 0 only) OUT_DIR/metrics.jsonl.
train: runs ``train_and_evaluate(configs/tiny.py:epochs=1, OUT_DIR/workdir)`` and writes
OUT_DIR/writes_<id>.json, the workdir files this process opened for writing or renamed into.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
import types

import numpy as np

GLOBAL_BATCH = 8
K = 2
NUM_GROUPS = 12  # tiny_data's 24 examples in groups of K


def global_batches():
  """Fixed (idx_BxK, weight_B) batches over the tiny data, the last one padded."""
  rng = np.random.default_rng(0)
  order = np.concatenate([rng.permutation(NUM_GROUPS), rng.permutation(NUM_GROUPS)[:7]])
  batches = []
  for start in range(0, len(order), GLOBAL_BATCH):
    groups = order[start:start + GLOBAL_BATCH]
    weight_B = np.zeros(GLOBAL_BATCH, np.float32)
    weight_B[:len(groups)] = 1.0
    groups = np.pad(groups, (0, GLOBAL_BATCH - len(groups)))
    batches.append(((groups[:, None] * K + np.arange(K)).astype(np.int32), weight_B))
  return batches


def step(out_dir: str, port: int, num_processes: int, process_id: int) -> None:
  from lcc_jax import parallel
  parallel.initialize(types.SimpleNamespace(coordinator_address=f"localhost:{port}",
                                            num_processes=num_processes, process_id=process_id))
  import jax

  from lcc_jax import erasure, optim, steps
  from tests.helpers import tiny_code, tiny_data

  code, variables = tiny_code(k=K)
  data = tiny_data(code, variables, k=K)
  tx = optim.make_tx("adam", lr=1e-2)
  state, frozen = steps.init_state(variables, ("encoder", "decoder"), tx, jax.random.key(3))
  mesh = parallel.make_mesh()
  parallel.check_batch(GLOBAL_BATCH, mesh)
  state, frozen, data, unavail_PxN = parallel.replicate(
      (state, frozen, data, erasure.patterns(K, 1)), mesh)
  rows = parallel.local_rows(GLOBAL_BATCH)
  train_step = steps.jit_train_step(code, tx, "kl")
  eval_step = steps.jit_eval_step(code, "kl")
  losses = []
  for idx_BxK, weight_B in global_batches():
    idx_BxK, weight_B = parallel.global_batch(idx_BxK[rows], weight_B[rows], mesh)
    state, out = train_step(state, frozen, data, idx_BxK, weight_B, unavail_PxN)
    losses.append(float(out["loss"]))
  idx_BxK, weight_B = global_batches()[-1]
  # Counts are sums over the global batch, replicated on every device: read them as they are.
  counts = jax.device_get(eval_step(state.params, state.model_state, frozen, data,
                                   *parallel.global_batch(idx_BxK[rows], weight_B[rows], mesh),
                                   unavail_PxN))
  params = {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)}
  np.savez(os.path.join(out_dir, f"params_{process_id}.npz"), **params)
  np.savez(os.path.join(out_dir, f"counts_{process_id}.npz"), **counts)
  if parallel.is_main_process():
    with open(os.path.join(out_dir, "metrics.jsonl"), "w") as f:
      f.write(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(),
                          "losses": losses}) + "\n")


def train(out_dir: str, port: int, num_processes: int, process_id: int) -> None:
  workdir = os.path.join(out_dir, "workdir")
  written = set()

  def audit(event, args):
    if event == "open" and isinstance(args[0], (str, os.PathLike)) and _writes(*args[1:3]):
      written.add(os.path.abspath(args[0]))
    elif event == "os.rename" and isinstance(args[1], (str, os.PathLike)):
      written.add(os.path.abspath(args[1]))

  sys.addaudithook(audit)
  from configs import tiny
  from lcc_jax import train_lib
  config = tiny.get_config("epochs=1")
  config.distributed.coordinator_address = f"localhost:{port}"
  config.distributed.num_processes = num_processes
  config.distributed.process_id = process_id
  train_lib.train_and_evaluate(config, workdir, progress=False)
  ours = sorted(os.path.relpath(p, workdir) for p in written if p.startswith(workdir + os.sep))
  with open(os.path.join(out_dir, f"writes_{process_id}.json"), "w") as f:
    json.dump(ours, f)


def _writes(mode, flags) -> bool:
  if isinstance(mode, str):
    return any(c in mode for c in "wax+")
  return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    {"step": step, "train": train}[sys.argv[1]](sys.argv[2], *map(int, sys.argv[3:6]))
  except BaseException:  # exit at once: jax.distributed's exit hook would wait for the peers
    traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
