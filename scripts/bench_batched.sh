#!/usr/bin/env bash
# Batched decoding, vTPU against llama.cpp and ik_llama.cpp on the same GGUF file in the
# same run: `vtpu bench --batch` and the two `llama-batched-bench`es, SmolLM2-135M Q8_0,
# 128 prompt + 128 generated tokens per sequence, aggregate generation tok/s at 1, 4 and
# 16 sequences, 2 threads, median of 3 rounds. Writes the section between
# `<!-- BEGIN bench-batched -->` and `<!-- END bench-batched -->` of BENCHMARKS.md
# (markers created at the end of the file if missing) and the raw JSON to
# $VTPU_CACHE/bench/. Not part of any test run: it takes minutes and wants a quiet machine.
#
# Usage:  bash scripts/bench_batched.sh [--reps N] [--batch LIST] [--threads T] [--no-ik]
#                                       [--no-write] [--no-build]
#   --reps N     rounds, each running every tool once (default 3).
#   --batch L    sequence counts, comma separated (default 1,4,16).
#   --threads T  threads for every tool (default 2).
#   --no-ik      leave ik_llama.cpp out even if it is built.
#   --no-write   print the section to stdout instead of writing BENCHMARKS.md.
#   --no-build   use target/release/vtpu as it is; the section's vtpu revision may then
#                be wrong.
# A default run takes about 4 minutes on the 2-CPU dev machine.
#
# ik_llama.cpp: the bin/ directory in $VTPU_IK_BIN, else
# $VTPU_CACHE/ik_llama.cpp/build/bin when scripts/build_ik_llamacpp.sh has built it there;
# when neither has llama-batched-bench its column says "not run". Its extra arguments:
# $VTPU_IK_ARGS (default `-rtr`, see scripts/bench_batched.py).
# The vtpu binary is copied to a temporary directory first, so that a rebuild of
# target/release during the run does not swap it mid-benchmark.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"

reps=3
batch="1,4,16"
threads=2
write=1
build=1
ik=1
cmdline="bash scripts/bench_batched.sh${*:+ $*}"
while (( $# )); do
    case "$1" in
        --reps) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || vtpu_die "--reps needs a number >= 1"; reps="$2"; shift ;;
        --batch) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || vtpu_die "--batch needs a list like 1,4,16"
                 batch="$2"; shift ;;
        --threads) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || vtpu_die "--threads needs a number >= 1"; threads="$2"; shift ;;
        --no-ik) ik=0 ;;
        --no-write) write=0 ;;
        --no-build) build=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) vtpu_die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done

cd "$root"
if (( build )); then
    echo "building vtpu (release)" >&2
    cargo build --release --quiet -p vtpu --bin vtpu
fi
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
[[ -x "$target_dir/release/vtpu" ]] || vtpu_die "missing $target_dir/release/vtpu (drop --no-build)"
bindir="$(mktemp -d "${TMPDIR:-/tmp}/bench_batched.XXXXXX")"
trap 'rm -rf "$bindir"' EXIT
cp "$target_dir/release/vtpu" "$bindir/"

LLAMA_BIN="$(bash "$here/build_llamacpp.sh" | tail -1)"
ik_opts=()
if (( ik )); then
    IK_BIN="${VTPU_IK_BIN:-$VTPU_CACHE/ik_llama.cpp/build/bin}"
    if [[ -x "$IK_BIN/llama-batched-bench" ]]; then
        ik_opts=(--ik-bin "$IK_BIN" --ik-commit "$(cat "$IK_BIN/.commit" 2>/dev/null || echo unknown)")
        [[ -n "${VTPU_IK_ARGS:-}" ]] && ik_opts+=(--ik-args "$VTPU_IK_ARGS")
    else
        echo "no ik_llama.cpp llama-batched-bench in $IK_BIN: its column will say 'not run'" >&2
        ik_opts=(--ik-missing "no llama-batched-bench in $IK_BIN; build it with scripts/build_ik_llamacpp.sh")
    fi
else
    ik_opts=(--ik-missing "left out with --no-ik")
fi

model=""
while IFS='=' read -r k v; do
    [[ "$k" == VTPU_SMOLLM2_Q8_0_GGUF ]] && model="$v"
done < <(bash "$here/fetch_models.sh")
[[ -f "$model" ]] || vtpu_die "fetch_models.sh gave no file for VTPU_SMOLLM2_Q8_0_GGUF"
md=-
(( write )) && md="$root/BENCHMARKS.md"

python3 "$here/bench_batched.py" \
    --vtpu "$bindir/vtpu" --llama-bin "$LLAMA_BIN" "${ik_opts[@]}" \
    --model "SmolLM2-135M Q8_0=$model" --threads "$threads" --n-prompt 128 --n-gen 128 \
    --batch "$batch" --reps "$reps" \
    --json-dir "$VTPU_CACHE/bench" --markdown "$md" \
    --command "$cmdline" --llamacpp-commit "$LLAMACPP_COMMIT"
