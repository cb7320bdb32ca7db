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
step anyway. The entry points (train.py, ``python -m lcc_jax.evaluate``, the benchmarks) call
``keep_freed_memory`` before their first computation; a program that uses lcc_jax as a library
may call it too, or set ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``
in the environment. Only glibc has these settings; elsewhere this does nothing.
"""
from __future__ import annotations

import ctypes
import sys

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
