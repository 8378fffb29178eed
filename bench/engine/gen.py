#!/usr/bin/env python3
"""Writes one workflow three ways: a scalepipe pipeline, a Snakefile, a dvc.yaml.

The workflow: K trivial jobs, job j writes its parameter value v_j into a small
file, and one aggregate job reads every job's file and writes how many lines it
read (K). The values live where each tool expects parameters:

- scalepipe: a zip sweep over (j, v) in `bench.toml`; the job's `cmd` uses `{v}`.
- Snakemake: `params.json` (the `configfile`); the job rule takes `v` as a
  `params:` entry, so Snakemake's default `params` rerun trigger sees a change.
- DVC: `params.yaml`, expanded by a `foreach` stage in `dvc.yaml`; the value is
  interpolated into the stage's `cmd`, so changing it changes that stage only.

Usage:
    gen.py TOOL K DIR            write the workflow for TOOL into DIR
    gen.py TOOL K DIR --change N set job K//2's value to a new value (N-th change)
    gen.py work-aggregate        print the aggregate's shell command for the work
                                 measured alone (compare.sh's baseline)

Only the Python standard library is used.
"""

import json
import os
import shlex
import sys

# The interpreter running this script, by its real path: `python3` on PATH may be
# a wrapper (pyenv's shim is a shell script costing ~0.2 s a start).
PYTHON = shlex.quote(sys.executable)

# Reads every input file and writes the number of lines read: the same work in
# all three tools (each hands the aggregate its inputs its own way; Snakemake's
# runs inside Snakemake as a `run:` block).
SCALEPIPE_AGGREGATE = (
    PYTHON + " -c 'import json, os; "
    'ins = json.load(open(os.environ["SCALEPIPE_INPUTS"])); '
    'print(sum(1 for i in ins for _ in open(os.path.join(i["dir"], "out.txt"))))'
    "' > count.txt"
)
DVC_AGGREGATE = (
    PYTHON + " -c 'import glob; "
    'print(sum(1 for p in glob.glob("out/*.txt") for _ in open(p)))'
    "' > count.txt"
)
# The same for the work measured alone (files `<j>.txt` in one directory).
WORK_AGGREGATE = (
    PYTHON + " -c 'import glob; "
    'print(sum(1 for p in glob.glob(\"*.txt\") for _ in open(p)))'
    "' > count.out"
)


def values(k, change):
    """The job values: v_j = j, except job k//2 after its `change`-th change.

    Every change gives a value never used before, so no tool can answer the
    re-run from an earlier cache entry (scalepipe's store, DVC's run cache).
    """
    vs = list(range(k))
    if change:
        vs[k // 2] = 10 * k + change
    return vs


def scalepipe(k, out, change):
    vs = values(k, change)
    with open(os.path.join(out, "bench.toml"), "w") as f:
        f.write('[pipeline]\nname = "bench"\n\n')
        f.write('[stages.job]\nkind = "command"\ncmd = "echo {v} > out.txt"\n')
        f.write('sweep_mode = "zip"\n[stages.job.sweep]\n')
        f.write("j = [" + ", ".join(str(j) for j in range(k)) + "]\n")
        f.write("v = [" + ", ".join(str(v) for v in vs) + "]\n\n")
        f.write('[stages.aggregate]\nkind = "command"\ninputs = ["job"]\n')
        f.write("cmd = " + json.dumps(SCALEPIPE_AGGREGATE) + "\n")


SNAKEFILE = """\
configfile: "params.json"

VALUES = config["values"]

wildcard_constraints:
    j=r"\\d+"

rule all:
    input: "count.txt"

rule job:
    output: "out/{j}.txt"
    params: v=lambda wc: VALUES[int(wc.j)]
    shell: "echo {params.v} > {output}"

rule aggregate:
    input: expand("out/{j}.txt", j=range(len(VALUES)))
    output: "count.txt"
    run:
        n = 0
        for path in input:
            with open(path) as f:
                n += sum(1 for _ in f)
        with open(output[0], "w") as f:
            f.write(f"{n}\\n")
"""


def snakemake(k, out, change):
    with open(os.path.join(out, "params.json"), "w") as f:
        json.dump({"values": values(k, change)}, f)
    if not change:
        with open(os.path.join(out, "Snakefile"), "w") as f:
            f.write(SNAKEFILE)


def dvc(k, out, change):
    # params.yaml is plain YAML written by hand: a list of {j, v} items.
    with open(os.path.join(out, "params.yaml"), "w") as f:
        f.write("jobs:\n")
        for j, v in enumerate(values(k, change)):
            f.write(f"- j: {j}\n  v: {v}\n")
    if not change:
        os.makedirs(os.path.join(out, "out"), exist_ok=True)
        with open(os.path.join(out, "dvc.yaml"), "w") as f:
            f.write(
                "stages:\n"
                "  job:\n"
                "    foreach: ${jobs}\n"
                "    do:\n"
                "      cmd: echo ${item.v} > out/${item.j}.txt\n"
                "      outs:\n"
                "      - out/${item.j}.txt\n"
                "  aggregate:\n"
                f"    cmd: {json.dumps(DVC_AGGREGATE)}\n"
                "    deps:\n"
                "    - out\n"
                "    outs:\n"
                "    - count.txt\n"
            )


def main():
    args = sys.argv[1:]
    if args == ["work-aggregate"]:
        print(WORK_AGGREGATE)
        return
    change = 0
    if "--change" in args:
        i = args.index("--change")
        change = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 3:
        sys.exit(__doc__)
    tool, k, out = args[0], int(args[1]), args[2]
    os.makedirs(out, exist_ok=True)
    {"scalepipe": scalepipe, "snakemake": snakemake, "dvc": dvc}[tool](k, out, change)


if __name__ == "__main__":
    main()
