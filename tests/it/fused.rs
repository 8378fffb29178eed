//! The CPU's fused layer norm, bias + activation and cross-entropy against the
//! composed dfdx ops they replace (values and gradients, with the input also
//! feeding a second op so the fused backward must accumulate), and bitwise
//! identical results for any thread count. (The fused causal softmax is tested
//! in `train.rs`; the finite-difference tests there go through all of them.)

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use scalepipe::train::fused::{
    bias_act_composed, cross_entropy_composed, layer_norm_composed, FusedOps,
};
use scalepipe::train::layers::{Activation, LAYER_NORM_EPS};

type Taped = OwnedTape<f32, Cpu>;
type Rows = Tensor<(usize, usize), f32, Cpu>;
type Vector = Tensor<(usize,), f32, Cpu>;

/// `offset + sd * U(-1, 1)`, `n` values.
fn uniform(rng: &mut ChaCha8Rng, n: usize, offset: f32, sd: f32) -> Vec<f32> {
    (0..n)
        .map(|_| offset + sd * rng.gen_range(-1.0f32..1.0))
        .collect()
}

fn assert_close(what: &str, fused: &[f32], composed: &[f32], tol: f32) {
    assert_eq!(fused.len(), composed.len(), "{what}: lengths");
    for (i, (a, c)) in fused.iter().zip(composed).enumerate() {
        assert!(
            (a - c).abs() <= tol * (1.0 + c.abs()),
            "{what} [{i}]: fused {a} vs composed {c}"
        );
    }
}

/// Output values, then the gradients of `x` and of each parameter in `params`,
/// of `sum(op(x) * w) + sum(x * w2)`.
fn values_and_grads(
    x: &Rows,
    params: &[&Vector],
    w: &Rows,
    w2: &Rows,
    op: impl Fn(Tensor<(usize, usize), f32, Cpu, Taped>) -> Tensor<(usize, usize), f32, Cpu, Taped>,
) -> Vec<Vec<f32>> {
    let xt = x.leaky_trace();
    let y = op(xt.retaped::<Taped>());
    let values = y.retaped::<NoneTape>().as_vec();
    let loss = (y * w.clone()).sum::<Rank0, _>() + (xt * w2.clone()).sum::<Rank0, _>();
    let grads = loss.backward();
    let mut out = vec![values, grads.get(x).as_vec()];
    out.extend(params.iter().map(|p| grads.get(*p).as_vec()));
    out
}

/// `(x, w, w2)` of `shape`: an input (`offset + sd * U(-1, 1)`) and the weights
/// of its two uses.
fn inputs(
    dev: &Cpu,
    rng: &mut ChaCha8Rng,
    shape: (usize, usize),
    offset: f32,
    sd: f32,
) -> (Rows, Rows, Rows) {
    let n = shape.0 * shape.1;
    (
        dev.tensor_from_vec(uniform(rng, n, offset, sd), shape),
        dev.tensor_from_vec(uniform(rng, n, 0.0, 1.0), shape),
        dev.tensor_from_vec(uniform(rng, n, 0.0, 1.0), shape),
    )
}

fn vector(dev: &Cpu, rng: &mut ChaCha8Rng, n: usize, offset: f32, sd: f32) -> Vector {
    dev.tensor_from_vec(uniform(rng, n, offset, sd), (n,))
}

const NAMES: [&str; 4] = [
    "value",
    "x gradient",
    "first parameter's gradient",
    "second parameter's gradient",
];

fn compare(label: &str, fused: &[Vec<f32>], composed: &[Vec<f32>]) {
    for (k, (f, c)) in fused.iter().zip(composed).enumerate() {
        let tol = if k == 0 { 1e-6 } else { 1e-5 };
        assert_close(&format!("{label} {}", NAMES[k]), f, c, tol);
    }
}

// Shapes: rows shorter than the 8-lane sums, rows with a tail, and tensors large
// enough to be split into several blocks of rows (16 Ki elements each).

#[test]
fn fused_layer_norm_equals_composed_ops() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for shape in [(3, 5), (7, 20), (600, 64)] {
        // Rows away from zero mean, so the centring matters. (Further away, the
        // composed ops' sequential sums drift by more than 1e-6.)
        let (x, w, w2) = inputs(&dev, &mut rng, shape, 1.0, 2.0);
        let gain = vector(&dev, &mut rng, shape.1, 1.0, 0.5);
        let shift = vector(&dev, &mut rng, shape.1, 0.0, 0.5);
        let fused = values_and_grads(&x, &[&gain, &shift], &w, &w2, |x| {
            Cpu::layer_norm(x, &gain, &shift, LAYER_NORM_EPS)
        });
        let composed = values_and_grads(&x, &[&gain, &shift], &w, &w2, |x| {
            layer_norm_composed(x, &gain, &shift, LAYER_NORM_EPS)
        });
        compare(&format!("layer norm {shape:?}"), &fused, &composed);
        // And against the definition, computed in f64.
        let (xv, g, b) = (x.as_vec(), gain.as_vec(), shift.as_vec());
        let mut exact = Vec::new();
        for row in xv.chunks(shape.1) {
            let d = shape.1 as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d;
            for (j, &v) in row.iter().enumerate() {
                let xhat = (v as f64 - mean) / (var + LAYER_NORM_EPS).sqrt();
                exact.push((xhat * g[j] as f64 + b[j] as f64) as f32);
            }
        }
        assert_close(
            &format!("layer norm {shape:?} vs f64"),
            &fused[0],
            &exact,
            1e-6,
        );
        // Without a tape the fused op computes the same values.
        let plain = Cpu::layer_norm(x.clone(), &gain, &shift, LAYER_NORM_EPS).as_vec();
        assert_eq!(plain, fused[0]);
    }
}

#[test]
fn fused_bias_act_equals_composed_ops() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    for act in [
        None,
        Some(Activation::Relu),
        Some(Activation::Gelu),
        Some(Activation::Tanh),
    ] {
        for shape in [(4, 3), (9, 17), (300, 130)] {
            let (x, w, w2) = inputs(&dev, &mut rng, shape, 0.0, 3.0);
            let bias = vector(&dev, &mut rng, shape.1, 0.0, 1.0);
            let fused = values_and_grads(&x, &[&bias], &w, &w2, |x| Cpu::bias_act(x, &bias, act));
            let composed =
                values_and_grads(&x, &[&bias], &w, &w2, |x| bias_act_composed(x, &bias, act));
            compare(&format!("{act:?} {shape:?}"), &fused, &composed);
            let plain = Cpu::bias_act(x.clone(), &bias, act).as_vec();
            assert_eq!(plain, fused[0], "{act:?} {shape:?} without a tape");
        }
    }
}

#[test]
fn fused_cross_entropy_equals_composed_ops() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for shape in [(5, 3), (6, 11), (70, 300)] {
        let (n, v) = shape;
        let (x, _, w2) = inputs(&dev, &mut rng, shape, 0.5, 4.0);
        let targets: Vec<usize> = (0..n).map(|_| rng.gen_range(0..v)).collect();
        // Loss scaled by 1.7 (the backward pass must use its incoming gradient),
        // plus a second use of the logits.
        let run = |fused: bool| {
            let xt = x.leaky_trace();
            let loss = if fused {
                Cpu::cross_entropy(xt.retaped::<Taped>(), &targets)
            } else {
                cross_entropy_composed(xt.retaped::<Taped>(), &targets)
            };
            let value = loss.retaped::<NoneTape>().as_vec();
            let total = loss * 1.7f32 + (xt * w2.clone()).sum::<Rank0, _>();
            (value, total.backward().get(&x).as_vec())
        };
        let (fv, fg) = run(true);
        let (cv, cg) = run(false);
        assert_close(&format!("{shape:?} loss"), &fv, &cv, 1e-6);
        assert_close(&format!("{shape:?} gradient"), &fg, &cg, 1e-5);
        let plain = Cpu::cross_entropy(x.clone(), &targets).as_vec();
        assert_eq!(plain, fv, "{shape:?} without a tape");
    }
}

/// Every fused op's values and gradients, on tensors split into several blocks
/// of rows, are bitwise the same on 1, 2 and 3 threads.
#[test]
fn fused_ops_are_bitwise_identical_across_thread_counts() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let (lx, lw, lw2) = inputs(&dev, &mut rng, (700, 64), 1.0, 2.0);
    let gain = vector(&dev, &mut rng, 64, 1.0, 0.5);
    let shift = vector(&dev, &mut rng, 64, 0.0, 0.5);
    let (bx, bw, bw2) = inputs(&dev, &mut rng, (300, 130), 0.0, 3.0);
    let bias = vector(&dev, &mut rng, 130, 0.0, 1.0);
    let (cx, _, cw2) = inputs(&dev, &mut rng, (200, 300), 0.0, 4.0);
    let targets: Vec<usize> = (0..200).map(|_| rng.gen_range(0..300)).collect();
    let all = || {
        let mut out = values_and_grads(&lx, &[&gain, &shift], &lw, &lw2, |x| {
            Cpu::layer_norm(x, &gain, &shift, LAYER_NORM_EPS)
        });
        out.extend(values_and_grads(&bx, &[&bias], &bw, &bw2, |x| {
            Cpu::bias_act(x, &bias, Some(Activation::Gelu))
        }));
        out.extend(values_and_grads(&bx, &[&bias], &bw, &bw2, |x| {
            Cpu::bias_act(x, &bias, None)
        }));
        let xt = cx.leaky_trace();
        let loss = Cpu::cross_entropy(xt.retaped::<Taped>(), &targets);
        out.push(loss.retaped::<NoneTape>().as_vec());
        let total = loss + (xt * cw2.clone()).sum::<Rank0, _>();
        out.push(total.backward().get(&cx).as_vec());
        out
    };
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(all)
    };
    let one = on(1);
    for threads in [2, 3] {
        let other = on(threads);
        for (k, (a, b)) in one.iter().zip(&other).enumerate() {
            let same =
                a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "result {k} differs between 1 and {threads} threads");
        }
    }
}
