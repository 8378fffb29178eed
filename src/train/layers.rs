//! The hand-assembled layers the model families share: affine maps, layer norm,
//! activations and the two losses, over runtime-shaped dfdx tensors.
//!
//! Each function takes tensors carrying a tape `T` (an `OwnedTape` while training,
//! `NoneTape` while evaluating), so one forward pass serves both.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::params::{ParamId, Params};
use super::Backend;

/// A 2-D activation tensor: `(rows, features)`.
pub type Act<D, T> = Tensor<(usize, usize), f32, D, T>;

/// Weight and bias of an affine map `x W + b`.
#[derive(Debug, Clone, Copy)]
pub struct Linear {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
}

impl Linear {
    pub fn forward<D: Backend, T: Tape<f32, D>>(&self, p: &Params<D>, x: Act<D, T>) -> Act<D, T> {
        self.forward_act(p, x, None)
    }

    /// `act(x W + b)`: the bias add and the activation are one fused op
    /// ([`super::fused::FusedOps::bias_act`]) on devices that have it.
    pub fn forward_act<D: Backend, T: Tape<f32, D>>(
        &self,
        p: &Params<D>,
        x: Act<D, T>,
        act: Option<Activation>,
    ) -> Act<D, T> {
        let y = D::gemm_nn(x, p.matrix::<NoneTape>(self.weight));
        match (self.bias, act) {
            (Some(b), _) => D::bias_act(y, &p.vector::<NoneTape>(b), act),
            (None, Some(act)) => act.apply(y),
            (None, None) => y,
        }
    }
}

/// Layer norm over the feature axis with a learned scale and shift.
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm {
    pub gain: ParamId,
    pub shift: ParamId,
}

/// Epsilon of every layer norm (PyTorch's default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

impl LayerNorm {
    /// One fused op ([`super::fused::FusedOps::layer_norm`]) on devices that have it.
    pub fn forward<D: Backend, T: Tape<f32, D>>(&self, p: &Params<D>, x: Act<D, T>) -> Act<D, T> {
        D::layer_norm(
            x,
            &p.vector::<NoneTape>(self.gain),
            &p.vector::<NoneTape>(self.shift),
            LAYER_NORM_EPS,
        )
    }
}

/// Elementwise non-linearity of the MLPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    Tanh,
}

impl Activation {
    /// The activation as composed dfdx ops (see [`super::fused::FusedOps::bias_act`] for the
    /// fused bias add and activation).
    pub fn apply<D: dfdx::tensor_ops::Device<f32>, T: Tape<f32, D>>(
        self,
        x: Act<D, T>,
    ) -> Act<D, T> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => gelu(x),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// GELU, tanh approximation (as GPT-2 and nanoGPT use), written as
/// `x * sigmoid(2 z)` with `z = sqrt(2/pi) (x + 0.044715 x^3)`, which equals
/// `0.5 x (1 + tanh z)`. Same function as dfdx's `fast_gelu`, but composed from
/// ops whose CPU kernels are cheap: `fast_gelu` calls libm's `tanhf` in its
/// forward and backward kernels and cost 3-4x more per element, which made it the
/// largest non-matmul cost of a transformer step (bench/train/RESULTS.md).
pub fn gelu<D: dfdx::tensor_ops::Device<f32>, T: Tape<f32, D>>(x: Act<D, T>) -> Act<D, T> {
    let two_sqrt_2_over_pi = (8.0 / std::f64::consts::PI).sqrt() as f32;
    let u =
        (x.retaped::<T>().square() * 0.044715f32 + 1.0f32) * x.retaped::<T>() * two_sqrt_2_over_pi;
    x * u.sigmoid()
}

/// Mean cross-entropy (nats) of `logits` `(n, classes)` against class indices:
/// one fused op ([`super::fused::FusedOps::cross_entropy`]) on devices that have it.
pub fn cross_entropy<D: Backend, T: Tape<f32, D>>(
    logits: Act<D, T>,
    targets: &[usize],
) -> Tensor<Rank0, f32, D, T> {
    D::cross_entropy(logits, targets)
}

/// Mean squared error of `pred` `(n, 1)` against targets.
pub fn mse<D: Backend, T: Tape<f32, D>>(
    pred: Act<D, T>,
    targets: Tensor<(usize, usize), f32, D>,
) -> Tensor<Rank0, f32, D, T> {
    (pred - targets).square().mean::<Rank0, _>()
}

/// Number of predictions whose arg-max equals the target, counted on the host.
pub fn correct(logits: &[f32], classes: usize, targets: &[usize]) -> usize {
    logits
        .chunks_exact(classes)
        .zip(targets)
        .filter(|(row, &t)| {
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = j;
                }
            }
            best == t
        })
        .count()
}
