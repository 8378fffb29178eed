#!/usr/bin/env bash
# GPU check of the `cuda` feature: trains one small transformer on the GPU and on
# the CPU with the same seed and compares the first steps' losses
# (examples/gpu_check.rs). Exit 0 when they agree.
#
#   scripts/gpu-check.sh                  build with --features cuda here, then run
#   scripts/gpu-check.sh --build-only     build, print the binary's path (to copy it
#                                         to a GPU machine that has no Rust toolchain)
#   scripts/gpu-check.sh --binary PATH    run a prebuilt gpu_check binary
#
# Building needs cargo, nvcc and the CUDA headers/libraries (dfdx compiles its
# kernels to PTX with nvcc at build time; cudarc links libcuda, libcublas,
# libcublasLt and libnvrtc). dfdx 0.13's build script also runs `nvidia-smi` to
# read the GPU's compute capability, so on a build machine without a GPU set
# CUDA_COMPUTE_CAP (e.g. 90 for H100/H200, 80 for A100) and a stand-in nvidia-smi
# is put on PATH. Where the toolkit is not installed system-wide, CUDA_ROOT may
# point at any directory with include/cuda.h and lib64/ (PyPI's nvidia-* wheels,
# laid out that way, carry nvcc and these libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scalepipe-target}"

mode=run
binary=""
steps=20
while [ $# -gt 0 ]; do
    case "$1" in
        --build-only) mode=build; shift ;;
        --binary) binary=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

# Where the CUDA toolkit lives: $CUDA_ROOT, else nvcc's prefix, else the usual places.
cuda_root="${CUDA_ROOT:-}"
if [ -z "$cuda_root" ] && command -v nvcc >/dev/null; then
    cuda_root=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
fi
for c in /usr/local/cuda /opt/cuda /usr/lib/cuda; do
    [ -z "$cuda_root" ] && [ -f "$c/include/cuda.h" ] && cuda_root=$c
done

if [ -z "$binary" ]; then
    command -v cargo >/dev/null || { echo "cargo not found: build elsewhere with --build-only and pass --binary" >&2; exit 2; }
    [ -n "$cuda_root" ] && [ -f "$cuda_root/include/cuda.h" ] || { echo "no CUDA toolkit found (set CUDA_ROOT to a directory with include/cuda.h)" >&2; exit 2; }
    export CUDA_ROOT="$cuda_root" PATH="$cuda_root/bin:$PATH"
    command -v nvcc >/dev/null || { echo "nvcc not found under $cuda_root/bin" >&2; exit 2; }
    if ! command -v nvidia-smi >/dev/null || ! nvidia-smi --query-gpu=compute_cap --format=csv >/dev/null 2>&1; then
        [ -n "${CUDA_COMPUTE_CAP:-}" ] || { echo "no working nvidia-smi: set CUDA_COMPUTE_CAP (e.g. 90) to build without a GPU" >&2; exit 2; }
        shim=$(mktemp -d)
        printf '#!/bin/sh\necho compute_cap\necho %s\n' "$(echo "$CUDA_COMPUTE_CAP" | sed 's/^\(.*\)\(.\)$/\1.\2/')" > "$shim/nvidia-smi"
        chmod +x "$shim/nvidia-smi"
        export PATH="$shim:$PATH"
    fi
    # Link-time library search: the toolkit's lib64 (and its stubs for libcuda).
    export LIBRARY_PATH="$cuda_root/lib64:$cuda_root/lib64/stubs:$cuda_root/lib:${LIBRARY_PATH:-}"
    cargo build --release --features cuda --example gpu_check >&2
    binary="$CARGO_TARGET_DIR/release/examples/gpu_check"
    if [ "$mode" = build ]; then
        echo "$binary"
        exit 0
    fi
fi

# Run time: libcuda comes with the driver; cublas, cublasLt and nvrtc from the toolkit.
if [ -n "$cuda_root" ]; then
    export LD_LIBRARY_PATH="$cuda_root/lib64:$cuda_root/lib:${LD_LIBRARY_PATH:-}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
"$binary" "$steps"
