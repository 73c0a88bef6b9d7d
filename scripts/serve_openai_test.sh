#!/usr/bin/env bash
# Runs scripts/serve_openai_test.py: the `openai` Python package from PyPI (the real
# client library) against `vtpu serve` started on a free loopback port.
#
# Usage:  bash scripts/serve_openai_test.sh [MODEL]
#   MODEL defaults to the committed tiny fixture (fast, random weights); pass the
#   SmolLM2 GGUF for real text.
# The venv lives outside the tree: ${VTPU_CACHE:-$HOME/.cache/vtpu}/venvs/openai,
# created once (the `openai` package and its dependencies, ~20 MB); a rerun reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VTPU_CACHE:-$HOME/.cache/vtpu}/venvs/openai"
REQ="openai==2.8.1"
STAMP="$VENV/.vtpu-requirements"
if [[ ! -x "$VENV/bin/python" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$REQ" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$REQ"
    echo "$REQ" > "$STAMP"
fi
# VTPU=path/to/vtpu uses that binary (e.g. the release build) instead of building one.
if [[ -z "${VTPU:-}" ]]; then
    cargo build --quiet --bin vtpu
    VTPU=target/debug/vtpu
fi
exec "$VENV/bin/python" scripts/serve_openai_test.py --vtpu "$VTPU" --model "${1:-testdata/models/qwen3-tiny.gguf}"
