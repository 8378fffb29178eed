//! One complete fit: the multistart optimum, bootstrap intervals, derived
//! quantities, the extrapolation check and the IsoFLOP cross-check, gathered into
//! the [`FitReport`] that becomes `fit.json`.
//!
//! It works on runs already selected and does no I/O, so tests drive it directly;
//! the `fit` stage reads tables, calls it and writes the files.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::bootstrap::{self, Bootstrap, BootstrapSettings, Interval};
use super::derived::{budget_key, Derived};
use super::form::{Form, FormKind, Irreducible};
use super::grid::Grid;
use super::holdout::{self, Errors, Holdout};
use super::isoflop::{self, Isoflop, IsoflopSettings};
use super::objective::{Objective, Observation, Points};
use super::optimize::{self, Cancelled, Multistart, Settings};
use super::table::Excluded;

/// What to fit and what to compute around the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub form: Form,
    /// Huber's delta on log loss (Hoffmann et al.: 1e-3).
    pub delta: f64,
    pub grid: Grid,
    pub optimizer: Settings,
    /// Compute budgets (FLOPs) to derive optimal allocations and losses at.
    pub budgets: Vec<f64>,
    pub bootstrap: Option<BootstrapSettings>,
    pub holdout: Option<Holdout>,
    pub isoflop: Option<IsoflopSettings>,
}

/// Progress and cancellation, so long fits can be watched and interrupted.
pub struct Hooks<'a> {
    /// `(phase, done, total)`.
    pub progress: &'a (dyn Fn(&str, u64, u64) + Sync),
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

/// Why a fit could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    #[error("{what}: {have} usable runs, but the {form} form has {need} free parameters and needs at least {need} runs")]
    TooFewRuns {
        what: &'static str,
        have: usize,
        need: usize,
        form: &'static str,
    },
    #[error("interrupted")]
    Cancelled,
}

impl From<Cancelled> for AnalysisError {
    fn from(_: Cancelled) -> Self {
        AnalysisError::Cancelled
    }
}

/// A number with its bootstrap interval, when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// 2.5th bootstrap percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lo: Option<f64>,
    /// 97.5th bootstrap percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hi: Option<f64>,
}

impl Estimate {
    fn new(value: f64, interval: Option<&Interval>) -> Self {
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizerReport {
    pub method: &'static str,
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
    fn new(m: &Multistart) -> Self {
        OptimizerReport {
            method: "L-BFGS (argmin 0.11, More-Thuente line search), multistart",
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetReport {
    pub c: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_opt: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_opt: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_param: Option<Estimate>,
    pub loss: Estimate,
}

/// Derived quantities with intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerivedReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<Estimate>,
    pub budgets: Vec<BudgetReport>,
}

/// Bootstrap settings and health, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapReport {
    pub replicates: usize,
    pub random_starts: usize,
    pub seed: u64,
    pub not_converged: usize,
}

/// The extrapolation check, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldoutReport {
    pub rule: String,
    pub n_fit: usize,
    pub n_held_out: usize,
    /// Parameters fitted on the smaller runs only.
    pub parameters: Ordered<f64>,
    pub objective: f64,
    #[serde(flatten)]
    pub errors: Errors,
}

/// Everything `fit.json` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    pub form: FormKind,
    pub formula: String,
    /// `"free"` or the fixed value of E.
    pub e: serde_json::Value,
    /// Coefficients, E and exponents in natural units, with intervals.
    pub parameters: Ordered<Estimate>,
    /// The optimiser's parameter vector (`a = ln A`, ...).
    pub log_parameters: Ordered<f64>,
    pub objective: f64,
    pub huber_delta: f64,
    pub n_points: usize,
    pub optimizer: OptimizerReport,
    pub excluded: Vec<Excluded>,
    pub derived: DerivedReport,
    pub bootstrap: Option<BootstrapReport>,
    pub holdout: Option<HoldoutReport>,
    pub isoflop: Option<Isoflop>,
    /// The optimum, for predictions.
    #[serde(skip)]
    pub theta: Vec<f64>,
    /// The bootstrap's replicate optima.
    #[serde(skip)]
    pub bootstrap_thetas: Vec<Vec<f64>>,
}

impl Analysis {
    /// The reported numbers for `theta`: free parameters in natural units, then
    /// derived scalars. The bootstrap summarises exactly these.
    pub fn numbers(&self, theta: &[f64]) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = self
            .form
            .natural(theta)
            .into_iter()
            .filter(|(name, _)| *name != "E" || self.form.irreducible == Irreducible::Free)
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        out.extend(Derived::compute(&self.form, theta, &self.budgets).scalars());
        out
    }

    /// Fits the runs (`ids[i]` names `runs[i]`).
    pub fn run(
        &self,
        ids: &[String],
        runs: &[Observation],
        hooks: &Hooks,
    ) -> Result<FitReport, AnalysisError> {
        let need = self.form.dim();
        if runs.len() < need {
            return Err(AnalysisError::TooFewRuns {
                what: "fit",
                have: runs.len(),
                need,
                form: self.form.kind.name(),
            });
        }
        let points = Points::new(&self.form, runs);
        let starts = self.grid.points();
        let best = self.multistart(&points, &starts, "multistart", hooks)?;
        let theta = best.best.theta.clone();

        let boot = match &self.bootstrap {
            Some(settings) if settings.replicates > 0 => {
                let total = settings.replicates as u64;
                let numbers = |t: &[f64]| self.numbers(t);
                Some(bootstrap::bootstrap(
                    &self.form,
                    &points,
                    self.delta,
                    &theta,
                    &self.grid,
                    &self.optimizer,
                    settings,
                    &numbers,
                    &|k| (hooks.progress)("bootstrap", k, total),
                    hooks.cancelled,
                )?)
            }
            _ => None,
        };
        let ci = |name: &str| interval(boot.as_ref(), name);

        let parameters = Ordered(
            self.form
                .natural(&theta)
                .into_iter()
                .map(|(n, v)| (n.to_string(), Estimate::new(v, ci(n))))
                .collect(),
        );
        let log_parameters = Ordered(
            self.form
                .param_names()
                .iter()
                .zip(&theta)
                .map(|(n, v)| (n.to_string(), *v))
                .collect(),
        );
        let derived = self.derived_report(&theta, boot.as_ref());

        let holdout = match &self.holdout {
            Some(rule) => Some(self.holdout(rule, ids, runs, &starts, hooks)?),
            None => None,
        };
        let isoflop = self
            .isoflop
            .as_ref()
            .map(|settings| isoflop::isoflop(runs, settings));

        Ok(FitReport {
            form: self.form.kind,
            formula: formula(&self.form),
            e: match self.form.irreducible {
                Irreducible::Free => serde_json::Value::from("free"),
                Irreducible::Fixed(e) => serde_json::Value::from(e),
            },
            parameters,
            log_parameters,
            objective: best.best.objective,
            huber_delta: self.delta,
            n_points: runs.len(),
            optimizer: OptimizerReport::new(&best),
            excluded: Vec::new(),
            derived,
            bootstrap: boot.as_ref().map(|b: &Bootstrap| BootstrapReport {
                replicates: b.replicates,
                random_starts: self.bootstrap.map(|s| s.random_starts).unwrap_or(0),
                seed: self.bootstrap.map(|s| s.seed).unwrap_or(0),
                not_converged: b.not_converged,
            }),
            holdout,
            isoflop,
            theta,
            bootstrap_thetas: boot.map(|b| b.thetas).unwrap_or_default(),
        })
    }

    fn multistart(
        &self,
        points: &Points,
        starts: &[Vec<f64>],
        phase: &str,
        hooks: &Hooks,
    ) -> Result<Multistart, Cancelled> {
        let objective = Objective::new(self.form, points, self.delta);
        let total = starts.len() as u64;
        optimize::multistart(
            &objective,
            starts,
            &self.optimizer,
            &|k| (hooks.progress)(phase, k, total),
            hooks.cancelled,
        )
    }

    fn derived_report(&self, theta: &[f64], boot: Option<&Bootstrap>) -> DerivedReport {
        let d = Derived::compute(&self.form, theta, &self.budgets);
        let est = |name: String, v: f64| Estimate::new(v, interval(boot, &name));
        DerivedReport {
            a: d.a.map(|v| est("a".into(), v)),
            b: d.b.map(|v| est("b".into(), v)),
            budgets: d
                .budgets
                .iter()
                .map(|b| {
                    let key = budget_key(b.c);
                    BudgetReport {
                        c: b.c,
                        n_opt: b.n_opt.map(|v| est(format!("n_opt@{key}"), v)),
                        d_opt: b.d_opt.map(|v| est(format!("d_opt@{key}"), v)),
                        tokens_per_param: b
                            .tokens_per_param
                            .map(|v| est(format!("tokens_per_param@{key}"), v)),
                        loss: est(format!("loss@{key}"), b.loss),
                    }
                })
                .collect(),
        }
    }

    fn holdout(
        &self,
        rule: &Holdout,
        ids: &[String],
        runs: &[Observation],
        starts: &[Vec<f64>],
        hooks: &Hooks,
    ) -> Result<HoldoutReport, AnalysisError> {
        let (fit, held) = rule.split(runs);
        let need = self.form.dim();
        if fit.len() < need {
            return Err(AnalysisError::TooFewRuns {
                what: "holdout fit on the smaller runs",
                have: fit.len(),
                need,
                form: self.form.kind.name(),
            });
        }
        let fit_runs: Vec<Observation> = fit.iter().map(|&i| runs[i]).collect();
        let points = Points::new(&self.form, &fit_runs);
        let best = self.multistart(&points, starts, "holdout", hooks)?;
        let held_runs: Vec<(String, Observation)> =
            held.iter().map(|&i| (ids[i].clone(), runs[i])).collect();
        Ok(HoldoutReport {
            rule: rule.describe(),
            n_fit: fit.len(),
            n_held_out: held.len(),
            parameters: Ordered(
                self.form
                    .natural(&best.best.theta)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
            ),
            objective: best.best.objective,
            errors: holdout::errors(&self.form, &best.best.theta, &held_runs),
        })
    }
}

/// The bootstrap interval of a named number, if there was a bootstrap.
fn interval<'b>(boot: Option<&'b Bootstrap>, name: &str) -> Option<&'b Interval> {
    boot.and_then(|b| b.get(name))
}

/// The form as a formula (`L = E + A/N^alpha + B/D^beta`).
pub fn formula(form: &Form) -> String {
    let terms: Vec<String> = form
        .terms()
        .iter()
        .map(|t| {
            format!(
                "{}/{}^{}",
                t.coef,
                t.variable.name().to_uppercase(),
                t.exponent
            )
        })
        .collect();
    let e = match form.irreducible {
        Irreducible::Free => "E + ".to_string(),
        Irreducible::Fixed(e) if e > 0.0 => format!("{e} + "),
        Irreducible::Fixed(_) => String::new(),
    };
    format!("L = {e}{}", terms.join(" + "))
}
