# scalepipe tasks. Every recipe uses the release profile, so nothing compiles twice.
# The first build compiles every dependency: about 10-15 minutes on 2 cores.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List recipes.
default:
    @just --list

# Build the binary (the first build takes ~10-15 min on 2 cores).
build: _first-build-hint
    cargo build --release

# Run a pipeline, e.g. `just run pipelines/quickstart.toml --jobs 2`.
run file *args: _first-build-hint
    cargo run --release -- run {{file}} {{args}}

# Show what a run would do and why.
plan file *args: _first-build-hint
    cargo run --release -- plan {{file}} {{args}}

# Every stage kind's parameters, defaults and meaning (`--markdown` for docs/kinds.md).
kinds *args:
    cargo run --release -- kinds {{args}}

# Regenerate docs/kinds.md from the kinds' parameter tables.
docs:
    cargo run --release -- kinds --markdown > docs/kinds.md

_first-build-hint:
    @test -x "${CARGO_TARGET_DIR:-target}/release/scalepipe" || echo "note: first build, compiling every dependency (~10-15 min on 2 cores)" >&2

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

# Power-law fit speed vs scipy's L-BFGS-B (installs numpy, scipy into bench/.venv).
bench-fit:
    bash bench/fit/run.sh

# Training throughput vs PyTorch CPU (installs torch), e.g. `just bench-train --threads 1`.
bench-train *args:
    bash bench/train/run.sh {{args}}

# Store guarantees under SIGKILL: 200 seeded kills, verify, resume and count.
bench-faults *args:
    bash bench/faults/run.sh {{args}}

# Side-by-side with Snakemake and DVC (installs them; ~1 hour on 2 cores).
bench-compare *args:
    bash bench/engine/compare.sh {{args}}

# Markdown tables from compare.sh's raw measurements.
bench-report raw="bench/work/raw.tsv":
    python3 bench/engine/report.py {{raw}}

# Slurm executor: 1,000 trivial instances through the one-node cluster (arrays,
# single jobs) vs local, plain sbatch and Snakemake's slurm plugin (as root).
bench-slurm *args:
    bash bench/slurm/run.sh {{args}}
