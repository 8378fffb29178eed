#!/usr/bin/env bash
# One-off driver for this session's measurements (bench/work is git-ignored).
cd /work/wt-bench
W=/work/wt-bench/bench/work
TOOLS=scalepipe KS="10000" SP_BIG=100000 SP_PLAN=1000000 BUDGET=120 TIMEOUT=900 RAW=$W/raw-before.tsv SCALEPIPE_BIN=$W/scalepipe-before WORK=$W/before bash bench/engine/compare.sh
TOOLS=snakemake KS="100 1000 10000" SP_BIG= SP_PLAN= TIMEOUT=1800 RAW=$W/raw.tsv SCALEPIPE_BIN=/bin/false bash bench/engine/compare.sh
TOOLS=dvc KS="100 1000" SP_BIG= SP_PLAN= TIMEOUT=1200 RAW=$W/raw.tsv SCALEPIPE_BIN=/bin/false bash bench/engine/compare.sh
TOOLS=dvc KS="10000" REPS=1 SP_BIG= SP_PLAN= TIMEOUT=300 RAW=$W/raw.tsv SCALEPIPE_BIN=/bin/false bash bench/engine/compare.sh
echo DRIVER-DONE
