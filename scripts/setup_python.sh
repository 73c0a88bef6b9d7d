#!/usr/bin/env bash
# Creates (once) the Python environment used by the golden-output and baseline scripts:
#   scripts/gen_layer_goldens.py   (Hugging Face transformers -> testdata/goldens/)
#   scripts/bench_layer_baseline.py (NumPy / PyTorch CPU single-layer timings)
#
# Usage:  bash scripts/setup_python.sh        # prints the venv's python path on the last line
#         PY=$(bash scripts/setup_python.sh | tail -1)
#
# The venv lives OUTSIDE the source tree: ${VTPU_VENV:-${VTPU_CACHE:-$HOME/.cache/vtpu}/venv}.
# Idempotent: when the venv already holds exactly the pinned set below, it does nothing.
#
# Cost: PyPI's Linux x86_64 torch wheel is the CUDA build; it pulls triton and the
# nvidia-* CUDA 13 runtime wheels (cublas, cudnn, nccl, ...) even though we only use the
# CPU, and `pip install --no-deps torch` does not help: `import torch` then fails on the
# missing libcudart. PyPI is the only index reachable here, so we accept that download
# once. Measured on the 2-core dev machine: 153 s for a fresh venv, 5.6 GB on disk; a
# rerun is a no-op. Nothing in `cargo test` needs this environment: the goldens it
# produces are committed under testdata/goldens/.
set -euo pipefail

VENV="${VTPU_VENV:-${VTPU_CACHE:-$HOME/.cache/vtpu}/venv}"
PYTHON="${PYTHON:-python3}"
# Pinned: the goldens record the versions that produced them (see their metadata).
REQS=(
    numpy==2.4.6
    torch==2.15.0
    transformers==5.24.0
    safetensors==0.8.0
    threadpoolctl==3.8.0
)
STAMP="$VENV/.vtpu-requirements"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "${REQS[*]}" ]]; then
    echo "vtpu python env already set up: $VENV" >&2
    echo "$VENV/bin/python"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet "${REQS[@]}"
"$VENV/bin/python" - <<'PYEOF' >&2
import numpy, torch, transformers, safetensors, threadpoolctl
print("numpy", numpy.__version__, "| torch", torch.__version__,
      "| transformers", transformers.__version__, "| safetensors", safetensors.__version__)
PYEOF
printf '%s' "${REQS[*]}" >"$STAMP"
echo "vtpu python env ready in $(( $(date +%s) - start )) s: $VENV" >&2
echo "$VENV/bin/python"
