#!/usr/bin/env bash
# Training throughput of scalepipe's dfdx models against the same models in
# PyTorch CPU: an MLP and a transformer at three sizes each, same shapes, batch,
# optimiser and thread count. Prints a side-by-side table (ratio = dfdx / torch
# throughput) and writes the raw JSON lines to bench/work/train.jsonl.
#
# usage: bench/train/run.sh [--threads N] [--repeat R] [--quick]
# Each configuration runs R times (default 3), dfdx and torch interleaved, and the
# fastest run of each is kept: on a shared machine the minimum is the measurement
# least disturbed by other load.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scalepipe-target}"

threads=$(nproc)
repeat=3
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --quick) quick=1; repeat=1; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

venv=bench/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "installing PyTorch into $venv (PyPI's torch wheel; a few GB)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q torch numpy
fi

cargo build --release --example bench_train >&2
bin="$CARGO_TARGET_DIR/release/examples/bench_train"

# name: args shared by both programs, then steps
mlp_steps=30; gpt_steps=8
[ "$quick" = 1 ] && { mlp_steps=5; gpt_steps=2; }
configs=(
    "mlp 64 256 $mlp_steps"
    "mlp 256 256 $mlp_steps"
    "mlp 1024 256 $mlp_steps"
    "transformer 64 2 4 64 16 $gpt_steps"
    "transformer 128 4 4 64 16 $gpt_steps"
    "transformer 256 4 8 64 16 $gpt_steps"
)

mkdir -p bench/work
out=bench/work/train.jsonl
: > "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads=$threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for cfg in "${configs[@]}"; do
    for _ in $(seq "$repeat"); do
        # shellcheck disable=SC2086
        "$bin" $cfg --threads "$threads" >> "$out"
        # shellcheck disable=SC2086
        "$venv/bin/python" bench/train/torch_ref.py $cfg --threads "$threads" >> "$out"
    done
    echo "done: $cfg" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$venv/bin/python" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    key = (r["model"], r["size"], r["framework"])
    if key not in best or r["step_ms"] < best[key]["step_ms"]:
        best[key] = r
print(f"{'model':12} {'size':10} {'N':>9} | {'dfdx units/s':>12} {'GFLOP/s':>7} {'fwd/bwd/opt ms':>20} | {'torch units/s':>13} {'GFLOP/s':>7} {'fwd/bwd/opt ms':>20} | {'ratio':>5}")
seen = []
for r in rows:
    k = (r["model"], r["size"])
    if k in seen:
        continue
    seen.append(k)
    d, t = best[k + ("dfdx",)], best[k + ("torch",)]
    split = lambda r: f"{r['fwd_ms']:.1f}/{r['bwd_ms']:.1f}/{r['opt_ms']:.1f}"
    unit = "tok/s" if r["model"] == "transformer" else "ex/s"
    print(f"{k[0]:12} {k[1]:10} {d['n_params']:>9} | {d['units_per_s']:>12.0f} {d['gflops']:>7.2f} {split(d):>20} | {t['units_per_s']:>13.0f} {t['gflops']:>7.2f} {split(t):>20} | {d['units_per_s']/t['units_per_s']:>5.2f}")
print("units: examples/s for mlp, tokens/s for transformer; ratio = dfdx / torch throughput")
PY
