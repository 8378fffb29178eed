//! Model families as a pipeline asks for them, and how a request meets a dataset.
//!
//! A pipeline file sets a family's sizes (`width`/`depth`, `d_model`/...); the
//! dataset's `meta.json` sets the input and output sizes (features, vocabulary,
//! classes). [`ModelChoice::for_dataset`] joins the two into a [`ModelSpec`] and
//! loads the split the family reads as a batch [`Source`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::batches::Source;
use super::layers::Activation;
use super::mlp::MlpSpec;
use super::model::{Arch, LossKind, ModelSpec};
use super::text_classifier::{Pooling, TextClassifierSpec};
use super::transformer::TransformerSpec;
use super::TrainError;
use crate::data::{self, DatasetMeta, Split, Task};

/// The `model = "..."` key: which family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Mlp,
    Transformer,
    TextClassifier,
}

/// A model family with the sizes a pipeline sets. Each family's sizes are their
/// own type that accepts only its keys, so `d_model` on an MLP is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    Mlp(MlpSizes),
    Transformer(TransformerSizes),
    TextClassifier(TextClassifierSizes),
}

/// A multilayer perceptron on table features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSizes {
    pub width: Size,
    pub depth: Size,
    #[serde(default)]
    pub activation: Activation,
}

/// A pre-norm decoder-only transformer on a token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerSizes {
    pub d_model: Size,
    pub n_layers: Size,
    pub n_heads: Size,
    pub context: Size,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: Size,
    #[serde(default = "default_tied")]
    pub tied_embeddings: bool,
}

/// Token embeddings, pooled, then an MLP head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextClassifierSizes {
    pub embed_dim: Size,
    #[serde(default)]
    pub pooling: Pooling,
    pub width: Size,
    pub depth: Size,
    #[serde(default)]
    pub activation: Activation,
}

/// A layer size: an integer >= 1, checked when the pipeline is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match usize::deserialize(d)? {
            0 => Err(serde::de::Error::custom("expected an integer >= 1")),
            n => Ok(Size(n)),
        }
    }
}

fn default_mlp_ratio() -> Size {
    Size(4)
}
fn default_tied() -> bool {
    true
}

impl Family {
    /// The name written in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            Family::Mlp => "mlp",
            Family::Transformer => "transformer",
            Family::TextClassifier => "text_classifier",
        }
    }
}

impl ModelChoice {
    /// The name written in pipeline files.
    pub fn name(&self) -> &'static str {
        self.family().name()
    }

    pub fn family(&self) -> Family {
        match self {
            ModelChoice::Mlp(_) => Family::Mlp,
            ModelChoice::Transformer(_) => Family::Transformer,
            ModelChoice::TextClassifier(_) => Family::TextClassifier,
        }
    }

    /// Whether the family reads a token stream (its D counts tokens) rather than
    /// a table (D counts examples).
    pub fn reads_tokens(&self) -> bool {
        matches!(self, ModelChoice::Transformer(_))
    }

    /// Checks that need more than one key: heads must divide the width.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let ModelChoice::Transformer(TransformerSizes {
            d_model, n_heads, ..
        }) = self
        {
            if d_model.0 % n_heads.0 != 0 {
                return Err((
                    "n_heads",
                    format!(
                        "expected a divisor of d_model = {}, got {}",
                        d_model.0, n_heads.0
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The model for the dataset in `dir` (described by `meta`), and its
    /// training split as batches.
    pub fn for_dataset(
        &self,
        meta: &DatasetMeta,
        dir: &Path,
    ) -> Result<(ModelSpec, Source), TrainError> {
        let mismatch = |wants: &str| {
            TrainError::Data(format!(
                "model = \"{}\" needs {wants}, but dataset `{}` is a {:?} dataset",
                self.name(),
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
        let (spec, source) = match *self {
            ModelChoice::Mlp(MlpSizes {
                width,
                depth,
                activation,
            }) => {
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
                        width: width.0,
                        depth: depth.0,
                        output_dim,
                        activation,
                    }),
                    loss,
                };
                (spec, Source::Table { table, ids: false })
            }
            ModelChoice::TextClassifier(TextClassifierSizes {
                embed_dim,
                pooling,
                width,
                depth,
                activation,
            }) => {
                if meta.task != Task::TextClassification {
                    return Err(mismatch("a text classification table"));
                }
                let table = data::read_table(dir, Split::Train)?;
                let spec = ModelSpec {
                    arch: Arch::TextClassifier(TextClassifierSpec {
                        vocab: meta.vocab.ok_or_else(|| missing("vocab"))?,
                        seq_len: table.cols,
                        embed_dim: embed_dim.0,
                        pooling,
                        width: width.0,
                        depth: depth.0,
                        classes: meta.classes.ok_or_else(|| missing("classes"))?,
                        activation,
                    }),
                    loss: LossKind::CrossEntropy,
                };
                (spec, Source::Table { table, ids: true })
            }
            ModelChoice::Transformer(TransformerSizes {
                d_model,
                n_layers,
                n_heads,
                context,
                mlp_ratio,
                tied_embeddings,
            }) => {
                if meta.task != Task::LanguageModel {
                    return Err(mismatch("a token stream"));
                }
                let source = read_stream(dir, Split::Train, context.0)?;
                let spec = ModelSpec {
                    arch: Arch::Transformer(TransformerSpec {
                        vocab: meta.vocab.ok_or_else(|| missing("vocab"))?,
                        d_model: d_model.0,
                        n_layers: n_layers.0,
                        n_heads: n_heads.0,
                        context: context.0,
                        mlp_ratio: mlp_ratio.0,
                        tied_embeddings,
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
                if self.reads_tokens() {
                    "window of context + 1 tokens"
                } else {
                    "example"
                }
            )));
        }
        Ok((spec, source))
    }
}

/// The split of the dataset in `dir` that a trained model of `spec` reads, for
/// evaluation.
pub fn held_out(spec: &ModelSpec, dir: &Path, split: Split) -> Result<Source, TrainError> {
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

/// Reads a token split as a stream of `seq`-token windows, honouring the
/// dataset's piece offsets when it has them.
fn read_stream(dir: &Path, split: Split, seq: usize) -> Result<Source, TrainError> {
    let tokens = data::read_tokens(dir, split)?;
    let offsets = if data::offsets_path(dir, split).is_file() {
        data::read_offsets(dir, split)?
    } else {
        Vec::new()
    };
    Ok(Source::stream(tokens, seq, &offsets))
}
