#!/usr/bin/env bash
# SIGKILL the engine at seeded random moments of a 50-instance run and count
# what the store guarantees afterwards (see src/bin/bench-faults.rs).
# Usage: bash bench/faults/run.sh [--trials 200] [--seed 1] [--jobs 4]
set -euo pipefail
cd "$(dirname "$0")/../.."
# --all-targets: the same feature set as `cargo test`, so nothing compiles twice.
cargo build --release --all-targets
target="${CARGO_TARGET_DIR:-target}/release"
echo "machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s)
"$target/bench-faults" --scalepipe "$target/scalepipe" "$@"
echo "took $(( $(date +%s) - start ))s; load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
