"""host_memory.keep_freed_memory: XLA:CPU's per-execution buffers are reused, not refaulted."""
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Minor page faults per call of a jitted function whose intermediates (32 MB each, kept apart by
# optimization barriers) make a temporary buffer larger than a glibc thread arena's heap.
_PROGRAM = """
import resource, sys
if sys.argv[1] == "keep":
  from lcc_jax import host_memory
  assert host_memory.keep_freed_memory()
import jax, jax.numpy as jnp

@jax.jit
def f(x, w):
  for _ in range(4):
    x = jax.lax.optimization_barrier(jnp.tanh(x @ w))
  return x.sum()

x, w = jnp.ones((8192, 1024)), jnp.full((1024, 1024), 1 / 1024)
f(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
  f(x, w).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


def _faults_per_call(mode: str) -> float:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-c", _PROGRAM, mode], env=env, capture_output=True,
                       text=True, timeout=300, check=True)
  return float(out.stdout.split()[-1])


# The jitted function's temporary buffer: 3 of its 32 MB intermediates live at once, 4 KiB pages.
_BUFFER_PAGES = 3 * 8192 * 1024 * 4 // 4096


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_stops_refaulting_xla_buffers():
  # The promise: with the settings in effect, a call reuses the memory the previous one freed,
  # so it faults on a small fraction of its buffer's pages at most.
  kept = _faults_per_call("keep")
  assert kept < _BUFFER_PAGES / 100, f"{kept:.0f} minor faults per call with keep_freed_memory"
  # Whether glibc's default settings re-fault the buffer is a property of the machine (its glibc,
  # kernel and memory settings): where they do not, there is nothing to compare against.
  default = _faults_per_call("default")
  if default < _BUFFER_PAGES / 2:
    pytest.skip(f"glibc's defaults do not re-fault XLA's buffer here ({default:.0f} faults per "
                f"call, {kept:.0f} with keep_freed_memory): nothing to compare")
  assert kept < default / 10


def test_host_settings_apply_on_the_cpu_backend_only(monkeypatch):
  from lcc_jax import host_memory
  applied = []
  monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: applied.append(1) or True)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
  assert not host_memory.prepare_host(cpu_xla_flags=("--xla_cpu_multi_thread_eigen=false",))
  assert not applied and "eigen" not in os.environ["XLA_FLAGS"]
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert host_memory.prepare_host(cpu_xla_flags=("--xla_cpu_multi_thread_eigen=false",))
  assert applied == [1]
  assert os.environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=4 "
                                     "--xla_cpu_multi_thread_eigen=false")
  # Unset: an installed accelerator plugin means JAX will take the accelerator.
  monkeypatch.delenv("JAX_PLATFORMS")
  monkeypatch.delenv("JAX_PLATFORM_NAME", raising=False)
  monkeypatch.setattr(host_memory.importlib.metadata, "entry_points",
                      lambda group: ["xla_cuda12"] if group == "jax_plugins" else [])
  assert not host_memory.cpu_backend_expected()
  monkeypatch.setattr(host_memory.importlib.metadata, "entry_points", lambda group: [])
  monkeypatch.setattr(host_memory.importlib.util, "find_spec", lambda name: None)
  assert host_memory.cpu_backend_expected()
