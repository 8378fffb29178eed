//! The command line: parses arguments (clap), calls the workspace, prints.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::executor::Event;
use crate::graph::{render, GraphFormat};
use crate::reporter::TerminalReporter;
use crate::store::PipelineState;
use crate::workspace::{RunOptions, Workspace};

/// Declarative scaling-law experiments: datasets, training, evaluation, power-law
/// fits and reports, run as a cached, incremental DAG.
#[derive(Debug, Parser)]
#[command(name = "scalepipe", version, about)]
struct Cli {
    /// Directory holding `.scalepipe/` (the cache) and `results/`.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    workspace: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline: execute every stage instance that is not cached.
    Run {
        /// The pipeline file.
        file: PathBuf,
        /// Threads shared by running stages [default: number of cores].
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// After a failure, still run everything that does not depend on it.
        #[arg(long)]
        keep_going: bool,
        /// Run every instance, even those in the cache.
        #[arg(long)]
        force: bool,
        /// Print one JSON object describing the run on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show what a run would do with each instance, and why.
    Plan {
        file: PathBuf,
        /// Report every instance as forced.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the instance DAG as Graphviz DOT or Mermaid.
    Dag {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Show what the store holds.
    Status,
    /// Remove store entries that no pipeline's latest run references.
    Gc {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Set by Ctrl-C; running stages and the scheduler watch it.
static CANCEL: AtomicBool = AtomicBool::new(false);

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match execute(cli) {
        Ok(()) => 0,
        Err(e) => {
            match &e {
                Error::Pipeline(d) => eprintln!("{d}"),
                Error::StagesFailed { .. } | Error::Interrupted => eprintln!("scalepipe: {e}"),
                other => eprintln!("error: {other}"),
            }
            e.exit_code()
        }
    }
}

fn execute(cli: Cli) -> Result<(), Error> {
    let workspace = Workspace::new(&cli.workspace);
    match cli.command {
        Command::Run {
            file,
            jobs,
            keep_going,
            force,
            json,
        } => {
            let jobs = match jobs {
                Some(0) => return Err(Error::Usage("--jobs must be at least 1".into())),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            let plan = workspace.load(&file)?;
            let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::SeqCst));
            let reporter = TerminalReporter::new(json);
            let report = |event: &Event| reporter.event(event);
            let options = RunOptions {
                jobs,
                keep_going,
                force,
            };
            let run = workspace.run(&plan, &options, &CANCEL, &report, || {
                eprintln!(
                    "waiting for another scalepipe run to release {}",
                    workspace.store().root().join("lock").display()
                )
            })?;
            if json {
                let out = serde_json::json!({
                    "pipeline": plan.pipeline.name,
                    "executed": run.ids("executed"),
                    "cached": run.ids("cached"),
                    "failed": run.ids("failed"),
                    "skipped": run.ids("skipped"),
                    "not_run": run.ids("not-run"),
                    "record": run.record_path,
                });
                println!("{out}");
            } else {
                eprintln!(
                    "{}: {} executed, {} cached, {} failed, {} skipped in {:.2}s (record: {})",
                    plan.pipeline.name,
                    run.ids("executed").len(),
                    run.ids("cached").len(),
                    run.ids("failed").len(),
                    run.ids("skipped").len(),
                    run.record.duration_s,
                    run.record_path.display()
                );
            }
            let interrupted = run.record.interrupted;
            let failed = run.ids("failed").len();
            exit_without_freeing(plan);
            exit_without_freeing(run);
            if interrupted {
                return Err(Error::Interrupted);
            }
            if failed > 0 {
                return Err(Error::StagesFailed { failed });
            }
            Ok(())
        }
        Command::Plan { file, force, json } => {
            let plan = workspace.load(&file)?;
            let decisions = workspace.plan(&plan, force);
            // One buffered write per block, not one locked, flushed write per line.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if json {
                let stages: Vec<_> = plan
                    .instances
                    .iter()
                    .zip(&decisions)
                    .map(|(inst, d)| {
                        serde_json::json!({
                            "id": inst.id,
                            "kind": inst.kind.name,
                            "status": d.label(),
                            "reason": d.reason(),
                            "fingerprint": inst.fingerprint,
                        })
                    })
                    .collect();
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({ "pipeline": plan.pipeline.name, "stages": stages }),
                )
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
                .map_err(|e| Error::io("cannot write the plan", e))?;
            } else {
                let width = plan.instances.iter().map(|i| i.id.len()).max().unwrap_or(0);
                for (inst, d) in plan.instances.iter().zip(&decisions) {
                    writeln!(out, "{:<6} {:<width$}  {}", d.label(), inst.id, d.reason())
                        .map_err(|e| Error::io("cannot write the plan", e))?;
                }
                let to_run = decisions.iter().filter(|d| d.runs()).count();
                writeln!(
                    out,
                    "{} instances: {to_run} to run, {} cached",
                    decisions.len(),
                    decisions.len() - to_run
                )
                .map_err(|e| Error::io("cannot write the plan", e))?;
            }
            out.flush()
                .map_err(|e| Error::io("cannot write the plan", e))?;
            exit_without_freeing(plan);
            exit_without_freeing(decisions);
            Ok(())
        }
        Command::Dag { file, format } => {
            let plan = workspace.load(&file)?;
            print!("{}", render(&plan, format));
            exit_without_freeing(plan);
            Ok(())
        }
        Command::Status => {
            let store = workspace.store();
            let entries = store
                .entries()
                .map_err(|e| Error::io("cannot list the store", e))?;
            let states = PipelineState::load_all(store.root());
            let mut referenced = std::collections::HashSet::new();
            for state in &states {
                let present = state
                    .instances
                    .values()
                    .filter(|e| store.contains(&e.fingerprint))
                    .count();
                println!(
                    "{:<24} {} instances, {} in the store  ({})",
                    state.pipeline,
                    state.instances.len(),
                    present,
                    state.file
                );
                referenced.extend(state.instances.values().map(|e| e.fingerprint.clone()));
            }
            let bytes: u64 = entries.iter().map(|fp| store.size_of(fp)).sum();
            let unreferenced = entries
                .iter()
                .filter(|fp| !referenced.contains(*fp))
                .count();
            println!(
                "store {}: {} entries, {}, {} not referenced by any pipeline (remove with `scalepipe gc`)",
                store.root().display(),
                entries.len(),
                human_bytes(bytes),
                unreferenced
            );
            Ok(())
        }
        Command::Gc { dry_run } => {
            let report = workspace.gc(dry_run)?;
            for fp in &report.removed {
                println!("{} {fp}", if dry_run { "would remove" } else { "removed" });
            }
            println!(
                "{} {} entries ({}), kept {}",
                if dry_run { "would remove" } else { "removed" },
                report.removed.len(),
                human_bytes(report.bytes),
                report.kept
            );
            Ok(())
        }
    }
}

/// Drops a value the process no longer needs without freeing it. Every command
/// returns to `main` and exits right after, when the system reclaims the memory
/// at once; freeing a large plan allocation by allocation took a fifth of
/// `plan`'s time on a 100,000-instance sweep.
fn exit_without_freeing<T>(value: T) {
    std::mem::forget(value);
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
