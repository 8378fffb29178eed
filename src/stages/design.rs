//! `design`: proposes the next runs of a study. It reads one `fit` (chinchilla,
//! with a bootstrap) and writes `design.json` (the proposal, its reasons and
//! the intervals before and after) and `proposal.toml` (the runs as a sweep
//! fragment a stage includes with `sweep_file`). See [`crate::design`].
//!
//! ```toml
//! [stages.design]
//! kind = "design"
//! inputs = ["fit"]
//! budget = 1e21            # FLOPs of the final model
//! spend = 2e19             # FLOPs the proposed runs may cost together
//! k = 3
//! candidates = { n = [1e7, 3e7, 1e8, 3e8], d = [1e9, 3e9, 1e10, 3e10] }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigureContext, Job, Kind, ParamError, Resources, StageContext, StageError};
use crate::design::{design_json, fragment, Candidate, Design, DesignError};
use crate::fit::analysis::Hooks;
use crate::fit::{fit_json, predictions};
use crate::kinds_doc::ParamDoc;

pub const KIND: Kind = Kind {
    name: "design",
    version: 1,
    takes_seed: false,
    maps_inputs: false,
    inherits_inputs_of: None,
    configure,
};

/// The reference of `design`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("budget", "number", "required", "Compute budget (FLOPs) of the final model: the design narrows the compute-optimal N* and the predicted loss there."),
    ParamDoc::new("spend", "number", "required", "FLOPs the proposed runs may cost together (each run 6ND)."),
    ParamDoc::new("candidates", "table {n, d}", "required", "The sizes to choose from: every (n, d) pair of the two lists not run yet is a candidate."),
    ParamDoc::new("k", "integer", "3", "Runs to propose at most."),
    ParamDoc::new("noise", "number", "from the fit's residuals", "Standard deviation of an observed log loss around the law."),
    ParamDoc::new("grid", "table of lists", "every other value of the form's grid", "Start grid of the refits that give earlier rounds' intervals; the fit's `grid` reproduces its fit of each round."),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    budget: f64,
    spend: f64,
    candidates: CandidateParams,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    noise: Option<f64>,
    #[serde(default)]
    grid: BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateParams {
    n: Vec<f64>,
    d: Vec<f64>,
}

fn default_k() -> usize {
    3
}

#[derive(Debug)]
struct DesignJob {
    design: Design,
    /// Threads for the refits of earlier rounds.
    threads: usize,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = super::parse_params(params)?;
    if cx.input_kinds.len() != 1 || cx.input_kinds[0] != "fit" {
        return Err(ParamError::new(format!(
            "a design stage takes one fit stage as input (a chinchilla fit with `bootstrap`); got [{}]",
            cx.input_kinds.join(", ")
        )));
    }
    for (key, v) in [("budget", p.budget), ("spend", p.spend)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(ParamError::at(key, "expected a positive number of FLOPs"));
        }
    }
    if p.k == 0 {
        return Err(ParamError::at("k", "expected an integer >= 1"));
    }
    if let Some(noise) = p.noise {
        if !(noise.is_finite() && noise > 0.0) {
            return Err(ParamError::at("noise", "expected a positive number"));
        }
    }
    for (key, values) in [
        ("candidates.n", &p.candidates.n),
        ("candidates.d", &p.candidates.d),
    ] {
        if values.is_empty() {
            return Err(ParamError::at(key, "expected at least one size"));
        }
        if let Some(i) = values.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(ParamError::at(
                format!("{key}[{i}]"),
                "expected a positive number",
            ));
        }
    }
    let candidates = p
        .candidates
        .n
        .iter()
        .flat_map(|&n| {
            p.candidates.d.iter().map(move |&d| Candidate {
                n,
                d,
                flops: 6.0 * n * d,
            })
        })
        .collect();
    Ok(Box::new(DesignJob {
        design: Design {
            budget: p.budget,
            spend: p.spend,
            k: p.k,
            candidates,
            noise_sd: p.noise,
            grid: p.grid,
        },
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    }))
}

impl Job for DesignJob {
    fn resources(&self) -> Resources {
        Resources {
            threads: self.threads,
            gpu: false,
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let [input] = ctx.inputs() else {
            return Err(StageError::msg(format!(
                "a design reads one fit instance, got {}: give the fit no sweep, or design per fit with `foreach`",
                ctx.inputs().len()
            )));
        };
        let fit = fit_json::read(&input.dir)?;
        let runs = predictions::read(&input.dir).map_err(|e| StageError::msg(e.to_string()))?;
        let progress = |phase: &str, done: u64, total: u64| ctx.progress(done, total, phase);
        let cancelled = || ctx.cancelled();
        let hooks = Hooks {
            progress: &progress,
            cancelled: &cancelled,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads().max(1))
            .build()
            .map_err(|e| StageError::msg(format!("cannot start design threads: {e}")))?;
        let report = pool
            .install(|| self.design.propose(&fit, &runs, &hooks))
            .map_err(|e| match e {
                DesignError::History(crate::fit::AnalysisError::Cancelled) => StageError::Cancelled,
                other => StageError::msg(other.to_string()),
            })?;
        for run in &report.runs {
            ctx.log(&format!(
                "propose N {:e}, D {:e} ({:e} FLOPs): {:.3} nats about N*, {:.3} about the loss",
                run.n, run.d, run.flops, run.gain_n_opt, run.gain_loss
            ));
        }
        if report.runs.is_empty() {
            ctx.warn("no candidate run fits the spend: the proposal is empty (raise `spend` or add smaller sizes)");
        }
        let out = ctx.out_dir();
        design_json::write(out, &report)?;
        fragment::write(out, &report).map_err(|e| StageError::io(out.join(fragment::FILE), e))
    }
}
