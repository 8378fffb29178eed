#!/usr/bin/env bash
# One-off driver for this session (bench/work is git-ignored): Snakemake and DVC
# run concurrently to fit the session's time; see RESULTS.md.
cd /work/wt-bench
W=/work/wt-bench/bench/work
(TOOLS=snakemake KS="100 1000 10000" SP_BIG= SP_PLAN= BUDGET=150 TIMEOUT=1500 RAW=$W/raw-snakemake.tsv SCALEPIPE_BIN=/bin/false WORK=$W/sm bash bench/engine/compare.sh > $W/sm.log 2>&1; echo SM-DONE >> $W/sm.log) &
(TOOLS=dvc KS="100 1000" SP_BIG= SP_PLAN= BUDGET=150 TIMEOUT=1200 WORK_BASELINE=0 RAW=$W/raw-dvc.tsv SCALEPIPE_BIN=/bin/false WORK=$W/dvc bash bench/engine/compare.sh > $W/dvc.log 2>&1;
 TOOLS=dvc KS="10000" REPS=1 SP_BIG= SP_PLAN= TIMEOUT=300 WORK_BASELINE=0 RAW=$W/raw-dvc.tsv SCALEPIPE_BIN=/bin/false WORK=$W/dvc bash bench/engine/compare.sh >> $W/dvc.log 2>&1; echo DVC-DONE >> $W/dvc.log) &
wait
