//! A decoder-only, pre-norm GPT whose sizes are set at run time: token and learned
//! positional embeddings, `n_layers` blocks of causal multi-head self-attention and
//! a GELU MLP (each behind a layer norm, added to the residual stream), a final
//! layer norm, and an output embedding tied to the token embedding or separate.

use dfdx::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::layers::{Act, Activation, LayerNorm, Linear};
use super::matmul::HeadLayout;
use super::params::{Init, ParamId, Params, Role};
use super::Backend;

/// Architecture of a [`Transformer`] (stored in `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerSpec {
    pub vocab: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Sequence length the positional embedding covers.
    pub context: usize,
    /// Hidden width of each block's MLP as a multiple of `d_model`.
    pub mlp_ratio: usize,
    /// Whether the output projection reuses the token embedding.
    pub tied_embeddings: bool,
}

impl TransformerSpec {
    fn d_ff(&self) -> usize {
        self.mlp_ratio * self.d_model
    }

    /// Closed-form parameter count (total, non-embedding).
    pub fn param_count(&self) -> (usize, usize) {
        let (v, d, l, c, f) = (
            self.vocab,
            self.d_model,
            self.n_layers,
            self.context,
            self.d_ff(),
        );
        // Per block: two layer norms, q/k/v/out projections with biases, the MLP.
        let block = 2 * (2 * d) + 4 * (d * d + d) + (d * f + f) + (f * d + d);
        let embed = v * d + c * d + if self.tied_embeddings { 0 } else { d * v };
        let non_embed = l * block + 2 * d;
        (embed + non_embed, non_embed)
    }
}

#[derive(Debug, Clone)]
struct Block {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc: Linear,
    proj: Linear,
}

/// The built model: handles into a [`Params`].
#[derive(Debug, Clone)]
pub struct Transformer {
    pub spec: TransformerSpec,
    wte: ParamId,
    wpe: ParamId,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// Untied output embedding `(d_model, vocab)`; `None` when tied to `wte`.
    head: Option<ParamId>,
}

impl Transformer {
    /// Creates the parameters with GPT-2's initialisation: normal(0, 0.02), the
    /// projections into the residual stream scaled by 1/sqrt(2 n_layers), zero
    /// biases, unit layer-norm gains.
    pub fn build<D: Backend>(
        spec: &TransformerSpec,
        params: &mut Params<D>,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(
            spec.d_model.is_multiple_of(spec.n_heads),
            "d_model % n_heads != 0"
        );
        let (v, d, f) = (spec.vocab, spec.d_model, spec.d_ff());
        let std = 0.02;
        let resid_std = std / (2.0 * spec.n_layers as f64).sqrt();
        let wte = params.add("wte", &[v, d], Role::Embedding, Init::Normal(std), rng);
        let wpe = params.add(
            "wpe",
            &[spec.context, d],
            Role::Embedding,
            Init::Normal(std),
            rng,
        );
        let mut linear = |params: &mut Params<D>, name: String, fi: usize, fo: usize, s: f64| {
            let weight = params.add(
                format!("{name}.weight"),
                &[fi, fo],
                Role::Weight,
                Init::Normal(s),
                rng,
            );
            let bias = params.add(format!("{name}.bias"), &[fo], Role::Bias, Init::Zeros, rng);
            Linear {
                weight,
                bias: Some(bias),
            }
        };
        let norm = |params: &mut Params<D>, name: String| LayerNorm {
            gain: params.push(format!("{name}.gain"), vec![d], Role::Bias, vec![1.0; d]),
            shift: params.push(format!("{name}.shift"), vec![d], Role::Bias, vec![0.0; d]),
        };
        let mut blocks = Vec::with_capacity(spec.n_layers);
        for l in 0..spec.n_layers {
            let ln1 = norm(params, format!("h.{l}.ln1"));
            let q = linear(params, format!("h.{l}.attn.q"), d, d, std);
            let k = linear(params, format!("h.{l}.attn.k"), d, d, std);
            let v = linear(params, format!("h.{l}.attn.v"), d, d, std);
            let out = linear(params, format!("h.{l}.attn.out"), d, d, resid_std);
            let ln2 = norm(params, format!("h.{l}.ln2"));
            let fc = linear(params, format!("h.{l}.mlp.fc"), d, f, std);
            let proj = linear(params, format!("h.{l}.mlp.proj"), f, d, resid_std);
            blocks.push(Block {
                ln1,
                q,
                k,
                v,
                out,
                ln2,
                fc,
                proj,
            });
        }
        let ln_f = norm(params, "ln_f".to_string());
        let head = (!spec.tied_embeddings)
            .then(|| params.add("head", &[d, v], Role::Embedding, Init::Normal(std), rng));
        Transformer {
            spec: spec.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
            head,
        }
    }

    /// Next-token logits `(batch * seq, vocab)` for token ids `(batch, seq)`,
    /// `seq <= context`. `tape` is put on the token embedding, the first parameter
    /// the computation touches.
    pub fn forward<D: Backend, T: Tape<f32, D>>(
        &self,
        p: &Params<D>,
        ids: Tensor<(usize, usize), usize, D>,
        tape: T,
    ) -> Act<D, T> {
        let dev = p.device().clone();
        let (b, t) = *ids.shape();
        let d = self.spec.d_model;
        let h = self.spec.n_heads;
        let dh = d / h;
        let n = b * t;
        assert!(t <= self.spec.context, "sequence longer than the context");

        let tok = p.matrix_with_tape(self.wte, tape).gather(ids);
        let positions = dev.tensor_from_vec((0..t).collect::<Vec<usize>>(), (t,));
        // The gather must be recorded (a parameter only gets a gradient through
        // ops on a tape), so the positional table carries an empty `T` tape that
        // merges into the token embedding's at the addition.
        let pos = p
            .matrix::<T>(self.wpe)
            .gather(positions)
            .broadcast_like::<_, Axis<0>>(&(b, t, d));
        let mut x: Act<D, T> = (tok + pos).reshape_like(&(n, d));

        let scale = 1.0 / (dh as f32).sqrt();
        // Heads are read in place from the (tokens, d_model) projections.
        let heads = HeadLayout {
            batch: b,
            seq: t,
            heads: h,
        };

        for blk in &self.blocks {
            let a = blk.ln1.forward(p, x.retaped::<T>());
            let q = blk.q.forward(p, a.retaped::<T>());
            let k = blk.k.forward(p, a.retaped::<T>());
            let v = blk.v.forward(p, a);
            // Scaled, causally masked softmax: one fused op on the CPU.
            let att = D::causal_softmax(D::attention_scores(q, k, heads), scale);
            let y = D::attention_mix(att, v, heads);
            x = x + blk.out.forward(p, y);

            let m = blk.ln2.forward(p, x.retaped::<T>());
            let m = blk.fc.forward_act(p, m, Some(Activation::Gelu));
            x = x + blk.proj.forward(p, m);
        }

        let x = self.ln_f.forward(p, x);
        match self.head {
            Some(head) => D::gemm_nn(x, p.matrix::<NoneTape>(head)),
            None => D::gemm_nt(x, p.matrix::<NoneTape>(self.wte)),
        }
    }

    /// `(m, k, n)` of every matrix product in a forward pass over `batch`
    /// sequences of `seq` tokens, batched products counted once per batch entry.
    pub fn matmuls(&self, batch: usize, seq: usize) -> Vec<(usize, usize, usize)> {
        let s = &self.spec;
        transformer_matmuls(s, batch, seq)
    }
}

/// See [`Transformer::matmuls`]; a free function so FLOP counts need no built model.
pub fn transformer_matmuls(
    s: &TransformerSpec,
    batch: usize,
    seq: usize,
) -> Vec<(usize, usize, usize)> {
    let (d, f, v) = (s.d_model, s.d_ff(), s.vocab);
    let n = batch * seq;
    let dh = d / s.n_heads;
    let heads = batch * s.n_heads;
    let mut out = Vec::new();
    for _ in 0..s.n_layers {
        out.extend([(n, d, d); 3]); // q, k, v
        for _ in 0..heads {
            out.push((seq, dh, seq)); // q k^T
            out.push((seq, seq, dh)); // att v
        }
        out.push((n, d, d)); // attention output
        out.push((n, d, f)); // mlp in
        out.push((n, f, d)); // mlp out
    }
    out.push((n, d, v)); // logits
    out
}
