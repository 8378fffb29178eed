#!/usr/bin/env bash
# Benchmark of the fit: scalepipe's multistart L-BFGS on Besiroglu et al.'s
# 4,500-start grid over the 240 Chinchilla runs (plus 4,000 bootstrap refits),
# beside the same grid in scipy's L-BFGS-B with the analytic gradient.
#
# Usage: bench/fit/run.sh [CSV]    (SCIPY_STARTS=K times scipy on K starts only)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
csv="${1:-$root/../shared/reference/chinchilla_svg_extracted.csv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scalepipe-target}"

cargo build --release --quiet --bin bench-fit
if [ ! -x bench/.venv/bin/python ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install --quiet numpy scipy
fi

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores" >&2
rust_json="$("$CARGO_TARGET_DIR/release/bench-fit" --json "$csv")"
scipy_args=(--json)
if [ -n "${SCIPY_STARTS:-}" ]; then scipy_args+=(--starts "$SCIPY_STARTS"); fi
py_json="$(bench/.venv/bin/python bench/fit/scipy_fit.py "${scipy_args[@]}" "$csv")"
echo "$rust_json" > "${TMPDIR:-/tmp}/bench-fit-rust.json"
echo "$py_json" > "${TMPDIR:-/tmp}/bench-fit-scipy.json"
bench/.venv/bin/python bench/fit/compare.py "$rust_json" "$py_json"
