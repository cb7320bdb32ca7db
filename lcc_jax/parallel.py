"""Meshes, shardings and multi-host set-up (the only module that touches jax.distributed).

Data parallelism over one mesh axis, ``"data"``, that spans every device of every process:
the batch of groups (B) is sharded along it; parameters, optimizer state, F and the on-device
dataset are replicated (big 2-D kernels may be sharded, see ``shard_params``). The jitted steps
are the single-device ones: with sharded inputs and classic sharding propagation, XLA inserts
the gradient all-reduce itself, and every sum over B inside a step (losses, metric counts) is
already a global reduction whose result is replicated on every device.

The config's batch size is global (groups per step over all devices); each process feeds only
its rows of it (``local_rows``) and ``global_batch`` assembles the global arrays.
"""
from __future__ import annotations

import os
import re

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA = "data"
# Environment variables read when the config leaves a field unset (JAX itself reads only the
# first, plus JAX_LOCAL_DEVICE_IDS and JAX_COORDINATOR_PORT).
_ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
        "process_id": "JAX_PROCESS_ID"}
# Managed clusters that jax.distributed.initialize() detects by itself (jax/_src/clusters):
# (variables that must all be set, the one that holds the process count).
_CLUSTERS = (
    (("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID"), "SLURM_NTASKS"),
    (("OMPI_MCA_orte_hnp_uri",), "OMPI_COMM_WORLD_SIZE"),
)
_TPU_HOSTS_ENV = ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES")
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
# A collective's result in HLO text: "%all-reduce.3 = (f32[15]{0}, f32[8,15]{1,0}) all-reduce(".
# Async pairs are counted once, at their "-done" (whose result is the transferred value).
_COLLECTIVE_RE = re.compile(r"= (.+?) (" + "|".join(COLLECTIVES) + r")(-done)?\(")
_ARRAY_RE = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")


def distributed_settings(dist_config=None) -> tuple[str | None, int | None, int | None] | None:
  """(coordinator_address, num_processes, process_id) to start jax.distributed with, or None.

  Fields come from ``dist_config`` (unset: "" / -1 / missing), else from JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES and JAX_PROCESS_ID; None means one process (nothing to start). Fields a
  detected cluster provides may stay None. Raises ValueError on incomplete or inconsistent values.
  """
  values = {}
  for field, env in _ENV.items():
    value = getattr(dist_config, field, None) if dist_config is not None else None
    if value in (None, "", -1):
      value = os.environ.get(env) or None
    values[field] = value
  address = values["coordinator_address"]
  num = _as_int(values["num_processes"], "num_processes")
  pid = _as_int(values["process_id"], "process_id")
  if num is not None and num < 1:
    raise ValueError(f"distributed.num_processes must be >= 1 (or -1 = unset), got {num}")
  if pid is not None and num is not None and not 0 <= pid < num:
    raise ValueError(f"distributed.process_id must be in [0, {num}) for num_processes={num}, "
                     f"got {pid}")
  cluster_size = _cluster_process_count()
  if num == 1 or (all(v is None for v in values.values()) and cluster_size <= 1):
    return None
  missing = [f for f, v in values.items() if v is None]
  if missing and not cluster_size:
    raise ValueError(f"multi-process run needs all of distributed.{{coordinator_address, "
                     f"num_processes, process_id}} (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                     f"JAX_PROCESS_ID); missing {missing}. The address is process 0's "
                     f"'host:port', e.g. 'node0:12355'")
  return address, num, pid


def _as_int(value, field: str) -> int | None:
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"distributed.{field} must be an integer, got {value!r}") from None


def _cluster_process_count() -> int:
  """Number of processes a managed cluster launched this job with (0 if none is detected)."""
  for required, size in _CLUSTERS:
    if all(env in os.environ for env in required) and os.environ.get(size, "").isdigit():
      return int(os.environ[size])
  for env in _TPU_HOSTS_ENV:
    if os.environ.get(env):
      return len(os.environ[env].split(","))
  return 0


def initialize(dist_config=None) -> None:
  """Starts jax.distributed when the config, the environment or a cluster asks for many processes.

  A no-op for one process and when already initialized. Must run before any other JAX call.
  """
  if jax.distributed.is_initialized():
    return
  settings = distributed_settings(dist_config)
  if settings is not None:
    # Values left None are filled in by JAX from Slurm / Open MPI / Cloud TPU.
    address, num, pid = settings
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)


def make_mesh() -> Mesh:
  """All devices of all processes on one axis, "data", with classic (Auto) sharding propagation."""
  return jax.make_mesh((jax.device_count(),), (DATA,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over "data", other axes whole."""
  return NamedSharding(mesh, PartitionSpec(DATA))


def check_batch(global_batch_size: int, mesh: Mesh, field: str = "data.batch_size") -> None:
  """Raises ValueError unless the global batch splits evenly over devices and processes."""
  num_devices = mesh.devices.size
  if global_batch_size < 1 or global_batch_size % num_devices:
    fix = max(1, -(-global_batch_size // num_devices)) * num_devices
    raise ValueError(
        f"{field}={global_batch_size} is the global batch (groups per step over all devices) "
        f"and must be a positive multiple of the number of devices, {num_devices} "
        f"({jax.process_count()} process(es)); e.g. --config.{field}={fix}")


def replicate(tree, mesh: Mesh):
  """Every leaf placed whole on every device of the mesh (works across processes)."""
  return jax.tree.map(lambda leaf: _put(leaf, replicated(mesh)), tree)


def _put(leaf, sharding: NamedSharding):
  """``jax.device_put`` that also works for PRNG keys and committed arrays across processes."""
  if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(_put(jax.random.key_data(leaf), sharding),
                                    impl=jax.random.key_impl(leaf))
  if jax.process_count() > 1 and not (isinstance(leaf, jax.Array) and
                                      not leaf.is_fully_addressable):
    # Every process holds the same host value (same data, same seeds) and fills its own devices.
    # device_put would first check that the values agree: an all-gather of the whole dataset.
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
  return jax.device_put(leaf, sharding)


def param_shardings(tree, mesh: Mesh, min_size: int):
  """Shardings for ``tree``: 2-D leaves of more than ``min_size`` elements split over "data".

  A big kernel is split along its largest axis that the device count divides; everything else
  (and a kernel with no such axis) is replicated. Adam's moments have their parameters' shapes,
  so applying this to a whole TrainState shards them alike.
  """
  n = mesh.devices.size

  def sharding(leaf):
    shape = getattr(leaf, "shape", ())
    if n > 1 and len(shape) == 2 and np.prod(shape) > min_size:
      for axis in sorted(range(2), key=lambda a: -shape[a]):
        if shape[axis] % n == 0:
          # P("data") and P(None, "data"): the specs jit gives its outputs, so a donated
          # state comes back with the same shardings and the step does not recompile.
          return NamedSharding(mesh, PartitionSpec(*[None] * axis, DATA))
    return replicated(mesh)

  return jax.tree.map(sharding, tree)


def shard_replicas(tree, mesh: Mesh, axes=None):
  """Every leaf's leading (replica) axis split over "data"; ``axes`` (a prefix tree of 0 /
  None, as for ``jax.vmap``) leaves the subtrees marked None replicated."""
  if axes is None:
    return jax.tree.map(lambda leaf: _put(leaf, batch_sharding(mesh)), tree)
  return {name: shard_replicas(sub, mesh) if axes[name] == 0 else replicate(sub, mesh)
          for name, sub in tree.items()}


def shard_params(tree, mesh: Mesh, min_size: int):
  """``tree`` placed with ``param_shardings`` (big 2-D kernels sharded, the rest replicated)."""
  return jax.tree.map(_put, tree, param_shardings(tree, mesh, min_size))


def local_rows(global_batch_size: int) -> slice:
  """The rows of each global batch that this process feeds: its block, by process index.

  ``global_batch`` lays them on this process's devices. Wherever those sit in the mesh, the
  global batch holds the same groups, and a step only sums over them, so results do not depend
  on the order.
  """
  count, index = jax.process_count(), jax.process_index()
  if global_batch_size % count:
    raise ValueError(f"a global batch of {global_batch_size} groups does not split over "
                     f"{count} processes; use a multiple of {count}")
  local = global_batch_size // count
  return slice(index * local, (index + 1) * local)


def global_batch(idx_local_BxK, weight_local_B, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
  """Process-local rows (``local_rows``) → global (B, K) / (B,) arrays sharded along "data"."""
  sharding = batch_sharding(mesh)
  rows = np.shape(idx_local_BxK)[0] * jax.process_count()
  idx_BxK = jax.make_array_from_process_local_data(
      sharding, np.asarray(idx_local_BxK, np.int32), (rows,) + np.shape(idx_local_BxK)[1:])
  weight_B = jax.make_array_from_process_local_data(
      sharding, np.asarray(weight_local_B, np.float32), (rows,))
  return idx_BxK, weight_B


def steps_sharding(mesh: Mesh, leading: int = 1) -> NamedSharding:
  """A stack of batches (steps first, after any replica axis): the batch axis, the one after
  the ``leading`` axes, split over "data"."""
  return NamedSharding(mesh, PartitionSpec(*(None,) * leading, DATA))


def global_steps(idx_local_SxBxK, weight_local_SxB, mesh: Mesh, *scalars,
                 replica_sharded: bool = False) -> tuple[jax.Array, ...]:
  """A whole epoch (or split) of process-local batches → global (S, B, K) / (S, B) arrays with
  the batch axis sharded along "data", plus ``scalars`` replicated: one transfer for all its
  steps. Returns (idx_SxBxK, weight_SxB, *scalars). A replicated run's epoch has a replica
  axis in front, (R, S, B, K) / (R, S, B), sharded the same way along B, or with
  ``replica_sharded`` (``replicas.shard``, one process) along R instead."""
  idx_local_SxBxK = np.asarray(idx_local_SxBxK, np.int32)
  weight_local_SxB = np.asarray(weight_local_SxB, np.float32)
  sharding = (batch_sharding(mesh) if replica_sharded
              else steps_sharding(mesh, weight_local_SxB.ndim - 1))
  if jax.process_count() == 1:  # one device_put for the lot: a third cheaper than three
    return tuple(jax.device_put((idx_local_SxBxK, weight_local_SxB, *scalars),
                                (sharding, sharding) + (replicated(mesh),) * len(scalars)))
  *leading, local_rows, k = idx_local_SxBxK.shape
  rows = local_rows * jax.process_count()
  idx_SxBxK = jax.make_array_from_process_local_data(sharding, idx_local_SxBxK,
                                                     (*leading, rows, k))
  weight_SxB = jax.make_array_from_process_local_data(sharding, weight_local_SxB,
                                                      (*leading, rows))
  return (idx_SxBxK, weight_SxB, *replicate(scalars, mesh))


def is_main_process() -> bool:
  """Only process 0 writes metrics, plots, summaries and logs."""
  return jax.process_index() == 0


def agree(flag: bool) -> bool:
  """Process 0's ``flag`` on every process (decisions on a clock must be the same everywhere:
  a checkpoint save is collective)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(multihost_utils.broadcast_one_to_all(np.bool_(flag)))


def wait_for_all_processes(name: str) -> None:
  """A barrier across processes (none with one process): e.g. the others must not write into a
  workdir before the first has checked, cleared (``--overwrite``) and claimed it."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def collective_bytes(hlo_text: str) -> dict[str, int]:
  """Bytes produced per device per call by each kind of collective in a compiled HLO module.

  ``hlo_text`` is ``jitted.lower(*args).compile().as_text()``; for the data-parallel train step
  the "all-reduce" entry is the gradient (and metric-count) traffic of one step.
  """
  totals = dict.fromkeys(COLLECTIVES, 0)
  for line in hlo_text.splitlines():
    match = _COLLECTIVE_RE.search(line)
    if match is None:
      continue
    for dtype, dims in _ARRAY_RE.findall(match.group(1)):
      size = int(np.prod([int(d) for d in dims.split(",") if d]))
      totals[match.group(2)] += size * _dtype_bytes(dtype)
  return totals


def _dtype_bytes(hlo_dtype: str) -> int:
  """Bytes per element of an HLO element type: f32 → 4, bf16 → 2, f8e4m3fn → 1, pred → 1."""
  bits = re.match(r"[a-z]+(\d+)", hlo_dtype)
  return 1 if hlo_dtype == "pred" else (int(bits.group(1)) + 7) // 8 if bits else 0
