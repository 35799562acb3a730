#!/usr/bin/env bash
# Sets up everything scoreid needs on a fresh Debian machine: system packages (apt, when missing)
# and the Python package with its dependencies in ./.venv. Idempotent: a second run is quiet.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(redis-server fluidsynth fluid-soundfont-gm fluidr3mono-gm-soundfont timgm6mb-soundfont
              csound-soundfont librsvg2-bin libsndfile1)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
    | grep -v -E "^WARNING: Location .* is ignored" || true
  .venv/bin/python -c "import scoreid, torch, onnxruntime, verovio, grpc, redis" \
    || { echo "setup: Python install failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
