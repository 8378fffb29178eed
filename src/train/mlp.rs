//! A multilayer perceptron whose width and depth are set at run time: `depth`
//! hidden layers of `width` units, then a linear read-out, for the table datasets
//! (teacher, CSV/Parquet, IDX).

use dfdx::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::layers::{Act, Activation, Linear};
use super::params::{Init, Params, Role};
use super::Backend;

/// Architecture of an [`Mlp`] (stored in `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSpec {
    pub input_dim: usize,
    pub width: usize,
    /// Hidden layers (at least 1).
    pub depth: usize,
    pub output_dim: usize,
    #[serde(default)]
    pub activation: Activation,
}

impl MlpSpec {
    /// Closed-form parameter count: the input layer, `depth - 1` hidden-to-hidden
    /// layers and the read-out, each with a bias.
    pub fn param_count(&self) -> usize {
        let (i, w, d, o) = (self.input_dim, self.width, self.depth, self.output_dim);
        (i * w + w) + (d - 1) * (w * w + w) + (w * o + o)
    }

    /// `(fan_in, fan_out)` of every matrix product, in order.
    pub fn matmuls(&self) -> Vec<(usize, usize)> {
        let mut dims = vec![(self.input_dim, self.width)];
        dims.extend((1..self.depth).map(|_| (self.width, self.width)));
        dims.push((self.width, self.output_dim));
        dims
    }
}

/// The built model: handles into a [`Params`].
#[derive(Debug, Clone)]
pub struct Mlp {
    pub spec: MlpSpec,
    layers: Vec<Linear>,
}

impl Mlp {
    /// Creates the parameters: weights normal with variance 2/fan_in for ReLU (He
    /// init) and 1/fan_in otherwise; biases zero.
    pub fn build<D: Backend>(spec: &MlpSpec, params: &mut Params<D>, rng: &mut impl Rng) -> Self {
        Self::build_named(spec, "mlp", params, rng)
    }

    /// As [`Mlp::build`], naming parameters `{prefix}.{layer}.weight`, so a head
    /// inside a larger model gets its own names.
    pub fn build_named<D: Backend>(
        spec: &MlpSpec,
        prefix: &str,
        params: &mut Params<D>,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(spec.depth >= 1 && spec.width >= 1);
        let gain = match spec.activation {
            Activation::Relu => 2.0,
            Activation::Gelu | Activation::Tanh => 1.0,
        };
        let layers = spec
            .matmuls()
            .into_iter()
            .enumerate()
            .map(|(i, (fan_in, fan_out))| {
                let std = (gain / fan_in as f64).sqrt();
                let weight = params.add(
                    format!("{prefix}.{i}.weight"),
                    &[fan_in, fan_out],
                    Role::Weight,
                    Init::Normal(std),
                    rng,
                );
                let bias = params.add(
                    format!("{prefix}.{i}.bias"),
                    &[fan_out],
                    Role::Bias,
                    Init::Zeros,
                    rng,
                );
                Linear {
                    weight,
                    bias: Some(bias),
                }
            })
            .collect();
        Mlp {
            spec: spec.clone(),
            layers,
        }
    }

    /// `x` `(batch, input_dim)` to outputs `(batch, output_dim)`.
    pub fn forward<D: Backend, T: Tape<f32, D>>(&self, p: &Params<D>, x: Act<D, T>) -> Act<D, T> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward_act(p, h, (i < last).then_some(self.spec.activation));
        }
        h
    }
}
