#!/usr/bin/env bash
# GPU check of the `cuda` feature: trains one small transformer on the GPU and on
# the CPU with the same seed, compares the first steps' losses, then measures the
# GPU alone on a larger one (steps/s, GFLOP/s, MFU). See examples/gpu_check.rs.
#
#   scripts/gpu-check.sh --build-only     on a CPU machine (no driver, no system
#                                         CUDA needed): build, check the binary's
#                                         dynamic dependencies, copy it to
#                                         dist/gpu_check and print that path
#   scripts/gpu-check.sh --binary PATH    on the GPU machine (no Rust needed): find
#                                         the CUDA libraries in the installed Python
#                                         packages, run the check, print the verdict
#   scripts/gpu-check.sh                  both, on a machine with cargo and a GPU
#
# Building. dfdx 0.13 compiles its kernels to PTX with nvcc at build time, and
# cudarc 0.9 links libcuda, libcublas, libcublasLt, libcurand and libnvrtc. Without
# CUDA_ROOT or an nvcc on PATH, the script installs CUDA 13.0's compiler, headers
# and libraries from PyPI's nvidia-* wheels into a venv ($SCALEPIPE_CUDA_VENV,
# default ~/.cache/scalepipe-cuda13); they unpack as one toolkit tree,
# site-packages/nvidia/cu13/{bin,include,lib,nvvm}. 13.0 is pinned on purpose: PTX
# from nvcc 13.0 loads on every CUDA 13 driver, a newer nvcc's PTX may not.
# Two things the wheels lack are made in $CARGO_TARGET_DIR/cuda-link: the
# unversioned names the linker asks for (libcublas.so -> libcublas.so.13, ...) and
# libcuda, which only a driver installs: a stub with the driver API's symbols
# (from cudarc's bindings) and the driver's soname, libcuda.so.1, so at run time
# the real driver library is loaded. Without a GPU, dfdx's build script cannot ask
# nvidia-smi for the compute capability: CUDA_COMPUTE_CAP (default 90: H100/H200)
# is answered by a stand-in nvidia-smi.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scalepipe-target}"

mode=all
binary=""
steps=20
while [ $# -gt 0 ]; do
    case "$1" in
        --build-only) mode=build; shift ;;
        --binary) binary=$2; mode=run; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

# The shared libraries the binary may need beyond the C runtime, by soname.
cuda_sonames="libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13"
wheels="nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-cccl==13.0.85"

find_toolkit() {
    if [ -n "${CUDA_ROOT:-}" ]; then
        echo "$CUDA_ROOT"; return
    fi
    if command -v nvcc >/dev/null; then
        dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")"; return
    fi
    for c in /usr/local/cuda /opt/cuda; do
        [ -f "$c/include/cuda.h" ] && { echo "$c"; return; }
    done
    local venv="${SCALEPIPE_CUDA_VENV:-$HOME/.cache/scalepipe-cuda13}"
    local root="$venv/lib/python3.11/site-packages/nvidia/cu13"
    if [ ! -x "$root/bin/nvcc" ]; then
        echo "gpu-check: installing CUDA 13.0 from PyPI into $venv (about 1.2 GB)" >&2
        python3 -m venv "$venv" >&2
        # shellcheck disable=SC2086
        "$venv/bin/pip" install --quiet --no-deps $wheels >&2
        root=$("$venv/bin/python" -c 'import os, nvidia; print(os.path.join(nvidia.__path__[0], "cu13"))')
    fi
    echo "$root"
}

build() {
    command -v cargo >/dev/null || { echo "gpu-check: cargo not found: build on a machine with Rust (--build-only) and pass --binary here" >&2; exit 2; }
    local root
    root=$(find_toolkit)
    [ -f "$root/include/cuda.h" ] && [ -x "$root/bin/nvcc" ] || { echo "gpu-check: no CUDA toolkit at $root (include/cuda.h, bin/nvcc)" >&2; exit 2; }
    export CUDA_ROOT="$root" PATH="$root/bin:$PATH"

    # Link names and the libcuda stub.
    local link="$CARGO_TARGET_DIR/cuda-link"
    mkdir -p "$link"
    for so in $cuda_sonames; do
        local lib
        lib=$(find "$root" -name "$so" -print -quit)
        [ -n "$lib" ] || { echo "gpu-check: $so not found under $root" >&2; exit 2; }
        ln -sf "$lib" "$link/${so%%.so.*}.so"
    done
    if ! [ -f "$root/lib64/stubs/libcuda.so" ] && ! [ -f "$link/libcuda.so" ]; then
        cargo fetch --quiet
        local sys
        sys=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*cudarc-0.9.*/src/driver/sys.rs' -print -quit)
        [ -n "$sys" ] || { echo "gpu-check: cudarc 0.9's driver bindings not found in the cargo registry" >&2; exit 2; }
        grep -o 'pub fn cu[A-Za-z0-9_]*' "$sys" | sort -u | sed 's/pub fn \(.*\)/void \1(void) {}/' > "$link/libcuda_stub.c"
        gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/libcuda_stub.c"
    fi

    if ! nvidia-smi --query-gpu=compute_cap --format=csv >/dev/null 2>&1; then
        export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
        local shim="$CARGO_TARGET_DIR/cuda-shim"
        mkdir -p "$shim"
        printf '#!/bin/sh\necho compute_cap\necho %s\n' "$(echo "$CUDA_COMPUTE_CAP" | sed 's/^\(.*\)\(.\)$/\1.\2/')" > "$shim/nvidia-smi"
        chmod +x "$shim/nvidia-smi"
        export PATH="$shim:$PATH"
    fi
    LIBRARY_PATH="$link:${LIBRARY_PATH:-}" cargo build --release --features cuda --example gpu_check >&2
    binary="$CARGO_TARGET_DIR/release/examples/gpu_check"

    # The binary may depend only on the driver's libcuda, the CUDA libraries that
    # the GPU machine's Python packages carry, and the C runtime.
    local deps bad
    deps=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    bad=""
    for d in $deps; do
        case " $cuda_sonames libcuda.so.1 " in
            *" $d "*) ;;
            *) case "$d" in
                   libc.so.*|libm.so.*|libgcc_s.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
                   *) bad="$bad $d" ;;
               esac ;;
        esac
    done
    echo "gpu-check: $binary needs:" $deps >&2
    [ -z "$bad" ] || { echo "gpu-check: unexpected dynamic dependencies:$bad" >&2; exit 1; }
}

# On the GPU machine: every soname the binary needs, found in Python's packages.
library_path() {
    local dirs="" sp
    sp=$(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
    for so in $cuda_sonames; do
        local lib=""
        for d in ${CUDA_ROOT:+$CUDA_ROOT} $sp; do
            [ -d "$d" ] || continue
            lib=$(find "$d" -name "$so" -print -quit 2>/dev/null)
            [ -n "$lib" ] && break
        done
        [ -n "$lib" ] || { echo "gpu-check: $so not found in Python's packages ($sp); pip install the nvidia-* CUDA 13 wheels or set CUDA_ROOT" >&2; exit 2; }
        dirs="$dirs:$(dirname "$lib")"
    done
    echo "${dirs#:}"
}

if [ "$mode" != run ]; then
    build
    if [ "$mode" = build ]; then
        # A copy inside the repository (ignored by git), to carry to the GPU machine.
        mkdir -p dist
        cp "$binary" dist/gpu_check
        echo "$PWD/dist/gpu_check"
        exit 0
    fi
fi

[ -x "$binary" ] || { echo "gpu-check: $binary is not an executable" >&2; exit 2; }
libs=$(library_path)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 ' && ! find ${LD_LIBRARY_PATH//:/ } -maxdepth 1 -name libcuda.so.1 2>/dev/null | grep -q .; then
    echo "gpu-check: no NVIDIA driver here (libcuda.so.1 not found): run this on the GPU machine" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$binary" "$steps"
