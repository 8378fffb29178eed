//! `eval`: loads a trained model and its dataset's held-out split, and writes
//! `metrics.json`: the held-out loss (MSE, or cross-entropy in nats), accuracy for
//! class targets, and the training record (N, D, FLOPs, status) joined in, so the
//! fit stage reads one row per run.
//!
//! Its inputs are one `train` instance and the dataset instance that train read.
//! A pipeline lists only the train stage (`inputs = ["train"]`); the kind
//! inherits the train stage's dataset input ([`Kind::inherits_inputs_of`]), so
//! the dependency is in the DAG and the engine hands the dataset over like any
//! other input.

use serde::Deserialize;

use super::{
    parse_params, ConfigureContext, Job, Kind, ParamError, Resources, StageContext, StageError,
};
use crate::data::Split;
use crate::kinds_doc::ParamDoc;
use crate::train::dataset_record;
use crate::train::device::{self, DeviceChoice};
use crate::train::evaluate::{EvalHooks, Evaluating};
use crate::train::family::held_out;
use crate::train::metrics::{self, EvalMetrics};
use crate::train::model::Arch;
use crate::train::{checkpoint, flops};

pub const KIND: Kind = Kind {
    name: "eval",
    // 2: receives the train instance's dataset as an input.
    // 3: `max_tokens` defaults to DEFAULT_MAX_TOKENS (was the whole split).
    // 4: transformer attention uses the fused causal softmax on the CPU.
    // 5: on the CPU, layer norm, bias + activation and the cross-entropy are
    //    fused ops and matrix products go through gemm 0.19 (same functions,
    //    different rounding).
    version: 5,
    takes_seed: false,
    maps_inputs: true,
    inherits_inputs_of: Some("train"),
    names_pipeline_file: false,
    configure,
};

/// The reference of `eval`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("split", "\"val\" | \"test\"", "\"val\"", "The held-out split scored."),
    ParamDoc::new("batch_size", "integer", "64", "Rows per forward pass."),
    ParamDoc::new("max_tokens", "integer", "100000", "Token streams: most tokens scored (the split's first windows); a stage warns when evaluation takes longer than the training it measures. Tables are scored whole."),
    ParamDoc::new("threads", "integer", "1", "Threads of the forward passes."),
    ParamDoc::new("device", "\"cpu\" | \"cuda\"", "\"cpu\"", "Where to run (cuda needs the `cuda` cargo feature)."),
];

/// Parameters of an `eval` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    #[serde(default = "default_split")]
    pub split: Split,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Cap on evaluated tokens for token streams ([`DEFAULT_MAX_TOKENS`] when
    /// absent); tables are always evaluated whole.
    pub max_tokens: Option<u64>,
    #[serde(default = "default_threads")]
    pub threads: usize,
    #[serde(default)]
    pub device: DeviceChoice,
}

/// Tokens of a token stream's held-out split scored when `max_tokens` is not
/// given: enough for a loss with a standard error well under 0.01 nats, and small
/// enough that evaluating never takes longer than the training it measures.
pub const DEFAULT_MAX_TOKENS: u64 = 100_000;

fn default_split() -> Split {
    Split::Val
}
fn default_batch_size() -> usize {
    64
}
fn default_threads() -> usize {
    1
}

/// A configured `eval` stage.
#[derive(Debug)]
pub struct EvalJob {
    params: EvalParams,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: EvalParams = parse_params(params)?;
    if p.split == Split::Train {
        return Err(ParamError::at("split", "expected \"val\" or \"test\""));
    }
    if p.batch_size == 0 {
        return Err(ParamError::at("batch_size", "expected an integer >= 1"));
    }
    if p.threads == 0 {
        return Err(ParamError::at("threads", "expected an integer >= 1"));
    }
    if p.max_tokens == Some(0) {
        return Err(ParamError::at("max_tokens", "expected an integer >= 1"));
    }
    if !p.device.available() {
        return Err(ParamError::at(
            "device",
            "device = \"cuda\" needs scalepipe built with the `cuda` cargo feature",
        ));
    }
    let trains = cx.input_kinds.iter().filter(|k| *k == "train").count();
    let others = cx
        .input_kinds
        .iter()
        .any(|k| k != "train" && !k.starts_with("dataset."));
    if trains != 1 || others {
        return Err(ParamError::new(format!(
            "an eval stage takes one train stage as input (and optionally its dataset stage); got [{}]",
            cx.input_kinds.join(", ")
        )));
    }
    Ok(Box::new(EvalJob { params: p }))
}

impl Job for EvalJob {
    fn resources(&self) -> Resources {
        Resources {
            threads: self.params.threads,
            gpu: self.params.device == DeviceChoice::Cuda,
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let p = &self.params;
        let trains: Vec<_> = ctx.inputs().iter().filter(|i| i.kind == "train").collect();
        let [train] = trains.as_slice() else {
            return Err(StageError::msg(format!(
                "eval takes exactly one train instance, got {}",
                trains.len()
            )));
        };
        let record = dataset_record::read(&train.dir)?;
        let train_metrics = metrics::read_train(&train.dir)?;
        let Some(dataset) = ctx
            .inputs()
            .iter()
            .find(|i| i.fingerprint == record.fingerprint)
        else {
            return Err(StageError::msg(format!(
                "{} was trained on {} (fingerprint {}), which is not among this eval's inputs",
                train.id, record.id, record.fingerprint
            )));
        };

        let spec = checkpoint::read_spec(&train.dir)?.spec;
        let source = held_out(&spec, &dataset.dir, p.split)?;
        let split = p.split.name();
        let progress = |done: u64, total: u64| ctx.progress(done, total, split);
        let job = Evaluating {
            model_dir: &train.dir,
            source: &source,
            batch_size: p.batch_size,
            max_units: Some(p.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize),
            hooks: EvalHooks {
                progress: &progress,
                cancelled: &|| ctx.cancelled(),
            },
        };
        let clock = std::time::Instant::now();
        let result = device::run_on(p.device, 0, ctx.threads(), job)?;
        let eval_s = clock.elapsed().as_secs_f64();
        if eval_s > 1.0 && eval_s > train_metrics.wall_time_s {
            ctx.warn(&format!(
                "evaluation took {eval_s:.1}s, longer than the {:.1}s of training it measures ({} units scored); lower `max_tokens`",
                train_metrics.wall_time_s, result.units
            ));
        }

        ctx.progress(1, 1, &format!("{} loss {:.4}", p.split.name(), result.loss));
        let seq = match &spec.arch {
            Arch::Transformer(s) => s.context,
            _ => 1,
        };
        let rows = result.units / seq;
        let mut joined = train_metrics.clone();
        joined.loss = result.loss.is_finite().then_some(result.loss);
        let metrics = EvalMetrics {
            train: joined,
            train_loss: train_metrics.loss,
            split: p.split,
            accuracy: result.accuracy,
            eval_units: result.units,
            eval_flops: flops::forward_flops(&spec, rows, seq),
            train_id: train.id.clone(),
        };
        metrics::write_eval(ctx.out_dir(), &metrics)?;
        Ok(())
    }
}
