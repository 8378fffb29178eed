#!/usr/bin/env bash
# Side-by-side engine benchmark: scalepipe, Snakemake and DVC on the same workflow
# (K trivial jobs fanning into one aggregate, written by gen.py).
#
#   just bench-compare                       # everything (~40-60 min on 2 cores)
#   TOOLS=scalepipe KS="100 1000" bash bench/engine/compare.sh
#
# For each tool and K it measures, in a fresh workspace:
#   first   the first full run, parallelism = number of cores
#   dry     the dry run / status on the completed workspace
#           (scalepipe plan, snakemake -n, dvc status)
#   noop    the no-op re-run (scalepipe run, snakemake, dvc repro)
#   change  the re-run after changing one job's parameter (a new value each time)
# with wall time (date +%s%N), CPU time (user + system of the process tree) and
# peak RSS (/usr/bin/time -v: the largest process of the tree). Each measurement is repeated REPS times, fewer when one
# (tool, K, measurement) has already used BUDGET seconds; a run longer than
# TIMEOUT seconds is killed and recorded as a timeout, and a tool whose first
# run timed out has no completed workspace for the other measurements.
# Also: "work", the same K `sh -c` commands run by xargs with the same
# parallelism plus the aggregate, to split a first run into work and engine
# overhead; scalepipe
# alone at K = 100,000 (SP_BIG) and `scalepipe plan` at 1,000,000 (SP_PLAN);
# set either to the empty string to skip it.
#
# Raw results: one line per measurement in $RAW (tab-separated); report.py turns
# them into the tables of bench/RESULTS.md.
#
# Snakemake and DVC are installed with pip into bench/.venv (git-ignored); this
# script is never run in CI.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

TOOLS=${TOOLS:-"scalepipe snakemake dvc"}
KS=${KS:-"100 1000 10000"}
REPS=${REPS:-3}
BUDGET=${BUDGET:-240}
TIMEOUT=${TIMEOUT:-900}
SP_BIG=${SP_BIG-100000}
SP_PLAN=${SP_PLAN-1000000}
WORK_BASELINE=${WORK_BASELINE:-1}
WORK=${WORK:-$ROOT/bench/work}
RAW=${RAW:-$WORK/raw.tsv}
CORES=$(nproc)
VENV=$ROOT/bench/.venv
GEN="python3 $ROOT/bench/engine/gen.py"
export DVC_NO_ANALYTICS=1

command -v bc > /dev/null || { echo "needs bc (apt-get install bc)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

# scalepipe: installed into $WORK by `cargo install`, which copies the binary it
# just built while it holds the build lock. Copying target/release/scalepipe
# after `cargo build` is not safe where worktrees share one CARGO_TARGET_DIR:
# another worktree's build may have replaced it in between.
mkdir -p "$WORK"
if [ -z "${SCALEPIPE_BIN:-}" ]; then
    cargo install --quiet --locked --force --path . --root "$WORK/install" || exit 1
    SCALEPIPE_BIN=$WORK/install/bin/scalepipe
fi

if [[ " $TOOLS " == *" snakemake "* || " $TOOLS " == *" dvc "* ]]; then
    if [ ! -x "$VENV/bin/snakemake" ] || [ ! -x "$VENV/bin/dvc" ]; then
        python3 -m venv "$VENV" && "$VENV/bin/pip" install -q snakemake dvc || exit 1
    fi
fi

now_ns() { date +%s%N; }

# measure TOOL K WHAT REP DIR CMD...: runs CMD in DIR, appends a line to $RAW,
# returns 0 (ok), 1 (failed) or 2 (timed out).
measure() {
    local tool=$1 k=$2 what=$3 rep=$4 dir=$5
    shift 5
    local tfile log t0 t1 rc secs rss cpu status load
    tfile=$(mktemp) log=$WORK/logs/$tool-$k-$what-$rep.log
    mkdir -p "$WORK/logs"
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(now_ns)
    (cd "$dir" && /usr/bin/time -v -o "$tfile" timeout -k 10 "$TIMEOUT" "$@") > "$log" 2>&1
    rc=$?
    t1=$(now_ns)
    secs=$(echo "scale=4; ($t1 - $t0) / 1000000000" | bc)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tfile")
    # CPU seconds (user + system) of the whole process tree: what the run costs
    # regardless of how many other processes compete for the cores.
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s + 0}' "$tfile")
    rm -f "$tfile"
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status="failed($rc)" ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$k" "$what" "$rep" "$secs" "${rss:-0}" "$status" "$load" "$cpu" >> "$RAW"
    printf '%-9s K=%-7s %-6s #%s %9.3f s %8s KB  cpu %6.2f s  %s (load %s)\n' "$tool" "$k" "$what" "$rep" "$secs" "${rss:-0}" "$cpu" "$status" "$load" >&2
    case $status in ok) return 0 ;; timeout) return 2 ;; *) return 1 ;; esac
}

# Fresh workspace with the workflow for TOOL at K.
setup() {
    local tool=$1 k=$2 dir=$3
    rm -rf "$dir" && mkdir -p "$dir"
    $GEN "$tool" "$k" "$dir"
    if [ "$tool" = dvc ]; then
        (
            cd "$dir" && git init -q && "$VENV/bin/dvc" init -q &&
                "$VENV/bin/dvc" config core.analytics false &&
                "$VENV/bin/dvc" config core.check_update false &&
                git add -A && git -c user.name=bench -c user.email=bench@localhost commit -qm workflow
        ) > /dev/null
    fi
}

# The command line of each tool for each measurement.
cmd_for() {
    local tool=$1 what=$2
    case $tool:$what in
        scalepipe:dry) echo "$SCALEPIPE_BIN plan bench.toml" ;;
        scalepipe:*) echo "$SCALEPIPE_BIN run bench.toml --jobs $CORES" ;;
        snakemake:dry) echo "$VENV/bin/snakemake -n --cores $CORES" ;;
        snakemake:*) echo "$VENV/bin/snakemake --cores $CORES" ;;
        dvc:dry) echo "$VENV/bin/dvc status" ;;
        dvc:*) echo "$VENV/bin/dvc repro" ;;
    esac
}

# The aggregate's output: K lines read.
check_count() {
    local tool=$1 k=$2 dir=$3 file
    case $tool in
        scalepipe) file=$dir/results/bench/aggregate/count.txt ;;
        *) file=$dir/count.txt ;;
    esac
    if [ "$(cat "$file" 2> /dev/null)" != "$k" ]; then
        echo "WRONG RESULT: $tool K=$k: $file holds '$(cat "$file" 2> /dev/null)', expected $k" >&2
        printf '%s\t%s\tcheck\t0\t0\t0\twrong-result\t0\n' "$tool" "$k" >> "$RAW"
    fi
}

# Repeats `measure` up to REPS times within BUDGET seconds; stops at a failure.
repeat() {
    local tool=$1 k=$2 what=$3 dir=$4 before=${5:-}
    local start rep
    start=$(date +%s)
    for rep in $(seq "$REPS"); do
        [ -n "$before" ] && $before "$rep"
        # shellcheck disable=SC2046
        measure "$tool" "$k" "$what" "$rep" "$dir" $(cmd_for "$tool" "$what") || return 1
        [ $(($(date +%s) - start)) -ge "$BUDGET" ] && break
    done
    return 0
}

bench_tool() {
    local tool=$1 k=$2 dir=$WORK/$tool-$k start rep rc first_reps=$REPS
    # SNAKEMAKE_BATCHES=N: build Snakemake's completed workspace with its own
    # remedy for DAGs too large to run at once, `--batch aggregate=i/N` runs
    # (each recorded as a "batch" measurement), then one run for the aggregate.
    if [ "$tool" = snakemake ] && [ -n "${SNAKEMAKE_BATCHES:-}" ]; then
        setup "$tool" "$k" "$dir"
        for rep in $(seq "$SNAKEMAKE_BATCHES"); do
            measure "$tool" "$k" batch "$rep" "$dir" "$VENV/bin/snakemake" --cores "$CORES" \
                --batch "aggregate=$rep/$SNAKEMAKE_BATCHES" || return
        done
        # shellcheck disable=SC2046
        measure "$tool" "$k" batch-final 1 "$dir" $(cmd_for "$tool" first) || return
        first_reps=0
    fi
    # First runs, each in a fresh workspace; the last one stays for the rest.
    start=$(date +%s)
    for rep in $(seq "$first_reps"); do
        setup "$tool" "$k" "$dir"
        # shellcheck disable=SC2046
        measure "$tool" "$k" first "$rep" "$dir" $(cmd_for "$tool" first)
        rc=$?
        if [ $rc -ne 0 ]; then
            echo "$tool K=$k: first run did not complete; no dry/noop/change measurements" >&2
            return
        fi
        [ $(($(date +%s) - start)) -ge "$BUDGET" ] && break
    done
    check_count "$tool" "$k" "$dir"
    repeat "$tool" "$k" dry "$dir" || return
    repeat "$tool" "$k" noop "$dir" || return
    change() { (cd "$dir" && $GEN "$tool" "$k" . --change "$1"); }
    repeat "$tool" "$k" change "$dir" change || return
    rm -rf "$dir"
}

# The work alone: K `sh -c` commands, CORES at a time (WORK_BASELINE=0 skips it,
# e.g. when another invocation measures it).
bench_work() {
    local k=$1 dir=$WORK/work-$k rep
    [ "$WORK_BASELINE" = 1 ] || return 0
    for rep in $(seq "$REPS"); do
        rm -rf "$dir" && mkdir -p "$dir"
        measure work "$k" first "$rep" "$dir" \
            sh -c "seq 0 $((k - 1)) | xargs -P $CORES -I{} sh -c 'echo {} > {}.txt' && $($GEN work-aggregate)"
    done
    rm -rf "$dir"
}

echo "# $(date -u +%FT%TZ) $(uname -srm), $CORES cores; TOOLS=$TOOLS KS=$KS REPS=$REPS BUDGET=$BUDGET TIMEOUT=$TIMEOUT" >> "$RAW"
for k in $KS; do
    bench_work "$k"
    for tool in $TOOLS; do
        bench_tool "$tool" "$k"
    done
done
if [[ " $TOOLS " == *" scalepipe "* ]]; then
    if [ -n "$SP_BIG" ]; then
        bench_work "$SP_BIG"
        bench_tool scalepipe "$SP_BIG"
    fi
    if [ -n "$SP_PLAN" ]; then
        dir=$WORK/scalepipe-plan-$SP_PLAN
        setup scalepipe "$SP_PLAN" "$dir"
        for rep in $(seq "$REPS"); do
            measure scalepipe "$SP_PLAN" dry "$rep" "$dir" "$SCALEPIPE_BIN" plan bench.toml || break
        done
        rm -rf "$dir"
    fi
fi
echo "raw results: $RAW" >&2
