//! One fused CPU op against the composed dfdx ops it replaces, for instruction
//! counts under callgrind (bench/train/RESULTS.md).
//!
//! `fused_ops OP IMPL [REPS]` runs REPS (default 4) forward and backward passes
//! of OP (`layer_norm`, `bias`, `bias_gelu`, `cross_entropy`, `causal_softmax`)
//! as IMPL (`fused`, `composed`, or `none`: the harness alone, OP replaced by the
//! identity), at the shapes of one layer of the benchmark's
//! d128 transformer: 16 sequences of 64 tokens (1,024 rows), d_model 128, MLP
//! width 512, vocabulary 256, 4 heads. Count only the passes with
//!
//!     valgrind --tool=callgrind --toggle-collect='*measured*' fused_ops layer_norm fused
//!
//! Each pass also sums the output (with weights) to seed the backward pass, the
//! same work for every IMPL: subtract the `none` count to get the op's own.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use scalepipe::train::fused::{
    bias_act_composed, causal_softmax_composed, cross_entropy_composed, layer_norm_composed,
    FusedOps,
};
use scalepipe::train::layers::{Activation, LAYER_NORM_EPS};

type Taped = OwnedTape<f32, Cpu>;

const ROWS: usize = 1024;
const D_MODEL: usize = 128;
const D_FF: usize = 512;
const VOCAB: usize = 256;
const HEADS: (usize, usize, usize, usize) = (16, 4, 64, 64);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "fused_ops OP (layer_norm|bias|bias_gelu|cross_entropy|causal_softmax) IMPL (fused|composed|none) [REPS]";
    let (op, imp) = match (args.first(), args.get(1)) {
        (Some(op), Some(imp)) => (op.as_str(), imp.as_str()),
        _ => panic!("{usage}"),
    };
    let (fused, none) = match imp {
        "fused" => (true, false),
        "composed" => (false, false),
        "none" => (false, true),
        _ => panic!("{usage}"),
    };
    let reps: usize = args.get(2).map_or(4, |r| r.parse().expect("REPS"));
    // On one rayon thread, which also runs `main`'s work: the fused kernels'
    // parallel loops then run inside `measured`, where callgrind counts.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run(op, fused, none, reps));
}

fn run(op: &str, fused: bool, none: bool, reps: usize) {
    let usage = "fused_ops OP IMPL [REPS]: unknown OP";
    // As in training on the CPU: dfdx's allocation cache off.
    let dev = Cpu::seed_from_u64(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut random =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect() };
    let rows = |cols: usize, v: Vec<f32>| dev.tensor_from_vec(v, (ROWS, cols));
    let vector = |v: Vec<f32>| dev.tensor_from_vec(v.clone(), (v.len(),));
    let mut checksum = 0.0f32;
    for _ in 0..reps {
        checksum += match op {
            "layer_norm" => {
                let (x, w) = (
                    rows(D_MODEL, random(ROWS * D_MODEL)),
                    rows(D_MODEL, random(ROWS * D_MODEL)),
                );
                let (gain, shift) = (vector(random(D_MODEL)), vector(random(D_MODEL)));
                measured(&x, |x| {
                    let y = if none {
                        x
                    } else if fused {
                        Cpu::layer_norm(x, &gain, &shift, LAYER_NORM_EPS)
                    } else {
                        layer_norm_composed(x, &gain, &shift, LAYER_NORM_EPS)
                    };
                    (y * w.clone()).sum()
                })
            }
            "bias" | "bias_gelu" => {
                let f = if op == "bias" { D_MODEL } else { D_FF };
                let act = (op == "bias_gelu").then_some(Activation::Gelu);
                let (x, w) = (rows(f, random(ROWS * f)), rows(f, random(ROWS * f)));
                let bias = vector(random(f));
                measured(&x, |x| {
                    let y = if none {
                        x
                    } else if fused {
                        Cpu::bias_act(x, &bias, act)
                    } else {
                        bias_act_composed(x, &bias, act)
                    };
                    (y * w.clone()).sum()
                })
            }
            "cross_entropy" => {
                let x = rows(VOCAB, random(ROWS * VOCAB));
                let targets: Vec<usize> = random(ROWS)
                    .iter()
                    .map(|u| ((u + 1.0) / 2.0 * (VOCAB - 1) as f32) as usize)
                    .collect();
                measured(&x, |x| {
                    if none {
                        x.sum()
                    } else if fused {
                        Cpu::cross_entropy(x, &targets)
                    } else {
                        cross_entropy_composed(x, &targets)
                    }
                })
            }
            "causal_softmax" => {
                let (b, h, q, k) = HEADS;
                let x = dev.tensor_from_vec(random(b * h * q * k), HEADS);
                let w = dev.tensor_from_vec(random(b * h * q * k), HEADS);
                measured(&x, |x| {
                    let y = if none {
                        x
                    } else if fused {
                        Cpu::causal_softmax(x, 0.25)
                    } else {
                        causal_softmax_composed(x, 0.25)
                    };
                    (y * w.clone()).sum()
                })
            }
            _ => panic!("{usage}"),
        };
    }
    println!("{op} fused={fused} none={none}: {reps} passes, checksum {checksum}");
}

/// One forward and backward pass of `f` on `x`; returns the loss.
#[inline(never)]
fn measured<S: Shape>(
    x: &Tensor<S, f32, Cpu>,
    f: impl Fn(Tensor<S, f32, Cpu, Taped>) -> Tensor<Rank0, f32, Cpu, Taped>,
) -> f32 {
    let loss = f(x.leaky_trace());
    let value = loss.as_vec()[0];
    let _grads = loss.backward();
    value
}
