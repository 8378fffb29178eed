//! Fused kernels for the CPU: one op on the tape where the composed dfdx ops
//! would make many passes.
//!
//! dfdx 0.13 keeps its kernel traits crate-private, but its tape is public: an op
//! can read its input (`copy_into`), fill its output (`copy_from` into a tensor
//! from the device's allocator, see `upload`) and record a backward closure that
//! reads and accumulates gradient buffers (`Gradients::get_or_alloc_mut`). [`FusedOps`] has the composed dfdx ops as its
//! default methods, which every device (CUDA included) gets; `Cpu` overrides them
//! with single-pass kernels. Tests check each fused op against its composed
//! reference, values and gradients.
//!
//! The ops, in the order the profile in bench/train/RESULTS.md ranked them:
//! - [`FusedOps::causal_softmax`], the attention softmax: scaling, causal mask and
//!   softmax over `(batch, heads, queries, keys)` scores (composed: nine passes
//!   forward and as many backward, plus the mask's own gradient);
//! - [`FusedOps::layer_norm`]: mean, variance, normalisation, gain and shift
//!   (composed: eleven ops, each with its output allocated and zero-filled);
//! - [`FusedOps::bias_act`]: a linear layer's bias add and its activation, whose
//!   composed backward reduces the broadcast bias with a strided walk;
//! - [`FusedOps::cross_entropy`]: log-softmax over the vocabulary and the mean
//!   negative log-likelihood, with the logits' gradient written in one pass.
//!
//! Determinism: rows are split into blocks of a fixed number of rows that depends
//! only on the row length ([`block_rows`]), never on the thread count. Per-row
//! results are computed the same way whichever thread runs them, and sums over
//! rows (the gradients of a gain, shift or bias) are taken per block and then
//! added block by block in order, so every result is bitwise identical for any
//! number of threads.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::layers::Activation;

/// Shape of attention scores: `(batch, heads, queries, keys)`.
pub type Heads = (usize, usize, usize, usize);

/// A 2-D activation tensor: `(rows, features)`.
pub type Rows<D, T> = Tensor<(usize, usize), f32, D, T>;

/// A parameter vector `(features,)`, off the tape: the fused ops find its
/// gradient slot by its id, as dfdx's broadcast ops do.
pub type Vector<D> = Tensor<(usize,), f32, D>;

/// Added to masked scores by the composed op: finite rather than `-inf`, so a
/// masked entry can never produce `0 * inf` in the backward pass.
const MASKED: f32 = -1e9;

/// About how many elements one rayon task handles: below this a tensor is
/// processed on one thread, above it in blocks of this size.
const TASK_ELEMS: usize = 16 * 1024;

/// Ops with a fused kernel on some devices and the composed dfdx ops elsewhere.
pub trait FusedOps: dfdx::tensor_ops::Device<f32> {
    /// Whether training and evaluation turn on dfdx's allocation cache on this
    /// device. CUDA: yes (it spares a device allocation per op). CPU: no. The
    /// CPU ops here hand their output `Vec` to the tensor (`tensor_from_vec`,
    /// no copy); with the cache on, such a buffer would join the cache when its
    /// tensor drops and never be freed, growing memory by every op output of
    /// every step, and glibc reuses freed blocks as well as the cache does
    /// (bench/train/RESULTS.md, item 1).
    const ALLOCATION_CACHE: bool = true;

    /// `softmax(scale * scores + mask)` over the key axis, where the mask hides
    /// key `j > i` from query `i` (each position sees itself and the past).
    /// `scores` must be in standard row-major layout, as a `matmul` output is.
    fn causal_softmax<T: Tape<f32, Self>>(
        scores: Tensor<Heads, f32, Self, T>,
        scale: f32,
    ) -> Tensor<Heads, f32, Self, T> {
        causal_softmax_composed(scores, scale)
    }

    /// Layer norm over the feature axis: `(x - mean) / sqrt(var + eps) * gain +
    /// shift`, with the population variance of each row (as PyTorch's).
    fn layer_norm<T: Tape<f32, Self>>(
        x: Rows<Self, T>,
        gain: &Vector<Self>,
        shift: &Vector<Self>,
        eps: f64,
    ) -> Rows<Self, T> {
        layer_norm_composed(x, gain, shift, eps)
    }

    /// `act(x + bias)`, the bias broadcast over rows; `None` adds the bias only.
    fn bias_act<T: Tape<f32, Self>>(
        x: Rows<Self, T>,
        bias: &Vector<Self>,
        act: Option<Activation>,
    ) -> Rows<Self, T> {
        bias_act_composed(x, bias, act)
    }

    /// Mean cross-entropy (nats) of `logits` `(n, classes)` against one class
    /// index per row.
    fn cross_entropy<T: Tape<f32, Self>>(
        logits: Rows<Self, T>,
        targets: &[usize],
    ) -> Tensor<Rank0, f32, Self, T> {
        cross_entropy_composed(logits, targets)
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

/// [`FusedOps::layer_norm`] written with dfdx ops.
pub fn layer_norm_composed<D: dfdx::tensor_ops::Device<f32>, T: Tape<f32, D>>(
    x: Rows<D, T>,
    gain: &Vector<D>,
    shift: &Vector<D>,
    eps: f64,
) -> Rows<D, T> {
    let shape = *x.shape();
    x.normalize::<Axis<1>>(eps) * gain.clone().broadcast_like::<_, Axis<0>>(&shape)
        + shift.clone().broadcast_like::<_, Axis<0>>(&shape)
}

/// [`FusedOps::bias_act`] written with dfdx ops.
pub fn bias_act_composed<D: dfdx::tensor_ops::Device<f32>, T: Tape<f32, D>>(
    x: Rows<D, T>,
    bias: &Vector<D>,
    act: Option<Activation>,
) -> Rows<D, T> {
    let shape = *x.shape();
    let y = x + bias.clone().broadcast_like::<_, Axis<0>>(&shape);
    match act {
        Some(act) => act.apply(y),
        None => y,
    }
}

/// [`FusedOps::cross_entropy`] written with dfdx ops.
pub fn cross_entropy_composed<D: dfdx::tensor_ops::Device<f32>, T: Tape<f32, D>>(
    logits: Rows<D, T>,
    targets: &[usize],
) -> Tensor<Rank0, f32, D, T> {
    let targets = logits
        .device()
        .tensor_from_vec(targets.to_vec(), (targets.len(),));
    logits
        .log_softmax::<Axis<1>>()
        .select(targets)
        .mean::<Rank0, _>()
        .negate()
}

impl FusedOps for Cpu {
    const ALLOCATION_CACHE: bool = false;

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
        let mut y = vec![0.0f32; b * h * q * k];
        scores.copy_into(&mut y);
        let block = q * k;
        // One (query, key) matrix per task, the softmax written over the scores
        // in place: each row is computed the same way whichever thread runs it.
        y.par_chunks_mut(block).for_each(|y| {
            for (i, row) in y.chunks_mut(k).enumerate() {
                softmax_row(row, seen(i, k), scale);
            }
        });
        let out = upload(scores.device(), &y, shape);
        // The backward pass reads the softmax output.
        let saved = y;
        let (inp, res) = (scores.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            // The output's gradient is moved out while the input's is written
            // (two gradients cannot be borrowed at once), then put back.
            let gy = std::mem::take(&mut **grads.get_or_alloc_mut(&res)?);
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
            **grads.get_or_alloc_mut(&res)? = gy;
            Ok(())
        });
        out.put_tape(tape)
    }

    fn layer_norm<T: Tape<f32, Self>>(
        x: Rows<Self, T>,
        gain: &Vector<Self>,
        shift: &Vector<Self>,
        eps: f64,
    ) -> Rows<Self, T> {
        let x = x.contiguous();
        let shape = *x.shape();
        let (n, d) = shape;
        assert_eq!(gain.shape().0, d, "layer norm gain");
        assert_eq!(shift.shape().0, d, "layer norm shift");
        if n * d == 0 {
            return layer_norm_composed(x, gain, shift, eps);
        }
        let (x, mut tape) = x.split_tape();
        let xs = host(&x);
        let (g, s) = (host(gain), host(shift));
        let eps = eps as f32;
        let rows = block_rows(d);
        let mut y = vec![0.0f32; n * d];
        // (mean, 1 / std) of every row, for the backward pass.
        let mut stats = vec![[0.0f32; 2]; n];
        y.par_chunks_mut(rows * d)
            .zip(xs.par_chunks(rows * d))
            .zip(stats.par_chunks_mut(rows))
            .for_each(|((y, x), stats)| {
                for ((yr, xr), st) in y.chunks_mut(d).zip(x.chunks(d)).zip(stats) {
                    *st = layer_norm_row(xr, &g, &s, eps, yr);
                }
            });
        let out = x.device().tensor_from_vec(y, shape);
        let (inp, res, gain, shift) = (x.ghost(), out.ghost(), gain.ghost(), shift.ghost());
        tape.add_backward_op(move |grads| {
            let gy = std::mem::take(&mut **grads.get_or_alloc_mut(&res)?);
            let gx = grads.get_or_alloc_mut(&inp)?;
            // Per block of rows: the gain's and the shift's gradient sums.
            let partial: Vec<Vec<f32>> = gx
                .par_chunks_mut(rows * d)
                .zip(gy.par_chunks(rows * d))
                .zip(xs.par_chunks(rows * d))
                .zip(stats.par_chunks(rows))
                .map(|(((gx, gy), x), stats)| {
                    let mut acc = vec![0.0f32; 4 * d];
                    let (sums, scratch) = acc.split_at_mut(2 * d);
                    let (sum_g, sum_s) = sums.split_at_mut(d);
                    let (xhat, gh) = scratch.split_at_mut(d);
                    for (((gxr, gyr), xr), st) in gx
                        .chunks_mut(d)
                        .zip(gy.chunks(d))
                        .zip(x.chunks(d))
                        .zip(stats)
                    {
                        layer_norm_row_backward(xr, gyr, &g, *st, xhat, gh, gxr);
                        for (((sg, ss), &gyj), &xh) in sum_g
                            .iter_mut()
                            .zip(sum_s.iter_mut())
                            .zip(gyr)
                            .zip(xhat.iter())
                        {
                            *sg += gyj * xh;
                            *ss += gyj;
                        }
                    }
                    acc.truncate(2 * d);
                    acc
                })
                .collect();
            add_blocks(grads.get_or_alloc_mut(&gain)?, &partial, 0..d);
            add_blocks(grads.get_or_alloc_mut(&shift)?, &partial, d..2 * d);
            **grads.get_or_alloc_mut(&res)? = gy;
            Ok(())
        });
        out.put_tape(tape)
    }

    fn bias_act<T: Tape<f32, Self>>(
        x: Rows<Self, T>,
        bias: &Vector<Self>,
        act: Option<Activation>,
    ) -> Rows<Self, T> {
        let x = x.contiguous();
        let shape = *x.shape();
        let (n, f) = shape;
        assert_eq!(bias.shape().0, f, "bias length");
        if n * f == 0 {
            return bias_act_composed(x, bias, act);
        }
        let (x, mut tape) = x.split_tape();
        let mut xs = host(&x);
        let b = host(bias);
        let rows = block_rows(f);
        // The activation's derivative needs the input, kept as `saved`; a bias
        // add alone is written over the input's copy.
        let (out, saved) = match act {
            None => {
                map_rows(&mut xs, None, &b, rows, |u| u);
                (x.device().tensor_from_vec(xs, shape), Vec::new())
            }
            Some(act) => {
                let mut y = vec![0.0f32; n * f];
                match act {
                    Activation::Relu => map_rows(&mut y, Some(&xs), &b, rows, relu),
                    Activation::Gelu => map_rows(&mut y, Some(&xs), &b, rows, gelu),
                    Activation::Tanh => map_rows(&mut y, Some(&xs), &b, rows, f32::tanh),
                }
                (x.device().tensor_from_vec(y, shape), xs)
            }
        };
        let (inp, res, bias) = (x.ghost(), out.ghost(), bias.ghost());
        tape.add_backward_op(move |grads| {
            let gy = std::mem::take(&mut **grads.get_or_alloc_mut(&res)?);
            let gx = grads.get_or_alloc_mut(&inp)?;
            let partial = match act {
                // A bias add needs no input: `gy` stands in for it, unread.
                None => bias_rows_backward(gx, &gy, &gy, &b, rows, |_, gy| gy),
                Some(Activation::Relu) => {
                    bias_rows_backward(gx, &gy, &saved, &b, rows, |u, gy| relu_df(u) * gy)
                }
                Some(Activation::Gelu) => {
                    bias_rows_backward(gx, &gy, &saved, &b, rows, |u, gy| gelu_df(u) * gy)
                }
                Some(Activation::Tanh) => {
                    bias_rows_backward(gx, &gy, &saved, &b, rows, |u, gy| tanh_df(u) * gy)
                }
            };
            add_blocks(grads.get_or_alloc_mut(&bias)?, &partial, 0..b.len());
            **grads.get_or_alloc_mut(&res)? = gy;
            Ok(())
        });
        out.put_tape(tape)
    }

    fn cross_entropy<T: Tape<f32, Self>>(
        logits: Rows<Self, T>,
        targets: &[usize],
    ) -> Tensor<Rank0, f32, Self, T> {
        let logits = logits.contiguous();
        let (n, v) = *logits.shape();
        assert_eq!(targets.len(), n, "one target per row");
        if n * v == 0 {
            return cross_entropy_composed(logits, targets);
        }
        assert!(
            targets.iter().all(|&t| t < v),
            "a target is not below the {v} classes"
        );
        let (logits, mut tape) = logits.split_tape();
        // The logits' copy becomes exp(x - max) in place: the backward pass
        // needs only that and each row's 1 / sum to form the softmax.
        let mut e = host(&logits);
        let rows = block_rows(v);
        // (loss, 1 / sum) of every row.
        let mut stats = vec![[0.0f32; 2]; n];
        e.par_chunks_mut(rows * v)
            .zip(stats.par_chunks_mut(rows))
            .zip(targets.par_chunks(rows))
            .for_each(|((e, stats), targets)| {
                for ((row, st), &t) in e.chunks_mut(v).zip(stats).zip(targets) {
                    *st = log_softmax_nll_row(row, t);
                }
            });
        // Summed in row order on one thread: the same value for any thread count.
        let total: f64 = stats.iter().map(|st| st[0] as f64).sum();
        let out = upload(logits.device(), &[(total / n as f64) as f32], ());
        let targets = if T::OWNS_TAPE {
            targets.to_vec()
        } else {
            Vec::new()
        };
        let (inp, res) = (logits.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let g = grads.get_or_alloc_mut(&res)?[0] / n as f32;
            let gx = grads.get_or_alloc_mut(&inp)?;
            gx.par_chunks_mut(rows * v)
                .zip(e.par_chunks(rows * v))
                .zip(stats.par_chunks(rows))
                .zip(targets.par_chunks(rows))
                .for_each(|(((gx, e), stats), targets)| {
                    for (((gxr, er), st), &t) in
                        gx.chunks_mut(v).zip(e.chunks(v)).zip(stats).zip(targets)
                    {
                        let inv = st[1];
                        for (gj, &ej) in gxr.iter_mut().zip(er) {
                            *gj += g * (ej * inv);
                        }
                        gxr[t] -= g;
                    }
                });
            Ok(())
        });
        out.put_tape(tape)
    }
}

#[cfg(feature = "cuda")]
impl FusedOps for dfdx::tensor::Cuda {}

/// A new tensor holding a copy of `values`, on any device. It fills a buffer
/// the device allocates (from its cache where that is on) rather than adopting
/// a `Vec`, so it never grows an allocation cache.
pub fn upload<D, S>(dev: &D, values: &[f32], shape: S) -> Tensor<S, f32, D>
where
    D: dfdx::tensor_ops::Device<f32>,
    S: Shape,
{
    let mut t = dev.zeros_like(&shape);
    t.copy_from(values);
    t
}

/// A tensor's values on the host, row-major (it must be contiguous).
fn host<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0f32; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Rows per rayon task for rows of `cols` elements: a function of the row
/// length only, so the blocks (and the order of every sum over rows) are the
/// same for any thread count.
fn block_rows(cols: usize) -> usize {
    (TASK_ELEMS / cols.max(1)).max(1)
}

/// Adds the `range` part of every block's partial sums to `grad`, block by block
/// in order.
fn add_blocks(grad: &mut [f32], partial: &[Vec<f32>], range: std::ops::Range<usize>) {
    for block in partial {
        for (g, p) in grad.iter_mut().zip(&block[range.clone()]) {
            *g += p;
        }
    }
}

/// Sum of `x` in eight interleaved partial sums (a loop the compiler can
/// vectorise), combined in a fixed order.
fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product of `a` and `b`, summed as [`sum8`] does.
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((a, &xl), &yl) in acc.iter_mut().zip(x).zip(y) {
            *a += xl * yl;
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// How many keys query `i` sees among `k`.
fn seen(i: usize, k: usize) -> usize {
    (i + 1).min(k)
}

/// Overwrites `row` with `softmax(scale * row[..n])` over its first `n` (visible)
/// entries; the masked tail is set to zero (what `exp(-1e9)` gives the composed
/// op).
fn softmax_row(row: &mut [f32], n: usize, scale: f32) {
    let (x, masked) = row.split_at_mut(n);
    let max = x
        .iter()
        .map(|&v| v * scale)
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v * scale - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
    masked.fill(0.0);
}

/// Accumulates `scale * y * (gy - <gy, y>)` into `gx` (the softmax Jacobian-vector
/// product, times the scale's derivative); masked keys get no gradient.
fn softmax_row_backward(y: &[f32], gy: &[f32], scale: f32, gx: &mut [f32]) {
    let dot: f32 = y.iter().zip(gy).map(|(a, b)| a * b).sum();
    for ((g, &yj), &gyj) in gx.iter_mut().zip(y).zip(gy) {
        *g += scale * yj * (gyj - dot);
    }
}

/// Writes one normalised, scaled and shifted row into `y`; returns the row's
/// `(mean, 1 / std)`.
fn layer_norm_row(x: &[f32], gain: &[f32], shift: &[f32], eps: f32, y: &mut [f32]) -> [f32; 2] {
    let d = x.len() as f32;
    let mean = sum8(x) / d;
    for (yj, &xj) in y.iter_mut().zip(x) {
        *yj = xj - mean;
    }
    let rstd = 1.0 / (dot8(y, y) / d + eps).sqrt();
    for ((yj, &g), &s) in y.iter_mut().zip(gain).zip(shift) {
        *yj = *yj * rstd * g + s;
    }
    [mean, rstd]
}

/// Accumulates one row's input gradient into `gx`:
/// `rstd * (gh - mean(gh) - xhat * mean(gh * xhat))` with `gh = gy * gain`.
/// Leaves the normalised row in `xhat` (for the gain's gradient); `gh` is scratch.
fn layer_norm_row_backward(
    x: &[f32],
    gy: &[f32],
    gain: &[f32],
    [mean, rstd]: [f32; 2],
    xhat: &mut [f32],
    gh: &mut [f32],
    gx: &mut [f32],
) {
    let d = x.len() as f32;
    for (h, &xj) in xhat.iter_mut().zip(x) {
        *h = (xj - mean) * rstd;
    }
    for ((h, &gyj), &g) in gh.iter_mut().zip(gy).zip(gain) {
        *h = gyj * g;
    }
    let a = sum8(gh) / d;
    let b = dot8(gh, xhat) / d;
    for ((gxj, &h), &xh) in gx.iter_mut().zip(gh.iter()).zip(xhat.iter()) {
        *gxj += rstd * (h - a - xh * b);
    }
}

/// `y = op(x + bias)` row by row, or in place over `y` when `x` is `None`.
fn map_rows(
    y: &mut [f32],
    x: Option<&[f32]>,
    bias: &[f32],
    rows: usize,
    op: impl Fn(f32) -> f32 + Sync,
) {
    let f = bias.len();
    let row = |yr: &mut [f32], xr: &[f32]| {
        for ((yj, &xj), &bj) in yr.iter_mut().zip(xr).zip(bias) {
            *yj = op(xj + bj);
        }
    };
    match x {
        Some(x) => y
            .par_chunks_mut(rows * f)
            .zip(x.par_chunks(rows * f))
            .for_each(|(y, x)| {
                y.chunks_mut(f)
                    .zip(x.chunks(f))
                    .for_each(|(yr, xr)| row(yr, xr))
            }),
        None => y.par_chunks_mut(rows * f).for_each(|y| {
            for yr in y.chunks_mut(f) {
                for (yj, &bj) in yr.iter_mut().zip(bias) {
                    *yj = op(*yj + bj);
                }
            }
        }),
    }
}

/// The backward pass of [`map_rows`]: accumulates `gu = df(x + bias, gy)` into
/// `gx` and returns each block's column sums of `gu` (the bias's gradient).
fn bias_rows_backward(
    gx: &mut [f32],
    gy: &[f32],
    x: &[f32],
    bias: &[f32],
    rows: usize,
    df: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<Vec<f32>> {
    let f = bias.len();
    gx.par_chunks_mut(rows * f)
        .zip(gy.par_chunks(rows * f))
        .zip(x.par_chunks(rows * f))
        .map(|((gx, gy), x)| {
            let mut sum = vec![0.0f32; f];
            for ((gxr, gyr), xr) in gx.chunks_mut(f).zip(gy.chunks(f)).zip(x.chunks(f)) {
                for ((((gxj, &gyj), &xj), &bj), s) in gxr
                    .iter_mut()
                    .zip(gyr)
                    .zip(xr)
                    .zip(bias)
                    .zip(sum.iter_mut())
                {
                    let gu = df(xj + bj, gyj);
                    *gxj += gu;
                    *s += gu;
                }
            }
            sum
        })
        .collect()
}

fn relu(u: f32) -> f32 {
    u.max(0.0)
}

fn relu_df(u: f32) -> f32 {
    if u > 0.0 {
        1.0
    } else {
        0.0
    }
}

fn tanh_df(u: f32) -> f32 {
    let t = u.tanh();
    1.0 - t * t
}

/// `sqrt(8 / pi)` rounded to f32 (as [`super::layers::gelu`] computes it): GELU's
/// tanh approximation as a sigmoid, `sigmoid(2z)`.
const GELU_K: f32 = 1.595_769_121_605_730_8_f64 as f32;
const GELU_C: f32 = 0.044715;

/// GELU (tanh approximation) as `u * sigmoid(a)`, `a = (u^2 c + 1) u k`, the
/// same formula and operation order as [`super::layers::gelu`].
fn gelu(u: f32) -> f32 {
    u * sigmoid((u * u * GELU_C + 1.0) * u * GELU_K)
}

/// `d gelu / du = s + u s (1 - s) k (1 + 3 c u^2)`, `s = sigmoid(a)`.
fn gelu_df(u: f32) -> f32 {
    let s = sigmoid((u * u * GELU_C + 1.0) * u * GELU_K);
    s + u * (s * (1.0 - s)) * (GELU_K * (1.0 + 3.0 * GELU_C * u * u))
}

fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + (-a).exp())
}

/// Turns one row of logits into `exp(x - max)` in place; returns the row's
/// negative log-likelihood of class `target` and `1 / sum(exp(x - max))`.
fn log_softmax_nll_row(row: &mut [f32], target: usize) -> [f32; 2] {
    let x_t = row[target];
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    [sum.ln() - (x_t - max), 1.0 / sum]
}
