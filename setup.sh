#!/usr/bin/env bash
# Sets up everything scoreid needs on a fresh Debian machine: system packages (apt, when missing)
# and the Python package with its dependencies in ./.venv. Idempotent: a second run is quiet.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(redis-server fluidsynth fluid-soundfont-gm fluidr3mono-gm-soundfont timgm6mb-soundfont
              csound-soundfont librsvg2-bin libsndfile1 prometheus qemu-user
              lilypond  # the second engraver (synthesis/lilypond.py)
              chromium)  # chromium: the page-turner's real-browser test (tests/web), driven by Playwright
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log=$(mktemp)
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
           --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2; echo "setup: apt-get failed (log above)" >&2; exit 1
  fi
  rm -f "$log"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# Reinstall only when the project metadata changed since the last successful install.
stamp=.venv/.scoreid-setup-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv (first run takes a few minutes)"
  log=.venv/setup-pip.log  # pip's and the build backend's chatter; shown only when it fails
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >"$log" 2>&1 || true
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' >>"$log" 2>&1 \
     || ! .venv/bin/python -c "import scoreid, torch, onnxruntime, verovio, grpc, redis, starlette, uvicorn, playwright" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2; echo "setup: Python install failed (full log: $log)" >&2; exit 1
  fi
  echo "$want" > "$stamp"
  echo "setup: done (.venv/bin/scoreid, .venv/bin/python; or: source .venv/bin/activate)"
fi
