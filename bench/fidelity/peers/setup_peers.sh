#!/usr/bin/env bash
# Install the peer estimators, each into its OWN virtual environment (never the project's):
#
#   bash bench/fidelity/peers/setup_peers.sh [DIR]      (default $PEER_VENVS or /work/peer-venvs)
#
# DIR/aic   NVIDIA AIConfigurator (PyPI aiconfigurator; its performance database ships in the
#           aiconfigurator-core wheel, ~115 MB, so no download happens at run time)
# DIR/llma  llm-analysis (PyPI llm-analysis; pure Python, model/GPU configs ship in the wheel)
# DIR/genz  GenZ (PyPI genz-llm; pure Python with pandas/scipy/plotly, system configs ship in the
#           wheel)
#
# Versions are pinned to the ones results.json was made with; pass AIC_SPEC / LLMA_SPEC /
# GENZ_SPEC to try others (e.g. AIC_SPEC=aisimulate, the successor distribution announced by
# aiconfigurator 0.12).
set -euo pipefail
dir="${1:-${PEER_VENVS:-/work/peer-venvs}}"
aic_spec="${AIC_SPEC:-aiconfigurator==0.12.0}"
llma_spec="${LLMA_SPEC:-llm-analysis==0.2.2}"
genz_spec="${GENZ_SPEC:-genz-llm==0.0.16}"
py="${PYTHON:-python3}"

mkdir -p "$dir"
[ -x "$dir/aic/bin/python" ] || "$py" -m venv "$dir/aic"
"$dir/aic/bin/pip" install -q "$aic_spec"
[ -x "$dir/llma/bin/python" ] || "$py" -m venv "$dir/llma"
"$dir/llma/bin/pip" install -q "$llma_spec"
[ -x "$dir/genz/bin/python" ] || "$py" -m venv "$dir/genz"
"$dir/genz/bin/pip" install -q "$genz_spec"

"$dir/aic/bin/python" -c 'import importlib.metadata as m; print("aiconfigurator", m.version("aiconfigurator"))'
"$dir/llma/bin/python" -c 'import importlib.metadata as m; print("llm-analysis", m.version("llm-analysis"))'
"$dir/genz/bin/python" -c 'import importlib.metadata as m; print("genz-llm", m.version("genz-llm"))'
