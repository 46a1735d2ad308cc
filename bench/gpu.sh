#!/usr/bin/env bash
# The GPU check, as one prepared script: run it on a machine with an NVIDIA GPU (CUDA 12) from
# the repository root. Everything it measures goes to $OUT (default bench/out/gpu-<date>).
#
#   OUT=/tmp/gpu-figures bash bench/gpu.sh            # everything (about 10-15 minutes)
#   QUICK=1 bash bench/gpu.sh                         # smaller photo sets
#
# What it does, each step writing its own file so that a failing step leaves the others:
#  1. environment.txt: nvidia-smi, the providers onnxruntime offers, faiss's GPU count;
#  2. pytest-gpu.txt: the GPU tests (tests marked `gpu`: CUDA engine = CPU engine, FAISS GPU);
#  3. engine-<provider>.json: bench/engine.py (--quick, det+rec, batch-size sweep) on the CUDA
#     provider and on TensorRT fp16 (engines cached in $FACEPIPE_HOME/tensorrt-cache: the first
#     run builds them, the file engine-tensorrt-warm.json is the second, cached run);
#  4. batches-<provider>.json: images/s per det_batch_size x embed_batch_size on the GPU;
#  5. bigphotos-<provider>.json: 12 MP photos end to end (decode -> faces), full vs reduced
#     decode (bench/bigphotos.py), which says whether the decoder or the GPU is the wall;
#  6. faiss-gpu.txt: the FAISS reindex/search test on GPU and a 100k-vector build timing;
#  7. gpu-memory.csv: nvidia-smi memory samples (1 per second) over the whole run.
#
# Needs: python3.11, pip access to PyPI (onnxruntime-gpu, faiss-gpu-cu12, tensorrt-cu12), and
# the photos: ../shared/data/faces (dev, hard, lfw-dev) if present, else the package photos.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT="${OUT:-bench/out/gpu-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
export FACEPIPE_HOME="${FACEPIPE_HOME:-$PWD/.gpu-home}"
VENV="${VENV:-.venv-gpu}"
PY="$VENV/bin/python"
log() { echo "[gpu.sh $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/steps.log"; }
step() { # step NAME CMD...: run, keep going on failure, record the status
    local name="$1"; shift
    log "start $name"
    if "$@" >"$OUT/$name.txt" 2>&1; then log "ok $name"; else log "FAILED $name (rc $?)"; fi
}

if ! command -v nvidia-smi >/dev/null; then
    log "no nvidia-smi: this is not a GPU machine"; exit 2
fi
nvidia-smi --query-gpu=timestamp,name,memory.used,memory.total,utilization.gpu \
    --format=csv -l 1 >"$OUT/gpu-memory.csv" 2>/dev/null &
SMI_PID=$!
trap 'kill $SMI_PID 2>/dev/null' EXIT

if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3.11 -m venv "$VENV" || python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e '.[dev,bench,quantize]'
    # The GPU builds replace the CPU ones in the same module folders.
    "$PY" -m pip uninstall --quiet -y onnxruntime faiss-cpu
    "$PY" -m pip install --quiet onnxruntime-gpu faiss-gpu-cu12 tensorrt-cu12 || \
        "$PY" -m pip install --quiet onnxruntime-gpu faiss-gpu-cu12
fi

step environment bash -c "nvidia-smi; $PY - <<'PY'
import onnxruntime as ort, faiss
print('onnxruntime', ort.__version__, ort.get_available_providers())
print('faiss', faiss.__version__, 'gpus', faiss.get_num_gpus())
try:
    import tensorrt
    print('tensorrt', tensorrt.__version__)
except ImportError as exc:
    print('tensorrt: not installed', exc)
PY"

step pytest-gpu "$PY" -m pytest -q -m gpu tests/test_engine_gpu.py tests/test_index_engines.py

FACES=../shared/data/faces
if [ -d "$FACES/dev" ]; then PHOTOS="$FACES/dev"; else
    PHOTOS="$($PY -c 'from pipeline.models.pack import vectron_model_dir as d; print(d())')"; fi
LIMIT=(); [ -n "${QUICK:-}" ] && LIMIT=(--limit 40)

for provider in cuda tensorrt; do
    case $provider in
        cuda) PROVIDERS='["CUDAExecutionProvider","CPUExecutionProvider"]' ;;
        tensorrt) PROVIDERS='["TensorrtExecutionProvider","CUDAExecutionProvider","CPUExecutionProvider"]' ;;
    esac
    export FACEPIPE_PROVIDERS="$PROVIDERS"
    step "engine-$provider" "$PY" -m bench.engine --photos "$PHOTOS" "${LIMIT[@]}" --quick --json \
        --out "$OUT/engine-$provider"
    if [ "$provider" = tensorrt ]; then  # the second run loads the cached engines
        step engine-tensorrt-warm "$PY" -m bench.engine --photos "$PHOTOS" "${LIMIT[@]}" --quick \
            --json --out "$OUT/engine-tensorrt-warm"
    fi
    step "batches-$provider" "$PY" - "$PHOTOS" "$OUT/batches-$provider.json" <<'PY'
import json, sys, time
from pathlib import Path
from pipeline.config import get_settings
from pipeline.engine import FaceEngine
photos = sorted(str(p) for p in Path(sys.argv[1]).rglob("*.jpg"))[:200]
rows = []
for det in (1, 8, 16, 32):
    for emb in (8, 32, 64, 128):
        s = get_settings().model_copy(update={"det_batch_size": det, "embed_batch_size": emb})
        engine = FaceEngine.from_settings(s)
        list(engine.analyze_stream(photos[:8]))
        start = time.perf_counter()
        faces = sum(len(o.analysis.faces) for o in engine.analyze_stream(photos) if o.analysis)
        rows.append({"det_batch": det, "embed_batch": emb, "faces": faces,
                     "images_per_s": round(len(photos) / (time.perf_counter() - start), 2)})
        print(rows[-1], flush=True)
Path(sys.argv[2]).write_text(json.dumps(rows, indent=1))
PY
    step "bigphotos-$provider" "$PY" -m bench.bigphotos --faces "$FACES" ${QUICK:+--limit 30} \
        --json --out "$OUT/bigphotos-$provider"
done
unset FACEPIPE_PROVIDERS

step faiss-gpu "$PY" - <<'PY'
import time, numpy as np, faiss
print("gpus", faiss.get_num_gpus())
x = np.random.default_rng(0).standard_normal((100_000, 512)).astype("float32")
faiss.normalize_L2(x)
for name, index in (("cpu flat", faiss.IndexFlatIP(512)),):
    start = time.perf_counter(); index.add(x); build = time.perf_counter() - start
    start = time.perf_counter(); index.search(x[:1000], 5); search = time.perf_counter() - start
    print(name, f"add {build:.3f}s search 1000 {search:.3f}s")
    if faiss.get_num_gpus():
        gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        gpu.search(x[:10], 5)
        start = time.perf_counter(); gpu.search(x[:1000], 5); gs = time.perf_counter() - start
        print("gpu flat", f"search 1000 {gs:.3f}s")
PY
log "figures in $OUT"
