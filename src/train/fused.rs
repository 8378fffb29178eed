//! Fused kernels for the CPU: one op on the tape where the composed dfdx ops
//! would make many passes.
//!
//! dfdx 0.13 keeps its kernel traits crate-private, but its tape is public: an op
//! can read its input (`copy_into`), build its output (`tensor_from_vec`) and
//! record a backward closure that reads and accumulates gradient buffers
//! (`Gradients::get_or_alloc_mut`). [`FusedOps`] has the composed dfdx ops as its
//! default methods, which every device (CUDA included) gets; `Cpu` overrides them
//! with single-pass kernels. Tests check each fused op against its composed
//! reference, values and gradients.
//!
//! [`FusedOps::causal_softmax`] is the attention softmax: scaling, causal mask and
//! softmax over `(batch, heads, queries, keys)` scores. Composed, that is nine
//! passes forward (scale, masked add, max, subtract, exp, sum, divide and their
//! broadcasts) and as many backward, plus the mask's own gradient; the profile in
//! bench/train/RESULTS.md ranked these generic elementwise kernels first after
//! the matrix products.

use dfdx::prelude::*;
use rayon::prelude::*;

/// Shape of attention scores: `(batch, heads, queries, keys)`.
pub type Heads = (usize, usize, usize, usize);

/// Added to masked scores by the composed op: finite rather than `-inf`, so a
/// masked entry can never produce `0 * inf` in the backward pass.
const MASKED: f32 = -1e9;

/// Ops with a fused kernel on some devices and the composed dfdx ops elsewhere.
pub trait FusedOps: dfdx::tensor_ops::Device<f32> {
    /// `softmax(scale * scores + mask)` over the key axis, where the mask hides
    /// key `j > i` from query `i` (each position sees itself and the past).
    /// `scores` must be in standard row-major layout, as a `matmul` output is.
    fn causal_softmax<T: Tape<f32, Self>>(
        scores: Tensor<Heads, f32, Self, T>,
        scale: f32,
    ) -> Tensor<Heads, f32, Self, T> {
        causal_softmax_composed(scores, scale)
    }
}

/// [`FusedOps::causal_softmax`] written with dfdx ops: the reference the fused
/// kernel is tested against, and what non-CPU devices run.
pub fn causal_softmax_composed<D: dfdx::tensor_ops::Device<f32>, T: Tape<f32, D>>(
    scores: Tensor<Heads, f32, D, T>,
    scale: f32,
) -> Tensor<Heads, f32, D, T> {
    let shape = *scores.shape();
    let (_, _, q, k) = shape;
    let mask = scores
        .device()
        .upper_tri_like(&(q, k), MASKED, 1)
        .broadcast_like::<_, Axes2<0, 1>>(&shape);
    (scores * scale + mask).softmax::<Axis<3>>()
}

impl FusedOps for Cpu {
    fn causal_softmax<T: Tape<f32, Self>>(
        scores: Tensor<Heads, f32, Self, T>,
        scale: f32,
    ) -> Tensor<Heads, f32, Self, T> {
        let shape = *scores.shape();
        let (b, h, q, k) = shape;
        if b * h * q * k == 0 {
            return causal_softmax_composed(scores, scale);
        }
        let (scores, mut tape) = scores.split_tape();
        let mut x = vec![0.0f32; b * h * q * k];
        scores.copy_into(&mut x);
        let block = q * k;
        // One (query, key) matrix per task: each row is computed the same way
        // whichever thread runs it, so results do not depend on the thread count.
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(y, x)| {
                for (i, (yr, xr)) in y.chunks_mut(k).zip(x.chunks(k)).enumerate() {
                    softmax_row(&xr[..seen(i, k)], scale, yr);
                }
            });
        let saved = if T::OWNS_TAPE { y.clone() } else { Vec::new() };
        let out = scores.device().tensor_from_vec(y, shape);
        let (inp, res) = (scores.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&inp)?;
            let gy = grads.get_or_alloc_mut(&res)?.clone();
            let gx = grads.get_or_alloc_mut(&inp)?;
            gx.par_chunks_mut(block)
                .zip(gy.par_chunks(block).zip(saved.par_chunks(block)))
                .for_each(|(gx, (gy, y))| {
                    for (i, ((gxr, gyr), yr)) in gx
                        .chunks_mut(k)
                        .zip(gy.chunks(k))
                        .zip(y.chunks(k))
                        .enumerate()
                    {
                        let n = seen(i, k);
                        softmax_row_backward(&yr[..n], &gyr[..n], scale, &mut gxr[..n]);
                    }
                });
            Ok(())
        });
        out.put_tape(tape)
    }
}

#[cfg(feature = "cuda")]
impl FusedOps for dfdx::tensor::Cuda {}

/// How many keys query `i` sees among `k`.
fn seen(i: usize, k: usize) -> usize {
    (i + 1).min(k)
}

/// `y = softmax(scale * x)` over the visible keys `x`; `y`'s masked tail is left
/// at zero (what `exp(-1e9)` gives the composed op).
fn softmax_row(x: &[f32], scale: f32, y: &mut [f32]) {
    let max = x
        .iter()
        .map(|&v| v * scale)
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (yj, &xj) in y.iter_mut().zip(x) {
        *yj = (xj * scale - max).exp();
        sum += *yj;
    }
    for yj in &mut y[..x.len()] {
        *yj /= sum;
    }
}

/// Accumulates `scale * y * (gy - <gy, y>)` into `gx` (the softmax Jacobian-vector
/// product, times the scale's derivative); masked keys get no gradient.
fn softmax_row_backward(y: &[f32], gy: &[f32], scale: f32, gx: &mut [f32]) {
    let dot: f32 = y.iter().zip(gy).map(|(a, b)| a * b).sum();
    for ((g, &yj), &gyj) in gx.iter_mut().zip(y).zip(gy) {
        *g += scale * yj * (gyj - dot);
    }
}
