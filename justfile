# scalepipe tasks. Every recipe uses the release profile, so nothing compiles twice.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List recipes.
default:
    @just --list

# Run a pipeline, e.g. `just run pipelines/quickstart.toml --jobs 2`.
run file *args:
    cargo run --release -- run {{file}} {{args}}

# Show what a run would do and why.
plan file *args:
    cargo run --release -- plan {{file}} {{args}}

# The whole test suite (what CI runs).
test *args:
    cargo test --release {{args}}

# Format and lint.
lint:
    cargo fmt --all -- --check
    cargo clippy --release --all-targets -- -D warnings

# Engine overhead: plan and no-op run of a 10,000-instance pipeline.
bench-engine *args:
    bash bench/engine/bench.sh {{args}}

# Power-law fit speed: the 4,500-start Chinchilla grid and 4,000 bootstrap refits,
# beside scipy's L-BFGS-B (installs numpy and scipy into bench/.venv).
bench-fit:
    bash bench/fit/run.sh

# Training throughput: dfdx MLPs and transformers at 3 sizes beside the same models
# in PyTorch CPU (installs torch into bench/.venv), e.g. `just bench-train --threads 1`.
bench-train *args:
    bash bench/train/run.sh {{args}}

# Store guarantees under SIGKILL: 200 seeded kills of a 50-instance run, then
# verify, resume and count (e.g. `just bench-faults --trials 50 --seed 2`).
bench-faults *args:
    bash bench/faults/run.sh {{args}}

# Side-by-side with Snakemake and DVC (installs them into bench/.venv; ~1 hour on
# 2 cores); `just bench-report bench/work/raw.tsv` prints the tables.
bench-compare *args:
    bash bench/engine/compare.sh {{args}}

# Markdown tables from compare.sh's raw measurements.
bench-report raw="bench/work/raw.tsv":
    python3 bench/engine/report.py {{raw}}
