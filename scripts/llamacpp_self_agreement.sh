#!/usr/bin/env bash
# llama.cpp against its own goldens under arithmetic-only setting changes (the noise
# floor of token agreement for a model). Usage: bash scripts/llamacpp_self_agreement.sh [--models NAME ...] [--variants ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"
PY="$(bash "$here/setup_llamacpp_env.sh" | tail -1)"
BIN="$(bash "$here/build_llamacpp.sh" | tail -1)"
SDIST_SRC="$(dirname "$(dirname "$(vtpu_extract_llamacpp_source)")")"
LLAMA_CPP_LIB_PATH="$BIN" PYTHONPATH="$SDIST_SRC${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" "$here/llamacpp_self_agreement.py" "$@"
