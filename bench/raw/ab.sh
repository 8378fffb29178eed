#!/usr/bin/env bash
# Interleaved A/B of the engine before and after this session's work, on one
# completed 10,000-job workspace: wall and CPU seconds of `plan` and a no-op `run`.
W=/work/wt-bench/bench/work
cd /tmp/sp/ab/ws
for rep in 1 2 3 4 5; do
  for b in before after; do
    for what in plan run; do
      args="$what bench.toml"; [ $what = run ] && args="$args --jobs 2"
      /usr/bin/time -f "$b $what %e %U %S %M" -o /tmp/sp/ab/t $W/scalepipe-$b $args > /dev/null 2>&1
      echo "$(cat /tmp/sp/ab/t) $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
