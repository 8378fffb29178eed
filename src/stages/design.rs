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
//!
//! With a `train` stage behind the fit, the candidates are that stage's sweep
//! keys and the dataset it trained on is a second input, so that each
//! candidate's N and FLOPs are the family's exact counts
//! ([`crate::design::candidates`]):
//!
//! ```toml
//! inputs = ["fit", "data"]
//! candidates = { width = [8, 16, 32, 64], examples = [1024, 4096, 16384] }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigureContext, Job, Kind, ParamError, Resources, StageContext, StageError};
use crate::data;
use crate::design::{candidates, design_json, fragment, Cost, Design, DesignError, Space};
use crate::fit::analysis::Hooks;
use crate::fit::{fit_json, predictions};
use crate::kinds_doc::ParamDoc;

pub const KIND: Kind = Kind {
    name: "design",
    // 2: `design.json` says how FLOPs are counted (`cost`) and gives each run's
    // `params`; `proposal.toml` sweeps those keys (sorted) plus `round`.
    version: 2,
    takes_seed: false,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// The reference of `design`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("budget", "number", "required", "Compute budget (FLOPs) of the final model: the design narrows the compute-optimal N* and the predicted loss there."),
    ParamDoc::new("spend", "number", "required", "FLOPs the proposed runs may cost together (6ND for `n`/`d` candidates, exact for a train stage's)."),
    ParamDoc::new("candidates", "table of lists", "required", "The sizes to choose from; every combination not run yet is a candidate. `{ n = [...], d = [...] }`: N and D themselves (a `simulate` stage's keys), costed 6ND. Any other keys: the sweep keys of the `train` stage the fit's runs come from (e.g. `{ width = [...], examples = [...] }`): each candidate is the runs' shared parameters with its values put in, its N, D and FLOPs counted exactly by the model family on the dataset input (list the runs' dataset in `inputs`), and the proposal sweeps those keys."),
    ParamDoc::new("k", "integer", "3", "Runs to propose at most."),
    ParamDoc::new("noise", "number", "from the fit's residuals", "Standard deviation of an observed log loss around the law."),
    ParamDoc::new("grid", "table of lists", "every other value of the form's grid", "Start grid of the refits that give earlier rounds' intervals; the fit's `grid` reproduces its fit of each round."),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    budget: f64,
    spend: f64,
    candidates: toml::Table,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    noise: Option<f64>,
    #[serde(default)]
    grid: BTreeMap<String, Vec<f64>>,
}

fn default_k() -> usize {
    3
}

#[derive(Debug)]
struct DesignJob {
    /// The design; train-stage candidates are sized when it runs.
    design: Design,
    space: Space,
    /// Threads for the refits of earlier rounds.
    threads: usize,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = super::parse_params(params)?;
    let space = Space::parse(&p.candidates)?;
    let fits = cx.input_kinds.iter().filter(|k| *k == "fit").count();
    let datasets = cx
        .input_kinds
        .iter()
        .filter(|k| k.starts_with("dataset."))
        .count();
    if fits != 1 || datasets > 1 || fits + datasets != cx.input_kinds.len() {
        return Err(ParamError::new(format!(
            "a design stage takes one fit stage as input (a chinchilla fit with `bootstrap`), and for a train stage's candidates the dataset its runs trained on; got [{}]",
            cx.input_kinds.join(", ")
        )));
    }
    if !space.is_law() && datasets == 0 {
        return Err(ParamError::at(
            "candidates",
            "candidates other than `n` and `d` are a train stage's keys, sized on the dataset its runs trained on: add that dataset stage to `inputs` (e.g. inputs = [\"fit\", \"data\"])",
        ));
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
    let (candidates, cost) = if space.is_law() {
        (space.law_candidates(), Cost::SixNd)
    } else {
        (Vec::new(), Cost::Exact)
    };
    Ok(Box::new(DesignJob {
        design: Design {
            budget: p.budget,
            spend: p.spend,
            k: p.k,
            candidates,
            cost,
            noise_sd: p.noise,
            grid: p.grid,
        },
        space,
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
        let of_kind = |pick: &dyn Fn(&str) -> bool| -> Vec<_> {
            ctx.inputs().iter().filter(|i| pick(&i.kind)).collect()
        };
        let fits = of_kind(&|k| k == "fit");
        let [input] = fits.as_slice() else {
            return Err(StageError::msg(format!(
                "a design reads one fit instance, got {}: give the fit no sweep, or design per fit with `foreach`",
                fits.len()
            )));
        };
        let fit = fit_json::read(&input.dir)?;
        let runs = predictions::read(&input.dir).map_err(|e| StageError::msg(e.to_string()))?;
        let mut design = self.design.clone();
        if design.cost == Cost::Exact {
            let datasets = of_kind(&|k| k.starts_with("dataset."));
            let [data] = datasets.as_slice() else {
                return Err(StageError::msg(format!(
                    "a design sizes a train stage's candidates on one dataset instance, got {}: give the dataset no sweep",
                    datasets.len()
                )));
            };
            let meta = data::read_meta(&data.dir)?;
            design.candidates = self
                .space
                .train_candidates(&runs, &meta, &data.dir)
                .map_err(StageError::msg)?;
        }
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
            .install(|| design.propose(&fit, &runs, &hooks))
            .map_err(|e| match e {
                DesignError::History(crate::fit::AnalysisError::Cancelled) => StageError::Cancelled,
                other => StageError::msg(other.to_string()),
            })?;
        for run in &report.runs {
            ctx.log(&format!(
                "propose {} (N {:e}, D {:e}, {:e} FLOPs): {:.3} nats about N*, {:.3} about the loss",
                candidates::words(&run.params),
                run.n,
                run.d,
                run.flops,
                run.gain_n_opt,
                run.gain_loss
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
