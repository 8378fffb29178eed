//! Training-step throughput of scalepipe's dfdx models, for `bench/train/run.sh`.
//!
//! `bench_train mlp WIDTH BATCH STEPS` or `bench_train transformer D_MODEL LAYERS
//! HEADS CONTEXT BATCH STEPS`, run inside a rayon pool of `--threads N` (default:
//! all cores). Prints one JSON line: units per second, achieved GFLOP/s (exact
//! matrix-product FLOPs) and the time split between forward, backward and the
//! AdamW update, measured after two warm-up steps.

use std::time::Instant;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use scalepipe::train::adamw::{AdamW, AdamWConfig, TensorOpAdamW};

enum Opt {
    Fused(AdamW<Cpu>),
    TensorOps(TensorOpAdamW<Cpu>),
}
use scalepipe::train::batches::{Batch, Inputs, Targets};
use scalepipe::train::flops::step_flops;
use scalepipe::train::layers::Activation;
use scalepipe::train::mlp::MlpSpec;
use scalepipe::train::model::{Arch, LossKind, Model, ModelSpec};
use scalepipe::train::params::Params;
use scalepipe::train::transformer::TransformerSpec;

/// Input features of the benchmark MLP.
const MLP_INPUT: usize = 64;
/// Vocabulary of the benchmark transformer (bytes).
const VOCAB: usize = 256;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        threads = args[i + 1].parse().expect("--threads N");
        args.drain(i..i + 2);
    }
    let cache = !args.iter().any(|a| a == "--no-cache");
    let tensor_op_adamw = args.iter().any(|a| a == "--tensor-op-adamw");
    args.retain(|a| a != "--no-cache" && a != "--tensor-op-adamw");
    let num = |i: usize| -> usize { args[i].parse().expect("a number") };
    let (spec, batch_size, seq, steps) = match args[0].as_str() {
        "mlp" => (
            ModelSpec {
                arch: Arch::Mlp(MlpSpec {
                    input_dim: MLP_INPUT,
                    width: num(1),
                    depth: 2,
                    output_dim: 1,
                    activation: Activation::Relu,
                }),
                loss: LossKind::Mse,
            },
            num(2),
            1,
            num(3),
        ),
        "transformer" => (
            ModelSpec {
                arch: Arch::Transformer(TransformerSpec {
                    vocab: VOCAB,
                    d_model: num(1),
                    n_layers: num(2),
                    n_heads: num(3),
                    context: num(4),
                    mlp_ratio: 4,
                    tied_embeddings: true,
                }),
                loss: LossKind::CrossEntropy,
            },
            num(5),
            num(4),
            num(6),
        ),
        other => panic!("unknown model {other}"),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        bench(
            &spec,
            batch_size,
            seq,
            steps,
            threads,
            cache,
            tensor_op_adamw,
        )
    });
}

fn batch(spec: &ModelSpec, rows: usize, seq: usize, rng: &mut ChaCha8Rng) -> Batch {
    match spec.arch {
        Arch::Mlp(_) => Batch {
            inputs: Inputs::Features {
                x: (0..rows * MLP_INPUT)
                    .map(|_| rng.gen_range(-1.0..1.0))
                    .collect(),
                cols: MLP_INPUT,
            },
            rows,
            targets: Targets::Values((0..rows).map(|_| rng.gen_range(-1.0..1.0)).collect()),
        },
        _ => Batch {
            inputs: Inputs::Ids {
                ids: (0..rows * seq).map(|_| rng.gen_range(0..VOCAB)).collect(),
                cols: seq,
            },
            rows,
            targets: Targets::Classes((0..rows * seq).map(|_| rng.gen_range(0..VOCAB)).collect()),
        },
    }
}

fn bench(
    spec: &ModelSpec,
    rows: usize,
    seq: usize,
    steps: usize,
    threads: usize,
    cache: bool,
    tensor_op_adamw: bool,
) {
    let dev = Cpu::seed_from_u64(0);
    if cache {
        dev.enable_cache();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut params = Params::new(dev.clone());
    let model = Model::build(spec, &mut params, &mut rng);
    let mut opt = if tensor_op_adamw {
        Opt::TensorOps(TensorOpAdamW::new(AdamWConfig::default(), &params))
    } else {
        Opt::Fused(AdamW::new(AdamWConfig::default(), &params))
    };
    let batches: Vec<Batch> = (0..4).map(|_| batch(spec, rows, seq, &mut rng)).collect();
    let (mut t_fwd, mut t_bwd, mut t_opt) = (0.0, 0.0, 0.0);
    let warmup = 2;
    let mut total = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            (t_fwd, t_bwd, t_opt) = (0.0, 0.0, 0.0);
            total = Instant::now();
        }
        let b = &batches[step % batches.len()];
        let t0 = Instant::now();
        let (loss, _) = model.loss(&params, b, params.tape());
        let _ = loss.as_vec();
        let t1 = Instant::now();
        let mut grads = loss.backward();
        let t2 = Instant::now();
        match &mut opt {
            Opt::Fused(o) => o.step(&mut params, &mut grads, 1e-3).unwrap().unwrap(),
            Opt::TensorOps(o) => o.step(&mut params, &mut grads, 1e-3).unwrap(),
        };
        drop(grads);
        let t3 = Instant::now();
        t_fwd += (t1 - t0).as_secs_f64();
        t_bwd += (t2 - t1).as_secs_f64();
        t_opt += (t3 - t2).as_secs_f64();
    }
    let secs = total.elapsed().as_secs_f64();
    let per_step = secs / steps as f64;
    let units = match spec.arch {
        Arch::Transformer(_) => rows * seq,
        _ => rows,
    };
    let flops = step_flops(spec, rows, seq);
    println!(
        "{{\"framework\":\"dfdx\",\"model\":\"{}\",\"size\":\"{}\",\"threads\":{threads},\"cache\":{cache},\"adamw\":\"{}\",\"n_params\":{},\"batch\":{rows},\"step_ms\":{:.3},\"units_per_s\":{:.1},\"gflops\":{:.2},\"fwd_ms\":{:.3},\"bwd_ms\":{:.3},\"opt_ms\":{:.3}}}",
        spec.family(),
        size_label(spec),
        if tensor_op_adamw { "tensor-ops" } else { "fused" },
        params.count(),
        per_step * 1e3,
        units as f64 / per_step,
        flops / per_step / 1e9,
        t_fwd / steps as f64 * 1e3,
        t_bwd / steps as f64 * 1e3,
        t_opt / steps as f64 * 1e3,
    );
}

fn size_label(spec: &ModelSpec) -> String {
    match &spec.arch {
        Arch::Mlp(s) => format!("w{}", s.width),
        Arch::Transformer(s) => format!("d{}l{}h{}", s.d_model, s.n_layers, s.n_heads),
        Arch::TextClassifier(s) => format!("e{}", s.embed_dim),
    }
}
