//! The CPU's matrix products (`train::matmul`, gemm 0.19) against dfdx's matmul
//! (gemm 0.15) and the composed attention ops: values, gradients (also when an
//! input feeds a second op, so the backward must accumulate), the tape-less
//! path, and bitwise identical results for any number of threads.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use scalepipe::train::matmul::{
    attention_mix_composed, attention_scores_composed, gemm, HeadLayout, MatMulOps, MatView,
    Parallelism,
};

type Mat<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
type Heads4<T = NoneTape> = Tensor<(usize, usize, usize, usize), f32, Cpu, T>;
type Owned = OwnedTape<f32, Cpu>;

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn mat(dev: &Cpu, rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Mat {
    dev.tensor_from_vec(random(rng, rows * cols), (rows, cols))
}

/// `|x - y| <= tol * (1 + |y|)` for every pair.
fn assert_close(what: &str, x: &[f32], y: &[f32], tol: f32) {
    assert_eq!(x.len(), y.len(), "{what}: lengths");
    for (i, (a, b)) in x.iter().zip(y).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

/// Products of a linear layer and of the tied output embedding, at shapes that
/// exercise gemm's edge tiles (odd sizes, a single row or column) and its
/// threaded path, against dfdx's matmul.
#[test]
fn gemm_products_equal_dfdx_matmul_in_values_and_gradients() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (m, k, n) in [
        (1, 1, 1),
        (7, 13, 5),
        (1, 32, 17),
        (33, 64, 1),
        (64, 48, 96),
        (200, 130, 70),
    ] {
        for transposed in [false, true] {
            let a = mat(&dev, &mut rng, m, k);
            let b = if transposed {
                mat(&dev, &mut rng, n, k)
            } else {
                mat(&dev, &mut rng, k, n)
            };
            let w = mat(&dev, &mut rng, m, n);
            let w2 = mat(&dev, &mut rng, m, k);
            let run = |ours: bool| {
                let x = a.leaky_trace();
                let y: Mat<Owned> = match (ours, transposed) {
                    (true, false) => Cpu::gemm_nn(x.retaped::<Owned>(), b.clone()),
                    (true, true) => Cpu::gemm_nt(x.retaped::<Owned>(), b.clone()),
                    (false, false) => x.retaped::<Owned>().matmul(b.clone()),
                    (false, true) => x
                        .retaped::<Owned>()
                        .matmul(b.clone().permute::<(usize, usize), Axes2<1, 0>>()),
                };
                let values = y.retaped::<NoneTape>().as_vec();
                // `a` also feeds a second op: its gradient must add up both.
                let loss = (y * w.clone()).sum::<Rank0, _>() + (x * w2.clone()).sum::<Rank0, _>();
                let grads = loss.backward();
                (values, grads.get(&a).as_vec(), grads.get(&b).as_vec())
            };
            let (ov, oa, ob) = run(true);
            let (dv, da, db) = run(false);
            let what = format!("{m}x{k}x{n} transposed={transposed}");
            assert_close(&format!("{what} value"), &ov, &dv, 1e-5);
            assert_close(&format!("{what} grad a"), &oa, &da, 1e-5);
            assert_close(&format!("{what} grad b"), &ob, &db, 1e-5);
            // Without a tape: the same values, bit for bit.
            let plain = if transposed {
                Cpu::gemm_nt(a.clone(), b.clone())
            } else {
                Cpu::gemm_nn(a.clone(), b.clone())
            };
            assert_eq!(plain.as_vec(), ov, "{what}: tape-less values");
        }
    }
}

/// A transposed (non-contiguous) input is made contiguous first, so the op
/// reads it in its logical order, and its gradient lands on the original.
#[test]
fn gemm_reads_a_permuted_input_in_logical_order() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (m, k, n) = (6, 4, 5);
    let at = mat(&dev, &mut rng, k, m); // a stored transposed
    let b = mat(&dev, &mut rng, k, n);
    let w = mat(&dev, &mut rng, m, n);
    let run = |ours: bool| {
        let a = at.leaky_trace().permute::<(usize, usize), Axes2<1, 0>>();
        let y = if ours {
            Cpu::gemm_nn(a, b.clone())
        } else {
            a.matmul(b.clone())
        };
        let values = y.retaped::<NoneTape>().as_vec();
        let grads = (y * w.clone()).sum::<Rank0, _>().backward();
        (values, grads.get(&at).as_vec())
    };
    let (ov, og) = run(true);
    let (dv, dg) = run(false);
    assert_close("value", &ov, &dv, 1e-5);
    assert_close("grad", &og, &dg, 1e-5);
}

/// The per-head attention products read from `(tokens, d_model)` projections
/// against dfdx's permuted batched matmuls: scores `q_h k_h^T`, then `att_h v_h`
/// with the heads put back side by side.
#[test]
fn attention_products_equal_the_composed_permuted_matmuls() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (batch, seq, heads, d) in [(1, 1, 1, 1), (2, 5, 2, 8), (3, 7, 4, 12), (2, 16, 1, 6)] {
        let layout = HeadLayout { batch, seq, heads };
        let n = batch * seq;
        let (q, k, v) = (
            mat(&dev, &mut rng, n, d),
            mat(&dev, &mut rng, n, d),
            mat(&dev, &mut rng, n, d),
        );
        let scores_shape = layout.scores();
        let numel = batch * heads * seq * seq;
        let ws: Heads4 = dev.tensor_from_vec(random(&mut rng, numel), scores_shape);
        let wy = mat(&dev, &mut rng, n, d);
        let wq = mat(&dev, &mut rng, n, d);
        let run = |ours: bool| {
            let (qt, kt, vt) = (q.leaky_trace(), k.leaky_trace(), v.leaky_trace());
            let s: Heads4<Owned> = if ours {
                Cpu::attention_scores(qt.retaped::<Owned>(), kt, layout)
            } else {
                attention_scores_composed(qt.retaped::<Owned>(), kt, layout)
            };
            let scores = s.retaped::<NoneTape>().as_vec();
            // The scores feed the mix and a second op.
            let extra = (s.retaped::<Owned>() * ws.clone()).sum::<Rank0, _>();
            let y: Mat<Owned> = if ours {
                Cpu::attention_mix(s, vt, layout)
            } else {
                attention_mix_composed(s, vt, layout)
            };
            let values = y.retaped::<NoneTape>().as_vec();
            let loss =
                (y * wy.clone()).sum::<Rank0, _>() + extra + (qt * wq.clone()).sum::<Rank0, _>();
            let grads = loss.backward();
            let g = |t: &Mat| grads.get(t).as_vec();
            (scores, values, g(&q), g(&k), g(&v))
        };
        let ours = run(true);
        let theirs = run(false);
        let what = format!("b{batch} t{seq} h{heads} d{d}");
        assert_close(&format!("{what} scores"), &ours.0, &theirs.0, 1e-5);
        assert_close(&format!("{what} mix"), &ours.1, &theirs.1, 1e-5);
        assert_close(&format!("{what} grad q"), &ours.2, &theirs.2, 1e-5);
        assert_close(&format!("{what} grad k"), &ours.3, &theirs.3, 1e-5);
        assert_close(&format!("{what} grad v"), &ours.4, &theirs.4, 1e-5);
    }
}

/// Forward and backward of every product, on 1 to 4 threads: bit for bit the
/// same (the trainer's determinism across `threads` rests on it). The large
/// shapes are above gemm's threading threshold, so the work is really split.
#[test]
fn products_are_bitwise_identical_across_thread_counts() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let shapes = [(256, 512, 384), (1024, 256, 1024), (37, 300, 129)];
    let inputs: Vec<(Mat, Mat, Mat, Mat)> = shapes
        .iter()
        .map(|&(m, k, n)| {
            (
                mat(&dev, &mut rng, m, k),
                mat(&dev, &mut rng, k, n),
                mat(&dev, &mut rng, n, k),
                mat(&dev, &mut rng, m, n),
            )
        })
        .collect();
    let layout = HeadLayout {
        batch: 8,
        seq: 64,
        heads: 4,
    };
    let qkv: Vec<Mat> = (0..3).map(|_| mat(&dev, &mut rng, 512, 128)).collect();
    let results = |threads: usize| -> Vec<Vec<f32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut out = Vec::new();
            for (a, b, bt, w) in &inputs {
                for transposed in [false, true] {
                    let x = a.leaky_trace();
                    let y = if transposed {
                        Cpu::gemm_nt(x, bt.clone())
                    } else {
                        Cpu::gemm_nn(x, b.clone())
                    };
                    out.push(y.retaped::<NoneTape>().as_vec());
                    let grads = (y * w.clone()).sum::<Rank0, _>().backward();
                    out.push(grads.get(a).as_vec());
                    out.push(grads.get(if transposed { bt } else { b }).as_vec());
                }
            }
            let (q, k, v) = (&qkv[0], &qkv[1], &qkv[2]);
            let s = Cpu::attention_scores(q.leaky_trace(), k.clone(), layout);
            let y = Cpu::attention_mix(s, v.clone(), layout);
            out.push(y.retaped::<NoneTape>().as_vec());
            let grads = (y * qkv[0].clone()).sum::<Rank0, _>().backward();
            for t in [q, k, v] {
                out.push(grads.get(t).as_vec());
            }
            out
        })
    };
    let one = results(1);
    for threads in [2, 3, 4] {
        let other = results(threads);
        for (i, (x, y)) in one.iter().zip(&other).enumerate() {
            let same = x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "result {i} differs between 1 and {threads} threads");
        }
    }
}

/// The safe wrapper refuses views that reach past their slices or a
/// destination whose rows overlap, instead of handing gemm a bad pointer.
#[test]
fn gemm_wrapper_checks_its_views() {
    let a = vec![1.0f32; 6];
    let b = vec![1.0f32; 6];
    let par = Parallelism::None;
    let attempt = |dst_len: usize, d: MatView, av: MatView| {
        let (a, b) = (a.clone(), b.clone());
        std::panic::catch_unwind(move || {
            let mut dst = vec![0.0f32; dst_len];
            gemm(
                &mut dst,
                d,
                &a,
                av,
                &b,
                MatView::row_major(3, 2),
                false,
                par,
            );
            dst
        })
    };
    let ok = attempt(4, MatView::row_major(2, 2), MatView::row_major(2, 3));
    assert_eq!(ok.unwrap(), vec![3.0; 4]);
    // Destination too short, input view past its slice, overlapping rows.
    assert!(attempt(3, MatView::row_major(2, 2), MatView::row_major(2, 3)).is_err());
    assert!(attempt(4, MatView::row_major(2, 2), MatView::new(2, 3, 4, 1)).is_err());
    assert!(attempt(4, MatView::new(2, 2, 1, 1), MatView::row_major(2, 3)).is_err());
}
