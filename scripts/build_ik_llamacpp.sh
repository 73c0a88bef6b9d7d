#!/usr/bin/env bash
# Builds ik_llama.cpp (https://github.com/ikawrakow/ik_llama.cpp, the fastest CPU fork of
# llama.cpp, issue 9's bar) into ${VTPU_CACHE:-$HOME/.cache/vtpu}/ik_llama.cpp/build.
#
# Usage:  bash scripts/build_ik_llamacpp.sh SOURCE   # prints the bin/ directory last
#   SOURCE: a git checkout of ik_llama.cpp (a clone, or a bare mirror: then its HEAD is
#   exported), or a directory with its sources. It is not on a package registry, so
#   getting it is up to you (`git clone https://github.com/ikawrakow/ik_llama.cpp`).
#
# Settings as scripts/build_llamacpp.sh: Release, CPU only, GGML_NATIVE=ON (every SIMD
# extension of this CPU; not portable), static libraries, only llama-bench and
# llama-batched-bench. cmake and ninja from PyPI (scripts/setup_llamacpp_env.sh).
# About 25 minutes on the 2-core dev machine. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=llamacpp_common.sh
source "$here/llamacpp_common.sh"

[[ $# -eq 1 ]] || vtpu_die "usage: bash scripts/build_ik_llamacpp.sh SOURCE (an ik_llama.cpp checkout)"
src_in="$1"
ROOT="$VTPU_CACHE/ik_llama.cpp"
BUILD="$ROOT/build"
JOBS="${VTPU_BUILD_JOBS:-2}"
TARGETS=(llama-bench llama-batched-bench)

PY="$(bash "$here/setup_llamacpp_env.sh" | tail -1)"
export PATH="$(dirname "$PY"):$PATH"

# A git repository (bare or not): export its HEAD, so the build names a commit.
if git -C "$src_in" rev-parse --git-dir >/dev/null 2>&1; then
    commit="$(git -C "$src_in" rev-parse HEAD)"
    SRC="$ROOT/src-$commit"
    if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
        rm -rf "$SRC" && mkdir -p "$SRC"
        # A shallow or partial mirror may lack some large blobs (web assets, media):
        # export every blob that is there and name the ones that are not.
        python3 - "$src_in" "$SRC" <<'PY'
import os, subprocess, sys
repo, dst = sys.argv[1], sys.argv[2]
tree = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "-z", "HEAD"], check=True,
                      capture_output=True).stdout.split(b"\0")
entries = []
for e in tree:
    if not e:
        continue
    meta, path = e.split(b"\t", 1)
    mode, kind, sha = meta.split()
    if kind == b"blob":
        entries.append((mode, sha.decode(), path.decode()))
cat = subprocess.Popen(["git", "-C", repo, "cat-file", "--batch"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
missing = []
for mode, sha, path in entries:
    cat.stdin.write((sha + "\n").encode())
    cat.stdin.flush()
    head = cat.stdout.readline().split()
    if len(head) < 3 or head[1] == b"missing":
        missing.append(path)
        continue
    data = cat.stdout.read(int(head[2]))
    cat.stdout.read(1)
    full = os.path.join(dst, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if mode == b"120000":
        os.symlink(data.decode(), full)
    else:
        with open(full, "wb") as f:
            f.write(data)
        if mode == b"100755":
            os.chmod(full, 0o755)
cat.stdin.close()
cat.wait()
if missing:
    print(f"build_ik_llamacpp: {len(missing)} files absent from the checkout, e.g. "
          f"{', '.join(missing[:3])}", file=sys.stderr)
PY
    fi
else
    [[ -f "$src_in/CMakeLists.txt" ]] || vtpu_die "$src_in: not an ik_llama.cpp source tree"
    commit="unknown"
    SRC="$(cd "$src_in" && pwd)"
fi

CONFIG=(
    -G Ninja
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DGGML_NATIVE=ON
    -DLLAMA_CURL=OFF
    -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=ON
    -DLLAMA_BUILD_COMMIT="${commit:0:9}"
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
    { tail -40 "$BUILD/build.log" >&2; vtpu_die "ik_llama.cpp build failed (log: $BUILD/build.log)"; }
for b in "${TARGETS[@]}"; do
    [[ -x "$BUILD/bin/$b" ]] || vtpu_die "missing $BUILD/bin/$b after the build"
done
printf '%s\n' "${commit:0:9}" >"$BUILD/bin/.commit"
elapsed=$(( $(date +%s) - start ))
(( elapsed > 5 )) && echo "ik_llama.cpp ${commit:0:9} built in $elapsed s: $BUILD/bin" >&2
echo "$BUILD/bin"
