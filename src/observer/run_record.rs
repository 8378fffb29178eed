//! The run record: what ran, what was cached and why, written with every run to
//! `results/<pipeline>/run.json` so a CI job can diff two runs.

use serde::{Deserialize, Serialize};

use crate::executor::Status;

/// One instance in the run record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub stage: String,
    pub kind: String,
    pub fingerprint: String,
    /// executed, cached, failed, skipped or not-run.
    pub status: Status,
    /// Why it ran (new, params changed, ...), empty when cached.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The Slurm jobs it ran as (`123`, `123_4` for an array task), one per
    /// submission.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slurm_jobs: Vec<String>,
}

/// `results/<pipeline>/run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub pipeline: String,
    pub file: String,
    pub seed: u64,
    pub scalepipe_version: String,
    /// Unix time in seconds.
    pub started: f64,
    pub duration_s: f64,
    pub jobs: usize,
    pub interrupted: bool,
    /// `"slurm"` for a run through Slurm; absent for a local run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// Warnings of the run (damaged entries quarantined, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub instances: Vec<InstanceRecord>,
}
