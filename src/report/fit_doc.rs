//! `fit.json` as the report reads it: a lenient mirror of the fit stage's
//! `FitReport` (unknown fields ignored, optional parts optional), so a report
//! keeps working when the fit grows new fields.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::law::Law;
use crate::fit::form::{Form, FormKind, Irreducible};

/// A number with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Estimate {
    pub value: f64,
    #[serde(default)]
    pub lo: Option<f64>,
    #[serde(default)]
    pub hi: Option<f64>,
}

impl Estimate {
    /// Whether `x` lies in the interval (None without one).
    pub fn covers(&self, x: f64) -> Option<bool> {
        Some(self.lo? <= x && x <= self.hi?)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Excluded {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BudgetDoc {
    pub c: f64,
    #[serde(default)]
    pub n_opt: Option<Estimate>,
    #[serde(default)]
    pub d_opt: Option<Estimate>,
    #[serde(default)]
    pub tokens_per_param: Option<Estimate>,
    pub loss: Estimate,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct DerivedDoc {
    #[serde(default)]
    pub a: Option<Estimate>,
    #[serde(default)]
    pub b: Option<Estimate>,
    #[serde(default)]
    pub budgets: Vec<BudgetDoc>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HeldOutRun {
    pub id: String,
    pub n: f64,
    pub d: f64,
    pub c: f64,
    pub observed: f64,
    pub predicted: f64,
    pub rel_error: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HoldoutDoc {
    pub rule: String,
    pub n_fit: usize,
    pub n_held_out: usize,
    pub mean_abs_error: f64,
    pub max_abs_error: f64,
    pub mean_rel_error: f64,
    pub max_rel_error: f64,
    #[serde(default)]
    pub runs: Vec<HeldOutRun>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BandDoc {
    pub c: f64,
    pub runs: usize,
    #[serde(default)]
    pub n_opt: Option<f64>,
    #[serde(default)]
    pub d_opt: Option<f64>,
    #[serde(default)]
    pub loss_min: Option<f64>,
    pub used: bool,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IsoflopDoc {
    pub bands: Vec<BandDoc>,
    #[serde(default)]
    pub a: Option<f64>,
    #[serde(default)]
    pub b: Option<f64>,
    #[serde(default)]
    pub k: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BootstrapDoc {
    pub replicates: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OptimizerDoc {
    pub starts: usize,
    #[serde(default)]
    pub starts_within_1e_6: usize,
    pub converged: bool,
}

/// The parts of `fit.json` a report shows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FitDoc {
    pub form: FormKind,
    pub formula: String,
    /// `"free"` or E's fixed value.
    pub e: serde_json::Value,
    pub parameters: BTreeMap<String, Estimate>,
    /// The optimiser's vector by name (`a = ln A`, ...).
    pub log_parameters: BTreeMap<String, f64>,
    pub n_points: usize,
    pub optimizer: OptimizerDoc,
    #[serde(default)]
    pub excluded: Vec<Excluded>,
    #[serde(default)]
    pub derived: DerivedDoc,
    #[serde(default)]
    pub bootstrap: Option<BootstrapDoc>,
    #[serde(default)]
    pub holdout: Option<HoldoutDoc>,
    #[serde(default)]
    pub isoflop: Option<IsoflopDoc>,
}

impl FitDoc {
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

    /// The fitted law, rebuilt from the log parameters; None if a parameter the
    /// form needs is missing.
    pub fn law(&self) -> Option<Law> {
        let form = Form::new(self.form, self.irreducible());
        let theta = form
            .param_names()
            .iter()
            .map(|name| self.log_parameters.get(*name).copied())
            .collect::<Option<Vec<f64>>>()?;
        Some(Law::new(form, theta))
    }

    /// Parameters in the form's reporting order (coefficients, E, exponents).
    pub fn ordered_parameters(&self) -> Vec<(String, Estimate)> {
        let Some(law) = self.law() else {
            return self
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
        };
        law.form()
            .natural(law.theta())
            .into_iter()
            .filter_map(|(name, _)| self.parameters.get(name).map(|e| (name.to_string(), *e)))
            .collect()
    }
}
