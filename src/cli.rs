//! The command line: parses arguments (clap), calls the workspace, prints. One
//! function per subcommand; the workspace does the work, these only render it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::error::Error;
use crate::executor::{Decision, Event, Outcome, Status};
use crate::graph::{render, GraphFormat, Plan};
use crate::observer::TerminalReporter;
use crate::pipeline::{ExecutorKind, SlurmOverrides};
use crate::workspace::{RunOptions, Workspace};

/// Declarative scaling-law experiments: datasets, training, evaluation, power-law
/// fits and reports, run as a cached, incremental DAG.
#[derive(Debug, Parser)]
#[command(name = "scalepipe", version, about)]
struct Cli {
    /// Directory holding `.scalepipe/` (the cache) and `results/` [default: the
    /// pipeline file's directory; for `status` and `gc`, the current directory].
    #[arg(long, global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,
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
        /// Re-hash every cached entry the run uses against its manifest (by
        /// default only sizes and modification times are checked).
        #[arg(long)]
        verify: bool,
        /// Print one JSON object describing the run on stdout.
        #[arg(long)]
        json: bool,
        /// Where stage instances run: here, or as Slurm jobs (`sbatch`).
        #[arg(long, value_enum, default_value = "local")]
        executor: ExecutorKind,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Execute one instance from the job spec a Slurm run wrote (what its jobs run).
    Worker {
        /// The job spec, `.scalepipe/slurm/<run>/<batch>/<task>.json`.
        spec: PathBuf,
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
    /// Re-hash store entries against their manifests; exit 1 if any is bad.
    Verify {
        /// Only the entries of this pipeline's latest run.
        #[arg(long, value_name = "NAME")]
        pipeline: Option<String>,
        /// Move bad entries to `.scalepipe/quarantine/` (the next run re-computes them).
        #[arg(long)]
        repair: bool,
    },
    /// Print the proposal of a pipeline's design stage in plain words: which
    /// runs, why, and the intervals before and expected after.
    Suggest {
        /// The pipeline file.
        file: PathBuf,
    },
    /// Every stage kind's parameters: type, default and meaning.
    Kinds {
        /// Print docs/kinds.md (Markdown tables) instead of plain text.
        #[arg(long)]
        markdown: bool,
    },
}

/// `[executor.slurm]` options on the command line; each replaces the file's.
#[derive(Debug, clap::Args)]
struct SlurmArgs {
    /// Slurm partition (`sbatch --partition`).
    #[arg(long, value_name = "NAME")]
    partition: Option<String>,
    /// Slurm account (`sbatch --account`).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// Slurm quality of service (`sbatch --qos`).
    #[arg(long, value_name = "NAME")]
    qos: Option<String>,
    /// Instances in flight on Slurm at most [default: 500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_jobs: Option<u64>,
    /// Seconds between two `squeue` polls [default: 5].
    #[arg(long, value_name = "SECONDS")]
    poll: Option<f64>,
    /// Tasks of one job array running at once (`--array=...%N`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    array_limit: Option<u32>,
    /// One Slurm job per instance instead of a job array per stage and pass.
    #[arg(long)]
    no_arrays: bool,
    /// An argument passed to `sbatch` (repeat it; replaces the file's `sbatch_args`).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
}

impl SlurmArgs {
    fn overrides(self) -> Result<SlurmOverrides, Error> {
        let poll = match self.poll {
            Some(s) if !(s.is_finite() && s > 0.0 && s < 1e6) => {
                return Err(Error::Usage(format!("--poll {s}: expected seconds > 0")))
            }
            Some(s) => Some(std::time::Duration::from_secs_f64(s)),
            None => None,
        };
        Ok(SlurmOverrides {
            partition: self.partition,
            account: self.account,
            qos: self.qos,
            max_jobs: self.max_jobs.map(|n| n as usize),
            poll,
            array_limit: self.array_limit,
            sbatch_args: (!self.sbatch_args.is_empty()).then_some(self.sbatch_args),
            arrays: self.no_arrays.then_some(false),
        })
    }
}

impl Command {
    /// The pipeline file the command reads, if any.
    fn file(&self) -> Option<&Path> {
        match self {
            Command::Run { file, .. }
            | Command::Plan { file, .. }
            | Command::Dag { file, .. }
            | Command::Suggest { file } => Some(file),
            Command::Status
            | Command::Worker { .. }
            | Command::Gc { .. }
            | Command::Verify { .. }
            | Command::Kinds { .. } => None,
        }
    }

    /// Whether `--json` was given: errors are then printed as JSON on stdout.
    fn json(&self) -> bool {
        matches!(
            self,
            Command::Run { json: true, .. } | Command::Plan { json: true, .. }
        )
    }
}

/// An error as `--json` prints it: one object on stdout.
#[derive(Serialize)]
struct JsonError<'a> {
    error: String,
    exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'a str>,
}

fn print_json_error(e: &Error, file: Option<&Path>) {
    let mut out = JsonError {
        error: e.to_string(),
        exit_code: e.exit_code(),
        file,
        line: None,
        column: None,
        stage: None,
    };
    if let Error::Pipeline(d) = e {
        out.error = d.message.clone();
        out.file = Some(&d.path);
        out.line = d.location.map(|(line, _)| line);
        out.column = d.location.map(|(_, column)| column);
        out.stage = d.stage.as_deref();
    }
    match serde_json::to_string(&out) {
        Ok(line) => println!("{line}"),
        Err(err) => eprintln!("error: cannot write the error as JSON: {err}"),
    }
}

/// The most stage threads `--jobs` may ask for: far above any machine's cores,
/// well below what makes thread creation fail.
const MAX_JOBS: usize = 1024;

/// Set by Ctrl-C; running stages and the executor watch it.
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
    let json = cli.command.json();
    let file = cli.command.file().map(Path::to_path_buf);
    match execute(cli) {
        Ok(()) => 0,
        Err(e) => {
            // A failed or interrupted run has printed its JSON summary already.
            let summarised = matches!(e, Error::StagesFailed { .. } | Error::Interrupted);
            if json && !summarised {
                print_json_error(&e, file.as_deref());
            }
            match &e {
                Error::Pipeline(diagnostic) => eprintln!("{diagnostic}"),
                Error::StagesFailed { .. } | Error::Interrupted => eprintln!("scalepipe: {e}"),
                other => eprintln!("error: {other}"),
            }
            e.exit_code()
        }
    }
}

fn execute(cli: Cli) -> Result<(), Error> {
    let dir = match (&cli.workspace, cli.command.file()) {
        (Some(dir), _) => dir.clone(),
        (None, Some(file)) => default_workspace(file),
        (None, None) => PathBuf::from("."),
    };
    let workspace = Workspace::new(dir);
    match cli.command {
        Command::Run {
            file,
            jobs,
            keep_going,
            force,
            verify,
            json,
            executor,
            slurm,
        } => run(
            &workspace,
            &file,
            jobs,
            RunOptions {
                jobs: 0,
                keep_going,
                force,
                verify,
                executor,
                slurm: slurm.overrides()?,
            },
            json,
        ),
        Command::Worker { spec } => worker(&spec),
        Command::Plan { file, force, json } => plan(&workspace, &file, force, json),
        Command::Dag { file, format } => dag(&workspace, &file, format),
        Command::Suggest { file } => suggest(&workspace, &file),
        Command::Status => status(&workspace),
        Command::Gc { dry_run } => gc(&workspace, dry_run),
        Command::Verify { pipeline, repair } => verify(&workspace, pipeline.as_deref(), repair),
        Command::Kinds { markdown } => {
            let text = if markdown {
                crate::kinds_doc::markdown()
            } else {
                crate::kinds_doc::text()
            };
            print!("{text}");
            Ok(())
        }
    }
}

/// The workspace a pipeline file uses when `--workspace` is not given, found
/// the way git finds its repository, so a pipeline finds its cache from
/// wherever it is run: the nearest directory at or above the file's that holds
/// a `.scalepipe/`; else the current directory when the file lies under it (a
/// project with `pipelines/` and `results/` side by side); else the file's own
/// directory.
fn default_workspace(file: &Path) -> PathBuf {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let file_dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Some(found) = file_dir
        .ancestors()
        .find(|dir| dir.join(".scalepipe").is_dir())
    {
        return found.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) if file_dir.starts_with(&cwd) => cwd,
        _ => file_dir,
    }
}

/// `scalepipe run --json`: the ids of the instances by how they ended, and where
/// the run record went.
#[derive(Serialize)]
struct RunSummary<'a> {
    // Keys in the order the output has always had (sorted: it was built as a
    // `serde_json` map).
    cached: Vec<&'a str>,
    executed: Vec<&'a str>,
    failed: Vec<&'a str>,
    not_run: Vec<&'a str>,
    pipeline: &'a str,
    record: &'a Path,
    skipped: Vec<&'a str>,
    /// Slurm jobs the run submitted (array tasks counted one each); absent
    /// for a local run.
    #[serde(skip_serializing_if = "Option::is_none")]
    slurm_jobs: Option<usize>,
}

fn run(
    workspace: &Workspace,
    file: &Path,
    jobs: Option<usize>,
    options: RunOptions,
    json: bool,
) -> Result<(), Error> {
    let jobs = match jobs {
        Some(0) => return Err(Error::Usage("--jobs must be at least 1".into())),
        Some(n) if n > MAX_JOBS => {
            return Err(Error::Usage(format!(
                "--jobs {n} is more than the {MAX_JOBS} stage threads scalepipe starts at most"
            )))
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let plan = workspace.load(file)?;
    eprintln!("workspace: {}", workspace.root().display());
    let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::SeqCst));
    let reporter = TerminalReporter::new(json);
    let report = |event: &Event| reporter.event(event);
    let options = RunOptions { jobs, ..options };
    let done = workspace.run(&plan, &options, &CANCEL, &report, || {
        eprintln!(
            "waiting for another scalepipe run to release {}",
            workspace.store().root().join("lock").display()
        )
    })?;
    let failed = done.ids(Status::Failed).len();
    for line in crate::observer::outcome_lines(&plan, &done.record, workspace.root()) {
        eprintln!("{line}");
    }
    if json {
        let summary = RunSummary {
            cached: done.ids(Status::Cached),
            executed: done.ids(Status::Executed),
            failed: done.ids(Status::Failed),
            not_run: done.ids(Status::NotRun),
            pipeline: &plan.pipeline.name,
            record: &done.record_path,
            skipped: done.ids(Status::Skipped),
            slurm_jobs: done.record.executor.as_ref().map(|_| {
                done.record
                    .instances
                    .iter()
                    .map(|i| i.slurm_jobs.len())
                    .sum()
            }),
        };
        let line = serde_json::to_string(&summary).map_err(std::io::Error::from);
        println!(
            "{}",
            line.map_err(|e| Error::io("cannot write the run summary", e))?
        );
    } else {
        eprintln!(
            "{}: {} executed, {} cached, {failed} failed, {} skipped in {:.2}s (record: {})",
            plan.pipeline.name,
            done.ids(Status::Executed).len(),
            done.ids(Status::Cached).len(),
            done.ids(Status::Skipped).len(),
            done.record.duration_s,
            done.record_path.display()
        );
    }
    let interrupted = done.record.interrupted;
    exit_without_freeing(plan);
    exit_without_freeing(done);
    if interrupted {
        return Err(Error::Interrupted);
    }
    if failed > 0 {
        return Err(Error::StagesFailed { failed });
    }
    Ok(())
}

/// `scalepipe worker SPEC`: exit 0 when the entry is committed (or was
/// already), 1 when the stage failed, 130 when a signal stopped it.
fn worker(spec: &Path) -> Result<(), Error> {
    let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::SeqCst));
    match crate::executor::slurm::worker::run(spec, &CANCEL) {
        Ok(Outcome::Executed | Outcome::Reused) => Ok(()),
        Ok(Outcome::Failed { .. }) => Err(Error::StagesFailed { failed: 1 }),
        Ok(Outcome::Cancelled) => Err(Error::Interrupted),
        Err(e) => Err(Error::Usage(format!("scalepipe worker: {e}"))),
    }
}

fn plan(workspace: &Workspace, file: &Path, force: bool, json: bool) -> Result<(), Error> {
    let plan = workspace.load(file)?;
    let decisions = workspace.plan(&plan, force)?;
    // One buffered write per block, not one locked, flushed write per line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json {
        write_plan_json(&mut out, &plan, &decisions)
    } else {
        write_plan_text(&mut out, &plan, &decisions)
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write the plan", e))?;
    exit_without_freeing(plan);
    exit_without_freeing(decisions);
    Ok(())
}

/// One instance in `plan --json`. Fields in sorted order, the order the output
/// had when it was built as a `serde_json` map.
#[derive(Serialize)]
struct PlanLine<'a> {
    fingerprint: &'a str,
    id: &'a str,
    kind: &'a str,
    reason: &'a str,
    status: &'a str,
}

/// `{"pipeline": ..., "stages": [...]}`, written instance by instance: a
/// million-instance plan is never held as one JSON value.
fn write_plan_json(out: &mut impl Write, plan: &Plan, decisions: &[Decision]) -> io::Result<()> {
    out.write_all(b"{\"pipeline\":")?;
    serde_json::to_writer(&mut *out, &plan.pipeline.name)?;
    out.write_all(b",\"stages\":[")?;
    for (n, (inst, decision)) in plan.instances.iter().zip(decisions).enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        let line = PlanLine {
            fingerprint: &inst.fingerprint,
            id: &inst.id,
            kind: inst.kind.name,
            reason: decision.reason(),
            status: decision.label(),
        };
        serde_json::to_writer(&mut *out, &line)?;
    }
    out.write_all(b"]}\n")
}

fn write_plan_text(out: &mut impl Write, plan: &Plan, decisions: &[Decision]) -> io::Result<()> {
    // Capped: ids can be longer than a format width may be (65,535), and a
    // column wider than a screen aligns nothing.
    let width = plan
        .instances
        .iter()
        .map(|i| i.id.len())
        .max()
        .unwrap_or(0)
        .min(MAX_ID_COLUMN);
    for (inst, decision) in plan.instances.iter().zip(decisions) {
        writeln!(
            out,
            "{:<6} {:<width$}  {}",
            decision.label(),
            inst.id,
            decision.reason()
        )?;
    }
    let to_run = decisions.iter().filter(|d| d.runs()).count();
    writeln!(
        out,
        "{} instances: {to_run} to run, {} cached",
        decisions.len(),
        decisions.len() - to_run
    )
}

fn dag(workspace: &Workspace, file: &Path, format: GraphFormat) -> Result<(), Error> {
    let plan = workspace.load(file)?;
    print!("{}", render(&plan, format));
    exit_without_freeing(plan);
    Ok(())
}

/// `scalepipe suggest`: every design instance's proposal, read from the store
/// entry of the pipeline as it is now (a design that has not run since the
/// pipeline changed is refused, naming the command that runs it).
fn suggest(workspace: &Workspace, file: &Path) -> Result<(), Error> {
    use crate::design::{design_json, fragment, words};
    let plan = workspace.load(file)?;
    let designs: Vec<&crate::graph::Instance> = plan
        .instances
        .iter()
        .filter(|i| i.kind.name == "design")
        .collect();
    if designs.is_empty() {
        return Err(Error::Usage(format!(
            "{} has no stage of kind `design`",
            file.display()
        )));
    }
    let results = crate::store::ResultsView::new(workspace.root(), &plan.pipeline.name);
    let mut text = String::new();
    for instance in designs {
        let dir = workspace.store().out_dir(&instance.fingerprint);
        if !design_json::exists(&dir) {
            return Err(Error::Usage(format!(
                "{} has not run for the pipeline as it is now: run `scalepipe run {}` first",
                instance.id,
                file.display()
            )));
        }
        let report = design_json::read(&dir)
            .map_err(|e| Error::Refused(format!("cannot read the design: {e}")))?;
        let proposal = results.instance_dir(&instance.id).join(fragment::FILE);
        let entry = format!("design/round{}.toml", report.round);
        let copy_to = file.parent().unwrap_or(Path::new("")).join(&entry);
        text.push_str(&words::describe(
            &report,
            &instance.id,
            &proposal.display().to_string(),
            &copy_to.display().to_string(),
            &entry,
        ));
        text.push('\n');
    }
    print!("{text}");
    Ok(())
}

fn status(workspace: &Workspace) -> Result<(), Error> {
    let status = workspace.status()?;
    for pipeline in &status.pipelines {
        println!(
            "{:<24} {} instances, {} in the store  ({})",
            pipeline.name, pipeline.instances, pipeline.in_store, pipeline.file
        );
    }
    println!(
        "store {}: {} entries, {}, {} not referenced by any pipeline (remove with `scalepipe gc`)",
        status.root.display(),
        status.entries,
        human_bytes(status.bytes),
        status.unreferenced
    );
    Ok(())
}

fn gc(workspace: &Workspace, dry_run: bool) -> Result<(), Error> {
    let report = workspace.gc(dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for fingerprint in &report.removed {
        println!("{verb} {fingerprint}");
    }
    println!(
        "{verb} {} entries ({}), kept {}",
        report.removed.len(),
        human_bytes(report.bytes),
        report.kept
    );
    Ok(())
}

/// Widest id column `plan` pads to.
const MAX_ID_COLUMN: usize = 100;

fn verify(workspace: &Workspace, pipeline: Option<&str>, repair: bool) -> Result<(), Error> {
    let report = workspace.verify(pipeline, repair)?;
    for (entry, moved) in &report.bad {
        match moved {
            Some(dir) => println!("bad {entry} (quarantined in {})", dir.display()),
            None => println!("bad {entry}"),
        }
    }
    println!(
        "verified {} entries: {} bad{}",
        report.checked,
        report.bad.len(),
        if !report.bad.is_empty() && !repair {
            " (move them aside with `scalepipe verify --repair`)"
        } else {
            ""
        }
    );
    if report.bad.is_empty() {
        Ok(())
    } else {
        Err(Error::BadEntries {
            bad: report.bad.len(),
        })
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
