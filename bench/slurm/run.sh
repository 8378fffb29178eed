#!/usr/bin/env bash
# 1,000 trivial instances (each writes its number to a file) through the
# one-node Slurm cluster of scripts/slurm-local.sh, five ways:
#   scalepipe local             scalepipe run --jobs 2 (no Slurm)
#   scalepipe slurm, arrays     scalepipe run --executor slurm (one array job)
#   scalepipe slurm, single     scalepipe run --executor slurm --no-arrays
#   sbatch --array              one plain array job of the same commands
#   sbatch x K                  K plain single jobs of the same commands
# and Snakemake's slurm executor plugin on the same workflow (K_SNAKEMAKE
# instances: every Snakemake job starts a Snakemake inside it).
# Both scalepipe and the plain sbatch loops poll squeue once a second.
# Prints a TSV line per measurement (also appended to bench/raw/slurm.tsv):
#   what  K  wall_s  per_instance_ms  status  load_average  hold_ms
# hold_ms: median and mean time a job held its allocation, from slurmctld's
# log (its "Allocate" and "_job_complete" lines, millisecond timestamps): what
# each way runs inside a job beyond the command itself, independent of how
# fast the controller hands out allocations.
# Usage: bash bench/slurm/run.sh   (K=1000 K_SNAKEMAKE=200 by default)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
K=${K:-1000}
K_SNAKEMAKE=${K_SNAKEMAKE:-200}
TIMEOUT=${TIMEOUT:-1200}
WORK=$ROOT/bench/work/slurm
RAW=${RAW:-$ROOT/bench/raw/slurm.tsv}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/scalepipe
VENV=$ROOT/bench/.venv

bash "$ROOT/scripts/slurm-local.sh" || exit 1
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release) || exit 1
mkdir -p "$WORK" "$(dirname "$RAW")"

now() { date +%s.%N; }
CTLD_LOG=${CTLD_LOG:-/var/log/slurm/slurmctld.log}
log_mark() { stat -c %s "$CTLD_LOG" 2>/dev/null || echo 0; }
# Median and mean allocation-hold time (ms) of the jobs that started and ended
# in slurmctld's log after byte offset $1.
hold_ms() {
  tail -c +"$(($1 + 1))" "$CTLD_LOG" 2>/dev/null | awk '
    function ms(ts,   a) { split(substr(ts, 13, 12), a, /[:.]/); return ((a[1] * 60 + a[2]) * 60 + a[3]) * 1000 + a[4] }
    /sched: Allocate JobId=/ { match($0, /JobId=[^ ]+/); alloc[substr($0, RSTART + 6, RLENGTH - 6)] = ms($1) }
    /_job_complete: JobId=.* WEXITSTATUS/ { match($0, /JobId=[^ ]+/); id = substr($0, RSTART + 6, RLENGTH - 6)
      if (id in alloc) { d = ms($1) - alloc[id]; if (d < 0) d += 86400000; print d } }' |
    sort -n | awk '{ v[NR] = $1; sum += $1 } END { if (NR == 0) print "-"; else printf "%d,%.0f", v[int((NR + 1) / 2)], sum / NR }'
}
load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' ','; }
MARK=0
record() { # what k start status load
  local wall per
  wall=$(awk -v a="$(now)" -v b="$3" 'BEGIN { print a - b }')
  per=$(awk -v w="$wall" -v k="$2" 'BEGIN { print w * 1000 / k }')
  printf '%s\t%s\t%.2f\t%.1f\t%s\t%s\t%s\n' "$1" "$2" "$wall" "$per" "$4" "$5" "$(hold_ms "$MARK")" | tee -a "$RAW"
}
# Waits until none of the given jobs is in the queue (one squeue a second).
wait_jobs() {
  while [ -n "$(squeue -h -j "$1" 2>/dev/null)" ]; do sleep 1; done
}
fresh() { rm -rf "$1" && mkdir -p "$1"; }

pipeline() { # k
  printf '[pipeline]\nname = "slurmbench"\n\n[executor.slurm]\npoll = "1s"\nmax_jobs = %s\n\n[stages.job]\nkind = "command"\ncmd = "echo {v} > out.txt"\n[stages.job.sweep]\nv = [%s]\n' \
    "$1" "$(seq -s, 0 $(($1 - 1)))"
}

scalepipe_run() { # what k args...
  local what=$1 k=$2 dir=$WORK/$1-$2 start status l
  shift 2
  fresh "$dir"
  pipeline "$k" >"$dir/bench.toml"
  l=$(load)
  MARK=$(log_mark)
  start=$(now)
  (cd "$dir" && timeout "$TIMEOUT" "$BIN" run bench.toml "$@" >/dev/null 2>"$dir/stderr.txt")
  status=$?
  [ "$(ls "$dir/results/slurmbench" | grep -c '^job')" = "$k" ] || status="missing-outputs($status)"
  record "$what" "$k" "$start" "$status" "$l"
}

sbatch_array() { # k
  local k=$1 dir=$WORK/sbatch-array-$1 start id l
  fresh "$dir/out"
  printf '#!/bin/sh\necho $SLURM_ARRAY_TASK_ID > %s/out/$SLURM_ARRAY_TASK_ID.txt\n' "$dir" >"$dir/job.sh"
  l=$(load)
  MARK=$(log_mark)
  start=$(now)
  id=$(sbatch --parsable --array=0-$((k - 1)) --output=/dev/null --chdir="$dir" "$dir/job.sh")
  wait_jobs "$id"
  [ "$(ls "$dir/out" | wc -l)" = "$k" ] && s=0 || s=missing-outputs
  record sbatch-array "$k" "$start" "$s" "$l"
}

sbatch_single() { # k
  local k=$1 dir=$WORK/sbatch-single-$1 start ids l i
  fresh "$dir/out"
  l=$(load)
  MARK=$(log_mark)
  start=$(now)
  ids=""
  for i in $(seq 0 $((k - 1))); do
    ids="$ids,$(sbatch --parsable --output=/dev/null --chdir="$dir" --wrap "echo $i > $dir/out/$i.txt")"
  done
  wait_jobs "${ids#,}"
  [ "$(ls "$dir/out" | wc -l)" = "$k" ] && s=0 || s=missing-outputs
  record sbatch-single "$k" "$start" "$s" "$l"
}

snakemake_slurm() { # k
  local k=$1 dir=$WORK/snakemake-$1 start status l
  [ -x "$VENV/bin/snakemake" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q snakemake snakemake-executor-plugin-slurm; } || return
  fresh "$dir"
  cat >"$dir/Snakefile" <<SNAKE
rule all:
    input: expand("out/{i}.txt", i=range($k))

rule job:
    output: "out/{i}.txt"
    shell: "echo {wildcards.i} > {output}"
SNAKE
  l=$(load)
  MARK=$(log_mark)
  start=$(now)
  # No accounting here: the plugin's status command must be squeue (its
  # default, sacct, fails without slurmdbd).
  (cd "$dir" && PATH=$VENV/bin:$PATH timeout "$TIMEOUT" snakemake --executor slurm --jobs "$k" \
    --slurm-status-command squeue --default-resources slurm_partition=debug \
    --latency-wait 5 >"$dir/log.txt" 2>&1)
  status=$?
  [ "$(ls "$dir/out" 2>/dev/null | wc -l)" = "$k" ] || status="missing-outputs($status)"
  record snakemake-slurm "$k" "$start" "$status" "$l"
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(slurmctld -V), load $(load)" | tee -a "$RAW"
for what in ${WHAT:-local arrays single sbatch-array sbatch-single snakemake}; do
  case $what in
    local) scalepipe_run scalepipe-local "$K" --jobs "$(nproc)" ;;
    arrays) scalepipe_run scalepipe-slurm-arrays "$K" --executor slurm ;;
    single) scalepipe_run scalepipe-slurm-single "$K" --executor slurm --no-arrays ;;
    sbatch-array) sbatch_array "$K" ;;
    sbatch-single) sbatch_single "$K" ;;
    snakemake)
      scalepipe_run scalepipe-slurm-arrays "$K_SNAKEMAKE" --executor slurm
      sbatch_array "$K_SNAKEMAKE"
      snakemake_slurm "$K_SNAKEMAKE"
      ;;
  esac
done
