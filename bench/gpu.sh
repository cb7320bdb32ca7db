#!/usr/bin/env bash
# The GPU checks in one script: the loop benchmark, the precision table and a real train.py run.
#
#   bash bench/gpu.sh --prepare   # here (with the package registry): wheels and data to carry
#   bash bench/gpu.sh             # on the GPU machine, from the repository root
#
# --prepare downloads, into .whl/, the wheels of the packages of requirements.txt that the GPU
# image lacks (never jax or jaxlib: the image's CUDA build stays), for its Python 3.12, and
# copies the Fashion-MNIST files into .gpu_data/ when they are installed here (Debian's
# dataset-fashion-mnist); carry both (`carry: [".whl", ".gpu_data"]`). Without the files the
# benchmarks use synthetic files of Fashion-MNIST's sizes. On the GPU machine the script
# installs the wheels into /tmp/site, checks that JAX sees a GPU, then prints:
#   1. python -m bench --only loop,precision: the loop figures, and per precision (highest,
#      default = TF32, bfloat16) steps/s, epoch time against steps × the isolated step, compile
#      time, peak device memory, accuracy and the 500-epoch extrapolation;
#   2. python -m bench --only vs_torch: the step against PyTorch (eager and torch.compile);
#   3. python -m bench --only replicas --quick: 8 replicas in one program against 8 runs;
#   4. python train.py on Fashion-MNIST (configs/fashion_mnist_mlp.py, 20 epochs): its summary.
# Everything goes to $OUT (the device tool's output folder) or bench/results/gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MISSING=(tensorflow-datasets array-record ml-collections importlib_resources dm-tree
         immutabledict promise simple-parsing docstring-parser tensorflow-metadata termcolor toml
         googleapis-common-protos simpy)

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p .whl .gpu_data
  grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
  grep -qx '/.gpu_data/' .git/info/exclude || echo /.gpu_data/ >> .git/info/exclude
  for name in "${MISSING[@]}"; do
    pinned=$(grep -i "^${name}==" requirements.txt || true)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d .whl "${pinned:-$name}" 2>/dev/null \
      || python3 -m pip wheel -q --no-deps -w .whl "${pinned:-$name}"  # pure Python, sdist only
  done
  if [ -d /usr/share/datasets/fashion-mnist ]; then
    cp /usr/share/datasets/fashion-mnist/*.gz .gpu_data/
  fi
  du -sh .whl .gpu_data
  exit 0
fi

OUT_DIR=${OUT:-bench/results/gpu}
mkdir -p "$OUT_DIR"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # PyTorch shares the GPU in one process
DATA_FLAGS=()
if ls .gpu_data/*.gz >/dev/null 2>&1; then
  DATA_FLAGS=(--config.data.manual_dir="$PWD/.gpu_data" --config.data.data_dir=/tmp/tfds)
fi

"$PY" - <<'PYEOF'
import jax, flax, optax, orbax.checkpoint, tensorflow_datasets  # noqa: F401  (fails early)
print("jax", jax.__version__, jax.devices())
assert jax.default_backend() == "gpu", "no GPU visible to JAX"
PYEOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

"$PY" -m bench --threads "$(nproc)" --only loop,precision --out "$OUT_DIR/loop.json" \
  | tee "$OUT_DIR/loop.txt"
"$PY" -m bench --threads "$(nproc)" --only vs_torch --out "$OUT_DIR/vs_torch.json" \
  | tee "$OUT_DIR/vs_torch.txt" || echo "vs_torch failed (see above)"
"$PY" -m bench --quick --only replicas --out "$OUT_DIR/replicas.json" \
  | tee "$OUT_DIR/replicas.txt" || echo "replicas failed (see above)"
"$PY" train.py --config=configs/fashion_mnist_mlp.py:epochs=20 --workdir=/tmp/gpu_run \
  --noprogress --config.base_model.epochs=5 "${DATA_FLAGS[@]}" | tee "$OUT_DIR/train.txt"
cp /tmp/gpu_run/summary.json /tmp/gpu_run/metrics.jsonl "$OUT_DIR/" 2>/dev/null || true
