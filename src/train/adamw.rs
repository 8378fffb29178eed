//! AdamW (Loshchilov & Hutter 2019) written in dfdx tensor ops, with gradient
//! clipping by global norm.
//!
//! Written over whole tensors rather than through dfdx's `Optimizer` trait, which
//! wants compile-time-shaped `nn` modules; being tensor ops, the same update runs on
//! `Cpu` and `Cuda`. dfdx's CPU kernels reuse a uniquely owned input buffer for
//! their output, so each step of the chain below mostly updates in place.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::params::Params;
use super::Backend;

/// AdamW hyperparameters (the learning rate comes from the schedule each step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub betas: [f64; 2],
    pub eps: f64,
    /// Decoupled weight decay, applied to weights and embeddings, not to biases
    /// and layer-norm parameters.
    pub weight_decay: f64,
    /// Largest global L2 norm of the gradient; larger gradients are scaled down to
    /// it. `None` disables clipping.
    pub grad_clip: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            betas: [0.9, 0.95],
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: Some(1.0),
        }
    }
}

/// Optimiser state: first and second moments of every parameter.
pub struct AdamW<D: Backend> {
    pub config: AdamWConfig,
    m: Vec<Tensor<(usize,), f32, D>>,
    v: Vec<Tensor<(usize,), f32, D>>,
    t: i32,
}

/// What one update saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl<D: Backend> AdamW<D> {
    pub fn new(config: AdamWConfig, params: &Params<D>) -> Self {
        let zeros = |p: &super::params::Param<D>| params.device().zeros_like(&(p.numel(),));
        AdamW {
            config,
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            t: 0,
        }
    }

    /// Global L2 norm of the gradients of `params`. Each tensor's sum of squares is
    /// reduced on the device, then summed on the host in parameter order in f64, so
    /// the result does not depend on thread scheduling.
    pub fn grad_norm(params: &Params<D>, grads: &Gradients<f32, D>) -> f64 {
        params
            .iter()
            .map(|p| grads.get(&p.value).square().sum::<Rank0, _>().as_vec()[0] as f64)
            .sum::<f64>()
            .sqrt()
    }

    /// Applies one update with learning rate `lr`, replacing every parameter's
    /// tensor. `grads` must hold a slot for every parameter
    /// ([`Params::alloc_grads`]). Returns `None`, leaving everything unchanged,
    /// when the gradient norm is not finite.
    pub fn step(
        &mut self,
        params: &mut Params<D>,
        grads: &Gradients<f32, D>,
        lr: f64,
    ) -> Option<StepInfo> {
        let cfg = self.config;
        let grad_norm = Self::grad_norm(params, grads);
        if !grad_norm.is_finite() {
            return None;
        }
        self.t += 1;
        let clip = match cfg.grad_clip {
            Some(max) if grad_norm > max => (max / (grad_norm + 1e-6)) as f32,
            _ => 1.0,
        };
        let [b1, b2] = cfg.betas;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        let dev = params.device().clone();
        for i in 0..params.len() {
            let p = params.get(super::params::ParamId(i));
            let decay = if p.role.decays() {
                cfg.weight_decay
            } else {
                0.0
            };
            let mut g = grads.get(&p.value);
            if clip != 1.0 {
                g = g * clip;
            }
            // Take the moments out so each op below owns (and can reuse) its buffer.
            let m = std::mem::replace(&mut self.m[i], dev.zeros_like(&(0,)));
            let v = std::mem::replace(&mut self.v[i], dev.zeros_like(&(0,)));
            let m = m * b1 as f32 + g.clone() * (1.0 - b1) as f32;
            let v = v * b2 as f32 + g.square() * (1.0 - b2) as f32;
            let denom = (v.clone() * (1.0 / bc2) as f32).sqrt() + cfg.eps as f32;
            let update = m.clone() * (lr / bc1) as f32 / denom;
            let value = params.take(i);
            let value = if decay > 0.0 {
                value * (1.0 - lr * decay) as f32 - update
            } else {
                value - update
            };
            params.set(i, value);
            self.m[i] = m;
            self.v[i] = v;
        }
        Some(StepInfo { grad_norm })
    }
}
