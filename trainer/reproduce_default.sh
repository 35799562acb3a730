#!/usr/bin/env bash
# Reproduces the shipped model `models/default` from the repository and ../shared/corpora alone:
#   1. the aligned corpus (all of ../shared/corpora, 2 looks x 2 performances per piece; the works of
#      the real-performance validation set are left out of every split),
#   2. fine-tuning from scratch (no pre-training) with the `world` augmentation, a fixed step budget
#      (40 main + 6 refinement epochs, 1 thread, seed 0), as `RUNS/finetune-world`,
#   3. a second fine-tuning run warm-started from its weights (40 + 6 more epochs, seed 1), as
#      `RUNS/finetune-world2` -- the validation MRR was still rising when the first budget ended,
#   4. a third, warm-started from the second (40 + 6 more epochs, seed 2), as `RUNS/finetune-world3`,
#   5. a fourth, warm-started from the third (40 + 6 more epochs, seed 3), as `RUNS/finetune-world4`,
#   6. a fifth, warm-started from the fourth (40 + 6 more epochs, seed 4), as `RUNS/finetune-none`
#      (validation MRR 0.557 -> 0.686 -> 0.726 -> 0.753 -> 0.769 over the five),
#   7. a sixth, warm-started from the fifth with an audio lead of 20 frames (40 + 6 more epochs,
#      seed 5, 2 threads), as `RUNS/finetune-lead`: each notehead is paired with the audio window
#      centred 1 s before its onset, so the model matches the music 1.1 s before "now" instead of
#      2.1 s and the score follower extrapolates half as far (RESULTS.md "The audio lead, shipped"),
#   8. evaluate it on the test split (`same` and `shifted`) and export ONNX + manifest + eval JSONs
#      to models/default,
#   9. the hub bank (8192 training audio windows embedded by the exported model; the hub correction of
#      library search, scoreid/search/hubness.py) into models/default.
# Every step is resumable: run it again after an interruption and it continues where it stopped
# (the corpus builder skips finished pieces; a fine-tuning run resumes from its state.pt; the
# pipeline skips finished stages). The corpus build is deterministic, so a rebuilt corpus is
# byte-identical to the one a resumed run started on. Fine-tuning runs on 1 thread so the step
# budget, not the machine's speed, decides where it ends.
#
#   trainer/reproduce_default.sh [DATA_DIR] [RUNS_DIR]     (defaults: data/ and runs/cpu/)
#
# Time on an idle 2-core machine: corpus ~25 min, each fine-tuning run ~55-65 min (the sixth, on 2
# threads, ~35 min), evaluation and export ~25 min.
# (A runs directory of an earlier recipe holds its last stage as finetune-none: move it to
# finetune-world2 (two-stage recipe, before 2026-12-04), finetune-world3 (three-stage recipe,
# 2026-12-04) or finetune-world4 (four-stage recipe, 2026-12-05) before running this.)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data}
RUNS=${2:-runs/cpu}
CORPORA=${SCOREID_CORPORA:-../shared/corpora}
PY=${PYTHON:-.venv/bin/python}
[ -d "$CORPORA" ] || { echo "reproduce: no corpora at $CORPORA (set SCOREID_CORPORA)" >&2; exit 2; }
BUDGET=(--preset cpu --augment world --threads 1 --max-epochs 40 --time-budget 1e9 --refine-max-epochs 6 --refine-budget 1e9)

ok_or_skipped() {  # the corpus builder exits 3 when some files were skipped (reasons are logged)
  local rc=0; "$@" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then exit "$rc"; fi
}

finetune() {  # OUT [extra args]: a fine-tuning run, resumed if interrupted, skipped once finished
  local out=$1; shift
  [ -f "$out/model.pt" ] && return 0
  local resume=(); [ -f "$out/state.pt" ] && resume=(--resume)
  "$PY" trainer/run.py finetune "${BUDGET[@]}" --data "$DATA/corpus" --out "$out" "$@" "${resume[@]}"
}

echo "reproduce: 1/9 aligned corpus -> $DATA/corpus"
sources=(); for d in "$CORPORA"/*/; do sources+=(--source "${d%/}"); done
ok_or_skipped "$PY" trainer/run.py corpus build "${sources[@]}" \
  --out "$DATA/corpus" --workers 2 --looks 2 --performances 2 --seed 0

echo "reproduce: 2/9 fine-tuning -> $RUNS/finetune-world"
finetune "$RUNS/finetune-world" --seed 0

echo "reproduce: 3/9 fine-tuning, continued -> $RUNS/finetune-world2"
finetune "$RUNS/finetune-world2" --seed 1 --init-model "$RUNS/finetune-world"

echo "reproduce: 4/9 fine-tuning, continued again -> $RUNS/finetune-world3"
finetune "$RUNS/finetune-world3" --seed 2 --init-model "$RUNS/finetune-world2"

echo "reproduce: 5/9 fine-tuning, continued a third time -> $RUNS/finetune-world4"
finetune "$RUNS/finetune-world4" --seed 3 --init-model "$RUNS/finetune-world3"

echo "reproduce: 6/9 fine-tuning, continued a fourth time -> $RUNS/finetune-none"
finetune "$RUNS/finetune-none" --seed 4 --init-model "$RUNS/finetune-world4"

echo "reproduce: 7/9 fine-tuning with a 20-frame audio lead, continued -> $RUNS/finetune-lead"
finetune "$RUNS/finetune-lead" --seed 5 --threads 2 --init-model "$RUNS/finetune-none" --audio-lead-frames 20

echo "reproduce: 8/9 evaluate (test split) and export -> models/default"
LEAD="$RUNS/finetune-lead"
for cond in same shifted; do
  [ -f "$LEAD/eval-$cond.json" ] || "$PY" trainer/run.py eval --preset cpu --threads 2 --model "$LEAD" \
    --data "$DATA/corpus" --condition "$cond" --out "$LEAD/eval-$cond.json"
done
"$PY" trainer/run.py export --model "$LEAD" --data "$DATA/corpus" --out models/default
for f in eval-same.json eval-same.png eval-shifted.json eval-shifted.png; do cp "$LEAD/$f" models/default/; done
cp "$LEAD/metrics.csv" models/default/finetune-metrics.csv
cp "$LEAD/metrics.png" models/default/finetune-metrics.png

echo "reproduce: 9/9 hub bank -> models/default/hub-bank.npy"
"$PY" trainer/run.py hub-bank --model models/default --data "$DATA/corpus"
echo "reproduce: done; models/default holds the model, its manifest and eval-same/eval-shifted JSONs"
