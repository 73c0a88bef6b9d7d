#!/usr/bin/env bash
# Regenerates the llama.cpp golden files in testdata/llamacpp/ (the lead commits them):
#   <model>.json            prompt tokens + 48 greedy steps with top-5 logits, per prompt
#   tokenize_<model>.json   llama.cpp token ids for tricky strings
# for SmolLM2-135M-Instruct Q4_1 / Q8_0 / Q4_0, Qwen2.5-Coder-0.5B-Instruct Q4_K_M and
# the testdata/models/qwen3-tiny.gguf fixture.
#
# Usage:  bash scripts/gen_llamacpp_goldens.sh [--models NAME ...]
# Steps (each idempotent): light venv, llama.cpp build, test data, models, then
# scripts/gen_llamacpp_goldens.py against the built libllama.so. Takes ~1 min once the
# build and downloads are cached. The results depend on this CPU's SIMD level
# (GGML_NATIVE): the JSON records the CPU and llama.cpp's system info.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"

PY="$(bash "$here/setup_llamacpp_env.sh" | tail -1)"
BIN="$(bash "$here/build_llamacpp.sh" | tail -1)"
bash "$here/fetch_test_data.sh" >/dev/null
bash "$here/fetch_models.sh" >/dev/null
[[ -f "$here/../testdata/models/qwen3-tiny.gguf" ]] || "$PY" "$here/gen_qwen3_fixture.py"
SDIST_SRC="$(dirname "$(dirname "$(vtpu_extract_llamacpp_source)")")"

# llama-cpp-python's Python package straight from the sdist, pointed at our libllama.so:
# the bindings and the library come from the same sdist, without compiling llama.cpp twice.
LLAMA_CPP_LIB_PATH="$BIN" PYTHONPATH="$SDIST_SRC${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" "$here/gen_llamacpp_goldens.py" \
    --llama-cpp-version "ggml-org/llama.cpp@$LLAMACPP_COMMIT as vendored in PyPI llama-cpp-python==$LLAMACPP_PY_VERSION; Release, CPU, GGML_NATIVE=ON, shared libs" \
    "$@"
