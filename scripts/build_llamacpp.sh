#!/usr/bin/env bash
# Builds the llama.cpp baseline (the copy vendored in PyPI's llama-cpp-python==0.3.36
# sdist, llama.cpp commit 0c1e57098) into ${VTPU_CACHE:-$HOME/.cache/vtpu}/llama.cpp/build.
#
# Usage:  bash scripts/build_llamacpp.sh     # prints the bin/ directory on the last line
#
# Settings: Release, CPU only, shared libraries (libllama.so is what
# scripts/gen_llamacpp_goldens.py loads through llama-cpp-python's ctypes bindings),
# GGML_NATIVE=ON (llama.cpp's default: -march=native, so the baseline uses every SIMD
# extension this CPU has; the binaries are NOT portable to another CPU), no HTTPS/curl
# (LLAMA_CURL is deprecated in this llama.cpp; LLAMA_OPENSSL=OFF drops the only network
# client). Only the targets we use are built; the server (which the new llama-cli needs)
# is left out because it doubles the build time: llama-completion is the classic CLI.
#
# cmake and ninja come from PyPI wheels (scripts/setup_llamacpp_env.sh) because Debian's
# image here has neither. Idempotent: ninja does nothing when the build is up to date.
# Measured on the 2-core dev machine, shared with other builds: see testdata/llamacpp/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"

BUILD="$VTPU_CACHE/llama.cpp/build"
JOBS="${VTPU_BUILD_JOBS:-2}"
TARGETS=(llama ggml llama-completion llama-simple llama-bench llama-quantize
         llama-tokenize llama-batched-bench)

PY="$(bash "$here/setup_llamacpp_env.sh" | tail -1)"
VBIN="$(dirname "$PY")"
export PATH="$VBIN:$PATH"
SRC="$(vtpu_extract_llamacpp_source)"

CONFIG=(
    -G Ninja
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=ON
    -DGGML_NATIVE=ON
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=ON
    -DLLAMA_BUILD_TOOLS=ON
    # The sdist has no .git: without these the binaries report commit "unknown".
    -DLLAMA_BUILD_COMMIT="$LLAMACPP_COMMIT"
    -DLLAMA_BUILD_NUMBER=0
)
STAMP="$BUILD/.vtpu-config"
want="$SRC ${CONFIG[*]}"
start=$(date +%s)
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    cmake -S "$SRC" -B "$BUILD" "${CONFIG[@]}" >"$BUILD/configure.log" 2>&1 ||
        { tail -40 "$BUILD/configure.log" >&2; vtpu_die "cmake configure failed (log: $BUILD/configure.log)"; }
    printf '%s' "$want" >"$STAMP"
fi
ninja -C "$BUILD" -j "$JOBS" "${TARGETS[@]}" >"$BUILD/build.log" 2>&1 ||
    { tail -40 "$BUILD/build.log" >&2; vtpu_die "llama.cpp build failed (log: $BUILD/build.log)"; }
for b in llama-completion llama-simple llama-bench llama-quantize llama-tokenize llama-batched-bench; do
    [[ -x "$BUILD/bin/$b" ]] || vtpu_die "missing $BUILD/bin/$b after the build"
done
elapsed=$(( $(date +%s) - start ))
(( elapsed > 5 )) && echo "llama.cpp $LLAMACPP_COMMIT built in $elapsed s: $BUILD/bin" >&2
echo "$BUILD/bin"
