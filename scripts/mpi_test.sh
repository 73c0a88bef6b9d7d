#!/usr/bin/env bash
# The MPI transport's tests (crates/mpi): installs Debian's OpenMPI (and libclang, which
# rsmpi's bindgen needs to read mpi.h) when missing, builds crates/mpi -- its own cargo
# workspace, so the main `cargo test --workspace` never needs MPI -- and runs its unit
# tests and the mpirun tests (2 and 3 ranks: microvtpu with Alice and Bob on different
# ranks, collectives bit for bit against the in-process fabric, deadlock / trap / dead
# and hung rank faults). One test at a time: the jobs are timing-checked and each
# starts several processes on a machine with few cores.
#
# Then the tensor-parallel generation tests of the vtpu binary built with `--features mpi`
# (tests/mpi_generate.rs).
#
# Usage: bash scripts/mpi_test.sh   (as root, or with the packages already installed)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
[ -e /usr/include/x86_64-linux-gnu/mpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] \
    || command -v mpicc >/dev/null 2>&1 || need+=(libopenmpi-dev)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang-*.so* >/dev/null 2>&1 \
    || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "mpi_test: installing ${need[*]} from Debian" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "mpi_test: need root to install ${need[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev >/dev/null
fi
# Share the main workspace's target directory: the runtime crates are built once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo test --manifest-path crates/mpi/Cargo.toml --locked -- --test-threads=1
# Tensor-parallel generation: the vtpu binary with the `mpi` feature, SmolLM2 over 2 and
# 3 ranks against the single process (the model comes from scripts/fetch_test_data.sh;
# .ci/run exports its path), bench figures per rank, bad set-ups and a rank that dies.
cargo test --features mpi --locked --test mpi_generate -- --test-threads=1
