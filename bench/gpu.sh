#!/usr/bin/env bash
# The GPU run of the capacity work, for a machine with an NVIDIA GPU (run from the repo root):
#   1. installs the GPU extra (`pip install -e ".[gpu]"`; WHEELS=DIR installs from a folder of
#      wheels instead, for machines without a network) — tensorrt backend only,
#   2. exports the shipped network with TensorRT plans (`trainer/run.py export`, which checks every
#      plan against torch: fp32 <= 1e-3, fp16 <= 2e-2) — tensorrt backend only — and checks the
#      backend's embeddings against ONNX Runtime fp32 (mean cosine >= 0.999),
#   3. measures encoder windows/s on the GPU (bench/backend_windows.py),
#   4. measures streams through the real stack (`scoreid up` with the backend on the GPU,
#      bench/stack_streams.py with the load spread over processes) at rising N.
# `--backend torch` runs the network with PyTorch on CUDA in fp16 (`encoder.backend: torch`,
# `device: cuda`, `precision: fp16`): no install beyond PyTorch, for machines where TensorRT cannot
# be installed. Results land in OUT (default bench/results/gpu[-torch]). `--cpu-rehearsal` runs the
# same steps on the CPU (tensorrt -> the ONNX backend, torch -> torch fp32 on the CPU) with small N
# (no install, no plans): what CI-class machines can check.
#
#   bench/gpu.sh [--cpu-rehearsal] [--backend tensorrt|torch] [--model DIR] [--out DIR]
#                [--streams "1000 2000 5000 10000"] [--seconds 20]
#                [--work DIR] [--loadgen-procs N]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=""
STREAMS="1000 2000 5000 10000"
SECONDS_PER_STEP=20
REHEARSAL=0
BACKEND=tensorrt
MODEL=models/default
WORK=""
PROCS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-rehearsal) REHEARSAL=1; STREAMS="4 8"; SECONDS_PER_STEP=5 ;;
    --backend) BACKEND=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --out) OUT=$2; shift ;;
    --streams) STREAMS=$2; shift ;;
    --seconds) SECONDS_PER_STEP=$2; shift ;;
    --work) WORK=$2; shift ;;
    --loadgen-procs) PROCS=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$BACKEND" in tensorrt|torch) ;; *) echo "gpu.sh: --backend must be tensorrt or torch" >&2; exit 2 ;; esac
SUFFIX=$([ "$BACKEND" = torch ] && echo -torch || true)
[ -n "$OUT" ] || OUT=bench/results/gpu$([ "$REHEARSAL" = 1 ] && echo -rehearsal || true)$SUFFIX
RUN_BACKEND=$BACKEND; PRECISION=fp16; DEVICE=cuda; EXPORT_FLAGS=()
if [ "$REHEARSAL" = 1 ]; then
  [ "$BACKEND" = tensorrt ] && RUN_BACKEND=onnx
  PRECISION=""; DEVICE=cpu; EXPORT_FLAGS=(--no-tensorrt); PROCS=${PROCS:-2}
else
  command -v nvidia-smi >/dev/null || { echo "gpu.sh: no nvidia-smi: not a GPU machine (try --cpu-rehearsal)" >&2; exit 2; }
  PROCS=${PROCS:-16}
fi
[ "$RUN_BACKEND" = onnx ] && DEVICE=""
mkdir -p "$OUT"
if [ "$REHEARSAL" = 0 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
if [ "$BACKEND" = tensorrt ]; then
  if [ "$REHEARSAL" = 0 ]; then
    echo "gpu.sh: 1/4 the GPU extra"
    if [ -n "${WHEELS:-}" ]; then
      "$PY" -m pip install --no-index --find-links "$WHEELS" -e ".[gpu]"
    else
      "$PY" -m pip install -e ".[gpu]"
    fi
  fi
  echo "gpu.sh: 2/4 export ($RUN_BACKEND) with parity checks -> $OUT/model"
  "$PY" trainer/run.py export --model "$MODEL/model.pt" --out "$OUT/model" --int8-calibration 0 \
    "${EXPORT_FLAGS[@]}" 2>&1 | tee "$OUT/export.log"
  MODEL=$OUT/model
else
  echo "gpu.sh: 1-2/4 torch backend: no install, no export; $MODEL as exported"
fi
echo "gpu.sh: parity of $RUN_BACKEND ${PRECISION:-fp32} on ${DEVICE:-cpu} with ONNX Runtime fp32"
"$PY" - "$MODEL" "$RUN_BACKEND" "$PRECISION" "$DEVICE" <<'PYEOF' | tee "$OUT/parity.txt"
import sys
import numpy as np
from scoreid.inference import load_model
from scoreid.tensors import audio_input_shape, sheet_input_shape
model, backend, precision, device = sys.argv[1], sys.argv[2], sys.argv[3] or None, sys.argv[4] or None
ref = load_model(model, backend="onnx")
got = load_model(model, backend=backend, precision=precision, device=device)
rng = np.random.default_rng(0)
a = rng.random((64, *audio_input_shape(ref.contract.audio_window_frames)), dtype=np.float32)
s = (rng.random((64, *sheet_input_shape())) < 0.1).astype(np.float32)
for name, x, f, g in (("audio", a, ref.embed_audio, got.embed_audio), ("sheet", s, ref.embed_sheet, got.embed_sheet)):
    e, h = f(x), g(x)
    cos = float(np.mean(np.sum(e * h, axis=1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(h, axis=1))))
    print(f"{name}: {backend} {precision or 'fp32'} on {device or 'default'} vs onnx fp32: mean cosine {cos:.6f}, "
          f"max |diff| {np.abs(e - h).max():.2e}")
    if cos < 0.999:
        sys.exit(f"parity: {name} embeddings differ (mean cosine {cos:.4f} < 0.999)")
PYEOF
echo "gpu.sh: 3/4 encoder windows/s"
"$PY" -m bench.backend_windows --model "$MODEL" --backend "$RUN_BACKEND" ${PRECISION:+--precision "$PRECISION"} \
  ${DEVICE:+--device "$DEVICE"} --batches 1 64 256 1024 --out "$OUT/windows.json"
echo "gpu.sh: 4/4 streams through the stack ($STREAMS)"
MAX=$(echo $STREAMS | tr ' ' '\n' | sort -n | tail -1)
# shellcheck disable=SC2086
"$PY" -m bench.stack_streams --model "$MODEL" --backend "$RUN_BACKEND" ${PRECISION:+--precision "$PRECISION"} \
  ${DEVICE:+--device "$DEVICE"} --streams $STREAMS --seconds "$SECONDS_PER_STEP" --chunk 0.5 \
  --max-batch 1024 --loadgen-procs "$PROCS" --max-sessions "$MAX" --work "${WORK:-$OUT/stack}" --out "$OUT/streams.json"
echo "gpu.sh: done; results in $OUT"
