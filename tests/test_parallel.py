"""Data parallelism on 4 virtual CPU devices: sharded steps equal the one-device steps."""
import functools
import logging

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec

from lcc_jax import erasure, optim, parallel, steps
from tests.helpers import tiny_code, tiny_data

K = 2
GLOBAL_BATCH = 8
_DIST_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID",
             "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS",
             "OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_SIZE", "TPU_PROCESS_ADDRESSES",
             "TPU_WORKER_HOSTNAMES")


def _batches():
  """Four global batches of 8 groups over the 12 groups of tiny_data; the last one padded."""
  rng = np.random.default_rng(0)
  out = []
  for num_real in (8, 8, 8, 5):
    groups = rng.permutation(12)[:GLOBAL_BATCH]
    weight_B = (np.arange(GLOBAL_BATCH) < num_real).astype(np.float32)
    out.append(((groups[:, None] * K + np.arange(K)).astype(np.int32), weight_B))
  return out


@pytest.fixture(scope="module", autouse=True)
def _fast_compiles():
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


@functools.cache
def _tiny():
  """The tiny code, its variables and data; arrays on the host, as steps donate their inputs."""
  code, variables = tiny_code(k=K)
  return code, jax.device_get(variables), jax.device_get(tiny_data(code, variables, k=K))


def _setup():
  code, variables, data = _tiny()
  tx = optim.make_tx("adam", lr=1e-2)
  state, frozen = steps.init_state(variables, ("encoder", "decoder"), tx, jax.random.key(3))
  return code, tx, state, frozen, data, erasure.patterns(K, 1)


def _train(state, frozen, data, unavail_PxN, code, tx, place_batch):
  step = steps.jit_train_step(code, tx, "kl")
  with jax.log_compiles(True), _CompileLog() as log:
    for idx_BxK, weight_B in _batches():
      state, _ = step(state, frozen, data, *place_batch(idx_BxK, weight_B), unavail_PxN)
  assert log.count("jit(train_step)") == 1  # shardings survive donation: no recompilation
  return state, step


class _CompileLog(logging.Handler):
  """Collects JAX's "Finished XLA compilation of ..." log lines while active."""

  def __enter__(self):
    self.messages = []
    logging.getLogger("jax").addHandler(self)
    return self

  def __exit__(self, *exc):
    logging.getLogger("jax").removeHandler(self)

  def emit(self, record):
    if record.getMessage().startswith("Finished XLA compilation"):
      self.messages.append(record.getMessage())

  def count(self, name):
    return sum(name in m for m in self.messages)


def _evaluate(state, frozen, data, unavail_PxN, code, idx_BxK, weight_B):
  return steps.jit_eval_step(code, "kl")(state.params, state.model_state, frozen, data, idx_BxK,
                                         weight_B, unavail_PxN)


@pytest.fixture(scope="module")
def one_device():
  """Parameters and evaluation counts of the plain one-device run."""
  code, tx, state, frozen, data, unavail_PxN = _setup()
  state, _ = _train(state, frozen, data, unavail_PxN, code, tx, lambda i, w: (i, w))
  idx_BxK, weight_B = _batches()[-1]
  counts = _evaluate(state, frozen, data, unavail_PxN, code, idx_BxK, weight_B)
  return jax.device_get(state.params), jax.device_get(counts)


def _sharded_run(min_size=None):
  code, tx, state, frozen, data, unavail_PxN = _setup()
  mesh = parallel.make_mesh()
  if min_size is None:
    state = parallel.replicate(state, mesh)
  else:
    state = parallel.shard_params(state, mesh, min_size)
  shardings = jax.tree.map(lambda leaf: leaf.sharding, state)
  frozen, data, unavail_PxN = parallel.replicate((frozen, data, unavail_PxN), mesh)
  rows = parallel.local_rows(GLOBAL_BATCH)

  def place(idx_BxK, weight_B):
    return parallel.global_batch(idx_BxK[rows], weight_B[rows], mesh)

  state, step = _train(state, frozen, data, unavail_PxN, code, tx, place)
  for before, leaf in zip(jax.tree.leaves(shardings), jax.tree.leaves(state)):
    assert before.is_equivalent_to(leaf.sharding, leaf.ndim), (before, leaf.sharding)
  last_batch = place(*_batches()[-1])
  counts = _evaluate(state, frozen, data, unavail_PxN, code, *last_batch)
  with jax.log_compiles(True), _CompileLog() as log:
    hlo = step.lower(state, frozen, data, *last_batch, unavail_PxN).compile().as_text()
  assert log.count("jit(train_step)") == 0  # the step that ran, not a new compilation
  return state, counts, hlo


def test_mesh_spans_four_devices_with_auto_axes():
  mesh = parallel.make_mesh()
  assert jax.device_count() == 4
  assert mesh.shape == {"data": 4}
  assert mesh.axis_types == (AxisType.Auto,)
  assert parallel.local_rows(GLOBAL_BATCH) == slice(0, GLOBAL_BATCH)
  assert parallel.is_main_process()


def test_global_batch_puts_two_rows_on_each_device():
  mesh = parallel.make_mesh()
  idx_BxK, weight_B = _batches()[0]
  idx, weight = parallel.global_batch(idx_BxK, weight_B, mesh)
  assert idx.sharding.spec == PartitionSpec("data") and idx.dtype == np.int32
  assert sorted(tuple(s.data.shape) for s in idx.addressable_shards) == [(2, K)] * 4
  np.testing.assert_array_equal(np.asarray(idx), idx_BxK)
  np.testing.assert_array_equal(np.asarray(weight), weight_B)


def test_sharded_train_steps_match_one_device(one_device):
  params_ref, counts_ref = one_device
  state, counts, hlo = _sharded_run()
  for leaf in jax.tree.leaves(state.params):
    assert leaf.sharding.is_fully_replicated
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(state.params), params_ref)
  # Metric counts are exact: sums over the global batch, replicated, never averaged.
  for key, value in counts.items():
    assert value.sharding.is_fully_replicated, key
    if key != "loss_sum":
      np.testing.assert_array_equal(np.asarray(value), counts_ref[key], err_msg=key)
  np.testing.assert_allclose(counts["loss_sum"], counts_ref["loss_sum"], rtol=1e-5)
  assert int(counts["base_n"]) == 5 * K  # padding rows were ignored across devices
  # The only communication: gradients of E and D (F has none) and per-pattern metric sums.
  traffic = parallel.collective_bytes(hlo)
  grad_bytes = 4 * sum(leaf.size for leaf in jax.tree.leaves(state.params))
  assert grad_bytes <= traffic["all-reduce"] <= grad_bytes + 4 * 16 * erasure.patterns(K, 1).size
  assert traffic["all-gather"] == traffic["reduce-scatter"] == traffic["all-to-all"] == 0


def test_sharded_big_kernels_match_replicated(one_device):
  params_ref, counts_ref = one_device
  # tiny_code's encoder kernels are (32, 32) and (32, 16), over 256 entries; the decoder's not.
  state, counts, _ = _sharded_run(min_size=256)
  kernel = state.params["encoder"]["_Dense_0"]["Dense_0"]["kernel"]
  assert kernel.sharding.spec == PartitionSpec("data")
  assert [s.data.shape for s in kernel.addressable_shards] == [(8, 32)] * 4
  mu = state.opt_state[1][0].mu["encoder"]["_Dense_0"]["Dense_0"]["kernel"]
  assert mu.sharding.spec == PartitionSpec("data")  # Adam's moments are sharded alike
  assert state.params["decoder"]["_Dense_0"]["Dense_0"]["kernel"].sharding.is_fully_replicated
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(state.params), params_ref)
  np.testing.assert_array_equal(counts["recon_top1"], counts_ref["recon_top1"])


def test_param_shardings_split_the_largest_divisible_axis():
  mesh = parallel.make_mesh()
  tree = {"wide": np.zeros((6, 8)), "tall": np.zeros((12, 8)), "odd": np.zeros((6, 6)),
          "vector": np.zeros(64), "at_limit": np.zeros((4, 5))}
  specs = {k: s.spec for k, s in parallel.param_shardings(tree, mesh, min_size=20).items()}
  assert specs == {"wide": PartitionSpec(None, "data"), "tall": PartitionSpec("data"),
                   "odd": PartitionSpec(), "vector": PartitionSpec(), "at_limit": PartitionSpec()}


def test_collective_bytes_reads_hlo_result_types():
  hlo = """
  %all-reduce.1 = (f32[15]{0}, bf16[8,15]{1,0}, /*index=2*/s32[]) all-reduce(%a, %b), channel_id=1
  %ag-start = (f32[2,4]{1,0}, f32[8,4]{1,0}) all-gather-start(%c), dimensions={0}
  %ag-done = f32[8,4]{1,0} all-gather-done(%ag-start)
  %add = f32[8,4]{1,0} add(%ag-done, %ag-done), metadata={op_name="all-reduce(x)"}
  """
  traffic = parallel.collective_bytes(hlo)
  assert traffic["all-reduce"] == 15 * 4 + 8 * 15 * 2 + 4
  assert traffic["all-gather"] == 8 * 4 * 4


@pytest.mark.parametrize("batch, fix", [(6, 8), (2, 4), (0, 4)])
def test_check_batch_names_the_field_and_a_fix(batch, fix):
  mesh = parallel.make_mesh()
  parallel.check_batch(8, mesh)
  with pytest.raises(ValueError, match=rf"data.batch_size={batch} is the global batch .*devices, "
                                       rf"4 .*--config.data.batch_size={fix}$"):
    parallel.check_batch(batch, mesh)
  with pytest.raises(ValueError, match="data.eval_batch_size=6"):
    parallel.check_batch(6, mesh, field="data.eval_batch_size")


def _dist(address="", num=-1, pid=-1):
  return ml_collections.ConfigDict({"coordinator_address": address, "num_processes": num,
                                    "process_id": pid})


@pytest.fixture
def clean_env(monkeypatch):
  for name in _DIST_ENV:
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


def test_distributed_settings_from_config_and_env(clean_env):
  assert parallel.distributed_settings(None) is None
  assert parallel.distributed_settings(_dist()) is None
  assert parallel.distributed_settings(_dist("host:1", 1, 0)) is None
  assert parallel.distributed_settings(_dist("host:1", 2, 1)) == ("host:1", 2, 1)
  clean_env.setenv("JAX_COORDINATOR_ADDRESS", "node0:1234")
  clean_env.setenv("JAX_NUM_PROCESSES", "4")
  clean_env.setenv("JAX_PROCESS_ID", "3")
  assert parallel.distributed_settings(None) == ("node0:1234", 4, 3)
  assert parallel.distributed_settings(_dist(pid=2)) == ("node0:1234", 4, 2)  # config wins


def test_distributed_settings_leave_cluster_fields_to_jax(clean_env):
  for name, value in [("SLURM_JOB_ID", "7"), ("SLURM_STEP_NODELIST", "n[1-2]"),
                      ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"), ("SLURM_NTASKS", "2")]:
    clean_env.setenv(name, value)
  assert parallel.distributed_settings(None) == (None, None, None)
  clean_env.setenv("SLURM_NTASKS", "1")
  assert parallel.distributed_settings(None) is None


@pytest.mark.parametrize("dist, message", [
    (_dist("host:1", 2, 2), r"process_id must be in \[0, 2\)"),
    (_dist("host:1", 0, 0), "num_processes must be >= 1"),
    (_dist("", 2, 0), r"missing \['coordinator_address'\]"),
    (_dist("host:1", 2), r"missing \['process_id'\]"),
])
def test_distributed_settings_reject_bad_fields(clean_env, dist, message):
  with pytest.raises(ValueError, match=message):
    parallel.distributed_settings(dist)


def test_bad_env_integer_is_named(clean_env):
  clean_env.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(ValueError, match="num_processes must be an integer, got 'two'"):
    parallel.distributed_settings(None)


def test_initialize_is_a_no_op_for_one_process(clean_env):
  parallel.initialize(None)
  parallel.initialize(_dist("localhost:1", 1, 0))
  assert not jax.distributed.is_initialized()
  assert jax.process_count() == 1
