//! `design.json`: what a design stage proposed and why, as [`DesignReport`].
//!
//! The design stage writes it; `scalepipe suggest` and the report read it back
//! through these types. Reading is lenient (unknown fields ignored, optional
//! parts may be absent).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fit::Estimate;
use crate::json_file::{self, JsonFileError};

/// The file name, in a design output directory.
pub const FILE: &str = "design.json";

/// The two numbers a design tries to pin down, with their intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// Compute-optimal N at the budget.
    pub n_opt: Estimate,
    /// Predicted loss at the compute-optimal allocation of the budget.
    pub loss: Estimate,
}

impl Targets {
    /// hi / lo of the N* interval (None without one).
    pub fn n_opt_ratio(&self) -> Option<f64> {
        Some(self.n_opt.hi? / self.n_opt.lo?)
    }
}

/// One proposed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposedRun {
    /// The stage parameters that make it: `n` and `d`, or the train stage's
    /// candidate keys (`width`, `examples`, ...). The fragment sweeps these.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub n: f64,
    pub d: f64,
    /// Training FLOPs, counted as `DesignReport::cost` says.
    pub flops: f64,
    /// Nats of information about ln N* and about ln L* when it was chosen
    /// (after the runs chosen before it).
    pub gain_n_opt: f64,
    pub gain_loss: f64,
    /// Standard deviation of the ensemble's predicted log loss at this run
    /// before any proposed run: how much the replicates disagree there.
    pub disagreement: f64,
}

/// The state of the study after one round of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub round: u32,
    /// Runs fitted up to and including this round.
    pub runs: usize,
    /// FLOPs of those runs.
    pub flops: f64,
    pub targets: Targets,
    /// `fit` (the fit stage's own result) or `refit` (the runs up to this
    /// round refitted by the design stage, with the fit's bootstrap settings).
    pub source: String,
}

/// Everything `design.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesignReport {
    /// The round the proposed runs make (one more than the latest run's).
    pub round: u32,
    /// The budget (FLOPs) of the final model whose N* and loss are targeted.
    pub budget: f64,
    /// FLOPs allowed for the proposed runs, and spent by them.
    pub spend: f64,
    pub spent: f64,
    pub k: usize,
    /// How the runs' FLOPs are counted: `6ND`, or exactly by the train family.
    #[serde(default = "six_nd")]
    pub cost: String,
    /// The criterion, in words, with its references.
    pub method: String,
    /// Which greedy pass won (`gain per FLOP` or `gain`).
    pub ranking: String,
    /// Standard deviation of an observed log loss around the law, as assumed.
    pub noise_sd: f64,
    /// Bootstrap replicates the criterion used.
    pub ensemble: usize,
    /// Candidates considered (not yet run).
    pub candidates: usize,
    /// The intervals now (the fit's).
    pub now: Targets,
    /// The intervals expected once the proposed runs are in.
    pub expected: Targets,
    pub runs: Vec<ProposedRun>,
    /// Earlier rounds and this one, oldest first.
    #[serde(default)]
    pub history: Vec<Round>,
    /// The sweep fragment written beside this file.
    pub fragment: String,
}

fn six_nd() -> String {
    super::Cost::SixNd.name().into()
}

/// Reads `design.json` from a design output directory.
pub fn read(dir: &Path) -> Result<DesignReport, JsonFileError> {
    json_file::read(&dir.join(FILE), FILE)
}

/// Whether `dir` holds a `design.json`.
pub fn exists(dir: &Path) -> bool {
    dir.join(FILE).is_file()
}

/// Writes `design.json` into a design output directory.
pub fn write(dir: &Path, report: &DesignReport) -> Result<(), JsonFileError> {
    json_file::write(&dir.join(FILE), FILE, report)
}
