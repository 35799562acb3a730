#!/usr/bin/env bash
# Reproduces the shipped model `models/default` from the repository and ../shared/corpora alone:
#   1. the aligned corpus (all of ../shared/corpora, 2 looks x 2 performances per piece),
#   2. the unlabeled music21 pool for pre-training (never a work of the aligned corpus),
#   3. the `cpu` preset pipeline: pre-train both encoders, fine-tune, CCA refit, evaluate
#      (`same` and `shifted`), export ONNX + manifest + eval JSONs to models/default.
# Every step is resumable: run it again after an interruption and it continues where it stopped
# (the corpus builder skips finished pieces; the pipeline skips finished stages). The corpus build
# is deterministic, so a rebuilt corpus is byte-identical to the one a resumed run started on.
#
#   trainer/reproduce_default.sh [DATA_DIR] [RUNS_DIR]     (defaults: data/ and runs/cpu/)
#
# Time on an idle 2-core machine: corpus ~25 min, pool ~20-30 min, pipeline ~1 h 45 min.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data}
RUNS=${2:-runs/cpu}
CORPORA=${SCOREID_CORPORA:-../shared/corpora}
PY=${PYTHON:-.venv/bin/python}
[ -d "$CORPORA" ] || { echo "reproduce: no corpora at $CORPORA (set SCOREID_CORPORA)" >&2; exit 2; }

ok_or_skipped() {  # the corpus builder exits 3 when some files were skipped (reasons are logged)
  local rc=0; "$@" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then exit "$rc"; fi
}

echo "reproduce: 1/3 aligned corpus -> $DATA/corpus"
sources=(); for d in "$CORPORA"/*/; do sources+=(--source "${d%/}"); done
ok_or_skipped "$PY" trainer/run.py corpus build "${sources[@]}" \
  --out "$DATA/corpus" --workers 2 --looks 2 --performances 2 --seed 0

echo "reproduce: 2/3 unlabeled pool -> $DATA/pool"
pool_sources=()
for c in bach beethoven mozart haydn schumann_robert schumann_clara schubert handel corelli cpebach \
         weber monteverdi chopin joplin beach; do
  pool_sources+=(--source "music21:$c/*")
done
ok_or_skipped "$PY" trainer/run.py corpus build --unaligned "${pool_sources[@]}" \
  --exclude "$DATA/corpus" --limit 150 --looks 1 --performances 1 --out "$DATA/pool" --workers 2 --seed 0

echo "reproduce: 3/3 cpu pipeline -> $RUNS, export -> models/default"
"$PY" trainer/run.py pipeline --preset cpu --data "$DATA/corpus" --pool "$DATA/pool" \
  --out "$RUNS" --export models/default
echo "reproduce: done; models/default holds the model, its manifest and eval-same/eval-shifted JSONs"
