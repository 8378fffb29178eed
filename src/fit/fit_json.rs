//! `fit.json`: everything one fit found, as [`FitReport`].
//!
//! The fit stage writes it; reports (and anything else) read it back through
//! the same types. Reading is lenient (optional parts may be absent, unknown
//! fields are ignored), so an entry written by an older version still loads.

use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::bootstrap::Interval;
use super::diagnostics::Finding;
use super::form::{Form, FormKind, Irreducible};
use super::holdout::Errors;
use super::isoflop::Isoflop;
use super::optimize::Multistart;
use super::table::Excluded;
use crate::json_file::{self, JsonFileError};

/// The file name, in a fit output directory.
pub const FILE: &str = "fit.json";

/// Replicates kept for bands: enough for 2.5/97.5 percentiles that move by a
/// few percent of the band's width, few enough to keep `fit.json` small
/// (a 4,000-replicate bootstrap would otherwise add 20,000 numbers).
pub const BAND_REPLICATES: usize = 100;

/// A number with its bootstrap interval, when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// 2.5th bootstrap percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo: Option<f64>,
    /// 97.5th bootstrap percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<f64>,
}

impl Estimate {
    /// Whether `x` lies in the interval (None without one).
    pub fn covers(&self, x: f64) -> Option<bool> {
        Some(self.lo? <= x && x <= self.hi?)
    }

    pub(super) fn new(value: f64, interval: Option<&Interval>) -> Self {
        Estimate {
            value,
            median: interval.map(|i| i.median),
            lo: interval.map(|i| i.lo),
            hi: interval.map(|i| i.hi),
        }
    }
}

/// Named values serialised as a JSON object in the given order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Ordered<T> {
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for InOrder<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(InOrder(std::marker::PhantomData))
    }
}

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// How the optimiser fared.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerReport {
    pub method: String,
    pub starts: usize,
    pub best_start: usize,
    /// Starts that ended within 1e-6 (relative) of the best objective.
    pub starts_within_1e_6: usize,
    pub failed_starts: usize,
    /// Objective evaluations over all starts.
    pub evaluations: u64,
    /// Whether the best start ended at a stationary point.
    pub converged: bool,
    pub termination: String,
    pub iterations: u64,
    pub grad_norm: f64,
}

impl OptimizerReport {
    pub(super) fn new(m: &Multistart) -> Self {
        OptimizerReport {
            method: "L-BFGS (argmin 0.11, More-Thuente line search), multistart".into(),
            starts: m.starts,
            best_start: m.best_start,
            starts_within_1e_6: m.within_1e6,
            failed_starts: m.failed,
            evaluations: m.evaluations,
            converged: m.best.converged,
            termination: m.best.termination.clone(),
            iterations: m.best.iterations,
            grad_norm: m.best.grad_norm,
        }
    }
}

/// Derived quantities at one budget, with intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetReport {
    pub c: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_opt: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_opt: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_param: Option<Estimate>,
    pub loss: Estimate,
    /// Decades of compute from the largest run to `c` (negative: within the
    /// runs); absent in files written before diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decades_beyond_runs: Option<f64>,
}

/// Derived quantities with intervals.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DerivedReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<Estimate>,
    pub budgets: Vec<BudgetReport>,
}

/// Bootstrap settings and health, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapReport {
    pub replicates: usize,
    pub random_starts: usize,
    pub seed: u64,
    pub not_converged: usize,
}

/// The extrapolation check, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutReport {
    pub rule: String,
    pub n_fit: usize,
    pub n_held_out: usize,
    /// Parameters fitted on the smaller runs only.
    #[serde(default)]
    pub parameters: Ordered<f64>,
    #[serde(default)]
    pub objective: f64,
    #[serde(flatten)]
    pub errors: Errors,
}

/// A fit on loss curves (`points = "curve"`): where its points came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveReport {
    pub skip_fraction: f64,
    pub min_d: f64,
    /// Runs with at least one point in the fit.
    pub runs: usize,
    /// Curve points in the fit.
    pub points: usize,
    /// Curve points left out (early, or not the end of a WSD cooldown).
    pub dropped: usize,
}

/// The loss of one (N, D) over its seed replicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSpread {
    pub n: f64,
    pub d: f64,
    pub seeds: usize,
    pub mean: f64,
    /// Sample standard deviation over the seeds.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

/// Seed replicates: how they entered the fit and how much they spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicatesReport {
    /// `mean` (one point per (N, D), the mean over seeds) or `all`.
    pub mode: String,
    /// Groups of runs that differ only in their seed.
    pub groups: usize,
    /// The most seeds of one group.
    pub max_seeds: usize,
    /// Pooled within-group standard deviation of ln(loss): the seed noise the
    /// prediction intervals add.
    pub log_seed_std: f64,
    /// Each group with more than one seed.
    pub spread: Vec<SeedSpread>,
}

/// A 95% prediction interval for the loss of one new run (a new seed), not
/// only for the fitted curve: parameter uncertainty from the bootstrap plus
/// seed noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionInterval {
    /// What is predicted: a held-out run's id or `budget <C>`.
    pub what: String,
    pub n: f64,
    pub d: f64,
    pub predicted: f64,
    pub lo: f64,
    pub hi: f64,
    /// The observed loss, for held-out runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
}

/// Everything `fit.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub form: FormKind,
    pub formula: String,
    /// `"free"` or the fixed value of E.
    pub e: serde_json::Value,
    /// Coefficients, E and exponents in natural units, with intervals.
    pub parameters: Ordered<Estimate>,
    /// The optimiser's parameter vector (`a = ln A`, ...).
    pub log_parameters: Ordered<f64>,
    #[serde(default)]
    pub objective: f64,
    #[serde(default)]
    pub huber_delta: f64,
    pub n_points: usize,
    pub optimizer: OptimizerReport,
    #[serde(default)]
    pub excluded: Vec<Excluded>,
    #[serde(default)]
    pub derived: DerivedReport,
    pub bootstrap: Option<BootstrapReport>,
    pub holdout: Option<HoldoutReport>,
    pub isoflop: Option<Isoflop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<CurveReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<ReplicatesReport>,
    /// For held-out runs and budgets, with a bootstrap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prediction_intervals: Vec<PredictionInterval>,
    /// What a reader must know before trusting the numbers (see
    /// [`super::diagnostics`]); empty in files written before diagnostics.
    #[serde(default)]
    pub diagnostics: Vec<Finding>,
    /// The log parameters of up to [`BAND_REPLICATES`] bootstrap replicates,
    /// so readers can draw uncertainty bands around fitted curves; absent
    /// without a bootstrap (and in files written before bands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub band_log_parameters: Vec<Vec<f64>>,
    /// The optimum, for predictions.
    #[serde(skip)]
    pub theta: Vec<f64>,
    /// The bootstrap's replicate optima.
    #[serde(skip)]
    pub bootstrap_thetas: Vec<Vec<f64>>,
}

impl FitReport {
    /// How E entered the fit.
    pub fn irreducible(&self) -> Irreducible {
        match self.e.as_f64() {
            Some(v) => Irreducible::Fixed(v),
            None => Irreducible::Free,
        }
    }

    pub fn e_is_free(&self) -> bool {
        self.irreducible() == Irreducible::Free
    }

    /// The fitted form and its optimum, rebuilt from the log parameters (a
    /// report read from disk has no `theta`); None if one is missing.
    pub fn fitted(&self) -> Option<(Form, Vec<f64>)> {
        let form = Form::new(self.form, self.irreducible());
        let theta = form
            .param_names()
            .iter()
            .map(|name| self.log_parameters.get(name).copied())
            .collect::<Option<Vec<f64>>>()?;
        Some((form, theta))
    }
}

/// Reads `fit.json` from a fit output directory.
pub fn read(dir: &Path) -> Result<FitReport, JsonFileError> {
    json_file::read(&dir.join(FILE), FILE)
}

/// Writes `fit.json` into a fit output directory.
pub fn write(dir: &Path, report: &FitReport) -> Result<(), JsonFileError> {
    json_file::write(&dir.join(FILE), FILE, report)
}
