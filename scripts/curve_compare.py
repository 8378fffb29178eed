#!/usr/bin/env python3
"""Compare scaling-law fits of several settings over seeds (pipelines/curve_fits.toml).

Reads a pipeline's results directory (results/<pipeline>/): each setting's fit
instances `FIT[seed=s]/fit.json`, the training compute of the train instances
it was fitted on (`metrics.json`'s `flops_executed`), and the held-out target
runs' losses. For every setting it prints, over the seeds:

  - compute: training FLOPs executed per seed (and as a share of the baseline's);
  - E: mean |E - E_true| with its standard error, the median, and how many
    seeds put E at zero (< 1e-3);
  - prediction: mean |predicted / observed - 1| on the target runs (observed:
    their mean loss over the target seeds), with its standard error;
  - paired with the baseline (same seed, same data order and initialisation):
    the mean difference of each error with its standard error, and in how
    many seeds the setting's error was the smaller;
  - alpha and beta: mean and standard deviation over the seeds.

Usage:
  python3 scripts/curve_compare.py results/curve_fits [--e 0.09]
      [--setting NAME=FIT:TRAIN[+TRAIN...]]... [--baseline NAME] [--targets EVAL]

Only the standard library; the defaults match pipelines/curve_fits.toml.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys

DEFAULT_SETTINGS = [
    "grid=fit_grid:train",
    "cosine_curve=fit_cosine_curve:train_long",
    "constant_curve=fit_constant_curve:train_constant",
    "wsd=fit_wsd:train_wsd",
    "cosine_late=fit_cosine_curve_late:train_long",
    "constant_late=fit_constant_curve_late:train_constant",
]


def parse_id(name):
    """`stage[k=v,k=v]` -> (stage, {k: v})."""
    m = re.fullmatch(r"([^\[]+)(?:\[(.*)\])?", name)
    if not m:
        return None, {}
    point = {}
    if m.group(2):
        for part in m.group(2).split(","):
            k, _, v = part.partition("=")
            point[k] = v
    return m.group(1), point


def instances(results):
    """Every published instance: (stage, point, directory)."""
    out = []
    for name in sorted(os.listdir(results)):
        path = os.path.join(results, name)
        if os.path.isdir(path):
            stage, point = parse_id(name)
            if stage:
                out.append((stage, point, path))
    return out


def read_json(path):
    with open(path) as f:
        return json.load(f)


def mean_se(xs):
    if not xs:
        return float("nan"), float("nan")
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return m, se


def predict(p, n, d):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--e", type=float, default=0.09, help="the true irreducible loss")
    ap.add_argument("--setting", action="append", help="NAME=FIT:TRAIN[+TRAIN...]")
    ap.add_argument("--baseline", default="grid")
    ap.add_argument("--targets", default="eval_target")
    args = ap.parse_args()

    settings = []
    for spec in args.setting or DEFAULT_SETTINGS:
        name, _, rest = spec.partition("=")
        fit, _, trains = rest.partition(":")
        settings.append((name, fit, trains.split("+") if trains else []))

    found = instances(args.results)
    # Target runs: mean loss over their seeds per (N, D).
    by_nd = {}
    for stage, _, path in found:
        if stage == args.targets:
            m = read_json(os.path.join(path, "metrics.json"))
            by_nd.setdefault((m["n_params"], m["d"]), []).append(m["loss"])
    targets = {nd: statistics.fmean(v) for nd, v in sorted(by_nd.items())}

    rows = {}
    for name, fit, trains in settings:
        per_seed = {}
        for stage, point, path in found:
            if stage != fit or not os.path.isfile(os.path.join(path, "fit.json")):
                continue
            seed = point.get("seed")
            f = read_json(os.path.join(path, "fit.json"))
            p = {k: v["value"] for k, v in f["parameters"].items()}
            flops = 0.0
            examples = 0
            for tstage, tpoint, tpath in found:
                if tstage in trains and tpoint.get("seed") == seed:
                    tm = read_json(os.path.join(tpath, "metrics.json"))
                    flops += tm.get("flops_executed", tm.get("flops_exact", 0.0))
                    examples += tm.get("steps_executed", tm["steps"]) * tm["batch_size"]
            pred = [abs(predict(p, n, d) / obs - 1) for (n, d), obs in targets.items()]
            per_seed[seed] = {
                "E": p["E"],
                "alpha": p["alpha"],
                "beta": p["beta"],
                "e_err": abs(p["E"] - args.e),
                "pred_err": statistics.fmean(pred) if pred else float("nan"),
                "flops": flops,
                "examples": examples,
                "points": f.get("n_points"),
            }
        rows[name] = per_seed

    base = rows.get(args.baseline, {})
    base_flops = statistics.fmean([r["flops"] for r in base.values()]) if base else float("nan")
    print(f"results: {args.results}; true E = {args.e}; targets (N, D: mean loss): "
          + ", ".join(f"({n}, {d}: {l:.4f})" for (n, d), l in targets.items()))
    print()
    print("| setting | seeds | points | examples/seed | FLOPs/seed | share | mean abs(E - E*) +- se | median | E at 0 "
          "| mean target error +- se | alpha mean (sd) | beta mean (sd) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, _, _ in settings:
        r = rows[name]
        if not r:
            print(f"| {name} | 0 | | | | | | | | | | |")
            continue
        vals = list(r.values())
        e_m, e_se = mean_se([v["e_err"] for v in vals])
        p_m, p_se = mean_se([v["pred_err"] for v in vals])
        flops = statistics.fmean([v["flops"] for v in vals])
        ex = statistics.fmean([v["examples"] for v in vals])
        sd = lambda k: statistics.stdev([v[k] for v in vals]) if len(vals) > 1 else float("nan")
        print(f"| {name} | {len(vals)} | {vals[0]['points']} | {ex:.0f} | {flops:.3g} | {flops / base_flops:.0%} "
              f"| {e_m:.3f} +- {e_se:.3f} | {statistics.median([v['e_err'] for v in vals]):.3f} "
              f"| {sum(v['E'] < 1e-3 for v in vals)} | {p_m:.3f} +- {p_se:.3f} "
              f"| {statistics.fmean([v['alpha'] for v in vals]):.3f} ({sd('alpha'):.3f}) "
              f"| {statistics.fmean([v['beta'] for v in vals]):.3f} ({sd('beta'):.3f}) |")
    print()
    print(f"Paired with `{args.baseline}` (setting minus baseline, per seed; negative: the setting is closer):")
    print()
    print("| setting | seeds | mean diff abs(E - E*) +- se | setting closer | mean diff target error +- se | setting closer |")
    print("|---|---|---|---|---|---|")
    for name, _, _ in settings:
        if name == args.baseline:
            continue
        seeds = sorted(set(rows[name]) & set(base), key=lambda s: int(s))
        de = [rows[name][s]["e_err"] - base[s]["e_err"] for s in seeds]
        dp = [rows[name][s]["pred_err"] - base[s]["pred_err"] for s in seeds]
        (de_m, de_se), (dp_m, dp_se) = mean_se(de), mean_se(dp)
        print(f"| {name} | {len(seeds)} | {de_m:+.3f} +- {de_se:.3f} | {sum(x < 0 for x in de)}/{len(seeds)} "
              f"| {dp_m:+.3f} +- {dp_se:.3f} | {sum(x < 0 for x in dp)}/{len(seeds)} |")
    print()
    print("Per seed: E (target error)")
    for name, _, _ in settings:
        r = rows[name]
        print(f"  {name:16s} " + "  ".join(
            f"{s}:{r[s]['E']:.3f}({r[s]['pred_err']:.3f})" for s in sorted(r, key=lambda s: int(s))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
