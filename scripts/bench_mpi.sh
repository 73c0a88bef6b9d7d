#!/usr/bin/env bash
# Scale-out figures: tensor-parallel generation under mpirun against the single process,
# on this one machine, and a model of the cost that predicts 2, 4 and 8 machines from
# them (scripts/mpi_cost_model.py; its assumptions are printed with the table).
#
# Measured, in one run:
#   - greedy tokens of the single process and of 2 and 3 ranks (must be equal);
#   - tg tok/s: single process (1 and 2 sentrons), 2 ranks x 1, 3 ranks x 1 (all on this
#     machine's cores, so the ranks' pump threads compete with the sentrons);
#   - per rank: bytes handed to MPI per token, time blocked in the C pipe, collectives
#     across ranks per token (the machine's own report), peak RSS (/usr/bin/time);
#   - the latency of one cross-rank CREDUCE of a 1 x dim tile (vtpu-mpi run, 2000 in a
#     loop) and of the same in process.
# Prints a markdown section (stdout) and keeps the raw files in $VTPU_CACHE/bench/mpi.
# Not a test: it takes a few minutes and wants a quiet machine.
#
# Usage: bash scripts/bench_mpi.sh [--write] [MODEL.gguf ...]   (default models: SmolLM2
#        Q8_0 and Qwen2.5-0.5B Q4_K_M from scripts/fetch_models.sh)
#   --write  replace the bench-mpi section of BENCHMARKS.md instead of printing it
#        env REPS (default 5), TOKENS (tg length, default 64), NO_BUILD=1
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
reps="${REPS:-5}"
tokens="${TOKENS:-64}"
cache="${VTPU_CACHE:-$HOME/.cache/vtpu}"
out="$cache/bench/mpi"
mkdir -p "$out"

command -v mpirun >/dev/null || { echo "bench_mpi: mpirun missing (bash scripts/mpi_test.sh installs OpenMPI)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if [[ -z "${NO_BUILD:-}" ]]; then
    echo "bench_mpi: building vtpu (release, --features mpi) and vtpu-mpi" >&2
    cargo build --release --quiet --features mpi --bin vtpu
    cargo build --release --quiet --manifest-path crates/mpi/Cargo.toml
fi
# Copies: another build of the workspace (without the feature) may replace target/release/vtpu.
mkdir -p "$out/bin"
if [[ -z "${NO_BUILD:-}" ]]; then
    cp "$CARGO_TARGET_DIR/release/vtpu" "$CARGO_TARGET_DIR/release/vtpu-mpi" "$out/bin/"
fi
VTPU="$out/bin/vtpu"
VMPI="$out/bin/vtpu-mpi"
[[ -x "$VTPU" && -x "$VMPI" ]] || { echo "bench_mpi: no binaries in $out/bin (drop NO_BUILD)" >&2; exit 1; }
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)

write=()
models=()
for a in "$@"; do
    case "$a" in
        --write) write=(--write "$root/BENCHMARKS.md") ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) models+=("$a") ;;
    esac
done
if (( ${#models[@]} == 0 )); then
    while IFS='=' read -r k v; do
        case "$k" in
            VTPU_SMOLLM2_Q8_0_GGUF|VTPU_QWEN25_GGUF) models+=("$v") ;;
        esac
    done < <(bash "$here/fetch_models.sh")
fi
(( ${#models[@]} )) || { echo "bench_mpi: no models" >&2; exit 1; }

prompt="The history of the Roman empire"
# The binary must have the feature: 2 ranks must form one machine.
"${MPIRUN[@]}" -n 2 "$VTPU" generate -m "${models[0]}" -p "$prompt" -n 2 --threads 1 2> "$out/check.err" > /dev/null
grep -q "2 sentrons" "$out/check.err" || { echo "bench_mpi: $VTPU was not built with --features mpi" >&2; exit 1; }
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
summary="$out/summary.jsonl"
: > "$summary"
for m in "${models[@]}"; do
    name="$(basename "$m" .gguf)"
    echo "bench_mpi: $name" >&2
    # Tokens: single process vs 2 and 3 ranks.
    "$VTPU" generate -m "$m" -p "$prompt" -n 32 --threads 2 > "$out/$name.tok1" 2>/dev/null
    same=1
    for r in 2 3; do
        "${MPIRUN[@]}" -n $r "$VTPU" generate -m "$m" -p "$prompt" -n 32 --threads 1 \
            > "$out/$name.tok$r" 2>/dev/null
        cmp -s "$out/$name.tok1" "$out/$name.tok$r" || same=0
    done
    # Speed (tg only: the figure tensor parallelism is for).
    for t in 1 2; do
        "$VTPU" bench -m "$m" -p 0 -n "$tokens" -r "$reps" --threads $t -o json \
            > "$out/$name.single$t.json" 2>/dev/null
    done
    for r in 2 3; do
        "${MPIRUN[@]}" -n $r "$VTPU" bench -m "$m" -p 0 -n "$tokens" -r "$reps" --threads 1 -o json \
            > "$out/$name.ranks$r.json" 2> "$out/$name.ranks$r.err"
    done
    # Peak RSS per process while generating 32 tokens (ctx 4096 as llama.cpp's default).
    /usr/bin/time -f "rss_kb %M" "$VTPU" generate -m "$m" -p "$prompt" -n 32 --threads 2 --ctx 4096 \
        > /dev/null 2> "$out/$name.rss1"
    for r in 2 3; do
        rm -f "$out/$name.rss$r".*
        # One file per rank: ranks writing to one stream interleave their bytes.
        "${MPIRUN[@]}" -n $r bash -c 'exec /usr/bin/time -o "$0.$OMPI_COMM_WORLD_RANK" -f "rss_kb %M" "$@"' \
            "$out/$name.rss$r" "$VTPU" generate -m "$m" -p "$prompt" -n 32 \
            --threads 1 --ctx 4096 > /dev/null 2> /dev/null
        cat "$out/$name.rss$r".* > "$out/$name.rss$r"
    done
    python3 - "$name" "$out" "$same" >> "$summary" <<'PY'
import json, re, sys
name, out, same = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
# The load line: "... (llama 30 layers, D 576, vocab 49152), 2 sentrons, ..."
load = re.search(r"D (\d+), vocab (\d+)", open(f"{out}/{name}.rss1").read())
dim, vocab = (int(load.group(1)), int(load.group(2))) if load else (0, 0)
def tg(path):
    rows = json.load(open(path))
    r = [x for x in rows if x["n_gen"] > 0][0]
    s = sorted(r["samples_ts"])
    return s[len(s) // 2]
def rss(path):
    return [int(x) / 1024 for x in re.findall(r"rss_kb (\d+)", open(path).read())]
def wire(path):
    per = {}
    steps = colls = None
    for l in open(path):
        m = re.search(r"tg\d+: mpi: rank (\d+): (\d+) bytes sent per step .*?, ([\d.]+) ms blocked", l)
        if m:
            per[int(m.group(1))] = (int(m.group(2)), float(m.group(3)))
        m = re.search(r"tg\d+: mpi: .*?([\d.]+) collectives across ranks per step", l)
        if m:
            colls = float(m.group(1))
    return {"bytes_per_token": [per[k][0] for k in sorted(per)],
            "blocked_ms_per_token": [per[k][1] for k in sorted(per)],
            "collectives_per_token": colls}
rec = {"model": name, "tokens_equal": same, "dim": dim, "vocab": vocab,
       "single1_tg": tg(f"{out}/{name}.single1.json"),
       "single2_tg": tg(f"{out}/{name}.single2.json"),
       "rss_single_mb": rss(f"{out}/{name}.rss1")}
for r in (2, 3):
    rec[f"ranks{r}_tg"] = tg(f"{out}/{name}.ranks{r}.json")
    rec[f"ranks{r}_wire"] = wire(f"{out}/{name}.ranks{r}.err")
    rec[f"rss_ranks{r}_mb"] = rss(f"{out}/{name}.rss{r}")
print(json.dumps(rec))
PY
done

# Latency of one collective across ranks (and in process), 1 x dim tiles.
dim="$(python3 -c 'import json,sys; print(max(json.loads(l)["dim"] for l in open(sys.argv[1])) or 576)' "$summary")"
prog="$out/creduce_loop.vasm"
cat > "$prog" <<EOF
; 2000 all-reduces (max) of a 1 x $dim tile on every sentron: the latency of a collective.
    DLI r0, 1
    DTSPLAT t0, r0, 1x$dim
    DLI r1, 2000
loop:
    CREDUCE t0, max, all
    CLOOP r1, loop
    CHALT
EOF
"${MPIRUN[@]}" -n 2 "$VMPI" run "$prog" --no-pin --report > "$out/creduce_mpi.txt" 2>&1 || true
"$VTPU" run "$prog" --sentrons 2 --report > "$out/creduce_local.txt" 2>&1 || true
python3 "$here/mpi_cost_model.py" --summary "$summary" --creduce-mpi "$out/creduce_mpi.txt" \
    --creduce-local "$out/creduce_local.txt" --dim "$dim" --reps "$reps" --tokens "$tokens" \
    --cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs" \
    --revision "$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')" \
    --load "$load_before / $(cut -d' ' -f1-3 /proc/loadavg)" "${write[@]}"
