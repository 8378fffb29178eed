//! GPU check for `scripts/gpu-check.sh`: trains one small transformer on a
//! synthetic Markov token stream on the CPU and on CUDA with the same seed, and
//! compares the first steps' losses. Initial parameters are drawn on the host and
//! the data order is seeded, so both runs see identical models and batches; the
//! losses differ only by floating-point reduction order.
//!
//! Then it measures the GPU alone on a larger transformer (d_model 512, 4 layers,
//! context 256): steps per second, achieved GFLOP/s of the matrix products, and
//! MFU against the GPU's FP32 peak (`SCALEPIPE_GPU_PEAK_TFLOPS`, default 67: an
//! H100/H200 SXM without tensor cores, which cuBLAS's default FP32 GEMM does not use).
//!
//! Exit status 0 when every compared step agrees within the tolerance, 1 when not,
//! 2 when this binary was built without the `cuda` feature.

#[cfg(feature = "cuda")]
fn main() {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use scalepipe::data::Tokens;
    use scalepipe::train::adamw::AdamWConfig;
    use scalepipe::train::batches::Source;
    use scalepipe::train::model::{Arch, LossKind, ModelSpec};
    use scalepipe::train::trainer::{train, Budget, Hooks, TrainConfig, TrainReport};
    use scalepipe::train::transformer::TransformerSpec;
    use std::time::Instant;

    let steps: usize = std::env::args()
        .nth(1)
        .map_or(20, |s| s.parse().expect("steps"));
    let tolerance = 2e-3;
    let compared = 10.min(steps);

    // A sparse first-order Markov chain over 64 tokens.
    let vocab = 64;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let next: Vec<[u32; 3]> = (0..vocab)
        .map(|_| [0; 3].map(|_| rng.gen_range(0..vocab as u32)))
        .collect();
    let mut t = 0u32;
    let ids: Vec<u32> = (0..200_000)
        .map(|_| {
            let r: f64 = rng.gen();
            t = next[t as usize][if r < 0.6 {
                0
            } else if r < 0.9 {
                1
            } else {
                2
            }];
            t
        })
        .collect();
    let tokens = Tokens { ids, vocab };
    let source = Source::stream(tokens.clone(), 64, &[]);
    let cfg = TrainConfig {
        spec: ModelSpec {
            arch: Arch::Transformer(TransformerSpec {
                vocab,
                d_model: 128,
                n_layers: 2,
                n_heads: 4,
                context: 64,
                mlp_ratio: 4,
                tied_embeddings: true,
            }),
            loss: LossKind::CrossEntropy,
        },
        batch_size: 16,
        budget: Budget::Steps(steps),
        lr: 3e-3,
        min_lr_ratio: 0.1,
        warmup_steps: Some(2),
        schedule: scalepipe::train::schedule::ScheduleChoice::Cosine,
        adamw: AdamWConfig::default(),
        seed: 0,
    };
    let hooks = Hooks {
        progress: &|_, _, _| {},
        cancelled: &|| false,
    };
    let run = |name: &str, f: &dyn Fn(&std::path::Path) -> TrainReport| {
        let dir = tempfile::tempdir().expect("temp dir");
        let start = Instant::now();
        let report = f(dir.path());
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name}: {} steps in {secs:.2}s ({:.1} steps/s in the loop, {:.0} tokens/s), final loss {:.4}",
            report.steps,
            report.steps as f64 / report.wall_time_s,
            report.d as f64 / report.wall_time_s,
            report.final_loss
        );
        report
    };
    let cpu = run("cpu ", &|dir| {
        train(
            dfdx::tensor::Cpu::seed_from_u64(0),
            &cfg,
            &source,
            dir,
            &hooks,
            None,
        )
        .expect("cpu run")
    });
    let gpu = run("cuda", &|dir| {
        let dev = dfdx::tensor::Cuda::try_build(0, 0).expect("CUDA device 0");
        train(dev, &cfg, &source, dir, &hooks, None).expect("cuda run")
    });
    println!("step  cpu_loss    cuda_loss   |diff|");
    let mut worst = 0.0f64;
    for (a, b) in cpu.curve.iter().zip(&gpu.curve).take(compared) {
        let diff = (a.loss as f64 - b.loss as f64).abs();
        worst = worst.max(diff);
        println!(
            "{:>4}  {:<10.6}  {:<10.6}  {diff:.2e}",
            a.step, a.loss, b.loss
        );
    }
    let agree = worst <= tolerance && gpu.curve.len() == cpu.curve.len();

    // Throughput on the GPU alone, on a model large enough to keep it busy. The
    // first steps load kernels, so two runs: a short one, then the measured one.
    let big = TrainConfig {
        spec: ModelSpec {
            arch: Arch::Transformer(TransformerSpec {
                vocab,
                d_model: 512,
                n_layers: 4,
                n_heads: 8,
                context: 256,
                mlp_ratio: 4,
                tied_embeddings: true,
            }),
            loss: LossKind::CrossEntropy,
        },
        batch_size: 32,
        budget: Budget::Steps(30),
        ..cfg.clone()
    };
    let big_source = Source::stream(tokens, 256, &[]);
    let dev = dfdx::tensor::Cuda::try_build(0, 0).expect("CUDA device 0");
    let warm = TrainConfig {
        budget: Budget::Steps(2),
        ..big.clone()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    train(dev.clone(), &warm, &big_source, dir.path(), &hooks, None).expect("cuda warm-up");
    let report =
        train(dev, &big, &big_source, dir.path(), &hooks, None).expect("cuda throughput run");
    let peak_tflops: f64 = std::env::var("SCALEPIPE_GPU_PEAK_TFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(67.0);
    let gflops = report.flops_exact / report.wall_time_s / 1e9;
    println!(
        "cuda d512x4 ctx256 batch 32: {:.2} steps/s, {:.0} tokens/s, {gflops:.0} GFLOP/s, MFU {:.1}% of {peak_tflops} TFLOP/s FP32",
        report.steps as f64 / report.wall_time_s,
        report.d as f64 / report.wall_time_s,
        100.0 * gflops / (peak_tflops * 1e3)
    );

    if agree {
        println!("OK: first {compared} losses agree within {tolerance} (worst {worst:.2e})");
    } else {
        println!("MISMATCH: worst difference {worst:.2e} > {tolerance}");
        std::process::exit(1);
    }
}

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("gpu_check was built without the `cuda` feature: cargo build --release --features cuda --example gpu_check");
    std::process::exit(2);
}
