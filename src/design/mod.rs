//! Experiment design: which runs to train next to pin down the compute-optimal
//! N* and the loss at a budget, per FLOP spent.
//!
//! Data flow: a fit's `fit.json` (its bootstrap replicates) and
//! `predictions.parquet` (the runs) -> an [`Ensemble`] of each replicate's ln N*,
//! ln L* and predicted log loss at every candidate not yet run ->
//! [`propose::select`] (greedy, information per FLOP, see [`criterion`]) ->
//! [`DesignReport`] ([`design_json`], `design.json`) and the sweep fragment
//! ([`fragment`], `proposal.toml`) a pipeline includes to run them. The
//! `design` stage (`crate::stages::design`) is the glue.

pub mod candidates;
pub mod criterion;
pub mod design_json;
pub mod fragment;
pub mod history;
pub mod propose;
pub mod words;

pub use candidates::{Cost, Space};
pub use criterion::Ensemble;
pub use design_json::{DesignReport, ProposedRun, Round, Targets};
pub use propose::Candidate;

use std::collections::BTreeMap;

use crate::fit::analysis::{AnalysisError, Hooks};
use crate::fit::bootstrap;
use crate::fit::derived::Derived;
use crate::fit::predictions::Prediction;
use crate::fit::{Estimate, FitReport, FormKind};

/// What a design is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    /// FLOPs of the final model whose N* and loss are targeted.
    pub budget: f64,
    /// FLOPs the proposed runs may cost together.
    pub spend: f64,
    /// Runs to propose (at most).
    pub k: usize,
    /// Candidate runs.
    pub candidates: Vec<Candidate>,
    /// How the candidates' FLOPs were counted.
    pub cost: Cost,
    /// Standard deviation of an observed log loss; None: from the fit's residuals.
    pub noise_sd: Option<f64>,
    /// Start-grid axes replaced for the refits of earlier rounds (see
    /// [`history::refit_grid`]).
    pub grid: BTreeMap<String, Vec<f64>>,
}

/// Why no design could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DesignError {
    #[error("the design needs a `chinchilla` fit (it targets the compute-optimal N), but the fit's form is `{0}`")]
    Form(&'static str),
    #[error("the design needs the fit's bootstrap replicates: set `bootstrap` on the fit stage (at least {min}; the fit kept {have})")]
    NoEnsemble { have: usize, min: usize },
    #[error("every candidate has been run already ({0} candidates): give the design larger or other sizes")]
    NoCandidates(usize),
    #[error("refitting earlier rounds: {0}")]
    History(AnalysisError),
    #[error("`grid`: {0}")]
    Grid(crate::fit::grid::GridError),
}

/// Fewest replicates whose 2.5/97.5 percentiles mean something.
pub const MIN_ENSEMBLE: usize = 20;

/// The criterion as `design.json` states it.
pub const METHOD: &str = "Bayesian c-optimal design on the fit's bootstrap ensemble (Chaloner & Verdinelli 1995): each candidate scored by the information (nats) its log loss carries about ln N* and ln L* at the budget, with noise from the fit's residuals; picked greedily, each pick's imagined outcome assimilated with the ensemble square-root filter (Whitaker & Hamill 2002); gain per FLOP and total gain passes compared as in CELF (Leskovec et al. 2007)";

impl Design {
    /// Proposes runs given the fit and its runs (its `predictions.parquet`);
    /// they make the round after the latest run's `round`.
    pub fn propose(
        &self,
        fit: &FitReport,
        runs: &[Prediction],
        hooks: &Hooks,
    ) -> Result<DesignReport, DesignError> {
        if fit.form != FormKind::Chinchilla {
            return Err(DesignError::Form(fit.form.name()));
        }
        let Some((form, theta)) = fit.fitted() else {
            return Err(DesignError::Form(fit.form.name()));
        };
        let members = &fit.band_log_parameters;
        if members.len() < MIN_ENSEMBLE {
            return Err(DesignError::NoEnsemble {
                have: members.len(),
                min: MIN_ENSEMBLE,
            });
        }
        let done = |c: &Candidate| {
            runs.iter().any(|r| {
                let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a / b - 1.0).abs() < 1e-9);
                close(r.n, c.n) && close(r.d, c.d)
            })
        };
        let allowed: Vec<bool> = self.candidates.iter().map(|c| !done(c)).collect();
        if !allowed.iter().any(|a| *a) {
            return Err(DesignError::NoCandidates(self.candidates.len()));
        }

        // Targets and predictions of every member.
        let targets_of = |t: &[f64]| {
            let d = Derived::compute(&form, t, &[self.budget]);
            let b = &d.budgets[0];
            (b.n_opt.unwrap_or(f64::NAN).ln(), b.loss.ln())
        };
        let (ln_n, ln_l): (Vec<f64>, Vec<f64>) = members.iter().map(|t| targets_of(t)).unzip();
        let predictions: Vec<Vec<f64>> = self
            .candidates
            .iter()
            .map(|c| {
                members
                    .iter()
                    .map(|t| form.predict(t, c.n, c.d, c.flops).ln())
                    .collect()
            })
            .collect();
        let noise_sd = self
            .noise_sd
            .unwrap_or_else(|| residual_sd(runs, form.dim()));
        let ensemble = Ensemble::new(vec![ln_n, ln_l], predictions, noise_sd);
        let selection = propose::select(&ensemble, &self.candidates, &allowed, self.k, self.spend);

        let (now_n, now_l) = targets_of(&theta);
        let now = history::targets_of(fit, self.budget).unwrap_or(Targets {
            // A fit without this budget: the ensemble's own intervals.
            n_opt: percentile_estimate(now_n.exp(), &ensemble.target_values(0)),
            loss: percentile_estimate(now_l.exp(), &ensemble.target_values(1)),
        });
        let expected = Targets {
            n_opt: shrink(now.n_opt, &ensemble, &selection.after, 0),
            loss: shrink(now.loss, &ensemble, &selection.after, 1),
        };
        let proposed: Vec<ProposedRun> = selection
            .picks
            .iter()
            .map(|p| {
                let c = &self.candidates[p.index];
                ProposedRun {
                    params: c.params.clone(),
                    n: c.n,
                    d: c.d,
                    flops: c.flops,
                    gain_n_opt: p.gain[0],
                    gain_loss: p.gain[1],
                    disagreement: ensemble.spread(p.index),
                }
            })
            .collect();
        let round = runs
            .iter()
            .map(history::round_of)
            .max()
            .map_or(1, |r| r.saturating_add(1));
        let grid = history::refit_grid(&form, &self.grid).map_err(DesignError::Grid)?;
        let history = history::rounds(fit, runs, self.budget, now, &grid, hooks)
            .map_err(DesignError::History)?;
        Ok(DesignReport {
            round,
            budget: self.budget,
            spend: self.spend,
            spent: proposed.iter().map(|r| r.flops).sum(),
            k: self.k,
            cost: self.cost.name().into(),
            method: METHOD.into(),
            ranking: selection.ranking.name().into(),
            noise_sd,
            ensemble: ensemble.members(),
            candidates: allowed.iter().filter(|a| **a).count(),
            now,
            expected,
            runs: proposed,
            history,
            fragment: fragment::FILE.into(),
        })
    }
}

/// The standard deviation of the fitted runs' log residuals, corrected for the
/// `p` fitted parameters; 1e-4 at least (a perfect fit would make every run
/// look infinitely informative).
pub fn residual_sd(runs: &[Prediction], p: usize) -> f64 {
    let residuals: Vec<f64> = runs
        .iter()
        .filter(|r| r.role == "fit")
        .filter_map(|r| Some(r.loss?.ln() - r.predicted?.ln()))
        .filter(|r| r.is_finite())
        .collect();
    let n = residuals.len();
    let ss: f64 = residuals.iter().map(|r| r * r).sum();
    let sd = if n > p {
        (ss / (n - p) as f64).sqrt()
    } else if n > 0 {
        (ss / n as f64).sqrt()
    } else {
        0.0
    };
    sd.max(1e-4)
}

/// A value with the 2.5/50/97.5 percentiles of an ensemble's log values.
fn percentile_estimate(value: f64, logs: &[f64]) -> Estimate {
    let i = bootstrap::interval(logs.to_vec());
    Estimate {
        value,
        median: Some(i.median.exp()),
        lo: Some(i.lo.exp()),
        hi: Some(i.hi.exp()),
    }
}

/// `now`'s interval narrowed, in log space around its median, by the factor
/// the ensemble's 95% percentile interval of target `t` narrows.
fn shrink(now: Estimate, before: &Ensemble, after: &Ensemble, t: usize) -> Estimate {
    let width = |e: &Ensemble| {
        let i = bootstrap::interval(e.target_values(t));
        i.hi - i.lo
    };
    let (w0, w1) = (width(before), width(after));
    let factor = if w0 > 0.0 { (w1 / w0).min(1.0) } else { 1.0 };
    let (Some(median), Some(lo), Some(hi)) = (now.median, now.lo, now.hi) else {
        return now;
    };
    let m = median.ln();
    Estimate {
        value: now.value,
        median: Some(median),
        lo: Some((m - (m - lo.ln()) * factor).exp()),
        hi: Some((m + (hi.ln() - m) * factor).exp()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(loss: f64, predicted: f64, role: &str) -> Prediction {
        Prediction {
            id: "r".into(),
            n: Some(1.0),
            d: Some(1.0),
            c: Some(6.0),
            loss: Some(loss),
            predicted: Some(predicted),
            role: role.into(),
            held_out: false,
            holdout_predicted: None,
            status: Some("ok".into()),
            params: Some(r#"{"round": 2}"#.into()),
        }
    }

    #[test]
    fn noise_is_the_fitted_runs_residual_sd_corrected_for_parameters() {
        let e = 0.01f64;
        let runs = vec![
            run(e.exp(), 1.0, "fit"),
            run((-e).exp(), 1.0, "fit"),
            run(e.exp(), 1.0, "fit"),
            run(5.0, 1.0, "excluded"),
        ];
        // Three residuals of +-0.01, one parameter: sqrt(3 * 1e-4 / 2).
        assert!((residual_sd(&runs, 1) - (1.5e-4f64).sqrt()).abs() < 1e-12);
        assert_eq!(residual_sd(&[run(1.0, 1.0, "fit")], 5), 1e-4, "floored");
        assert_eq!(history::round_of(&runs[0]), 2);
    }
}
