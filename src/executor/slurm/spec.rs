//! The two files between a Slurm run and its workers, owned here: the job spec
//! the submitter writes for each instance (`<batch>/<task>.json`) and the
//! status file the worker writes when it ends (`<batch>/<task>.status.json`).
//!
//! A spec is the instance fully resolved: kind, resolved parameters, input
//! entries and fingerprint. A worker configures the kind from it and nothing
//! else, so it never reads the pipeline file or plans the DAG.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::executor::Outcome;
use crate::json_file::{self, JsonFileError};
use crate::stages::{InputRef, PrefixEntry};
use crate::store::CacheKey;

/// One instance as a worker executes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// The workspace whose `.scalepipe/` store the entry is committed to.
    pub workspace: PathBuf,
    pub pipeline: String,
    /// The pipeline file the run started from (reports name it; never read).
    pub pipeline_file: PathBuf,
    /// Where relative paths in parameters resolve (the pipeline file's directory).
    pub base_dir: PathBuf,
    pub stage: String,
    pub id: String,
    pub kind: String,
    /// The instance's cache key: kind version, canonical parameters, input
    /// fingerprints, file hashes. Written into the entry's manifest.
    pub key: CacheKey,
    pub fingerprint: String,
    /// Resolved parameters (sweep values and seed applied).
    pub params: toml::Table,
    /// Kinds of the stage's input stages, as kinds are configured with them.
    pub input_kinds: Vec<String>,
    pub inputs: Vec<InputRef>,
    pub threads: usize,
    /// The stage's `timeout`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// The instance's prefix fingerprint (`Job::prefix`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Committed entries sharing that prefix when the job was submitted
    /// (a WSD run continues from the latest of their checkpoints).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_entries: Vec<PrefixEntry>,
}

/// How a worker ended, as its status file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerOutcome {
    /// Executed and committed.
    Executed,
    /// The entry was committed already (by another job of the same fingerprint).
    Reused,
    /// The stage failed.
    Failed,
    /// Stopped by a signal (Slurm's time limit, `scancel`, preemption): the
    /// submitter asks Slurm why.
    Signalled,
}

/// `<task>.status.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub outcome: WorkerOutcome,
    /// The worker's exit code.
    pub exit_code: i32,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The failed attempt's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// Where the worker ran.
    pub host: String,
}

impl WorkerStatus {
    /// The status of a worker whose attempt ended with `outcome`.
    pub fn of(outcome: &Outcome, duration_s: f64) -> WorkerStatus {
        let (outcome, exit_code, message, log) = match outcome {
            Outcome::Executed => (WorkerOutcome::Executed, 0, None, None),
            Outcome::Reused => (WorkerOutcome::Reused, 0, None, None),
            Outcome::Failed { message, log } => (
                WorkerOutcome::Failed,
                1,
                Some(message.clone()),
                Some(log.clone()),
            ),
            Outcome::Cancelled => (WorkerOutcome::Signalled, 130, None, None),
        };
        WorkerStatus {
            outcome,
            exit_code,
            duration_s,
            message,
            log,
            host: crate::process::hostname(),
        }
    }
}

/// Where a spec's status file goes: beside it.
pub fn status_path(spec: &Path) -> PathBuf {
    spec.with_extension("status.json")
}

pub fn write_spec(path: &Path, spec: &JobSpec) -> Result<(), JsonFileError> {
    json_file::write(path, "job spec", spec)
}

pub fn read_spec(path: &Path) -> Result<JobSpec, JsonFileError> {
    json_file::read(path, "job spec")
}

/// Written atomically: the submitter may read it the moment the job leaves the queue.
pub fn write_status(path: &Path, status: &WorkerStatus) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::store::durable::write_atomic(path, &json)
}

/// The status a worker left, `None` if it left none (or an unreadable one).
pub fn read_status(path: &Path) -> Option<WorkerStatus> {
    json_file::read(path, "worker status").ok()
}
