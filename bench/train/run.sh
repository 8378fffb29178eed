#!/usr/bin/env bash
# Training throughput of scalepipe's dfdx models against the same models in
# PyTorch CPU: an MLP at three sizes and a transformer at four, same shapes,
# batch, optimiser and thread count. Prints a side-by-side table (ratio = dfdx /
# torch throughput) with MFU-style figures (achieved GFLOP/s as a share of the
# machine's peak: the fastest large f32 product through scalepipe's gemm at
# 1 thread and at N), then the matrix products of those models through dfdx's
# gemm 0.15 and scalepipe's gemm 0.19. Raw JSON lines: bench/work/train.jsonl.
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
    "transformer 512 4 8 64 16 $gpt_steps"
)
# (m k n) of the models' products: a large square one, the w1024 MLP's hidden
# layer, and per transformer width the projections, MLP in and MLP out
# (1,024 tokens per step).
products=(
    "1024 1024 1024" "256 1024 1024"
    "1024 128 128" "1024 128 512" "1024 512 128"
    "1024 256 256" "1024 256 1024" "1024 1024 256"
    "1024 512 512" "1024 512 2048" "1024 2048 512"
)
[ "$quick" = 1 ] && products=("1024 1024 1024")
peak_threads=$(printf '%s\n' 1 "$threads" | sort -un)

mkdir -p bench/work
out=bench/work/train.jsonl
: > "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads=$threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# The peak: a 2048^3 f32 product, the fastest of several runs, through each side's
# own kernel (scalepipe's gemm 0.19, torch.mm), at 1 thread and at N.
for t in $peak_threads; do
    for _ in $(seq "$repeat"); do
        "$bin" peak 2048 --threads "$t" >> "$out"
        "$venv/bin/python" bench/train/torch_ref.py peak 2048 --threads "$t" >> "$out"
    done
done
echo "done: peak" >&2
for cfg in "${configs[@]}"; do
    for _ in $(seq "$repeat"); do
        # shellcheck disable=SC2086
        "$bin" $cfg --threads "$threads" >> "$out"
        # shellcheck disable=SC2086
        "$venv/bin/python" bench/train/torch_ref.py $cfg --threads "$threads" >> "$out"
    done
    echo "done: $cfg" >&2
done
for p in "${products[@]}"; do
    # shellcheck disable=SC2086
    "$bin" gemm $p --threads "$threads" >> "$out"
done
echo "done: products" >&2
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$venv/bin/python" - "$out" "$threads" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
threads = int(sys.argv[2])
peak = {}
for r in rows:
    if r["model"] == "peak":
        key = (r["framework"], r["threads"])
        peak[key] = max(peak.get(key, 0.0), r["gflops"])
print("peak f32 GFLOP/s, 2048^3 product (fastest run):", ", ".join(
    f"{'gemm 0.19' if f == 'dfdx' else 'torch.mm'} {t} thread{'s' if t > 1 else ''} {g:.1f}"
    for (f, t), g in sorted(peak.items())))
machine = peak.get(("dfdx", threads))
best = {}
for r in rows:
    if r["model"] in ("peak", "gemm"):
        continue
    key = (r["model"], r["size"], r["framework"])
    if key not in best or r["step_ms"] < best[key]["step_ms"]:
        best[key] = r
mfu = lambda r: f"{100 * r['gflops'] / machine:.0f}%" if machine else "-"
print(f"{'model':12} {'size':10} {'N':>9} | {'dfdx units/s':>12} {'GFLOP/s':>7} {'MFU':>4} {'fwd/bwd/opt ms':>20} | {'torch units/s':>13} {'GFLOP/s':>7} {'MFU':>4} {'fwd/bwd/opt ms':>20} | {'ratio':>5}")
seen = []
for r in rows:
    if r["model"] in ("peak", "gemm"):
        continue
    k = (r["model"], r["size"])
    if k in seen:
        continue
    seen.append(k)
    d, t = best[k + ("dfdx",)], best[k + ("torch",)]
    split = lambda r: f"{r['fwd_ms']:.1f}/{r['bwd_ms']:.1f}/{r['opt_ms']:.1f}"
    unit = "tok/s" if r["model"] == "transformer" else "ex/s"
    print(f"{k[0]:12} {k[1]:10} {d['n_params']:>9} | {d['units_per_s']:>12.0f} {d['gflops']:>7.2f} {mfu(d):>4} {split(d):>20} | {t['units_per_s']:>13.0f} {t['gflops']:>7.2f} {mfu(t):>4} {split(t):>20} | {d['units_per_s']/t['units_per_s']:>5.2f}")
print("units: examples/s for mlp, tokens/s for transformer; ratio = dfdx / torch throughput")
print(f"MFU: GFLOP/s (exact matrix-product FLOPs of a step) / the gemm 0.19 peak at {threads} thread(s)")
gemm = {}
for r in rows:
    if r["model"] == "gemm":
        gemm.setdefault(r["size"], {})[r["impl"]] = r["gflops"]
if gemm:
    print()
    print(f"f32 products at {threads} thread(s), GFLOP/s (fastest run):")
    print(f"{'m x k x n':16} {'gemm 0.15 (dfdx)':>16} {'gemm 0.19 op':>12} {'0.19 kernel':>11} {'op / 0.15':>9}")
    for size, g in gemm.items():
        old, op, kernel = g["gemm 0.15 (dfdx matmul)"], g["gemm 0.19 (MatMulOps op)"], g["gemm 0.19 kernel"]
        print(f"{size:16} {old:>16.1f} {op:>12.1f} {kernel:>11.1f} {op / old:>9.2f}")
PY
