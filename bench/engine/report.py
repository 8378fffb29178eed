#!/usr/bin/env python3
"""Turns compare.sh's raw measurements into the Markdown tables of RESULTS.md.

    report.py RAW.tsv [RAW.tsv ...]

Each raw line: tool, K, measurement, repetition, seconds, peak RSS (KB), status,
load average at the start, and (newer files) CPU seconds of the process tree. Tables show medians over the repetitions that
completed (n in brackets when fewer than 3), timeouts as "timeout after X s",
and the ratio scalepipe / other tool (below 1: scalepipe is faster).
Only the Python standard library is used.
"""

import statistics
import sys
from collections import defaultdict

TOOLS = ["scalepipe", "snakemake", "dvc"]
WHATS = [
    ("first", "first full run"),
    ("dry", "dry run / status (`plan`, `-n`, `status`)"),
    ("noop", "no-op re-run"),
    ("change", "re-run after changing one parameter"),
]


def load(paths):
    rows = defaultdict(list)
    for line in (line for path in paths for line in open(path)):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        tool, k, what, rep, secs, rss, status, load_avg = fields[:8]
        # CPU seconds were added as a ninth column later; None where absent.
        cpu = float(fields[8]) if len(fields) > 8 else None
        rows[(tool, int(k), what)].append(
            (float(secs), int(rss), status, float(load_avg), cpu)
        )
    return rows


def cell(runs):
    """(text, median seconds or None) of one measurement."""
    if not runs:
        return "n/a", None
    ok = [r for r in runs if r[2] == "ok"]
    if not ok:
        worst = runs[0]
        if worst[2] == "timeout":
            return f"timeout after {worst[0]:.0f} s", None
        return worst[2], None
    med = statistics.median(r[0] for r in ok)
    n = f" [n={len(ok)}]" if len(ok) < 3 else ""
    return f"{fmt(med)}{n}", med


def fmt(secs):
    if secs < 1:
        return f"{secs * 1000:.0f} ms"
    if secs < 100:
        return f"{secs:.2f} s"
    return f"{secs:.0f} s"


def rss_cell(runs):
    ok = [r for r in runs if r[2] == "ok"]
    if not ok:
        return "n/a"
    mib = max(r[1] for r in ok) / 1024
    return f"{mib:.0f} MiB" if mib >= 10 else f"{mib:.1f} MiB"


def cpu_cell(runs):
    cpus = [r[4] for r in runs if r[2] == "ok" and r[4] is not None]
    return fmt(statistics.median(cpus)) if cpus else "n/a"


def ratio(sp, other):
    if sp is None or other is None:
        return "n/a"
    r = sp / other
    return f"{r:.4f} ({other / sp:.0f}x faster)" if r < 1 else f"{r:.2f} (slower)"


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    rows = load(args)
    ks = sorted({k for (tool, k, _) in rows if tool in TOOLS[1:]})
    out = []
    for k in ks:
        out.append(f"\n#### K = {k:,} jobs\n")
        out.append("| measurement | scalepipe | Snakemake | DVC | scalepipe / Snakemake | scalepipe / DVC |")
        out.append("|---|---|---|---|---|---|")
        for what, label in WHATS:
            cells = {t: cell(rows.get((t, k, what), [])) for t in TOOLS}
            sp = cells["scalepipe"][1]
            out.append(
                f"| {label} | {cells['scalepipe'][0]} | {cells['snakemake'][0]} | {cells['dvc'][0]} "
                f"| {ratio(sp, cells['snakemake'][1])} | {ratio(sp, cells['dvc'][1])} |"
            )
        out.append("")
        out.append("| peak RSS | scalepipe | Snakemake | DVC |")
        out.append("|---|---|---|---|")
        for what, label in WHATS:
            out.append(
                f"| {label} | "
                + " | ".join(rss_cell(rows.get((t, k, what), [])) for t in TOOLS)
                + " |"
            )

    # Engine overhead per executed stage: (first run - the work alone) / (K + 1).
    out.append("\n#### Overhead per executed stage: (first run - work alone) / (K + 1)\n")
    out.append("| K | work alone (xargs -P cores sh -c) | " + " | ".join(TOOLS) + " |")
    out.append("|---|---|" + "---|" * len(TOOLS))
    all_ks = sorted({k for (_, k, _) in rows})
    for k in all_ks:
        _, work = cell(rows.get(("work", k, "first"), []))
        if work is None:
            continue
        parts = []
        for t in TOOLS:
            _, first = cell(rows.get((t, k, "first"), []))
            parts.append("n/a" if first is None else f"{(first - work) / (k + 1) * 1000:.2f} ms")
        out.append(f"| {k:,} | {fmt(work)} | " + " | ".join(parts) + " |")

    # scalepipe alone at the sizes the others do not reach.
    big = sorted(k for k in {k for (t, k, _) in rows if t == "scalepipe"} if k not in ks)
    if big:
        out.append("\n#### scalepipe alone\n")
        out.append("| K | measurement | median | median CPU | peak RSS | load at start |")
        out.append("|---|---|---|---|---|---|")
        for k in big:
            for what, label in WHATS:
                runs = rows.get(("scalepipe", k, what), [])
                if runs:
                    loads = ", ".join(f"{r[3]:.1f}" for r in runs)
                    out.append(
                        f"| {k:,} | {label} | {cell(runs)[0]} | {cpu_cell(runs)} "
                        f"| {rss_cell(runs)} | {loads} |"
                    )
    print("\n".join(out))


if __name__ == "__main__":
    main()
