//! Matrix products for training on the CPU through gemm 0.19, whose AVX-512
//! kernels compile on stable Rust.
//!
//! dfdx 0.13 multiplies with gemm 0.15, which builds its AVX-512 kernels only with
//! its `nightly` feature: on stable Rust it runs AVX2+FMA even on a CPU with
//! AVX-512. gemm 0.19's `x86-v4` feature compiles them on stable, and gemm picks
//! the widest kernel the CPU has at run time (AVX-512, else AVX2+FMA, else
//! scalar), so one binary runs everywhere.
//!
//! [`MatMulOps`] records the products on dfdx's tape the way [`super::fused`]
//! does (dfdx's kernel traits are crate-private): inputs read with `copy_into`,
//! the output built with `tensor_from_vec` (the CPU runs without dfdx's
//! allocation cache, see `FusedOps::ALLOCATION_CACHE`), a backward closure that
//! accumulates into the inputs' gradient buffers. Its default methods are dfdx's own ops,
//! which CUDA keeps; `Cpu` overrides them.
//!
//! Determinism: results must not depend on the thread count. gemm splits a
//! product over output tiles, never over the reduction, so every output element
//! is summed in the same order on any number of threads (tested bitwise in
//! `tests/it/matmul.rs`). The per-head attention products run one batch entry
//! per rayon task, each a sequential gemm.

use dfdx::prelude::*;
pub use gemm::Parallelism;
use rayon::prelude::*;

use super::fused::Heads;

/// A 2-D tensor: `(rows, cols)`.
pub type Mat<D, T> = Tensor<(usize, usize), f32, D, T>;

/// How the `(tokens, d_model)` projections of an attention layer split into
/// heads: `batch` sequences of `seq` tokens, `heads` heads of `d_model / heads`
/// features each (token `s` of sequence `b` is row `b * seq + s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
}

impl HeadLayout {
    /// Features per head of a `(tokens, d_model)` projection; panics when the
    /// projection does not have this layout's shape.
    fn head_dim(&self, (tokens, d): (usize, usize)) -> usize {
        assert_eq!(tokens, self.batch * self.seq, "rows != batch * seq");
        assert!(
            self.heads > 0 && d.is_multiple_of(self.heads),
            "d_model % heads != 0"
        );
        d / self.heads
    }

    /// Shape of the attention scores: `(batch, heads, seq, seq)`.
    pub fn scores(&self) -> Heads {
        (self.batch, self.heads, self.seq, self.seq)
    }
}

/// Matrix products with a gemm 0.19 kernel on the CPU and dfdx's matmul elsewhere.
pub trait MatMulOps: dfdx::tensor_ops::Device<f32> {
    /// `a (m, k) x b (k, n)`: a linear layer's product.
    fn gemm_nn<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        a: Mat<Self, L>,
        b: Mat<Self, R>,
    ) -> Mat<Self, L> {
        a.matmul(b)
    }

    /// `a (m, k) x b^T` for `b (n, k)`: the logits against a tied embedding.
    fn gemm_nt<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        a: Mat<Self, L>,
        b: Mat<Self, R>,
    ) -> Mat<Self, L> {
        a.matmul(b.permute::<(usize, usize), Axes2<1, 0>>())
    }

    /// Attention scores `q_h k_h^T` of every sequence and head, `(batch, heads,
    /// seq, seq)`, from the `(tokens, d_model)` query and key projections.
    fn attention_scores<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        q: Mat<Self, L>,
        k: Mat<Self, R>,
        layout: HeadLayout,
    ) -> Tensor<Heads, f32, Self, L> {
        attention_scores_composed(q, k, layout)
    }

    /// The attention output `att_h v_h` of every sequence and head, heads side
    /// by side again: `(tokens, d_model)`, the layout of the value projection.
    fn attention_mix<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        att: Tensor<Heads, f32, Self, L>,
        v: Mat<Self, R>,
        layout: HeadLayout,
    ) -> Mat<Self, L> {
        attention_mix_composed(att, v, layout)
    }
}

/// [`MatMulOps::attention_scores`] with dfdx ops: the heads permuted to the
/// front, then a batched matmul. What non-CPU devices run, and the reference.
pub fn attention_scores_composed<
    D: dfdx::tensor_ops::Device<f32>,
    L: Tape<f32, D> + Merge<R>,
    R: Tape<f32, D>,
>(
    q: Mat<D, L>,
    k: Mat<D, R>,
    layout: HeadLayout,
) -> Tensor<Heads, f32, D, L> {
    let dh = layout.head_dim(*q.shape());
    let (b, t, h) = (layout.batch, layout.seq, layout.heads);
    let q = q
        .reshape_like(&(b, t, h, dh))
        .permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    let k = k
        .reshape_like(&(b, t, h, dh))
        .permute::<(usize, usize, usize, usize), Axes4<0, 2, 3, 1>>();
    q.matmul(k)
}

/// [`MatMulOps::attention_mix`] with dfdx ops (see [`attention_scores_composed`]).
pub fn attention_mix_composed<
    D: dfdx::tensor_ops::Device<f32>,
    L: Tape<f32, D> + Merge<R>,
    R: Tape<f32, D>,
>(
    att: Tensor<Heads, f32, D, L>,
    v: Mat<D, R>,
    layout: HeadLayout,
) -> Mat<D, L> {
    let shape = *v.shape();
    let dh = layout.head_dim(shape);
    let (b, t, h) = (layout.batch, layout.seq, layout.heads);
    let v = v
        .reshape_like(&(b, t, h, dh))
        .permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    att.matmul(v)
        .permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>()
        .reshape_like(&shape)
}

impl MatMulOps for Cpu {
    fn gemm_nn<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        a: Mat<Self, L>,
        b: Mat<Self, R>,
    ) -> Mat<Self, L> {
        product(a, b, false)
    }

    fn gemm_nt<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        a: Mat<Self, L>,
        b: Mat<Self, R>,
    ) -> Mat<Self, L> {
        product(a, b, true)
    }

    fn attention_scores<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        q: Mat<Self, L>,
        k: Mat<Self, R>,
        layout: HeadLayout,
    ) -> Tensor<Heads, f32, Self, L> {
        let shape = *q.shape();
        assert_eq!(*k.shape(), shape, "q and k differ in shape");
        let dh = layout.head_dim(shape);
        let d = shape.1;
        let (t, h) = (layout.seq, layout.heads);
        let (q, qt) = q.contiguous().split_tape();
        let (k, kt) = k.contiguous().split_tape();
        let mut tape = qt.merge(kt);
        let (qd, kd) = (host(&q), host(&k));
        // Head `j` of a sequence is a `(seq, dh)` block `dh` columns wide in
        // rows `d` apart; a score block is `(seq, seq)`.
        let head = MatView::new(t, dh, d, 1);
        let square = MatView::row_major(t, t);
        // Values per sequence: of a projection, of its scores.
        let (td, htt) = (t * d, h * t * t);
        let mut s = vec![0.0f32; layout.batch * htt];
        per_sequence((&mut s, htt), (&qd, td), (&kd, td), |s, q, k| {
            for j in 0..h {
                let (c, sj) = (j * dh, &mut s[j * t * t..]);
                gemm(sj, square, &q[c..], head, &k[c..], head.t(), false, SEQ);
            }
        });
        let out = q.device().tensor_from_vec(s, layout.scores());
        let (qg, kg, og) = (q.ghost(), k.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            // The output's gradient is moved out while the inputs' are written,
            // then put back (no copy).
            let gs = std::mem::take(&mut **grads.get_or_alloc_mut(&og)?);
            // dq_h += ds k_h; dk_h += ds^T q_h.
            let gq = grads.get_or_alloc_mut(&qg)?;
            per_sequence((&mut gq[..], td), (&gs, htt), (&kd, td), |gq, gs, k| {
                for j in 0..h {
                    let (c, gsj) = (j * dh, &gs[j * t * t..]);
                    gemm(&mut gq[c..], head, gsj, square, &k[c..], head, true, SEQ);
                }
            });
            let gk = grads.get_or_alloc_mut(&kg)?;
            per_sequence((&mut gk[..], td), (&gs, htt), (&qd, td), |gk, gs, q| {
                for j in 0..h {
                    let (c, gsj) = (j * dh, &gs[j * t * t..]);
                    gemm(
                        &mut gk[c..],
                        head,
                        gsj,
                        square.t(),
                        &q[c..],
                        head,
                        true,
                        SEQ,
                    );
                }
            });
            **grads.get_or_alloc_mut(&og)? = gs;
            Ok(())
        });
        out.put_tape(tape)
    }

    fn attention_mix<L: Tape<f32, Self> + Merge<R>, R: Tape<f32, Self>>(
        att: Tensor<Heads, f32, Self, L>,
        v: Mat<Self, R>,
        layout: HeadLayout,
    ) -> Mat<Self, L> {
        let shape = *v.shape();
        let dh = layout.head_dim(shape);
        let d = shape.1;
        let (t, h) = (layout.seq, layout.heads);
        assert_eq!(*att.shape(), layout.scores(), "attention weights' shape");
        let (att, at) = att.contiguous().split_tape();
        let (v, vt) = v.contiguous().split_tape();
        let mut tape = at.merge(vt);
        let (ad, vd) = (host(&att), host(&v));
        let head = MatView::new(t, dh, d, 1);
        let square = MatView::row_major(t, t);
        let (td, htt) = (t * d, h * t * t);
        let mut y = vec![0.0f32; shape.0 * d];
        per_sequence((&mut y, td), (&ad, htt), (&vd, td), |y, a, v| {
            for j in 0..h {
                let (c, aj) = (j * dh, &a[j * t * t..]);
                gemm(&mut y[c..], head, aj, square, &v[c..], head, false, SEQ);
            }
        });
        let out = v.device().tensor_from_vec(y, shape);
        let (ag, vg, og) = (att.ghost(), v.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            // The output's gradient is moved out while the inputs' are written,
            // then put back (no copy).
            let gy = std::mem::take(&mut **grads.get_or_alloc_mut(&og)?);
            // datt_h += dy_h v_h^T; dv_h += att_h^T dy_h.
            let ga = grads.get_or_alloc_mut(&ag)?;
            per_sequence((&mut ga[..], htt), (&gy, td), (&vd, td), |ga, gy, v| {
                for j in 0..h {
                    let (c, gaj) = (j * dh, &mut ga[j * t * t..]);
                    gemm(gaj, square, &gy[c..], head, &v[c..], head.t(), true, SEQ);
                }
            });
            let gv = grads.get_or_alloc_mut(&vg)?;
            per_sequence((&mut gv[..], td), (&ad, htt), (&gy, td), |gv, a, gy| {
                for j in 0..h {
                    let (c, aj) = (j * dh, &a[j * t * t..]);
                    gemm(
                        &mut gv[c..],
                        head,
                        aj,
                        square.t(),
                        &gy[c..],
                        head,
                        true,
                        SEQ,
                    );
                }
            });
            **grads.get_or_alloc_mut(&og)? = gy;
            Ok(())
        });
        out.put_tape(tape)
    }
}

#[cfg(feature = "cuda")]
impl MatMulOps for dfdx::tensor::Cuda {}

/// Per-head products are small (`seq x dh x seq`): one sequence per rayon task,
/// each product on the thread that runs the task.
const SEQ: Parallelism = Parallelism::None;

/// `a x b` (`transposed`: `a x b^T`) on the CPU, recorded on the tape.
fn product<L: Tape<f32, Cpu> + Merge<R>, R: Tape<f32, Cpu>>(
    a: Mat<Cpu, L>,
    b: Mat<Cpu, R>,
    transposed: bool,
) -> Mat<Cpu, L> {
    let (m, k) = *a.shape();
    let (rows, cols) = *b.shape();
    // `b` as the `(k, n)` operand of the product.
    let bv = if transposed {
        MatView::row_major(rows, cols).t()
    } else {
        MatView::row_major(rows, cols)
    };
    assert_eq!(bv.rows, k, "matmul: inner dimensions differ");
    let n = bv.cols;
    let (a, at) = a.contiguous().split_tape();
    let (b, bt) = b.contiguous().split_tape();
    let mut tape = at.merge(bt);
    let (ad, bd) = (host(&a), host(&b));
    let (av, yv) = (MatView::row_major(m, k), MatView::row_major(m, n));
    let mut y = vec![0.0f32; m * n];
    gemm(&mut y, yv, &ad, av, &bd, bv, false, all_threads());
    let out = a.device().tensor_from_vec(y, (m, n));
    let (ag, bg, og) = (a.ghost(), b.ghost(), out.ghost());
    // Without a tape this closure is dropped at once: the inputs' copies it owns
    // are freed, nothing else is kept.
    tape.add_backward_op(move |grads| {
        // The output's gradient is moved out while the inputs' are written,
        // then put back (no copy).
        let gy = std::mem::take(&mut **grads.get_or_alloc_mut(&og)?);
        let par = all_threads();
        // da += dy b^T.
        let ga = grads.get_or_alloc_mut(&ag)?;
        gemm(ga, av, &gy, yv, &bd, bv.t(), true, par);
        // db += a^T dy, stored as b is: (dy^T a) when b is held transposed.
        let gb = grads.get_or_alloc_mut(&bg)?;
        if transposed {
            gemm(
                gb,
                MatView::row_major(n, k),
                &gy,
                yv.t(),
                &ad,
                av,
                true,
                par,
            );
        } else {
            gemm(
                gb,
                MatView::row_major(k, n),
                &ad,
                av.t(),
                &gy,
                yv,
                true,
                par,
            );
        }
        **grads.get_or_alloc_mut(&og)? = gy;
        Ok(())
    });
    out.put_tape(tape)
}

/// gemm's threads: the rayon pool the stage runs in.
fn all_threads() -> Parallelism {
    Parallelism::Rayon(rayon::current_num_threads())
}

/// A tensor's values in row-major order (callers make it contiguous first).
fn host<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0f32; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Runs `f` on each sequence's chunk of `out` and of the inputs `x` and `y`,
/// one rayon task per sequence; each slice comes with its chunk length.
fn per_sequence(
    (out, out_len): (&mut [f32], usize),
    (x, x_len): (&[f32], usize),
    (y, y_len): (&[f32], usize),
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) {
    if out_len == 0 || x_len == 0 || y_len == 0 {
        // Empty products: outputs are already zero, gradients gain nothing.
        return;
    }
    out.par_chunks_mut(out_len)
        .zip(x.par_chunks(x_len).zip(y.par_chunks(y_len)))
        .for_each(|(o, (x, y))| f(o, x, y));
}

/// A matrix inside a slice: element `(i, j)` at `i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatView {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatView {
    pub fn new(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        MatView {
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A dense row-major matrix.
    pub fn row_major(rows: usize, cols: usize) -> Self {
        Self::new(rows, cols, cols, 1)
    }

    /// The same values read as the transpose.
    pub fn t(self) -> Self {
        Self::new(self.cols, self.rows, self.col_stride, self.row_stride)
    }

    /// How many values of its slice the view reaches.
    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// `dst = a b`, or `dst += a b` when `accumulate`, through gemm 0.19.
///
/// Panics unless the shapes agree, every view lies inside its slice, and `dst`
/// is row-major with rows that do not overlap; with those checks the one call
/// into gemm's raw-pointer API is sound.
#[allow(clippy::too_many_arguments, unsafe_code)]
pub fn gemm(
    dst: &mut [f32],
    d: MatView,
    a: &[f32],
    av: MatView,
    b: &[f32],
    bv: MatView,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(
        av.rows == d.rows && bv.cols == d.cols && av.cols == bv.rows,
        "gemm: shapes {av:?} x {bv:?} -> {d:?}"
    );
    assert!(
        d.span() <= dst.len() && av.span() <= a.len() && bv.span() <= b.len(),
        "gemm: a view reaches past its slice"
    );
    assert!(
        d.col_stride == 1 && (d.rows <= 1 || d.row_stride >= d.cols),
        "gemm: the destination must be row-major without overlapping rows"
    );
    let (m, n, k) = (d.rows, d.cols, av.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * d.row_stride..][..n].fill(0.0);
            }
        }
        return;
    }
    let s = |x: usize| x as isize;
    // SAFETY: the asserts above keep every index gemm forms, `i * row_stride +
    // j * col_stride` for `i < rows`, `j < cols`, inside the view's slice; `dst`
    // is borrowed mutably and `a`, `b` shared, so the output aliases no input,
    // and the output's elements are distinct (unit column stride, rows at least
    // a row apart). gemm reads `dst` only when `accumulate` (`read_dst`).
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            s(d.col_stride),
            s(d.row_stride),
            accumulate,
            a.as_ptr(),
            s(av.col_stride),
            s(av.row_stride),
            b.as_ptr(),
            s(bv.col_stride),
            s(bv.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
