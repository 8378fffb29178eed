#!/usr/bin/env bash
# Engine overhead benchmark: a sweep of K trivial command stages fanning into one
# aggregate. Runs it once, then times `plan` and the no-op `run` (medians).
#
#   just bench-engine            # K = 10000, 5 repetitions
#   bash bench/engine/bench.sh 1000 3
set -euo pipefail
cd "$(dirname "$0")/../.."
K=${1:-10000}
REPS=${2:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Installed, not taken from target/release: worktrees sharing CARGO_TARGET_DIR
# overwrite each other's target/release/scalepipe (see compare.sh).
cargo install --quiet --locked --force --path . --root "$WORK/install"
BIN=$WORK/install/bin/scalepipe

python3 - "$K" > "$WORK/bench.toml" <<'PY'
import sys
k = int(sys.argv[1])
print('[pipeline]\nname = "bench"\n')
print('[stages.job]\nkind = "command"\ncmd = "echo {i} > out.txt"')
print('[stages.job.sweep]\ni = [' + ", ".join(str(i) for i in range(k)) + ']\n')
print('[stages.aggregate]\nkind = "command"\ninputs = ["job"]\ncmd = "wc -l < $SCALEPIPE_INPUTS > count.txt"')
PY

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cd "$WORK"
t0=$(now); "$BIN" run bench.toml > /dev/null 2>&1; t1=$(now)
first=$(echo "$t1 - $t0" | bc -l)
plan=$(for _ in $(seq "$REPS"); do a=$(now); "$BIN" plan bench.toml > /dev/null; b=$(now); echo "$b - $a" | bc -l; done | median)
noop=$(for _ in $(seq "$REPS"); do a=$(now); "$BIN" run bench.toml > /dev/null 2>&1; b=$(now); echo "$b - $a" | bc -l; done | median)
cores=$(nproc)
printf 'machine: %s, %s cores\n' "$(uname -m)" "$cores"
printf 'K = %d trivial command stages + 1 fan-in, --jobs %s\n' "$K" "$cores"
printf 'first run:        %8.3f s  (%.2f ms per stage incl. sh -c)\n' "$first" "$(echo "$first * 1000 / ($K + 1)" | bc -l)"
printf 'plan (median/%d):  %8.3f s\n' "$REPS" "$plan"
printf 'no-op run (median): %6.3f s\n' "$noop"
