#!/usr/bin/env bash
# Run notebooks/analysis.py (forecast analysis, attention heatmap, policy
# comparison): installs pandas + matplotlib into a venv (default
# ~/.cache/forescale-notebooks), builds the release binary, runs
# `forescale evaluate` for the forecast dumps if they are missing (needs
# ../shared/data or FORESCALE_DATA_ROOT), and writes PNGs to
# reports/notebooks/.
#
#   scripts/notebooks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forescale-target}"
venv="${FORESCALE_NOTEBOOK_VENV:-$HOME/.cache/forescale-notebooks}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pandas, matplotlib" 2>/dev/null; then
  echo "notebooks: installing pandas and matplotlib into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "pandas==2.*" "matplotlib==3.*"
fi
cargo build --release --locked --bin forescale
export FORESCALE_BIN="${FORESCALE_BIN:-$CARGO_TARGET_DIR/release/forescale}"
exec "$venv/bin/python" notebooks/analysis.py
