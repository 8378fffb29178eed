//! One complete fit: the multistart optimum, bootstrap intervals, derived
//! quantities, the extrapolation check, the IsoFLOP cross-check and the
//! diagnostics that judge them, gathered into the [`FitReport`] that becomes
//! `fit.json`.
//!
//! It works on runs already selected and does no I/O, so tests drive it directly;
//! the `fit` stage reads tables, calls it and writes the files.

use super::bootstrap::{self, Bootstrap, BootstrapSettings, Interval, Resample};
use super::derived::{budget_key, Derived};
use super::diagnostics;
use super::fit_json::{
    BootstrapReport, BudgetReport, DerivedReport, Estimate, FitReport, HoldoutReport,
    OptimizerReport, Ordered, PredictionInterval, ReplicatesReport, BAND_REPLICATES,
};
use super::form::{Form, Irreducible, Variable};
use super::grid::Grid;
use super::holdout::{self, Holdout};
use super::isoflop::{self, IsoflopSettings};
use super::objective::{Objective, Observation, Points};
use super::optimize::{self, Cancelled, Multistart, Settings};
use super::replicates::{self, ReplicateMode};
use crate::numfmt::sci;

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
    /// How seed replicates enter the fit ([`Analysis::run_grouped`]).
    pub replicates: ReplicateMode,
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
    /// `power_n` (`power_d`) on runs with several D (N): one curve through
    /// every series would run between them and describe none.
    #[error("the {form} form fits loss against {modelled} alone, but the runs have {} distinct values of {other} ({}): one curve through them would run between the series. Give each {other} its own fit (add the stage that sets {other} to `inputs` and to `foreach`, e.g. `inputs = [\"data\", \"eval\"]`, `foreach = [\"data\"]`), or fit `chinchilla`, which models N and D together", groups.len(), groups.join(", "))]
    PooledGroups {
        form: &'static str,
        modelled: &'static str,
        other: &'static str,
        groups: Vec<String>,
    },
    #[error("interrupted")]
    Cancelled,
}

impl Hooks<'static> {
    /// No progress reports and never cancelled: for callers that just want the fit.
    pub const NONE: Hooks<'static> = Hooks {
        progress: &ignore_progress,
        cancelled: &never_cancelled,
    };
}

fn ignore_progress(_: &str, _: u64, _: u64) {}

fn never_cancelled() -> bool {
    false
}

impl From<Cancelled> for AnalysisError {
    fn from(_: Cancelled) -> Self {
        AnalysisError::Cancelled
    }
}

impl Analysis {
    /// Fitting `form` the way Hoffmann et al. did (Huber delta 1e-3, the form's
    /// default start grid, the default optimiser) with nothing around the fit:
    /// no budgets, bootstrap, hold-out or IsoFLOP profiles.
    pub fn new(form: Form) -> Self {
        Analysis {
            form,
            delta: 1e-3,
            grid: Grid::default_for(&form),
            optimizer: Settings::default(),
            budgets: Vec::new(),
            bootstrap: None,
            holdout: None,
            isoflop: None,
            replicates: ReplicateMode::default(),
        }
    }

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

    /// Fits the runs (`ids[i]` names `runs[i]`), each its own group.
    pub fn run(
        &self,
        ids: &[String],
        runs: &[Observation],
        hooks: &Hooks,
    ) -> Result<FitReport, AnalysisError> {
        let groups: Vec<Vec<usize>> = (0..runs.len()).map(|i| vec![i]).collect();
        self.run_grouped(ids, runs, &groups, hooks)
    }

    /// Fits runs grouped into seed replicates (`groups` partition the indices
    /// of `runs`, see [`replicates::group`]): with `replicates = "mean"` each
    /// group is one point, its mean loss; the bootstrap resamples groups and
    /// the seeds inside them; prediction intervals add the seed noise.
    pub fn run_grouped(
        &self,
        ids: &[String],
        all_runs: &[Observation],
        groups: &[Vec<usize>],
        hooks: &Hooks,
    ) -> Result<FitReport, AnalysisError> {
        let replicated = replicates::any_replicated(groups);
        let (ids, runs): (Vec<String>, Vec<Observation>) =
            if replicated && self.replicates == ReplicateMode::Mean {
                groups
                    .iter()
                    .map(|g| {
                        let id = match g.len() {
                            1 => ids[g[0]].clone(),
                            k => format!("{} (mean of {k} seeds)", ids[g[0]]),
                        };
                        (id, replicates::mean_of(all_runs, g.iter().copied()))
                    })
                    .unzip()
            } else {
                (ids.to_vec(), all_runs.to_vec())
            };
        let (ids, runs) = (ids.as_slice(), runs.as_slice());
        let resample = if replicated {
            Resample::Seeds {
                runs: all_runs,
                groups,
                mode: self.replicates,
            }
        } else {
            Resample::Points
        };
        let need = self.form.dim();
        if runs.len() < need {
            return Err(AnalysisError::TooFewRuns {
                what: "fit",
                have: runs.len(),
                need,
                form: self.form.kind.name(),
            });
        }
        if let Some((other, values)) = diagnostics::pooled_groups(&self.form, runs) {
            return Err(AnalysisError::PooledGroups {
                form: self.form.kind.name(),
                modelled: if other == Variable::D { "N" } else { "D" },
                other: if other == Variable::D { "D" } else { "N" },
                groups: values.iter().map(|v| sci(*v)).collect(),
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
                Some(bootstrap::bootstrap_with(
                    resample,
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
        let derived = self.derived_report(&theta, boot.as_ref(), runs);

        // The noise of one new run: the seeds' spread where there are
        // replicates, else the scatter of the runs around the law.
        let (seed_log_std, spread) = replicates::spread(all_runs, groups);
        let log_std = seed_log_std
            .unwrap_or_else(|| replicates::residual_log_std(&self.form, &theta, runs, need));
        let mut prediction_intervals = Vec::new();
        if let Some(b) = &boot {
            let seed = self.bootstrap.map(|s| s.seed).unwrap_or(0);
            for (k, budget) in Derived::compute(&self.form, &theta, &self.budgets)
                .budgets
                .iter()
                .enumerate()
            {
                let (Some(n), Some(d)) = (budget.n_opt, budget.d_opt) else {
                    continue;
                };
                if let Some((lo, hi)) = replicates::prediction_interval(
                    &self.form,
                    &b.thetas,
                    log_std,
                    (n, d, budget.c),
                    seed,
                    k,
                ) {
                    prediction_intervals.push(PredictionInterval {
                        what: format!("budget {}", sci(budget.c)),
                        n,
                        d,
                        predicted: budget.loss,
                        lo,
                        hi,
                        observed: None,
                    });
                }
            }
        }
        let holdout = match &self.holdout {
            Some(rule) => {
                let (report, intervals) = self.holdout(rule, ids, runs, &starts, log_std, hooks)?;
                prediction_intervals.extend(intervals);
                Some(report)
            }
            None => None,
        };
        let isoflop = self
            .isoflop
            .as_ref()
            .map(|settings| isoflop::isoflop(runs, settings));

        let mut report = FitReport {
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
            curve: None,
            replicates: replicated.then(|| ReplicatesReport {
                mode: self.replicates.name().into(),
                groups: groups.len(),
                max_seeds: groups.iter().map(Vec::len).max().unwrap_or(0),
                log_seed_std: log_std,
                spread,
            }),
            prediction_intervals,
            theta,
            band_log_parameters: boot
                .as_ref()
                .map(|b| {
                    b.thetas
                        .iter()
                        .filter(|t| t.iter().all(|v| v.is_finite()))
                        .take(BAND_REPLICATES)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            bootstrap_thetas: boot.map(|b| b.thetas).unwrap_or_default(),
            diagnostics: Vec::new(),
        };
        report.diagnostics = diagnostics::diagnose(&self.form, runs, &report, None);
        Ok(report)
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

    fn derived_report(
        &self,
        theta: &[f64],
        boot: Option<&Bootstrap>,
        runs: &[Observation],
    ) -> DerivedReport {
        let d = Derived::compute(&self.form, theta, &self.budgets);
        let largest = diagnostics::largest_compute(runs);
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
                        decades_beyond_runs: largest
                            .map(|top| diagnostics::decades_beyond(b.c, top)),
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
        log_std: f64,
        hooks: &Hooks,
    ) -> Result<(HoldoutReport, Vec<PredictionInterval>), AnalysisError> {
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
        // Prediction intervals for the held-out runs come from a bootstrap of
        // the fit that did not see them (resampling its points).
        let mut intervals = Vec::new();
        if let Some(settings) = self.bootstrap.filter(|s| s.replicates > 0) {
            let total = settings.replicates as u64;
            let numbers = |t: &[f64]| self.numbers(t);
            let boot = bootstrap::bootstrap(
                &self.form,
                &points,
                self.delta,
                &best.best.theta,
                &self.grid,
                &self.optimizer,
                &settings,
                &numbers,
                &|k| (hooks.progress)("holdout bootstrap", k, total),
                hooks.cancelled,
            )?;
            for (k, (id, o)) in held_runs.iter().enumerate() {
                if let Some((lo, hi)) = replicates::prediction_interval(
                    &self.form,
                    &boot.thetas,
                    log_std,
                    (o.n, o.d, o.c),
                    settings.seed,
                    self.budgets.len() + k,
                ) {
                    intervals.push(PredictionInterval {
                        what: id.clone(),
                        n: o.n,
                        d: o.d,
                        predicted: self.form.predict(&best.best.theta, o.n, o.d, o.c),
                        lo,
                        hi,
                        observed: Some(o.loss),
                    });
                }
            }
        }
        let report = HoldoutReport {
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
        };
        Ok((report, intervals))
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
