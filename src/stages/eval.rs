//! `eval`: loads a trained model and its dataset's held-out split, and writes
//! `metrics.json`: the held-out loss (MSE, or cross-entropy in nats), accuracy for
//! class targets, and the training record (N, D, FLOPs, status) joined in, so the
//! fit stage reads one row per run.
//!
//! Its input is one `train` instance (`inputs = ["train"]`; the kind maps over a
//! swept train stage). The dataset is the one that instance's `dataset.json`
//! names, found by fingerprint (see [`dataset_dir`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::train::{
    read_stream, stage_error, write_json, DatasetRecord, DeviceChoice, TrainMetrics,
};
use super::{
    parse_params, ConfigureContext, Kind, ParamError, Resources, Stage, StageContext, StageError,
};
use crate::data::{self, Split};
use crate::train::batches::Source;
use crate::train::evaluate::{evaluate, Evaluation};
use crate::train::model::{Arch, ModelSpec};
use crate::train::{checkpoint, flops, Backend, TrainError};

pub const KIND: Kind = Kind {
    name: "eval",
    version: 1,
    takes_seed: false,
    maps_inputs: true,
    configure,
};

/// Parameters of an `eval` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    #[serde(default = "default_split")]
    pub split: Split,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Cap on evaluated tokens for token streams (whole split when absent).
    pub max_tokens: Option<u64>,
    #[serde(default = "default_threads")]
    pub threads: usize,
    #[serde(default)]
    pub device: DeviceChoice,
}

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
pub struct EvalStage {
    params: EvalParams,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Stage>, ParamError> {
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
    if p.device == DeviceChoice::Cuda && !cfg!(feature = "cuda") {
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
    Ok(Box::new(EvalStage { params: p }))
}

/// `metrics.json` of an eval stage: the training record with the held-out loss.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalMetrics {
    #[serde(flatten)]
    pub train: TrainMetrics,
    /// Final training loss (the train record's `loss`).
    pub train_loss: Option<f64>,
    pub split: Split,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Examples or tokens evaluated.
    pub eval_units: usize,
    pub eval_flops: f64,
    pub train_id: String,
}

impl Stage for EvalStage {
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
        let record: DatasetRecord = read_json(&train.dir.join("dataset.json"))?;
        let train_metrics: TrainMetrics = read_json(&train.dir.join("metrics.json"))?;
        let data_dir = dataset_dir(ctx, &record);
        if !data_dir.join("meta.json").is_file() {
            return Err(StageError::msg(format!(
                "the dataset {} that {} was trained on is not in the store any more (last seen at {})",
                record.id,
                train.id,
                record.dir.display()
            )));
        }

        let spec = checkpoint::read_spec(&train.dir).map_err(stage_error)?.spec;
        let source = held_out(&spec, &data_dir, p.split).map_err(stage_error)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads())
            .build()
            .map_err(|e| StageError::msg(format!("cannot start {} threads: {e}", ctx.threads())))?;
        let max = p.max_tokens.map(|m| m as usize);
        let result = pool
            .install(|| match p.device {
                DeviceChoice::Cpu => eval_on(
                    dfdx::tensor::Cpu::default(),
                    &train.dir,
                    &source,
                    p.batch_size,
                    max,
                ),
                #[cfg(feature = "cuda")]
                DeviceChoice::Cuda => {
                    let dev = dfdx::tensor::Cuda::try_build(0, 0)
                        .map_err(|e| TrainError::Device(format!("{e:?}")))?;
                    eval_on(dev, &train.dir, &source, p.batch_size, max)
                }
                #[cfg(not(feature = "cuda"))]
                DeviceChoice::Cuda => {
                    Err(TrainError::Device("this build has no CUDA support".into()))
                }
            })
            .map_err(stage_error)?;

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
        write_json(&ctx.out_dir().join("metrics.json"), &metrics)
    }
}

/// Where the dataset a train instance used is now: an input of this stage with
/// its fingerprint; else its committed entry in the store this stage runs in
/// (which survives moving the workspace); else the directory recorded at
/// training time.
fn dataset_dir(ctx: &StageContext, record: &DatasetRecord) -> PathBuf {
    if let Some(input) = ctx
        .inputs()
        .iter()
        .find(|i| i.fingerprint == record.fingerprint)
    {
        return input.dir.clone();
    }
    ctx.committed_outputs(&record.fingerprint)
        .unwrap_or_else(|| record.dir.clone())
}

/// Loads the held-out split the model family reads.
fn held_out(spec: &ModelSpec, dir: &Path, split: Split) -> Result<Source, TrainError> {
    let source = match &spec.arch {
        Arch::Transformer(s) => read_stream(dir, split, s.context)?,
        Arch::Mlp(_) => Source::Table {
            table: data::read_table(dir, split)?,
            ids: false,
        },
        Arch::TextClassifier(_) => Source::Table {
            table: data::read_table(dir, split)?,
            ids: true,
        },
    };
    if !source.has_window() {
        return Err(TrainError::Data(format!(
            "the {} split in {} is empty or shorter than one window",
            split.name(),
            dir.display()
        )));
    }
    Ok(source)
}

fn eval_on<D: Backend>(
    dev: D,
    train_dir: &Path,
    source: &Source,
    batch_size: usize,
    max_units: Option<usize>,
) -> Result<Evaluation, TrainError> {
    dev.enable_cache();
    let (_, model, params) = checkpoint::load(train_dir, dev)?;
    Ok(evaluate(&model, &params, source, batch_size, max_units))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StageError> {
    let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| StageError::msg(format!("{}: {e}", path.display())))
}
