"""glibc malloc settings that let XLA:CPU reuse its per-execution buffers instead of refaulting.

XLA's CPU runtime allocates each execution's temporary buffer (every intermediate of a jitted
step: 105 MB for the conv encoder's k = 2 train step at batch 64) with ``posix_memalign`` from
one of its worker threads. glibc serves a block that large outside the thread's arena (whose
heaps hold 64 MB at most) by a fresh ``mmap`` and unmaps it on ``free``, so on every step the
kernel hands out and zero-fills all those pages again: 25,769 minor page faults per conv step,
about 15 % of its time on one core (BENCHMARKS.md, "Page faults"). With one arena (the main
one, which grows by ``brk`` without a size limit), no ``mmap`` for large blocks and no trimming
of the heap's top, a freed buffer stays in the heap and the next step reuses it: no faults.

The price: memory freed by the process is kept for its reuse rather than returned to the
system, so the resident size stays at its peak, which a training process reaches in its first
step anyway. The entry points (train.py, ``python -m lcc_jax.evaluation``, the benchmarks) call
``prepare_host`` before their first computation: on the CPU backend only (an accelerator's
buffers are not host memory, and keeping freed host memory would only cost there), it applies
these settings and the XLA:CPU flags the entry point asks for. A program that uses lcc_jax as
a library may call it too, or set ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=2147483647`` in the environment. Only glibc has these settings;
elsewhere they do nothing.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import sys
from typing import Iterable

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))


def keep_freed_memory() -> bool:
  """Applies the settings above; True if they took effect (Linux with glibc).

  Call it before the first computation: a thread picks its arena at its first allocation,
  and XLA's worker threads must take the main one.
  """
  if not sys.platform.startswith("linux"):
    return False
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # not glibc (e.g. musl)
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  return all(mallopt(param, value) == 1 for param, value in _SETTINGS)


def cpu_backend_expected() -> bool:
  """Whether JAX will compute on its CPU backend, told before the backend starts (no jax import).

  ``JAX_PLATFORMS`` decides when set; otherwise JAX takes an accelerator whose plugin is
  installed (CUDA, ROCm and TPU plugins register under the ``jax_plugins`` entry points, libtpu
  as a module). A plugin without a device falls back to the CPU unprepared: set
  ``JAX_PLATFORMS=cpu`` there.
  """
  platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME") or ""
  if platforms.strip():
    return platforms.split(",")[0].strip().lower() == "cpu"
  if importlib.metadata.entry_points(group="jax_plugins"):
    return False
  return importlib.util.find_spec("libtpu") is None


def prepare_host(cpu_xla_flags: Iterable[str] = ()) -> bool:
  """On the CPU backend: ``keep_freed_memory`` and ``cpu_xla_flags`` (appended to XLA_FLAGS
  unless already there); elsewhere nothing. True if it applied them. Call it before the first
  computation: both are read when the backend starts."""
  if not cpu_backend_expected():
    return False
  flags = os.environ.get("XLA_FLAGS", "")
  for flag in cpu_xla_flags:
    if flag.split("=", 1)[0] not in flags:
      flags = f"{flags} {flag}".strip()
  if flags:
    os.environ["XLA_FLAGS"] = flags
  keep_freed_memory()
  return True
