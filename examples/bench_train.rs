//! Training-step throughput of scalepipe's dfdx models, for `bench/train/run.sh`.
//!
//! `bench_train mlp WIDTH BATCH STEPS` or `bench_train transformer D_MODEL LAYERS
//! HEADS CONTEXT BATCH STEPS`, run inside a rayon pool of `--threads N` (default:
//! all cores). Prints one JSON line: units per second, achieved GFLOP/s (exact
//! matrix-product FLOPs) and the time split between forward, backward and the
//! AdamW update, measured after two warm-up steps.
//!
//! `bench_train gemm M K N` times one `(M, K) x (K, N)` f32 product three ways:
//! dfdx's matmul (gemm 0.15), `MatMulOps::gemm_nn` as training calls it (gemm
//! 0.19, inputs copied and output allocated), and gemm 0.19's kernel alone.
//! `bench_train peak [SIZE]` times the kernel alone on a SIZE^3 product (default
//! 2048): the machine's peak that the MFU figures of `bench/train/run.sh` divide by.

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
use scalepipe::train::matmul::{gemm, MatMulOps, MatView, Parallelism};
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
    // dfdx's allocation cache: off on the CPU, as in training (`--cache` turns
    // it on; `FusedOps::ALLOCATION_CACHE` says why it is off).
    let cache = args.iter().any(|a| a == "--cache");
    let tensor_op_adamw = args.iter().any(|a| a == "--tensor-op-adamw");
    args.retain(|a| a != "--cache" && a != "--no-cache" && a != "--tensor-op-adamw");
    let num = |i: usize| -> usize { args[i].parse().expect("a number") };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    if let Some(dims) = match args[0].as_str() {
        "gemm" => Some((num(1), num(2), num(3))),
        "peak" => {
            let size = if args.len() > 1 { num(1) } else { 2048 };
            Some((size, size, size))
        }
        _ => None,
    } {
        let full = args[0] == "gemm";
        pool.install(|| products(dims, full, threads));
        return;
    }
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

/// Times an `(m, k) x (k, n)` product: gemm 0.19's kernel alone, and with
/// `full` also dfdx's matmul (gemm 0.15) and the tape op training calls. One
/// JSON line each, with the fastest run (see [`fastest`]).
fn products((m, k, n): (usize, usize, usize), full: bool, threads: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut random =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let (a, b) = (random(m * k), random(k * n));
    let model = if full { "gemm" } else { "peak" };
    let avx512 = cpu_has_avx512();
    let print = |imp: &str, secs: f64| {
        println!(
            "{{\"framework\":\"dfdx\",\"model\":\"{model}\",\"impl\":\"{imp}\",\"size\":\"{m}x{k}x{n}\",\"threads\":{threads},\"cpu_avx512\":{avx512},\"ms\":{:.4},\"gflops\":{:.2}}}",
            secs * 1e3,
            2.0 * (m * k * n) as f64 / secs / 1e9,
        )
    };
    let mut out = vec![0.0f32; m * n];
    let (av, bv, ov) = (
        MatView::row_major(m, k),
        MatView::row_major(k, n),
        MatView::row_major(m, n),
    );
    let par = Parallelism::Rayon(threads);
    print(
        "gemm 0.19 kernel",
        fastest(|| gemm(&mut out, ov, &a, av, &b, bv, false, par)),
    );
    if full {
        let dev = Cpu::seed_from_u64(0);
        let at = dev.tensor_from_vec(a.clone(), (m, k));
        let bt = dev.tensor_from_vec(b.clone(), (k, n));
        print(
            "gemm 0.15 (dfdx matmul)",
            fastest(|| drop(at.clone().matmul(bt.clone()))),
        );
        print(
            "gemm 0.19 (MatMulOps op)",
            fastest(|| drop(Cpu::gemm_nn(at.clone(), bt.clone()))),
        );
    }
}

/// The fastest of at least 3 runs and 0.5 s of runs, after one warm-up run: on a
/// shared machine the minimum is the run least disturbed by other load.
fn fastest(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let (mut best, mut runs) = (f64::INFINITY, 0);
    while runs < 3 || start.elapsed().as_secs_f64() < 0.5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

/// Whether the CPU has AVX-512 (gemm 0.19 then runs its AVX-512 kernels).
fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn size_label(spec: &ModelSpec) -> String {
    match &spec.arch {
        Arch::Mlp(s) => format!("w{}", s.width),
        Arch::Transformer(s) => format!("d{}l{}h{}", s.d_model, s.n_layers, s.n_heads),
        Arch::TextClassifier(s) => format!("e{}", s.embed_dim),
    }
}
