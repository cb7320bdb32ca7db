#!/usr/bin/env bash
# The benchmark table on a GPU machine (prepared for the H200 some sessions are lent; not run yet).
#
#   bash bench/gpu.sh            # on the GPU machine, from the repository root
#
# Uses that machine's own python3 (its image holds jax with CUDA, flax, optax and a CUDA torch;
# nothing can be installed there). Both sides compute in true float32 (JAX at "highest"
# precision, torch with its default, TF32 off), PyTorch runs on the GPU too, and the conv
# encoder uses XLA's (cuDNN) convolution (the matmul and hybrid ones timed beside it). Writes
# bench.json and bench.txt to $OUT (the device tool's output folder) or bench/results/; the
# printed table ends with the 500-epoch MNIST estimate (training steps only) and the headline
# JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-bench/results}
mkdir -p "$OUT_DIR"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false      # torch shares the GPU in the same process
export JAX_DEFAULT_MATMUL_PRECISION=highest     # no TF32, like torch's default

"$PY" - <<'PYEOF'
import jax, flax, optax  # noqa: F401  (fails here, early, if the image lacks one)
import torch
print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__,
      torch.cuda.is_available())
assert jax.default_backend() == "gpu", "no GPU visible to JAX"
PYEOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# All host cores (no affinity limit); ~3 min of device time with the default repeats.
"$PY" -m bench --threads "$(nproc)" --both_convs --out "$OUT_DIR/bench.json" \
  | tee "$OUT_DIR/bench.txt"
