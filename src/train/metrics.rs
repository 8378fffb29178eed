//! `metrics.json`: the record of one training run, and of its evaluation.
//!
//! A `train` instance writes [`TrainMetrics`]; an `eval` instance writes
//! [`EvalMetrics`], the same record with the held-out loss as `loss` and the
//! evaluation's own fields beside it. Everything that reads runs back (the fit's
//! table, the report) goes through [`RunMetrics`], a lenient view: every field
//! optional and unknown keys kept, so old entries still load and a `command`
//! stage can write a `metrics.json` of its own for a fit to read.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::device::DeviceChoice;
use super::trainer::Status;
use crate::data::Split;
use crate::json_file::{self, JsonFileError};

/// The file name, in a train or eval output directory.
pub const FILE: &str = "metrics.json";

/// `metrics.json` of a train stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainMetrics {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at_step: Option<usize>,
    pub model: String,
    pub n_params: usize,
    pub n_params_non_embedding: usize,
    /// Training units seen: tokens for language models, examples for tables.
    pub d: usize,
    pub d_unit: String,
    /// 6 N D.
    pub flops: f64,
    /// Exact matrix-product FLOPs of forward and backward passes.
    pub flops_exact: f64,
    /// `cosine`, `constant` (no decay), or `wsd-cooldown`: a WSD run, which always ends with its
    /// cooldown (its last curve point and `loss` are end-of-cooldown values;
    /// curve points before `stable_end_step` are stable-phase ones).
    #[serde(default = "cosine")]
    pub schedule: String,
    /// WSD: the first cooldown step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_end_step: Option<usize>,
    /// Updates this instance executed: `steps` less `steps_resumed`.
    #[serde(default)]
    pub steps_executed: usize,
    /// Updates taken over from another run's stable-phase checkpoint.
    #[serde(default)]
    pub steps_resumed: usize,
    /// The instance whose checkpoint this run continued, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
    /// Exact FLOPs of the executed updates: the compute this instance spent.
    #[serde(default)]
    pub flops_executed: f64,
    /// Final training loss (mean of the last up to 20 steps).
    pub loss: Option<f64>,
    pub initial_loss: Option<f64>,
    pub steps: usize,
    pub steps_planned: usize,
    pub batch_size: usize,
    pub wall_time_s: f64,
    /// Units (tokens or examples) per second.
    pub throughput: f64,
    pub gflops_per_s: f64,
    pub device: DeviceChoice,
    pub threads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreducible_loss: Option<f64>,
    /// Id of the dataset instance trained on.
    pub dataset: String,
    /// The train instance's resolved parameters.
    pub params: serde_json::Value,
}

fn cosine() -> String {
    "cosine".into()
}

/// `metrics.json` of an eval stage: the training record with the held-out loss
/// as `loss`, so a fit reads one row per run whichever stage it lists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalMetrics {
    #[serde(flatten)]
    pub train: TrainMetrics,
    /// Final training loss (the train record's `loss`).
    pub train_loss: Option<f64>,
    pub split: Split,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Examples or tokens evaluated.
    pub eval_units: usize,
    pub eval_flops: f64,
    pub train_id: String,
}

/// Any `metrics.json` as readers see it: the fields they use, each optional, and
/// every other key kept in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_params: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreducible_loss: Option<f64>,
    /// The learning-rate schedule (`cosine`, `constant`, `wsd-stable`, `wsd-cooldown`, ...);
    /// absent in records from before schedules were recorded (cosine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Set by eval: the train instance evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_id: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl RunMetrics {
    /// Whether the record is an evaluation's (held-out loss) rather than a
    /// training run's (final training loss).
    pub fn is_eval(&self) -> bool {
        self.train_id.is_some()
    }

    /// Exact FLOPs a train run executed itself (less than its `flops_exact`
    /// when it continued another run's stable phase); `None` in records
    /// without it.
    pub fn flops_executed(&self) -> Option<f64> {
        self.other.get("flops_executed").and_then(|v| v.as_f64())
    }

    /// Exact FLOPs of all the run's updates: what training it from scratch costs.
    pub fn flops_exact(&self) -> Option<f64> {
        self.other.get("flops_exact").and_then(|v| v.as_f64())
    }

    /// Whether the record is a WSD run's (it names its cooldown start).
    pub fn is_wsd(&self) -> bool {
        self.other.contains_key("stable_end_step")
    }

    /// Every present field as one JSON object, for readers that pick fields by
    /// the name a user gives (the fit's column mapping).
    pub fn to_object(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// Whether `dir` holds a `metrics.json`.
pub fn exists(dir: &Path) -> bool {
    dir.join(FILE).is_file()
}

/// Reads any `metrics.json` in `dir` leniently.
pub fn read(dir: &Path) -> Result<RunMetrics, JsonFileError> {
    json_file::read(&dir.join(FILE), FILE)
}

/// Reads a train stage's `metrics.json` in full.
pub fn read_train(dir: &Path) -> Result<TrainMetrics, JsonFileError> {
    json_file::read(&dir.join(FILE), FILE)
}

/// Writes a train record into `dir`.
pub fn write_train(dir: &Path, metrics: &TrainMetrics) -> Result<(), JsonFileError> {
    json_file::write(&dir.join(FILE), FILE, metrics)
}

/// Writes a run record that no training produced (the `simulate` stage's
/// stand-in for a train+eval pair), read back like any other through [`read`].
pub fn write_run(dir: &Path, metrics: &RunMetrics) -> Result<(), JsonFileError> {
    json_file::write(&dir.join(FILE), FILE, metrics)
}

/// Writes an eval record into `dir`.
pub fn write_eval(dir: &Path, metrics: &EvalMetrics) -> Result<(), JsonFileError> {
    json_file::write(&dir.join(FILE), FILE, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_view_keeps_unknown_keys_and_skips_absent_ones() {
        let text = r#"{"n_params": 10, "loss": null, "custom": 3, "status": "ok"}"#;
        let m: RunMetrics = serde_json::from_str(text).unwrap();
        assert_eq!(m.n_params, Some(10.0));
        assert_eq!(m.loss, None);
        assert!(!m.is_eval());
        let object = m.to_object();
        assert_eq!(object["custom"], serde_json::json!(3));
        assert_eq!(object["status"], serde_json::json!("ok"));
        assert!(!object.contains_key("d"), "absent fields stay absent");
    }
}
