//! AdamW (Loshchilov & Hutter 2019) with gradient clipping by global norm, over
//! runtime-shaped dfdx tensors, in two implementations of the same update:
//!
//! - [`AdamW`], what training uses: dfdx's fused Adam kernel (`AdamConfig::
//!   try_update`, one pass per tensor, with CPU and CUDA kernels) in decoupled
//!   weight-decay mode, updating each parameter in place. The global norm and the
//!   clip scaling go through [`GradOps`], which reads and scales gradient buffers
//!   directly on the CPU.
//! - [`TensorOpAdamW`], the same update written as a chain of dfdx tensor ops. It
//!   is the readable reference (a test checks the two agree) and what the
//!   benchmark compares against: on the CPU every dfdx elementwise op is a
//!   separate single-threaded pass that allocates, so its ~12 passes cost about
//!   ten times the fused kernel (see bench/train/RESULTS.md).
//!
//! dfdx's `Optimizer` trait is not used because it wants compile-time-shaped `nn`
//! modules.

use dfdx::prelude::*;
use dfdx::tensor_ops::{AdamConfig, WeightDecay};
use serde::{Deserialize, Serialize};

use super::params::{ParamId, Params};
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

impl AdamWConfig {
    /// The factor gradients are multiplied by for a global norm `norm`.
    pub fn clip_factor(&self, norm: f64) -> f32 {
        match self.grad_clip {
            Some(max) if norm > max => (max / (norm + 1e-6)) as f32,
            _ => 1.0,
        }
    }
}

/// What one update saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Reading and scaling gradient buffers in place: what clipping needs and dfdx
/// has no public op for (its tensors and gradient buffers are only reachable
/// through kernels). The default methods work on any device through tensor ops;
/// the CPU overrides them with single passes over the buffers.
pub trait GradOps: dfdx::tensor_ops::Device<f32> + dfdx::tensor::Cache {
    /// Sum of squares of `p`'s gradient, in f64.
    fn grad_sum_squares(grads: &mut Gradients<f32, Self>, p: &Tensor<(usize,), f32, Self>) -> f64 {
        grads.get(p).square().sum::<Rank0, _>().as_vec()[0] as f64
    }

    /// Multiplies `p`'s gradient by `c` in place.
    fn scale_grad(
        grads: &mut Gradients<f32, Self>,
        p: &Tensor<(usize,), f32, Self>,
        c: f32,
    ) -> Result<(), String>;

    /// Overwrites `p`'s gradient with `values` (restoring saved moments).
    fn write_grad(
        grads: &mut Gradients<f32, Self>,
        p: &Tensor<(usize,), f32, Self>,
        values: &[f32],
    ) -> Result<(), String>;
}

impl GradOps for Cpu {
    fn grad_sum_squares(grads: &mut Gradients<f32, Self>, p: &Tensor<(usize,), f32, Self>) -> f64 {
        let g = grads.get_or_alloc_mut(p).expect("cpu allocation");
        // Sequential f64 sum: the same value whatever the thread count.
        g.iter().map(|&x| (x as f64) * (x as f64)).sum()
    }

    fn scale_grad(
        grads: &mut Gradients<f32, Self>,
        p: &Tensor<(usize,), f32, Self>,
        c: f32,
    ) -> Result<(), String> {
        let g = grads.get_or_alloc_mut(p).map_err(|e| e.to_string())?;
        g.iter_mut().for_each(|x| *x *= c);
        Ok(())
    }

    fn write_grad(
        grads: &mut Gradients<f32, Self>,
        p: &Tensor<(usize,), f32, Self>,
        values: &[f32],
    ) -> Result<(), String> {
        let g = grads.get_or_alloc_mut(p).map_err(|e| e.to_string())?;
        if g.len() != values.len() {
            return Err(format!("{} values for {} slots", values.len(), g.len()));
        }
        g.copy_from_slice(values);
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl GradOps for dfdx::tensor::Cuda {
    /// Through the host: clipping fires on few steps, and dfdx exposes no
    /// elementwise kernel over a raw gradient buffer.
    fn scale_grad(
        grads: &mut Gradients<f32, Self>,
        p: &Tensor<(usize,), f32, Self>,
        c: f32,
    ) -> Result<(), String> {
        let g = grads.get_or_alloc_mut(p).map_err(|e| format!("{e:?}"))?;
        let dev = g.device();
        let mut host = dev.dtoh_sync_copy(g).map_err(|e| format!("{e:?}"))?;
        host.iter_mut().for_each(|x| *x *= c);
        dev.htod_sync_copy_into(&host, g)
            .map_err(|e| format!("{e:?}"))
    }

    fn write_grad(
        grads: &mut Gradients<f32, Self>,
        p: &Tensor<(usize,), f32, Self>,
        values: &[f32],
    ) -> Result<(), String> {
        let g = grads.get_or_alloc_mut(p).map_err(|e| format!("{e:?}"))?;
        let dev = g.device();
        dev.htod_sync_copy_into(values, g)
            .map_err(|e| format!("{e:?}"))
    }
}

/// Global L2 norm of the gradients of `params`, summed on the host in parameter
/// order in f64, so it does not depend on thread scheduling.
pub fn grad_norm<D: Backend>(params: &Params<D>, grads: &mut Gradients<f32, D>) -> f64 {
    params
        .iter()
        .map(|p| D::grad_sum_squares(grads, &p.value))
        .sum::<f64>()
        .sqrt()
}

/// AdamW through dfdx's fused Adam kernel; moments live in `Gradients` stores
/// keyed by the parameters' ids, which stay fixed because updates are in place.
pub struct AdamW<D: Backend> {
    pub config: AdamWConfig,
    m: Gradients<f32, D>,
    v: Gradients<f32, D>,
    t: i32,
}

impl<D: Backend> AdamW<D> {
    pub fn new(config: AdamWConfig, params: &Params<D>) -> Self {
        AdamW {
            config,
            m: params.alloc_grads(),
            v: params.alloc_grads(),
            t: 0,
        }
    }

    /// The optimiser's state on the host, to checkpoint it: both moments of
    /// every parameter, in parameter order.
    pub fn to_host(&self, params: &Params<D>) -> AdamWState {
        let host = |store: &Gradients<f32, D>| {
            params
                .iter()
                .map(|p| store.get(&p.value).as_vec())
                .collect()
        };
        AdamWState {
            t: self.t,
            m: host(&self.m),
            v: host(&self.v),
        }
    }

    /// An optimiser continuing from `state`, for `params` restored from the same
    /// checkpoint.
    pub fn restore(
        config: AdamWConfig,
        params: &Params<D>,
        state: &AdamWState,
    ) -> Result<Self, String> {
        let mut opt = AdamW::new(config, params);
        if state.m.len() != params.len() || state.v.len() != params.len() {
            return Err(format!(
                "the optimiser state has moments for {} parameters, the model has {}",
                state.m.len(),
                params.len()
            ));
        }
        for (i, p) in params.iter().enumerate() {
            D::write_grad(&mut opt.m, &p.value, &state.m[i])?;
            D::write_grad(&mut opt.v, &p.value, &state.v[i])?;
        }
        opt.t = state.t;
        Ok(opt)
    }

    /// Applies one update with learning rate `lr`. `grads` must hold a slot for
    /// every parameter ([`Params::tape`]). Returns `None`, leaving everything
    /// unchanged, when the gradient norm is not finite.
    pub fn step(
        &mut self,
        params: &mut Params<D>,
        grads: &mut Gradients<f32, D>,
        lr: f64,
    ) -> Result<Option<StepInfo>, String> {
        let cfg = self.config;
        let norm = grad_norm(params, grads);
        if !norm.is_finite() {
            return Ok(None);
        }
        let clip = cfg.clip_factor(norm);
        self.t += 1;
        for i in 0..params.len() {
            let p = params.get(ParamId(i));
            if clip != 1.0 {
                D::scale_grad(grads, &p.value, clip)?;
            }
            let adam = AdamConfig {
                lr,
                betas: cfg.betas,
                eps: cfg.eps,
                weight_decay: (p.role.decays() && cfg.weight_decay > 0.0)
                    .then_some(WeightDecay::Decoupled(cfg.weight_decay)),
            };
            let m = self
                .m
                .get_or_alloc_mut(&p.value)
                .map_err(|e| format!("{e:?}"))?;
            let v = self
                .v
                .get_or_alloc_mut(&p.value)
                .map_err(|e| format!("{e:?}"))?;
            let g = grads
                .get_or_alloc_mut(&p.value)
                .map_err(|e| format!("{e:?}"))?;
            adam.try_update(self.t, params.value_mut(i), m, v, g)
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(Some(StepInfo { grad_norm: norm }))
    }
}

/// [`AdamW`]'s state: the update count and both moments per parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWState {
    pub t: i32,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

/// The same AdamW as a chain of dfdx tensor ops (the reference implementation).
pub struct TensorOpAdamW<D: Backend> {
    pub config: AdamWConfig,
    m: Vec<Tensor<(usize,), f32, D>>,
    v: Vec<Tensor<(usize,), f32, D>>,
    t: i32,
}

impl<D: Backend> TensorOpAdamW<D> {
    pub fn new(config: AdamWConfig, params: &Params<D>) -> Self {
        let zeros = |p: &super::params::Param<D>| params.device().zeros_like(&(p.numel(),));
        TensorOpAdamW {
            config,
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            t: 0,
        }
    }

    /// As [`AdamW::step`]; parameters get new tensors (and ids).
    pub fn step(
        &mut self,
        params: &mut Params<D>,
        grads: &mut Gradients<f32, D>,
        lr: f64,
    ) -> Option<StepInfo> {
        let cfg = self.config;
        let norm = params
            .iter()
            .map(|p| grads.get(&p.value).square().sum::<Rank0, _>().as_vec()[0] as f64)
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() {
            return None;
        }
        let clip = cfg.clip_factor(norm);
        self.t += 1;
        let [b1, b2] = cfg.betas;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        let dev = params.device().clone();
        for i in 0..params.len() {
            let p = params.get(ParamId(i));
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
        Some(StepInfo { grad_norm: norm })
    }
}
