//! The three model families behind one type: what `model.json` stores
//! ([`ModelSpec`]), building a model's parameters, and its loss on a [`Batch`].

use dfdx::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::batches::{Batch, Inputs, Targets};
use super::fused::upload;
use super::layers::{cross_entropy, mse, Act};
use super::mlp::{Mlp, MlpSpec};
use super::params::Params;
use super::text_classifier::{TextClassifier, TextClassifierSpec};
use super::transformer::{Transformer, TransformerSpec};
use super::Backend;

/// Which architecture, with its sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Arch {
    Mlp(MlpSpec),
    Transformer(TransformerSpec),
    TextClassifier(TextClassifierSpec),
}

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Mean squared error of a single output (regression).
    Mse,
    /// Cross-entropy in nats over class logits or next-token logits.
    CrossEntropy,
}

/// Everything needed to rebuild a model: written to `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    #[serde(flatten)]
    pub arch: Arch,
    pub loss: LossKind,
}

impl ModelSpec {
    /// The family's name as metrics record it (`mlp`, `transformer`, ...).
    pub fn family(&self) -> &'static str {
        match self.arch {
            Arch::Mlp(_) => "mlp",
            Arch::Transformer(_) => "transformer",
            Arch::TextClassifier(_) => "text_classifier",
        }
    }

    /// What D counts for this family: tokens for language models, examples
    /// for tables.
    pub fn d_unit(&self) -> &'static str {
        match self.arch {
            Arch::Transformer(_) => "tokens",
            _ => "examples",
        }
    }

    /// Closed-form (total, non-embedding) parameter count.
    pub fn param_count(&self) -> (usize, usize) {
        match &self.arch {
            Arch::Mlp(s) => (s.param_count(), s.param_count()),
            Arch::Transformer(s) => s.param_count(),
            Arch::TextClassifier(s) => s.param_count(),
        }
    }
}

/// A built model: its architecture and handles into a [`Params`].
#[derive(Debug, Clone)]
pub enum Model {
    Mlp(Mlp),
    Transformer(Transformer),
    TextClassifier(TextClassifier),
}

impl Model {
    /// Creates the model's parameters in `params`, drawing initial values from `rng`.
    pub fn build<D: Backend>(spec: &ModelSpec, params: &mut Params<D>, rng: &mut impl Rng) -> Self {
        match &spec.arch {
            Arch::Mlp(s) => Model::Mlp(Mlp::build(s, params, rng)),
            Arch::Transformer(s) => Model::Transformer(Transformer::build(s, params, rng)),
            Arch::TextClassifier(s) => Model::TextClassifier(TextClassifier::build(s, params, rng)),
        }
    }

    /// Model outputs for `batch`: `(rows, outputs)` for tables, `(rows * seq,
    /// vocab)` for token sequences.
    pub fn forward<D: Backend, T: Tape<f32, D>>(
        &self,
        p: &Params<D>,
        batch: &Batch,
        tape: T,
    ) -> Act<D, T> {
        let dev = p.device();
        match (self, &batch.inputs) {
            (Model::Mlp(m), Inputs::Features { x, cols }) => {
                let x = upload(dev, x, (batch.rows, *cols));
                m.forward(p, x.put_tape(tape))
            }
            (Model::Transformer(m), Inputs::Ids { ids, cols }) => {
                let ids = dev.tensor_from_vec(ids.clone(), (batch.rows, *cols));
                m.forward(p, ids, tape)
            }
            (Model::TextClassifier(m), Inputs::Ids { ids, .. }) => {
                m.forward(p, ids, batch.rows, tape)
            }
            _ => panic!("batch inputs do not match the model family"),
        }
    }

    /// Mean loss of `batch` and the outputs it was computed from.
    pub fn loss<D: Backend, T: Tape<f32, D>>(
        &self,
        p: &Params<D>,
        batch: &Batch,
        tape: T,
    ) -> (Tensor<Rank0, f32, D, T>, Act<D, NoneTape>) {
        let out = self.forward(p, batch, tape);
        let kept = out.retaped::<NoneTape>();
        let loss = match &batch.targets {
            Targets::Values(y) => mse(out, upload(p.device(), y, (y.len(), 1))),
            Targets::Classes(y) => cross_entropy(out, y),
        };
        (loss, kept)
    }
}
