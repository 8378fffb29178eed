//! `scalepipe worker SPEC`: what a Slurm job runs. It executes exactly the
//! instance its spec describes into the workspace's store, through the same
//! [`Attempt`] as a local run (claim, pending entry, atomic rename), and writes
//! its status file. It takes no workspace lock (the submitting run holds it)
//! and reads neither the pipeline file nor the rest of the plan. Its stage's
//! progress goes to its progress file (see [`progress`]) for the submitter.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::progress::{self, ProgressWriter};
use super::spec::{self, WorkerStatus};
use crate::executor::{Attempt, Claims, Event, Outcome};
use crate::stages::{self, ConfigureContext};
use crate::store::Store;

/// Why a worker could not execute its spec at all.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Spec(#[from] crate::json_file::JsonFileError),
    #[error("job spec {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot write the status file {path}: {source}")]
    Status {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Executes the instance of the spec at `path`, writes its status file, and
/// returns how it ended. Warnings and progress go to stderr, which Slurm keeps
/// in the job's output file.
pub fn run(path: &Path, cancel: &AtomicBool) -> Result<Outcome, WorkerError> {
    let clock = Instant::now();
    let spec = spec::read_spec(path)?;
    let invalid = |message: String| WorkerError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let kind =
        stages::kind(&spec.kind).ok_or_else(|| invalid(format!("unknown kind `{}`", spec.kind)))?;
    // A worker built from other sources than the submitter would commit
    // outputs under a key that does not describe them.
    if spec.key.kind_version != kind.version || spec.key.fingerprint() != spec.fingerprint {
        return Err(invalid(format!(
            "written by another scalepipe build (kind `{}` version {} here, {} in the spec; or its fingerprint does not match its key): use the same scalepipe binary on the cluster",
            spec.kind, kind.version, spec.key.kind_version
        )));
    }
    let cx = ConfigureContext {
        base_dir: &spec.base_dir,
        input_kinds: &spec.input_kinds,
    };
    let job = (kind.configure)(&spec.params, &cx)
        .map_err(|e| invalid(format!("cannot configure `{}`: {}", spec.id, e.message)))?;
    let store = Store::new(&spec.workspace);
    // The submitter shows progress from this file (no call to Slurm needed).
    let progress = ProgressWriter::new(progress::progress_path(path));
    let report = |event: &Event| match event {
        Event::StageWarning { id, message } => eprintln!("warning {id}: {message}"),
        Event::Progress {
            id,
            pos,
            len,
            message,
            ..
        } => {
            progress.report(*pos, *len, message);
            if *len > 0 && (pos * 10 / len) != ((pos.saturating_sub(1)) * 10 / len) {
                eprintln!("{id}: {pos}/{len} {message}")
            }
        }
        _ => {}
    };
    let outcome = if store.contains(&spec.fingerprint) {
        Outcome::Reused
    } else {
        Attempt {
            id: &spec.id,
            stage: &spec.stage,
            pipeline: &spec.pipeline,
            pipeline_file: &spec.pipeline_file,
            fingerprint: &spec.fingerprint,
            key: &spec.key,
            job: job.as_ref(),
            params: &spec.params,
            inputs: &spec.inputs,
            threads: spec.threads,
            timeout: spec.timeout_s.map(Duration::from_secs_f64),
            prefix: spec.prefix.as_deref(),
            prefix_entries: &spec.prefix_entries,
        }
        .execute(&store, &Claims::new(store.root()), cancel, &report)
    };
    // A signal (Slurm's time limit, scancel, preemption) also ends a stage's
    // processes, which may make the stage fail on its own before it sees the
    // flag: the submitter asks Slurm why, so the status says "signalled".
    let outcome = match outcome {
        Outcome::Failed { .. } if cancel.load(Ordering::Relaxed) => Outcome::Cancelled,
        other => other,
    };
    match &outcome {
        Outcome::Executed => eprintln!("scalepipe worker: {} committed", spec.id),
        Outcome::Reused => eprintln!("scalepipe worker: {} was in the store already", spec.id),
        Outcome::Failed { message, log } => eprintln!(
            "scalepipe worker: {} FAILED: {message} (log: {})",
            spec.id,
            log.display()
        ),
        Outcome::Cancelled => eprintln!("scalepipe worker: {} stopped by a signal", spec.id),
    }
    let status_path = spec::status_path(path);
    spec::write_status(
        &status_path,
        &WorkerStatus::of(&outcome, clock.elapsed().as_secs_f64()),
    )
    .map_err(|source| WorkerError::Status {
        path: status_path.display().to_string(),
        source,
    })?;
    Ok(outcome)
}
