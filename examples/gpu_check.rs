//! GPU check for `scripts/gpu-check.sh`: trains one small transformer on a
//! synthetic Markov token stream on the CPU and on CUDA with the same seed, and
//! compares the first steps' losses. Initial parameters are drawn on the host and
//! the data order is seeded, so both runs see identical models and batches; the
//! losses differ only by floating-point reduction order.
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
    let source = Source::stream(Tokens { ids, vocab }, 64, &[]);
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
            "{name}: {} steps in {secs:.2}s ({:.0} tokens/s), final loss {:.4}",
            report.steps,
            report.d as f64 / secs,
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
    if worst <= tolerance && gpu.curve.len() == cpu.curve.len() {
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
