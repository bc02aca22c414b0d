#!/usr/bin/env bash
# Install Vidur (PyPI `vidur`, Microsoft's LLM inference simulator) into its OWN virtual
# environment, never the project's, and lay out the operator profiles it reads, offline.
#
#   bash bench/peers/vidur/setup_vidur.sh [VENV]      (default bench/peers/vidur/.venv)
#
# Why Python 3.10: vidur 0.0.26 ships a compiled extension (vidur/_native) built for CPython
# 3.10 only (its wheel is cp310); its metadata says >=3.10.
# Why a profile step: vidur 0.0.26 downloads operator profiles from HuggingFace at start-up;
# profiles.py writes them into a local HuggingFace cache instead (see profiles/SOURCES.md), and
# run_comparison.py runs Vidur with HF_HUB_OFFLINE=1.
# The last step runs one small simulation so Vidur trains and caches its random-forest
# predictors now (tens of minutes on two cores), not inside the timed comparison.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${VIDUR_VENV:-$here/.venv}}"

py=""
# (a pyenv shim exists for every version but fails for one not selected: try to run each)
for cand in python3.10 "$HOME"/.pyenv/versions/3.10.*/bin/python3.10; do
  if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
    py="$cand"; break
  fi
done
if [ -z "$py" ] && command -v uv >/dev/null 2>&1; then
  uv python install 3.10 && py="$(uv python find 3.10)"
fi
[ -n "$py" ] || { echo "need Python 3.10 (vidur's wheel is cp310): install it or uv" >&2; exit 2; }

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "vidur==0.0.26"
"$venv/bin/python" "$here/profiles.py" "$venv/vidur_cache"

# Train and cache Vidur's predictors (timed: the one-off cost of a new model/GPU in Vidur).
start=$(date +%s)
"$venv/bin/python" - "$here" "$venv" <<'PY'
import subprocess, sys, tempfile
from pathlib import Path
here, venv = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(here))
import run_comparison as rc  # numpy is all it needs at import time
import numpy as np
with tempfile.TemporaryDirectory() as tmp:
    trace = Path(tmp) / "warm.csv"
    rc.write_vidur_trace(trace, rc.Requests(np.zeros(2), np.full(2, 64), np.full(2, 32)))
    cmd = rc.vidur_command(str(venv / "bin" / "python"), trace, Path(tmp) / "out", venv / "vidur_cache")
    subprocess.run(cmd, env=rc.vidur_env(), cwd=tmp, check=True, capture_output=True)
PY
echo "vidur ready in $venv (predictor training took $(( $(date +%s) - start )) s)"
