//! `train`: trains one model on one dataset instance and writes `metrics.json`,
//! `loss_curve.csv`, `model.safetensors`, `model.json` and `dataset.json`; with
//! `schedule = "wsd"` also its stable-phase checkpoint (`stable.safetensors`,
//! `stable.json`), which later runs sharing its prefix continue from.
//!
//! Glue only: the parameters are read here (a model family with its sizes, see
//! [`ModelChoice`], plus the optimisation and the budget), the library does the
//! rest: [`ModelChoice::for_dataset`] builds the model for the dataset,
//! [`device::run_on`] runs [`crate::train::trainer`]'s loop on the chosen device,
//! and the output formats have their owners in [`crate::train`].

use serde::Deserialize;

use super::{
    parse_params, ConfigureContext, Job, Kind, ParamError, Prefix, Resources, StageContext,
    StageError,
};
use crate::data::{self, DatasetMeta, Split};
use crate::kinds_doc::ParamDoc;
use crate::train::adamw::AdamWConfig;
use crate::train::dataset_record::{self, DatasetRecord};
use crate::train::device::{self, DeviceChoice};
use crate::train::family::{held_out, Family, ModelChoice};
use crate::train::metrics::{self, TrainMetrics};
use crate::train::model::ModelSpec;
use crate::train::schedule::{Decay, ScheduleChoice};
use crate::train::trainer::{self, Budget, HeldOut, Hooks, TrainConfig, TrainReport, Training};
use crate::train::{flops, TrainError};

pub const KIND: Kind = Kind {
    name: "train",
    // 2: `dataset.json` names the dataset by fingerprint, no longer by path.
    // 3: `metrics.json` names the schedule and the steps executed and resumed.
    // (`eval_every` adds columns to loss_curve.csv only when set.)
    // 4: transformer attention uses the fused causal softmax on the CPU (same
    //    function, different rounding).
    // 5: on the CPU, layer norm, bias + activation and the cross-entropy are
    //    fused ops and matrix products go through gemm 0.19 (AVX-512 where the
    //    CPU has it): same functions, different rounding.
    version: 5,
    takes_seed: true,
    maps_inputs: true,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// Parameters of a `train` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    pub model: ModelChoice,
    pub budget: Budget,
    pub run: RunParams,
}

/// Every parameter but the model family's own keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    pub warmup_steps: Option<usize>,
    #[serde(default)]
    pub schedule: ScheduleName,
    /// WSD only: the cooldown's share of the steps.
    pub cooldown: Option<f64>,
    /// WSD only: the cooldown's form.
    pub decay: Option<Decay>,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Global-norm clipping threshold; 0 turns clipping off.
    #[serde(default = "default_grad_clip")]
    pub grad_clip: f64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    // The budget: exactly one of these.
    pub steps: Option<u64>,
    pub epochs: Option<f64>,
    pub tokens: Option<f64>,
    pub examples: Option<f64>,
    pub seed: u64,
    #[serde(default = "default_threads")]
    pub threads: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Score the validation split every this many steps (and after the last).
    pub eval_every: Option<usize>,
    /// Token streams: most validation tokens scored per evaluation.
    #[serde(default = "default_eval_max_tokens")]
    pub eval_max_tokens: usize,
    /// A label, not a setting: the design round that proposed this run (a
    /// design's `proposal.toml` sets it); recorded in `metrics.json`'s params.
    pub round: Option<u32>,
}

/// The `schedule` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    #[default]
    Cosine,
    Wsd,
    Constant,
}

/// The reference of `train`'s parameters ([`crate::kinds_doc`]): the run's, then
/// each model family's.
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("model", "\"mlp\" | \"transformer\" | \"text_classifier\"", "required", "The model family: an MLP on table features, a decoder-only transformer on a token stream, or token embeddings pooled into an MLP head for text classification."),
    ParamDoc::new("lr", "number", "0.001", "Peak learning rate."),
    ParamDoc::new("min_lr_ratio", "number", "0.1", "Final learning rate of the cosine decay or WSD cooldown, as a fraction of `lr`."),
    ParamDoc::new("warmup_steps", "integer", "5% of the steps (required with wsd)", "Linear warmup steps."),
    ParamDoc::new("schedule", "\"cosine\" | \"wsd\" | \"constant\"", "\"cosine\"", "Learning-rate schedule after the warmup: cosine decay, warmup-stable-decay (constant, then a `cooldown`), or constant to the end (no decay: every loss-curve point is a model at the same rate; `min_lr_ratio` is unused). WSD runs that differ only in their budget share their stable phase: the engine runs them shortest first, and each continues from the latest cached stable-phase checkpoint at or before its own cooldown start (bitwise the same result as training from scratch)."),
    ParamDoc::new("cooldown", "number in (0, 1]", "0.2", "WSD: share of the steps spent decaying to the floor."),
    ParamDoc::new("decay", "\"linear\" | \"1-sqrt\"", "\"linear\"", "WSD: form of the cooldown."),
    ParamDoc::new("betas", "[number, number]", "[0.9, 0.95]", "AdamW betas."),
    ParamDoc::new("eps", "number", "1e-8", "AdamW epsilon."),
    ParamDoc::new("weight_decay", "number", "0.1", "Decoupled weight decay."),
    ParamDoc::new("grad_clip", "number", "1.0", "Global gradient-norm clip (0: none)."),
    ParamDoc::new("batch_size", "integer", "32", "Rows per step: examples, or sequences of `context` tokens."),
    ParamDoc::new("steps", "integer", "one budget required", "Budget: optimiser steps."),
    ParamDoc::new("epochs", "number", "one budget required", "Budget: passes over the training split (fractions allowed)."),
    ParamDoc::new("tokens", "number", "one budget required", "Budget for transformers: training tokens (steps = tokens / (batch_size x context), rounded up)."),
    ParamDoc::new("examples", "number", "one budget required", "Budget for mlp and text_classifier: training examples (steps = examples / batch_size, rounded up)."),
    ParamDoc::new("seed", "integer", "the pipeline's seed", "Seeds initialisation and batch order."),
    ParamDoc::new("threads", "integer", "1", "Threads of the tensor work (the scheduler's budget)."),
    ParamDoc::new("device", "\"cpu\" | \"cuda\"", "\"cpu\"", "Where to train (cuda needs the `cuda` cargo feature)."),
    ParamDoc::new("eval_every", "integer", "none", "Score the validation split every this many steps and after the last, into loss_curve.csv's `d` and `val_loss` (what a fit with points = \"curve\" reads)."),
    ParamDoc::new("eval_max_tokens", "integer", "10000", "Token streams: most validation tokens scored at each `eval_every` evaluation (tables are scored whole)."),
    ParamDoc::new("round", "integer", "none", "A label, not a setting: the design round that proposed the run (a `design` stage's proposal.toml sets it; the design and the report read it back). Training ignores it, and WSD runs share their stable phase across rounds."),
    ParamDoc::new("width", "integer", "required", "Hidden width.").only("model = \"mlp\""),
    ParamDoc::new("depth", "integer", "required", "Hidden layers.").only("model = \"mlp\""),
    ParamDoc::new("activation", "\"relu\" | \"gelu\" | \"tanh\"", "\"relu\"", "Hidden activation.").only("model = \"mlp\""),
    ParamDoc::new("d_model", "integer", "required", "Residual stream width.").only("model = \"transformer\""),
    ParamDoc::new("n_layers", "integer", "required", "Transformer blocks.").only("model = \"transformer\""),
    ParamDoc::new("n_heads", "integer", "required", "Attention heads (must divide d_model).").only("model = \"transformer\""),
    ParamDoc::new("context", "integer", "required", "Tokens per training sequence.").only("model = \"transformer\""),
    ParamDoc::new("mlp_ratio", "integer", "4", "MLP hidden width as a multiple of d_model.").only("model = \"transformer\""),
    ParamDoc::new("tied_embeddings", "bool", "true", "Share the input embedding and output projection.").only("model = \"transformer\""),
    ParamDoc::new("embed_dim", "integer", "required", "Token embedding width.").only("model = \"text_classifier\""),
    ParamDoc::new("pooling", "\"mean\" | \"max\"", "\"mean\"", "How token embeddings are pooled (padding ignored).").only("model = \"text_classifier\""),
    ParamDoc::new("width", "integer", "required", "Hidden width of the head MLP.").only("model = \"text_classifier\""),
    ParamDoc::new("depth", "integer", "required", "Hidden layers of the head MLP.").only("model = \"text_classifier\""),
    ParamDoc::new("activation", "\"relu\" | \"gelu\" | \"tanh\"", "\"relu\"", "Hidden activation of the head.").only("model = \"text_classifier\""),
];

/// The keys of [`RunParams`]; the rest of a train table is the model's.
pub(crate) const RUN_KEYS: &[&str] = &[
    "lr",
    "min_lr_ratio",
    "warmup_steps",
    "schedule",
    "cooldown",
    "decay",
    "betas",
    "eps",
    "weight_decay",
    "grad_clip",
    "batch_size",
    "steps",
    "epochs",
    "tokens",
    "examples",
    "seed",
    "threads",
    "device",
    "eval_every",
    "eval_max_tokens",
    "round",
];

fn default_lr() -> f64 {
    1e-3
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.95]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_grad_clip() -> f64 {
    1.0
}
fn default_batch_size() -> usize {
    32
}
fn default_threads() -> usize {
    1
}
fn default_eval_max_tokens() -> usize {
    10_000
}

impl TrainParams {
    /// Reads and checks a train stage's resolved parameters.
    pub fn parse(table: &toml::Table) -> Result<TrainParams, ParamError> {
        let (mut run_table, mut model_table) = (toml::Table::new(), toml::Table::new());
        for (key, value) in table {
            let side = if RUN_KEYS.contains(&key.as_str()) {
                &mut run_table
            } else {
                &mut model_table
            };
            side.insert(key.clone(), value.clone());
        }
        let family: Family =
            match model_table.remove("model") {
                Some(value) => parse_params(&toml::Table::from_iter([("model".into(), value)]))
                    .map(|p: FamilyKey| p.model)?,
                None => return Err(ParamError::new(
                    "missing parameter `model` (\"mlp\", \"transformer\" or \"text_classifier\")",
                )),
            };
        let in_family = |mut e: ParamError| {
            e.message = format!("{} (model = \"{}\")", e.message, family.name());
            e
        };
        let model = match family {
            Family::Mlp => ModelChoice::Mlp(parse_params(&model_table).map_err(in_family)?),
            Family::Transformer => {
                ModelChoice::Transformer(parse_params(&model_table).map_err(in_family)?)
            }
            Family::TextClassifier => {
                ModelChoice::TextClassifier(parse_params(&model_table).map_err(in_family)?)
            }
        };
        model
            .check()
            .map_err(|(key, message)| ParamError::at(key, message))?;
        let run: RunParams = parse_params(&run_table)?;
        run.check()?;
        let budget = run.budget(&model)?;
        Ok(TrainParams { model, budget, run })
    }
}

/// The keys that set a WSD run's length or its cooldown, and the `round` label:
/// every other parameter decides its stable phase, which runs differing only in
/// these share.
const BEYOND_STABLE_PHASE: &[&str] = &[
    "round",
    "steps",
    "epochs",
    "tokens",
    "examples",
    "cooldown",
    "decay",
    "min_lr_ratio",
];

impl RunParams {
    /// The schedule the trainer runs.
    pub fn schedule(&self) -> ScheduleChoice {
        match self.schedule {
            ScheduleName::Cosine => ScheduleChoice::Cosine,
            ScheduleName::Constant => ScheduleChoice::Constant,
            ScheduleName::Wsd => ScheduleChoice::Wsd {
                cooldown: self.cooldown.unwrap_or(0.2),
                decay: self.decay.unwrap_or_default(),
            },
        }
    }
}

/// Only the `model` key, to pick the family first.
#[derive(Deserialize)]
struct FamilyKey {
    model: Family,
}

impl RunParams {
    /// Range checks serde's types cannot express.
    fn check(&self) -> Result<(), ParamError> {
        let positive = |key: &str, v: f64| {
            (v > 0.0 && v.is_finite())
                .then_some(())
                .ok_or_else(|| ParamError::at(key, "expected a positive number"))
        };
        let at_least_one = |key: &str, v: usize| {
            (v >= 1)
                .then_some(())
                .ok_or_else(|| ParamError::at(key, "expected an integer >= 1"))
        };
        positive("lr", self.lr)?;
        positive("eps", self.eps)?;
        at_least_one("batch_size", self.batch_size)?;
        at_least_one("threads", self.threads)?;
        at_least_one("eval_max_tokens", self.eval_max_tokens)?;
        if let Some(every) = self.eval_every {
            at_least_one("eval_every", every)?;
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(ParamError::at(
                "min_lr_ratio",
                "expected a number in [0, 1]",
            ));
        }
        if self.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(ParamError::at("betas", "expected two numbers in [0, 1)"));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return Err(ParamError::at("weight_decay", "expected a number >= 0"));
        }
        if self.grad_clip.is_nan() || self.grad_clip < 0.0 {
            return Err(ParamError::at(
                "grad_clip",
                "expected a number >= 0 (0: no clipping)",
            ));
        }
        match self.schedule {
            ScheduleName::Cosine | ScheduleName::Constant => {
                let name = if self.schedule == ScheduleName::Cosine {
                    "cosine"
                } else {
                    "constant"
                };
                for (key, given) in [
                    ("cooldown", self.cooldown.is_some()),
                    ("decay", self.decay.is_some()),
                ] {
                    if given {
                        return Err(ParamError::at(
                            key,
                            format!(
                                "applies to schedule = \"wsd\" (this stage's schedule is {name})"
                            ),
                        ));
                    }
                }
            }
            ScheduleName::Wsd => {
                if self.warmup_steps.is_none() {
                    return Err(ParamError::new(
                        "schedule = \"wsd\" needs `warmup_steps` (a fixed number, so that runs of every length share their stable phase)",
                    ));
                }
                if let Some(c) = self.cooldown {
                    if !(c > 0.0 && c <= 1.0) {
                        return Err(ParamError::at("cooldown", "expected a number in (0, 1]"));
                    }
                }
            }
        }
        if !self.device.available() {
            return Err(ParamError::at(
                "device",
                "device = \"cuda\" needs scalepipe built with the `cuda` cargo feature (cargo build --release --features cuda)",
            ));
        }
        Ok(())
    }

    /// The one training budget given, in the unit the model family counts.
    fn budget(&self, model: &ModelChoice) -> Result<Budget, ParamError> {
        let given: Vec<(&str, f64)> = [
            ("steps", self.steps.map(|s| s as f64)),
            ("epochs", self.epochs),
            ("tokens", self.tokens),
            ("examples", self.examples),
        ]
        .into_iter()
        .filter_map(|(key, v)| Some((key, v?)))
        .collect();
        let [(key, value)] = given.as_slice() else {
            let names: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
            return Err(ParamError::new(format!(
                "expected exactly one training budget of `steps`, `epochs`, `tokens` or `examples`, got {}",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        };
        let (key, value) = (*key, *value);
        if !(value > 0.0 && value.is_finite()) {
            return Err(ParamError::at(key, "expected a positive number"));
        }
        match (key, model.reads_tokens()) {
            ("tokens", false) => Err(ParamError::at(
                "tokens",
                "a `tokens` budget applies to model = \"transformer\"; tables count `examples`",
            )),
            ("examples", true) => Err(ParamError::at(
                "examples",
                "a transformer's budget is `tokens`, `steps` or `epochs`",
            )),
            ("steps", _) => Ok(Budget::Steps(value as usize)),
            ("epochs", _) => Ok(Budget::Epochs(value)),
            _ => Ok(Budget::Units(value as u64)),
        }
    }
}

/// A configured `train` stage.
#[derive(Debug)]
pub struct TrainJob {
    params: TrainParams,
    /// WSD: what decides the stable phase, and the budget that orders runs.
    prefix: Option<Prefix>,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let parsed = TrainParams::parse(params)?;
    let prefix = (parsed.run.schedule == ScheduleName::Wsd).then(|| {
        let mut stable = params.clone();
        stable.retain(|key, _| !BEYOND_STABLE_PHASE.contains(&key));
        let length = match parsed.budget {
            Budget::Steps(s) => s as f64,
            Budget::Epochs(e) => e,
            Budget::Units(u) => u as f64,
        };
        Prefix {
            params: stable,
            length,
        }
    });
    if cx.input_kinds.len() != 1 || !cx.input_kinds[0].starts_with("dataset.") {
        return Err(ParamError::new(format!(
            "a train stage takes exactly one input, a dataset stage; got [{}]",
            cx.input_kinds.join(", ")
        )));
    }
    Ok(Box::new(TrainJob {
        params: parsed,
        prefix,
    }))
}

impl Job for TrainJob {
    fn resources(&self) -> Resources {
        Resources {
            threads: self.params.run.threads,
            gpu: self.params.run.device == DeviceChoice::Cuda,
        }
    }

    fn prefix(&self) -> Option<Prefix> {
        self.prefix.clone()
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let TrainParams { model, budget, run } = &self.params;
        let [input] = ctx.inputs() else {
            return Err(StageError::msg(format!(
                "train takes exactly one dataset instance, got {}",
                ctx.inputs().len()
            )));
        };
        let meta = data::read_meta(&input.dir)?;
        let (spec, source) = model.for_dataset(&meta, &input.dir)?;
        let cfg = TrainConfig {
            spec: spec.clone(),
            batch_size: run.batch_size,
            budget: *budget,
            lr: run.lr,
            min_lr_ratio: run.min_lr_ratio,
            warmup_steps: run.warmup_steps,
            schedule: run.schedule(),
            adamw: AdamWConfig {
                betas: run.betas,
                eps: run.eps,
                weight_decay: run.weight_decay,
                grad_clip: (run.grad_clip > 0.0).then_some(run.grad_clip),
            },
            seed: run.seed,
        };
        ctx.log(&format!(
            "train {} on {} ({} steps planned)",
            spec.family(),
            input.id,
            trainer::planned_steps(cfg.budget, &source, cfg.batch_size)
        ));

        // The log gets a line every 5% of the steps (and the last one).
        let logged = std::sync::atomic::AtomicU64::new(0);
        let progress = |pos: u64, len: u64, msg: &str| {
            let twentieth = pos * 20 / len.max(1);
            if logged.fetch_max(twentieth + 1, std::sync::atomic::Ordering::Relaxed) <= twentieth
                || pos == len
            {
                ctx.log(&format!("step {pos}/{len}: {msg}"));
            }
            ctx.progress(pos, len, msg);
        };
        let cancelled = || ctx.cancelled();
        let hooks = Hooks {
            progress: &progress,
            cancelled: &cancelled,
        };
        let out = ctx.out_dir();
        let candidates: Vec<std::path::PathBuf> =
            ctx.prefix_entries().iter().map(|e| e.dir.clone()).collect();
        let validation = match run.eval_every {
            Some(_) => Some(held_out(&spec, &input.dir, Split::Val)?),
            None => None,
        };
        let training = Training {
            cfg: &cfg,
            source: &source,
            out_dir: out,
            hooks: &hooks,
            resume_from: &candidates,
            held_out: run
                .eval_every
                .zip(validation.as_ref())
                .map(|(every, source)| HeldOut {
                    source,
                    every,
                    batch_size: 256,
                    max_units: Some(run.eval_max_tokens),
                }),
        };
        let report = device::run_on(run.device, run.seed, ctx.threads(), training)?;
        if let Some(step) = report.diverged_at_step {
            ctx.log(&format!("diverged at step {step}"));
        }
        let resumed_from = report.resumed_from.as_ref().and_then(|dir| {
            ctx.prefix_entries()
                .iter()
                .find(|e| &e.dir == dir)
                .map(|e| e.id.clone())
        });
        if let Some(id) = &resumed_from {
            ctx.log(&format!(
                "resumed the stable phase from `{id}` at step {} ({} steps executed here)",
                report.steps_resumed,
                report.steps_executed()
            ));
        }

        let record = DatasetRecord {
            stage: input.stage.clone(),
            id: input.id.clone(),
            kind: input.kind.clone(),
            fingerprint: input.fingerprint.clone(),
            meta: meta.clone(),
        };
        dataset_record::write(out, &record)?;
        let mut metrics = train_metrics(run, &spec, &meta, &input.id, &report, ctx);
        metrics.resumed_from = resumed_from;
        metrics::write_train(out, &metrics)?;
        Ok(())
    }
}

/// The run's record, from what the trainer reports.
fn train_metrics(
    run: &RunParams,
    spec: &ModelSpec,
    meta: &DatasetMeta,
    dataset_id: &str,
    report: &TrainReport,
    ctx: &StageContext,
) -> TrainMetrics {
    let finite = |v: f64| v.is_finite().then_some(v);
    let secs = report.wall_time_s.max(1e-9);
    TrainMetrics {
        status: report.status,
        diverged_at_step: report.diverged_at_step,
        model: spec.family().to_string(),
        n_params: report.n_params,
        n_params_non_embedding: report.n_params_non_embedding,
        d: report.d,
        d_unit: spec.d_unit().to_string(),
        flops: flops::six_nd(report.n_params, report.d),
        flops_exact: report.flops_exact,
        schedule: run.schedule().label().to_string(),
        stable_end_step: report.stable_end,
        steps_executed: report.steps_executed(),
        steps_resumed: report.steps_resumed,
        resumed_from: None,
        flops_executed: report.flops_executed(),
        loss: finite(report.final_loss),
        initial_loss: finite(report.initial_loss),
        steps: report.steps,
        steps_planned: report.steps_planned,
        batch_size: run.batch_size,
        wall_time_s: report.wall_time_s,
        throughput: report.d as f64 / secs,
        gflops_per_s: report.flops_exact / secs / 1e9,
        device: run.device,
        threads: ctx.threads(),
        irreducible_loss: meta.irreducible_loss,
        dataset: dataset_id.to_string(),
        params: serde_json::to_value(ctx.params()).unwrap_or(serde_json::Value::Null),
    }
}

impl From<TrainError> for StageError {
    fn from(err: TrainError) -> Self {
        match err {
            TrainError::Io { path, source } => StageError::Io { path, source },
            TrainError::Cancelled => StageError::Cancelled,
            other => StageError::msg(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TrainParams, ParamError> {
        let table: toml::Table = text.parse().unwrap();
        TrainParams::parse(&table)
    }

    #[test]
    fn a_family_takes_its_own_keys_and_one_budget() {
        let p = parse("model = \"mlp\"\nwidth = 8\ndepth = 2\nexamples = 100\nseed = 1").unwrap();
        assert_eq!(p.model.name(), "mlp");
        assert_eq!(p.budget, Budget::Units(100));
        assert_eq!(p.run.batch_size, 32);

        let p = parse(
            "model = \"transformer\"\nd_model = 16\nn_layers = 1\nn_heads = 4\ncontext = 8\nsteps = 5\nseed = 0",
        )
        .unwrap();
        assert!(p.model.reads_tokens());
        assert_eq!(p.budget, Budget::Steps(5));
    }

    #[test]
    fn errors_name_the_key_and_what_was_expected() {
        let cases = [
            // (parameters, key, message fragment)
            ("model = \"mlp\"\ndepth = 2\nsteps = 1\nseed = 0", None, "missing field `width`"),
            ("model = \"mlp\"\nwidth = 0\ndepth = 2\nsteps = 1\nseed = 0", Some("width"), ">= 1"),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\nd_model = 8\nsteps = 1\nseed = 0",
                Some("d_model"),
                "(model = \"mlp\")",
            ),
            (
                "model = \"transformer\"\nd_model = 10\nn_layers = 1\nn_heads = 4\ncontext = 8\nsteps = 1\nseed = 0",
                Some("n_heads"),
                "divisor of d_model = 10",
            ),
            ("model = \"mlp\"\nwidth = 8\ndepth = 2\nseed = 0", None, "got none"),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\nsteps = 1\nepochs = 2\nseed = 0",
                None,
                "got steps, epochs",
            ),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\ntokens = 100\nseed = 0",
                Some("tokens"),
                "tables count `examples`",
            ),
            ("model = \"mlp\"\nwidth = 8\ndepth = 2\nsteps = 1\nlr = -1\nseed = 0", Some("lr"), "positive"),
            ("model = \"cnn\"\nsteps = 1\nseed = 0", Some("model"), "unknown variant `cnn`"),
            ("width = 8\nsteps = 1\nseed = 0", None, "missing parameter `model`"),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\nsteps = 1\ncooldown = 0.2\nseed = 0",
                Some("cooldown"),
                "applies to schedule = \"wsd\"",
            ),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\nsteps = 1\nschedule = \"constant\"\ndecay = \"linear\"\nseed = 0",
                Some("decay"),
                "schedule is constant",
            ),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\nsteps = 1\nschedule = \"wsd\"\nseed = 0",
                None,
                "needs `warmup_steps`",
            ),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\nsteps = 1\nschedule = \"wsd\"\nwarmup_steps = 1\ncooldown = 1.5\nseed = 0",
                Some("cooldown"),
                "(0, 1]",
            ),
            (
                "model = \"mlp\"\nwidth = 8\ndepth = 2\nsteps = 1\nschedule = \"wsd\"\nwarmup_steps = 1\ndecay = \"cosine\"\nseed = 0",
                Some("decay"),
                "unknown variant `cosine`",
            ),
        ];
        for (text, key, fragment) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.key.as_deref(), key, "{text}: {err:?}");
            assert!(err.message.contains(fragment), "{text}: {err:?}");
        }
    }

    #[test]
    fn wsd_runs_share_a_prefix_of_everything_but_length_and_cooldown() {
        let cx = ConfigureContext {
            base_dir: std::path::Path::new("."),
            input_kinds: &["dataset.teacher".to_string()],
        };
        let job = |text: &str| configure(&text.parse().unwrap(), &cx).unwrap();
        let base = "model = \"mlp\"\nwidth = 8\ndepth = 2\nseed = 0\nschedule = \"wsd\"\nwarmup_steps = 5\n";
        let short = job(&format!("{base}examples = 100\ncooldown = 0.1"))
            .prefix()
            .unwrap();
        let long = job(&format!("{base}examples = 400\ndecay = \"1-sqrt\""))
            .prefix()
            .unwrap();
        assert_eq!(short.params, long.params);
        assert_eq!((short.length, long.length), (100.0, 400.0));
        let other_lr = job(&format!("{base}examples = 400\nlr = 0.1"))
            .prefix()
            .unwrap();
        assert_ne!(other_lr.params, long.params);
        let next_round = job(&format!("{base}examples = 800\nround = 2"))
            .prefix()
            .unwrap();
        assert_eq!(next_round.params, long.params, "a design round is a label");
        assert!(
            job("model = \"mlp\"\nwidth = 8\ndepth = 2\nseed = 0\nexamples = 100")
                .prefix()
                .is_none()
        );
    }

    #[test]
    fn every_run_key_is_a_run_parameter() {
        // RUN_KEYS decides which keys go to RunParams: each must be accepted there.
        let mut table = toml::Table::new();
        table.insert("model".into(), "mlp".into());
        table.insert("width".into(), 4.into());
        table.insert("depth".into(), 1.into());
        for key in RUN_KEYS {
            let value: toml::Value = match *key {
                "betas" => toml::Value::Array(vec![0.9.into(), 0.95.into()]),
                "device" => "cpu".into(),
                "schedule" => "wsd".into(),
                "decay" => "1-sqrt".into(),
                "epochs" | "tokens" | "examples" | "lr" | "min_lr_ratio" | "eps"
                | "weight_decay" | "grad_clip" => 0.5.into(),
                _ => 1.into(),
            };
            table.insert((*key).into(), value);
        }
        for budget in ["epochs", "tokens", "examples"] {
            table.remove(budget);
        }
        TrainParams::parse(&table).unwrap();
    }
}
