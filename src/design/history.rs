//! The study round by round: the N* and loss intervals after each round of
//! runs, so a report can show how a design narrowed them.
//!
//! Runs carry the round that proposed them (the `round` parameter a design's
//! fragment sets; runs without one are round 0). The latest round's intervals
//! are the fit's own; each earlier round is refitted on the runs up to it with
//! the fit's form, Huber delta and bootstrap settings and the design's start
//! grid (`fit.json` does not record the fit stage's grid: give the design the
//! same one and a round's refit is exactly the fit that round had). The refits
//! depend only on the runs up to each round, so a round's row reads the same
//! in every later design.

use std::collections::BTreeMap;

use super::design_json::{Round, Targets};
use crate::fit::analysis::{Analysis, AnalysisError, Hooks};
use crate::fit::bootstrap::BootstrapSettings;
use crate::fit::predictions::Prediction;
use crate::fit::{FitReport, Form, Grid, Observation};

/// The round a run belongs to: its `round` parameter, else 0.
pub fn round_of(run: &Prediction) -> u32 {
    run.params
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| p.get("round").and_then(serde_json::Value::as_u64))
        .map_or(0, |r| r as u32)
}

/// The intervals of the fit at `budget` (None when it has no such budget).
pub fn targets_of(fit: &FitReport, budget: f64) -> Option<Targets> {
    let b = fit
        .derived
        .budgets
        .iter()
        .find(|b| (b.c / budget - 1.0).abs() < 1e-9)?;
    Some(Targets {
        n_opt: b.n_opt?,
        loss: b.loss,
    })
}

/// The start grid of the refits: the fit's form's default axes, every other
/// value (3 per axis, 243 starts for chinchilla with E free, against the
/// default 4,500), with `overrides` (a pipeline's `grid`) replacing axes.
pub fn refit_grid(
    form: &Form,
    overrides: &BTreeMap<String, Vec<f64>>,
) -> Result<Grid, crate::fit::grid::GridError> {
    let mut axes: BTreeMap<String, Vec<f64>> = form
        .param_names()
        .iter()
        .map(|name| {
            let every_other = Form::default_axis(name).into_iter().step_by(2).collect();
            (name.to_string(), every_other)
        })
        .collect();
    for (name, values) in overrides {
        axes.insert(name.clone(), values.clone());
    }
    // Unknown names in `overrides` are refused here.
    Grid::with_overrides(form, &axes)
}

/// Every round's intervals, oldest first. `current` is the fit's intervals at
/// `budget` (for the latest round); earlier rounds are refitted from `grid`.
pub fn rounds(
    fit: &FitReport,
    runs: &[Prediction],
    budget: f64,
    current: Targets,
    grid: &Grid,
    hooks: &Hooks,
) -> Result<Vec<Round>, AnalysisError> {
    let fitted: Vec<(&Prediction, Observation, u32)> = runs
        .iter()
        .filter(|r| r.role == "fit")
        .filter_map(|r| {
            let o = Observation {
                n: r.n?,
                d: r.d?,
                c: r.c.unwrap_or(f64::NAN),
                loss: r.loss?,
            };
            Some((r, o, round_of(r)))
        })
        .collect();
    let mut by_round: BTreeMap<u32, ()> = BTreeMap::new();
    for (_, _, round) in &fitted {
        by_round.insert(*round, ());
    }
    let latest = by_round.keys().next_back().copied().unwrap_or(0);
    let mut out = Vec::new();
    for &round in by_round.keys() {
        let subset: Vec<&(&Prediction, Observation, u32)> =
            fitted.iter().filter(|(_, _, r)| *r <= round).collect();
        let flops = subset.iter().map(|(_, o, _)| 6.0 * o.n * o.d).sum::<f64>();
        if round == latest {
            out.push(Round {
                round,
                runs: subset.len(),
                flops,
                targets: current,
                source: "fit".into(),
            });
            continue;
        }
        let Some(targets) = refit(fit, &subset, budget, grid, hooks)? else {
            continue;
        };
        out.push(Round {
            round,
            runs: subset.len(),
            flops,
            targets,
            source: "refit".into(),
        });
    }
    Ok(out)
}

/// The fit on a subset of its runs, with its settings; None when the subset is
/// too small for the form.
fn refit(
    fit: &FitReport,
    subset: &[&(&Prediction, Observation, u32)],
    budget: f64,
    grid: &Grid,
    hooks: &Hooks,
) -> Result<Option<Targets>, AnalysisError> {
    let Some((form, _)) = fit.fitted() else {
        return Ok(None);
    };
    if subset.len() < form.dim() {
        return Ok(None);
    }
    let mut analysis = Analysis::new(form);
    analysis.grid = grid.clone();
    analysis.delta = if fit.huber_delta > 0.0 {
        fit.huber_delta
    } else {
        1e-3
    };
    analysis.budgets = vec![budget];
    analysis.bootstrap = fit.bootstrap.as_ref().map(|b| BootstrapSettings {
        replicates: b.replicates,
        random_starts: b.random_starts,
        seed: b.seed,
    });
    let ids: Vec<String> = subset.iter().map(|(r, _, _)| r.id.clone()).collect();
    let observations: Vec<Observation> = subset.iter().map(|(_, o, _)| *o).collect();
    let report = match analysis.run(&ids, &observations, hooks) {
        Ok(report) => report,
        Err(AnalysisError::Cancelled) => return Err(AnalysisError::Cancelled),
        Err(_) => return Ok(None),
    };
    Ok(targets_of(&report, budget))
}
