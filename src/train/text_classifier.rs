//! The classic text classifier: a token embedding, mean or max pooling over the
//! non-padding positions of each sequence, then an MLP head over the pooled vector.

use dfdx::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::layers::{Act, Activation};
use super::mlp::{Mlp, MlpSpec};
use super::params::{Init, ParamId, Params, Role};
use super::Backend;

/// How token embeddings are reduced to one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    #[default]
    Mean,
    Max,
}

/// Architecture of a [`TextClassifier`] (stored in `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextClassifierSpec {
    pub vocab: usize,
    /// Sequence length (padded with token 0).
    pub seq_len: usize,
    pub embed_dim: usize,
    pub pooling: Pooling,
    /// Hidden layers of the head and their width.
    pub width: usize,
    pub depth: usize,
    pub classes: usize,
    #[serde(default)]
    pub activation: Activation,
}

impl TextClassifierSpec {
    pub fn head(&self) -> MlpSpec {
        MlpSpec {
            input_dim: self.embed_dim,
            width: self.width,
            depth: self.depth,
            output_dim: self.classes,
            activation: self.activation,
        }
    }

    /// Closed-form parameter count (total, non-embedding).
    pub fn param_count(&self) -> (usize, usize) {
        let head = self.head().param_count();
        (self.vocab * self.embed_dim + head, head)
    }
}

/// The built model: handles into a [`Params`].
#[derive(Debug, Clone)]
pub struct TextClassifier {
    pub spec: TextClassifierSpec,
    embedding: ParamId,
    head: Mlp,
}

impl TextClassifier {
    pub fn build<D: Backend>(
        spec: &TextClassifierSpec,
        params: &mut Params<D>,
        rng: &mut impl Rng,
    ) -> Self {
        let embedding = params.add(
            "embedding",
            &[spec.vocab, spec.embed_dim],
            Role::Embedding,
            Init::Normal(1.0 / (spec.embed_dim as f64).sqrt()),
            rng,
        );
        let head = Mlp::build_named(&spec.head(), "head", params, rng);
        TextClassifier {
            spec: spec.clone(),
            embedding,
            head,
        }
    }

    /// Class logits `(batch, classes)` for token ids `(batch, seq_len)`, 0 being
    /// padding. A sequence with no tokens at all pools the padding embedding of its
    /// first position, so every row has something to pool.
    pub fn forward<D: Backend, T: Tape<f32, D>>(
        &self,
        p: &Params<D>,
        ids: &[usize],
        batch: usize,
        tape: T,
    ) -> Act<D, T> {
        let dev = p.device().clone();
        let (l, e) = (self.spec.seq_len, self.spec.embed_dim);
        assert_eq!(ids.len(), batch * l);
        let mut mask = vec![0f32; batch * l];
        for (row, chunk) in ids.chunks_exact(l).enumerate() {
            for (j, &t) in chunk.iter().enumerate() {
                mask[row * l + j] = (t != 0) as u8 as f32;
            }
            if chunk.iter().all(|&t| t == 0) {
                mask[row * l] = 1.0;
            }
        }
        let counts: Vec<f32> = mask.chunks_exact(l).map(|m| m.iter().sum()).collect();
        let idx = dev.tensor_from_vec(ids.to_vec(), (batch, l));
        let emb = p.matrix_with_tape(self.embedding, tape).gather(idx); // (b, l, e)
        let shape = (batch, l, e);
        let pooled: Act<D, T> = match self.spec.pooling {
            Pooling::Mean => {
                let mask = dev
                    .tensor_from_vec(mask, (batch, l))
                    .broadcast_like::<_, Axis<2>>(&shape);
                let counts = dev
                    .tensor_from_vec(counts, (batch,))
                    .broadcast_like::<_, Axis<1>>(&(batch, e));
                (emb * mask).sum::<(usize, usize), Axis<1>>() / counts
            }
            Pooling::Max => {
                // Padding positions get -1e9 added, so they never win the max.
                let penalty: Vec<f32> = mask.iter().map(|m| (m - 1.0) * 1e9).collect();
                let penalty = dev
                    .tensor_from_vec(penalty, (batch, l))
                    .broadcast_like::<_, Axis<2>>(&shape);
                (emb + penalty).max::<(usize, usize), Axis<1>>()
            }
        };
        self.head.forward(p, pooled)
    }
}
