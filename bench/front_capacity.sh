#!/bin/bash
# Issue 31: streaming capacity before (a782701, the last commit with the threaded and the asyncio
# fronts) and after (this checkout: one grpc.aio front), on one machine in one go, alternating so
# that drift shows. Run from the repository root on an idle machine; JSONs in $W (default /tmp/cap).
#   bench/front_capacity.sh [WORK_DIR]
set -euo pipefail
MAIN=$(pwd); W=${1:-/tmp/cap}; PY=$MAIN/.venv/bin/python; M=$MAIN/models/default
BEFORE=$W/before-checkout
mkdir -p "$W"
[ -d "$BEFORE" ] || git worktree add -f "$BEFORE" a782701
uptime; lscpu | grep 'Model name'
before() {  # FRONT ROUND STREAMS...
  local front=$1 tag=$2; shift 2
  (cd "$BEFORE" && PYTHONPATH="$BEFORE" "$PY" bench/stack_streams.py --model "$M" --streams "$@" \
    --seconds 10 --server "$front" --work "$W/before" --out "$W/before-$front-$tag.json")
}
after() {  # ROUND STREAMS...
  local tag=$1; shift
  PYTHONPATH="$MAIN" "$PY" -m bench.stack_streams --model "$M" --streams "$@" --seconds 10 \
    --work "$W/after" --out "$W/after-$tag.json"
}
for run in 1 2; do
  before threads "$run" 20 40 60; before asyncio "$run" 20 40 60; after "$run" 20 40 60
done
before asyncio hi-1 80 100 120; after hi-1 80 100 120; before threads hi-1 80 100 120
uptime; lscpu | grep 'Model name'
