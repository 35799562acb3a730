#!/usr/bin/env bash
# Assemble what bench/gpu.sh needs on a GPU machine that has CUDA, PyTorch, numpy, ONNX Runtime,
# PyYAML and prometheus-client but no package index (an offline CUDA image), into DIR:
#   DIR/wheels  the project's other runtime packages for that machine's Python (--python, default
#               3.12), at the versions of this checkout's .venv;
#   DIR/redis   redis-server and the shared libraries it links beyond libc (bin/redis-server runs it);
#   DIR/work    the stack benchmark's pieces, library (built here with --model) and performances,
#               so nothing there needs the engraver;
#   DIR/run.sh  the run there: installs the wheels under /tmp/site, puts redis on PATH and calls
#               bench/gpu.sh --backend torch with the prepared work (any further flags pass on).
#
#   bench/gpu_bundle.sh DIR [--python 3.12] [--model models/default]
#   then, on the GPU machine, from the repo root:  bash DIR/run.sh --out bench/results/gpu-torch
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,14p' "$0"; exit 2; }
DIR=$1; shift
PYVER=3.12
MODEL=models/default
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYVER=$2; shift ;;
    --model) MODEL=$2; shift ;;
    *) echo "gpu_bundle.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$DIR/wheels" "$DIR/redis/bin" "$DIR/redis/lib"
PKGS="redis grpcio grpcio-health-checking grpcio-reflection protobuf soundfile soxr cffi pycparser"
# shellcheck disable=SC2046
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$DIR/wheels" \
  $("$PY" -c 'import sys; from importlib.metadata import version; print(" ".join(f"{p}=={version(p)}" for p in sys.argv[1:]))' $PKGS)
exe=$(command -v redis-server) || { echo "gpu_bundle.sh: redis-server is not installed here" >&2; exit 2; }
cp "$exe" "$DIR/redis/lib/redis-server.real"
for lib in $(ldd "$exe" | awk '/=>/ {print $3}'); do
  case $(basename "$lib") in libc.so.*|libm.so.*|libstdc++.so.*|libgcc_s.so.*) ;; *) cp -L "$lib" "$DIR/redis/lib/" ;; esac
done
cat > "$DIR/redis/bin/redis-server" <<'SH'
#!/bin/sh
d=$(cd "$(dirname "$0")/../lib" && pwd)
LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/redis-server.real" "$@"
SH
chmod +x "$DIR/redis/bin/redis-server"
"$PY" -m bench.stack_streams --model "$MODEL" --work "$DIR/work" --prepare-only
rm -rf "$DIR/work/state" "$DIR/work/scoreid.yaml"
cat > "$DIR/run.sh" <<SH
#!/usr/bin/env bash
# made by bench/gpu_bundle.sh; run from the repo root on the GPU machine
set -euo pipefail
B=\$(cd "\$(dirname "\$0")" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "\$B"/wheels/*.whl
export PYTHONPATH=/tmp/site\${PYTHONPATH:+:\$PYTHONPATH} PATH=\$B/redis/bin:\$PATH PYTHON=\${PYTHON:-python3}
exec bash bench/gpu.sh --backend torch --model "$MODEL" --work "\$B/work" "\$@"
SH
chmod +x "$DIR/run.sh"
du -sh "$DIR"
echo "gpu_bundle.sh: $DIR ready; on the GPU machine: bash $DIR/run.sh [gpu.sh flags]"
