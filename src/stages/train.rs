//! `train`: trains one model on one dataset instance and writes `metrics.json`,
//! `loss_curve.csv`, `model.safetensors`, `model.json` and `dataset.json` (which
//! dataset it was, so `eval` can load the held-out split).
//!
//! The model family picks its sizes from the parameters (`width`/`depth` for
//! `mlp`, `d_model`/`n_layers`/`n_heads`/`context` for `transformer`,
//! `embed_dim`/`pooling`/`width`/`depth` for `text_classifier`) and its input and
//! output sizes from the dataset's `meta.json`. The loop itself lives in
//! [`crate::train::trainer`]; this file turns parameters into its configuration,
//! runs it in a thread pool of the granted size and records the result.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    parse_params, ConfigureContext, Kind, ParamError, Resources, Stage, StageContext, StageError,
};
use crate::data::{self, DatasetMeta, Split, Task};
use crate::train::adamw::AdamWConfig;
use crate::train::batches::Source;
use crate::train::layers::Activation;
use crate::train::mlp::MlpSpec;
use crate::train::model::{Arch, LossKind, ModelSpec};
use crate::train::text_classifier::{Pooling, TextClassifierSpec};
use crate::train::trainer::{self, Budget, Hooks, Status, TrainConfig, TrainReport};
use crate::train::transformer::TransformerSpec;
use crate::train::{flops, TrainError};

pub const KIND: Kind = Kind {
    name: "train",
    version: 1,
    takes_seed: true,
    maps_inputs: true,
    configure,
};

/// Model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Mlp,
    Transformer,
    TextClassifier,
}

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
}

/// Parameters of a `train` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    pub model: Family,
    // mlp and the text classifier's head
    pub width: Option<usize>,
    pub depth: Option<usize>,
    pub activation: Option<Activation>,
    // transformer
    pub d_model: Option<usize>,
    pub n_layers: Option<usize>,
    pub n_heads: Option<usize>,
    pub context: Option<usize>,
    pub mlp_ratio: Option<usize>,
    pub tied_embeddings: Option<bool>,
    // text classifier
    pub embed_dim: Option<usize>,
    pub pooling: Option<Pooling>,
    // optimisation
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    pub warmup_steps: Option<usize>,
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
    // budget: exactly one
    pub steps: Option<u64>,
    pub epochs: Option<f64>,
    pub tokens: Option<f64>,
    pub examples: Option<f64>,
    pub seed: u64,
    #[serde(default = "default_threads")]
    pub threads: usize,
    #[serde(default)]
    pub device: DeviceChoice,
}

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

impl TrainParams {
    /// Semantic checks that need no dataset.
    pub fn validate(&self) -> Result<(), ParamError> {
        let family_keys: [(&str, bool, &[Family]); 10] = [
            (
                "width",
                self.width.is_some(),
                &[Family::Mlp, Family::TextClassifier],
            ),
            (
                "depth",
                self.depth.is_some(),
                &[Family::Mlp, Family::TextClassifier],
            ),
            (
                "activation",
                self.activation.is_some(),
                &[Family::Mlp, Family::TextClassifier],
            ),
            ("d_model", self.d_model.is_some(), &[Family::Transformer]),
            ("n_layers", self.n_layers.is_some(), &[Family::Transformer]),
            ("n_heads", self.n_heads.is_some(), &[Family::Transformer]),
            ("context", self.context.is_some(), &[Family::Transformer]),
            (
                "mlp_ratio",
                self.mlp_ratio.is_some(),
                &[Family::Transformer],
            ),
            (
                "tied_embeddings",
                self.tied_embeddings.is_some(),
                &[Family::Transformer],
            ),
            (
                "embed_dim",
                self.embed_dim.is_some(),
                &[Family::TextClassifier],
            ),
        ];
        for (key, set, families) in family_keys {
            if set && !families.contains(&self.model) {
                return Err(ParamError::at(
                    key,
                    format!(
                        "`{key}` does not apply to model = \"{}\"",
                        self.model.name()
                    ),
                ));
            }
        }
        if self.pooling.is_some() && self.model != Family::TextClassifier {
            return Err(ParamError::at(
                "pooling",
                "`pooling` applies to model = \"text_classifier\" only",
            ));
        }
        let required: &[(&str, Option<usize>)] = match self.model {
            Family::Mlp => &[("width", self.width), ("depth", self.depth)],
            Family::Transformer => &[
                ("d_model", self.d_model),
                ("n_layers", self.n_layers),
                ("n_heads", self.n_heads),
                ("context", self.context),
            ],
            Family::TextClassifier => &[
                ("embed_dim", self.embed_dim),
                ("width", self.width),
                ("depth", self.depth),
            ],
        };
        for (key, value) in required {
            match value {
                None => {
                    return Err(ParamError::new(format!(
                        "missing parameter `{key}` (model = \"{}\")",
                        self.model.name()
                    )))
                }
                Some(0) => return Err(ParamError::at(*key, "expected an integer >= 1")),
                Some(_) => {}
            }
        }
        if let (Some(d), Some(h)) = (self.d_model, self.n_heads) {
            if d % h != 0 {
                return Err(ParamError::at(
                    "n_heads",
                    format!("expected a divisor of d_model = {d}, got {h}"),
                ));
            }
        }
        if self.mlp_ratio == Some(0) {
            return Err(ParamError::at("mlp_ratio", "expected an integer >= 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ParamError::at("lr", "expected a positive number"));
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
        if self.eps.is_nan() || self.eps <= 0.0 {
            return Err(ParamError::at("eps", "expected a positive number"));
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
        if self.batch_size == 0 {
            return Err(ParamError::at("batch_size", "expected an integer >= 1"));
        }
        if self.threads == 0 {
            return Err(ParamError::at("threads", "expected an integer >= 1"));
        }
        let budgets = [
            ("steps", self.steps.map(|s| s as f64)),
            ("epochs", self.epochs),
            ("tokens", self.tokens),
            ("examples", self.examples),
        ];
        let given: Vec<&str> = budgets
            .iter()
            .filter(|b| b.1.is_some())
            .map(|b| b.0)
            .collect();
        if given.len() != 1 {
            return Err(ParamError::new(format!(
                "expected exactly one training budget of `steps`, `epochs`, `tokens` or `examples`, got {}",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            )));
        }
        for (key, value) in budgets {
            if let Some(v) = value {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(ParamError::at(key, "expected a positive number"));
                }
            }
        }
        if self.tokens.is_some() && self.model != Family::Transformer {
            return Err(ParamError::at(
                "tokens",
                "a `tokens` budget applies to model = \"transformer\"; tables count `examples`",
            ));
        }
        if self.examples.is_some() && self.model == Family::Transformer {
            return Err(ParamError::at(
                "examples",
                "a transformer's budget is `tokens`, `steps` or `epochs`",
            ));
        }
        if self.device == DeviceChoice::Cuda && !cfg!(feature = "cuda") {
            return Err(ParamError::at(
                "device",
                "device = \"cuda\" needs scalepipe built with the `cuda` cargo feature (cargo build --release --features cuda)",
            ));
        }
        Ok(())
    }

    fn budget(&self) -> Budget {
        if let Some(s) = self.steps {
            Budget::Steps(s as usize)
        } else if let Some(e) = self.epochs {
            Budget::Epochs(e)
        } else {
            Budget::Units(self.tokens.or(self.examples).unwrap_or(1.0) as u64)
        }
    }
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Mlp => "mlp",
            Family::Transformer => "transformer",
            Family::TextClassifier => "text_classifier",
        }
    }
}

/// A configured `train` stage.
#[derive(Debug)]
pub struct TrainStage {
    params: TrainParams,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Stage>, ParamError> {
    let parsed: TrainParams = parse_params(params)?;
    parsed.validate()?;
    if cx.input_kinds.len() != 1 || !cx.input_kinds[0].starts_with("dataset.") {
        return Err(ParamError::new(format!(
            "a train stage takes exactly one input, a dataset stage; got [{}]",
            cx.input_kinds.join(", ")
        )));
    }
    Ok(Box::new(TrainStage { params: parsed }))
}

/// `dataset.json` in a train output: which dataset instance it trained on and
/// that dataset's metadata, so `eval` can find and check the held-out split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub stage: String,
    pub id: String,
    pub kind: String,
    pub fingerprint: String,
    pub dir: PathBuf,
    pub meta: DatasetMeta,
}

/// `metrics.json` of a train stage (and the base of eval's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainMetrics {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at_step: Option<usize>,
    pub model: String,
    pub n_params: usize,
    pub n_params_non_embedding: usize,
    /// Training units seen: tokens for language models, examples for tables.
    pub d: usize,
    pub d_unit: String,
    /// 6 N D.
    pub flops: f64,
    /// Exact matrix-product FLOPs of forward and backward passes.
    pub flops_exact: f64,
    /// Final training loss (mean of the last up to 20 steps).
    pub loss: Option<f64>,
    pub initial_loss: Option<f64>,
    pub steps: usize,
    pub steps_planned: usize,
    pub batch_size: usize,
    pub wall_time_s: f64,
    /// Units (tokens or examples) per second.
    pub throughput: f64,
    pub gflops_per_s: f64,
    pub device: DeviceChoice,
    pub threads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreducible_loss: Option<f64>,
    pub dataset: String,
    pub params: serde_json::Value,
}

impl Stage for TrainStage {
    fn resources(&self) -> Resources {
        Resources {
            threads: self.params.threads,
            gpu: self.params.device == DeviceChoice::Cuda,
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let p = &self.params;
        let input = match ctx.inputs() {
            [one] => one,
            other => {
                return Err(StageError::msg(format!(
                    "train takes exactly one dataset instance, got {}",
                    other.len()
                )))
            }
        };
        let meta = data::read_meta(&input.dir)?;
        let (spec, source) = model_and_data(p, &meta, &input.dir).map_err(stage_error)?;
        let cfg = TrainConfig {
            spec: spec.clone(),
            batch_size: p.batch_size,
            budget: p.budget(),
            lr: p.lr,
            min_lr_ratio: p.min_lr_ratio,
            warmup_steps: p.warmup_steps,
            adamw: AdamWConfig {
                betas: p.betas,
                eps: p.eps,
                weight_decay: p.weight_decay,
                grad_clip: (p.grad_clip > 0.0).then_some(p.grad_clip),
            },
            seed: p.seed,
        };
        ctx.log(&format!(
            "train {} on {} ({} steps planned)",
            spec.family(),
            input.id,
            trainer::planned_steps(cfg.budget, &source, cfg.batch_size)
        ));

        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads())
            .build()
            .map_err(|e| StageError::msg(format!("cannot start {} threads: {e}", ctx.threads())))?;
        let progress = |pos: u64, len: u64, msg: &str| ctx.progress(pos, len, msg);
        let cancelled = || ctx.cancelled();
        let hooks = Hooks {
            progress: &progress,
            cancelled: &cancelled,
        };
        let out = ctx.out_dir();
        let report = pool
            .install(|| run_on_device(p.device, p.seed, &cfg, &source, out, &hooks))
            .map_err(stage_error)?;
        if let Some(step) = report.diverged_at_step {
            ctx.log(&format!("diverged at step {step}"));
        }

        let record = DatasetRecord {
            stage: input.stage.clone(),
            id: input.id.clone(),
            kind: input.kind.clone(),
            fingerprint: input.fingerprint.clone(),
            dir: input.dir.clone(),
            meta: meta.clone(),
        };
        write_json(&out.join("dataset.json"), &record)?;
        let metrics = metrics(
            p,
            &spec,
            &meta,
            &input.id,
            &report,
            ctx.threads(),
            ctx.params(),
        );
        write_json(&out.join("metrics.json"), &metrics)
    }
}

/// Builds the model description and loads the training split for `meta`'s task.
pub fn model_and_data(
    p: &TrainParams,
    meta: &DatasetMeta,
    dir: &Path,
) -> Result<(ModelSpec, Source), TrainError> {
    let mismatch = |wants: &str| {
        TrainError::Data(format!(
            "model = \"{}\" needs {wants}, but dataset `{}` is a {:?} dataset",
            p.model.name(),
            meta.kind,
            meta.task
        ))
    };
    let missing = |field: &str| {
        TrainError::Data(format!(
            "dataset `{}` has no `{field}` in meta.json",
            meta.kind
        ))
    };
    let (spec, source) = match p.model {
        Family::Mlp => {
            let (loss, output_dim) = match meta.task {
                Task::Regression => (LossKind::Mse, 1),
                Task::Classification => (
                    LossKind::CrossEntropy,
                    meta.classes.ok_or_else(|| missing("classes"))?,
                ),
                _ => return Err(mismatch("a table (regression or classification)")),
            };
            let table = data::read_table(dir, Split::Train)?;
            let spec = ModelSpec {
                arch: Arch::Mlp(MlpSpec {
                    input_dim: table.cols,
                    width: p.width.unwrap_or(1),
                    depth: p.depth.unwrap_or(1),
                    output_dim,
                    activation: p.activation.unwrap_or_default(),
                }),
                loss,
            };
            (spec, Source::Table { table, ids: false })
        }
        Family::TextClassifier => {
            if meta.task != Task::TextClassification {
                return Err(mismatch("a text classification table"));
            }
            let table = data::read_table(dir, Split::Train)?;
            let spec = ModelSpec {
                arch: Arch::TextClassifier(TextClassifierSpec {
                    vocab: meta.vocab.ok_or_else(|| missing("vocab"))?,
                    seq_len: table.cols,
                    embed_dim: p.embed_dim.unwrap_or(1),
                    pooling: p.pooling.unwrap_or_default(),
                    width: p.width.unwrap_or(1),
                    depth: p.depth.unwrap_or(1),
                    classes: meta.classes.ok_or_else(|| missing("classes"))?,
                    activation: p.activation.unwrap_or_default(),
                }),
                loss: LossKind::CrossEntropy,
            };
            (spec, Source::Table { table, ids: true })
        }
        Family::Transformer => {
            if meta.task != Task::LanguageModel {
                return Err(mismatch("a token stream"));
            }
            let context = p.context.unwrap_or(1);
            let source = read_stream(dir, Split::Train, context)?;
            let spec = ModelSpec {
                arch: Arch::Transformer(TransformerSpec {
                    vocab: meta.vocab.ok_or_else(|| missing("vocab"))?,
                    d_model: p.d_model.unwrap_or(1),
                    n_layers: p.n_layers.unwrap_or(1),
                    n_heads: p.n_heads.unwrap_or(1),
                    context,
                    mlp_ratio: p.mlp_ratio.unwrap_or(4),
                    tied_embeddings: p.tied_embeddings.unwrap_or(true),
                }),
                loss: LossKind::CrossEntropy,
            };
            (spec, source)
        }
    };
    if !source.has_window() {
        return Err(TrainError::Data(format!(
            "the training split of `{}` is too small: no {} fits in it",
            meta.kind,
            match p.model {
                Family::Transformer => "window of context + 1 tokens",
                _ => "example",
            }
        )));
    }
    Ok((spec, source))
}

/// Reads a token split as a stream of `seq`-token windows, honouring the
/// dataset's piece offsets when it has them.
pub fn read_stream(dir: &Path, split: Split, seq: usize) -> Result<Source, TrainError> {
    let tokens = data::read_tokens(dir, split)?;
    let offsets = if data::offsets_path(dir, split).is_file() {
        data::read_offsets(dir, split)?
    } else {
        Vec::new()
    };
    Ok(Source::stream(tokens, seq, &offsets))
}

/// Runs the trainer on the chosen dfdx device.
fn run_on_device(
    device: DeviceChoice,
    seed: u64,
    cfg: &TrainConfig,
    source: &Source,
    out: &Path,
    hooks: &Hooks,
) -> Result<TrainReport, TrainError> {
    match device {
        DeviceChoice::Cpu => trainer::train(
            dfdx::tensor::Cpu::seed_from_u64(seed),
            cfg,
            source,
            out,
            hooks,
        ),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => {
            let dev = dfdx::tensor::Cuda::try_build(0, seed)
                .map_err(|e| TrainError::Device(format!("{e:?}")))?;
            trainer::train(dev, cfg, source, out, hooks)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda => Err(TrainError::Device(
            "this build has no CUDA support (cargo feature `cuda`)".into(),
        )),
    }
}

fn metrics(
    p: &TrainParams,
    spec: &ModelSpec,
    meta: &DatasetMeta,
    dataset_id: &str,
    report: &TrainReport,
    threads: usize,
    params: &toml::Table,
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
        d_unit: match spec.arch {
            Arch::Transformer(_) => "tokens",
            _ => "examples",
        }
        .to_string(),
        flops: flops::six_nd(report.n_params, report.d),
        flops_exact: report.flops_exact,
        loss: finite(report.final_loss),
        initial_loss: finite(report.initial_loss),
        steps: report.steps,
        steps_planned: report.steps_planned,
        batch_size: p.batch_size,
        wall_time_s: report.wall_time_s,
        throughput: report.d as f64 / secs,
        gflops_per_s: report.flops_exact / secs / 1e9,
        device: p.device,
        threads,
        irreducible_loss: meta.irreducible_loss,
        dataset: dataset_id.to_string(),
        params: serde_json::to_value(params).unwrap_or(serde_json::Value::Null),
    }
}

pub(crate) fn stage_error(err: TrainError) -> StageError {
    match err {
        TrainError::Io { path, source } => StageError::Io { path, source },
        TrainError::Cancelled => StageError::Cancelled,
        other => StageError::msg(other.to_string()),
    }
}

impl From<TrainError> for StageError {
    fn from(err: TrainError) -> Self {
        stage_error(err)
    }
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StageError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| StageError::msg(format!("{}: {e}", path.display())))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| StageError::io(path, e))
}
