//! Training compute: the exact matrix-product FLOPs of a forward and backward pass,
//! and the 6ND rule of thumb (Kaplan et al. 2020) it is usually approximated by.
//!
//! The exact count adds 2mkn per (m x k)(k x n) product in the forward pass and
//! 4mkn in the backward pass (one product for each operand's gradient), attention's
//! QK^T and AV included (the full T x T scores, as the causal mask is applied by
//! addition). The MLP's first layer needs no gradient for its input, so only 2mkn
//! is added there. Elementwise work (activations, layer norm, softmax, bias adds,
//! the optimiser) is not counted: it is O(N + activations), not O(N x batch).

use super::model::{Arch, ModelSpec};
use super::transformer::transformer_matmuls;

/// Exact matrix-product FLOPs of one training step (forward and backward) on a
/// batch of `rows` examples, or `rows` sequences of `seq` tokens.
pub fn step_flops(spec: &ModelSpec, rows: usize, seq: usize) -> f64 {
    match &spec.arch {
        Arch::Mlp(s) => {
            let macs: Vec<(usize, usize)> = s.matmuls();
            let first = (rows * macs[0].0 * macs[0].1) as f64;
            let all: f64 = macs.iter().map(|&(k, n)| (rows * k * n) as f64).sum();
            6.0 * all - 2.0 * first
        }
        Arch::TextClassifier(s) => {
            // The head's input (the pooled embedding) does need its gradient.
            let all: f64 = s
                .head()
                .matmuls()
                .iter()
                .map(|&(k, n)| (rows * k * n) as f64)
                .sum();
            6.0 * all
        }
        Arch::Transformer(s) => {
            let all: f64 = transformer_matmuls(s, rows, seq)
                .iter()
                .map(|&(m, k, n)| (m * k * n) as f64)
                .sum();
            6.0 * all
        }
    }
}

/// Forward-only matrix-product FLOPs of a batch (what evaluation costs).
pub fn forward_flops(spec: &ModelSpec, rows: usize, seq: usize) -> f64 {
    match &spec.arch {
        Arch::Mlp(s) => s
            .matmuls()
            .iter()
            .map(|&(k, n)| 2.0 * (rows * k * n) as f64)
            .sum(),
        Arch::TextClassifier(s) => s
            .head()
            .matmuls()
            .iter()
            .map(|&(k, n)| 2.0 * (rows * k * n) as f64)
            .sum(),
        Arch::Transformer(s) => transformer_matmuls(s, rows, seq)
            .iter()
            .map(|&(m, k, n)| 2.0 * (m * k * n) as f64)
            .sum(),
    }
}

/// The 6ND approximation: 2N FLOPs per unit forward, 4N backward.
pub fn six_nd(n_params: usize, d: usize) -> f64 {
    6.0 * n_params as f64 * d as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::mlp::MlpSpec;
    use crate::train::model::LossKind;
    use crate::train::transformer::TransformerSpec;

    #[test]
    fn mlp_step_is_six_macs_less_the_input_gradient() {
        let spec = ModelSpec {
            arch: Arch::Mlp(MlpSpec {
                input_dim: 3,
                width: 5,
                depth: 2,
                output_dim: 1,
                activation: Default::default(),
            }),
            loss: LossKind::Mse,
        };
        // MACs per example: 3*5 + 5*5 + 5*1 = 45; 6*45 - 2*15 = 240.
        assert_eq!(step_flops(&spec, 1, 1), 240.0);
        assert_eq!(step_flops(&spec, 7, 1), 7.0 * 240.0);
        assert_eq!(forward_flops(&spec, 2, 1), 2.0 * 2.0 * 45.0);
    }

    #[test]
    fn transformer_step_is_close_to_kaplan_estimate() {
        let s = TransformerSpec {
            vocab: 64,
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            context: 32,
            mlp_ratio: 4,
            tied_embeddings: true,
        };
        let spec = ModelSpec {
            arch: Arch::Transformer(s.clone()),
            loss: LossKind::CrossEntropy,
        };
        // Per token: 2 FLOPs per weight of the 12 d^2 per layer, QK^T and AV each
        // 2 T d per layer (full, unmasked scores), and the d x V read-out.
        let (_, n_non) = s.param_count();
        let weights = 12 * 64 * 64 * 2; // non-embedding matmul weights, biases excluded
        assert!(n_non > weights);
        let per_token = 2.0 * weights as f64 + 2.0 * (2.0 * 2.0 * 32.0 * 64.0) + 2.0 * 64.0 * 64.0;
        let got = forward_flops(&spec, 3, 32) / (3.0 * 32.0);
        assert!((got - per_token).abs() < 1e-6, "{got} vs {per_token}");
        assert_eq!(step_flops(&spec, 3, 32), 3.0 * forward_flops(&spec, 3, 32));
    }
}
