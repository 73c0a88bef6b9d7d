#!/usr/bin/env bash
# Creates (once) the light Python environment used by the llama.cpp baseline scripts:
#   scripts/build_llamacpp.sh        (cmake + ninja from PyPI, to build llama.cpp)
#   scripts/fetch_models.sh          (reads/verifies GGUF files)
#   scripts/gen_qwen3_fixture.py     (gguf-py writes testdata/models/qwen3-tiny.gguf)
#   scripts/gen_llamacpp_goldens.py  (llama-cpp-python's ctypes bindings + numpy)
#
# Usage:  PY=$(bash scripts/setup_llamacpp_env.sh | tail -1)
#
# The venv lives OUTSIDE the source tree: ${VTPU_LLAMA_VENV:-${VTPU_CACHE:-$HOME/.cache/vtpu}/venv-llamacpp}.
# It is separate from scripts/setup_python.sh's torch venv (5.6 GB) because none of
# this needs torch; this one is ~200 MB and takes ~10 s. Idempotent: when the venv
# already holds exactly the pinned set below, it does nothing.
set -euo pipefail

VENV="${VTPU_LLAMA_VENV:-${VTPU_CACHE:-$HOME/.cache/vtpu}/venv-llamacpp}"
PYTHON="${PYTHON:-python3}"
# Pinned: the fixture and the goldens record the versions that produced them.
REQS=(
    numpy==2.4.6
    gguf==0.19.0
    cmake==4.4.5
    ninja==1.13.2
    # llama-cpp-python's own runtime dependencies: scripts/gen_llamacpp_goldens.py
    # imports its ctypes bindings from the sdist (no second llama.cpp compile).
    typing-extensions==4.16.0
    diskcache==5.6.3
    jinja2==3.1.6
    markupsafe==3.0.4
)
STAMP="$VENV/.vtpu-requirements"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "${REQS[*]}" ]]; then
    echo "$VENV/bin/python"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
# --only-binary: cmake and ninja have manylinux wheels; without this flag a pip
# configured with --no-binary would compile cmake from source (tens of minutes).
"$VENV/bin/python" -m pip install --quiet --only-binary :all: "${REQS[@]}"
printf '%s' "${REQS[*]}" >"$STAMP"
echo "vtpu llama.cpp env ready in $(( $(date +%s) - start )) s: $VENV" >&2
echo "$VENV/bin/python"
