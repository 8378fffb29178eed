#!/usr/bin/env bash
# bench.sh's measurement for two or more given binaries, interleaved (before/after a change):
#   bash bench/engine/ab.sh OLD/scalepipe NEW/scalepipe OLD/scalepipe NEW/scalepipe
set -euo pipefail
K=${K:-10000}; REPS=${REPS:-5}
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for BIN in "$@"; do
  W=$(mktemp -d); cd "$W"
  python3 - "$K" > bench.toml <<'PY'
import sys
k = int(sys.argv[1])
print('[pipeline]\nname = "bench"\n')
print('[stages.job]\nkind = "command"\ncmd = "echo {i} > out.txt"')
print('[stages.job.sweep]\ni = [' + ", ".join(str(i) for i in range(k)) + ']\n')
print('[stages.aggregate]\nkind = "command"\ninputs = ["job"]\ncmd = "wc -l < $SCALEPIPE_INPUTS > count.txt"')
PY
  l=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(now); "$BIN" run bench.toml > /dev/null 2>&1; t1=$(now)
  first=$(echo "$t1 - $t0" | bc -l)
  plan=$(for _ in $(seq "$REPS"); do a=$(now); "$BIN" plan bench.toml > /dev/null; b=$(now); echo "$b - $a" | bc -l; done | median)
  noop=$(for _ in $(seq "$REPS"); do a=$(now); "$BIN" run bench.toml > /dev/null 2>&1; b=$(now); echo "$b - $a" | bc -l; done | median)
  printf '%s\tK=%d\tfirst %.2f s\tplan %.3f s\tno-op %.3f s\tload %s\n' "$BIN" "$K" "$first" "$plan" "$noop" "$l"
  cd /; rm -rf "$W"
done
