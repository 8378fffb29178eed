#!/usr/bin/env bash
cd /work/wt-bench
W=/work/wt-bench/bench/work
TOOLS=scalepipe KS="100 1000 10000" SP_BIG=100000 SP_PLAN=1000000 BUDGET=60 TIMEOUT=900 WORK_BASELINE=0 RAW=$W/raw-after.tsv SCALEPIPE_BIN=$W/scalepipe-after WORK=$W/after bash bench/engine/compare.sh
TOOLS=scalepipe KS="10000" SP_BIG= SP_PLAN=1000000 BUDGET=60 TIMEOUT=900 WORK_BASELINE=0 RAW=$W/raw-before2.tsv SCALEPIPE_BIN=$W/scalepipe-before WORK=$W/before2 bash bench/engine/compare.sh
echo DRIVER3-DONE
