//! WSD schedules and their cached stable phases: a run continued from a
//! shorter run's stable-phase checkpoint is bitwise the run trained from
//! scratch (library level), and through the engine, runs of several lengths
//! share one stable phase, counted in steps.

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use scalepipe::data::{Table, Targets as DataTargets, Tokens};
use scalepipe::train::adamw::AdamWConfig;
use scalepipe::train::batches::Source;
use scalepipe::train::layers::Activation;
use scalepipe::train::mlp::MlpSpec;
use scalepipe::train::model::{Arch, LossKind, ModelSpec};
use scalepipe::train::schedule::{Decay, ScheduleChoice};
use scalepipe::train::trainer::{train_resuming, Budget, Hooks, TrainConfig, TrainReport};
use scalepipe::train::transformer::TransformerSpec;

fn table(rows: usize, dim: usize) -> Source {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x: Vec<f32> = (0..rows * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let y = x
        .chunks(dim)
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| v * (i as f32 - 1.5))
                .sum::<f32>()
                .tanh()
        })
        .collect();
    Source::Table {
        table: Table {
            x,
            rows,
            cols: dim,
            y: DataTargets::Regression(y),
        },
        ids: false,
    }
}

fn stream(len: usize, vocab: usize, seq: usize) -> Source {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let ids = (0..len)
        .map(|i| ((i * 7 + rng.gen_range(0..3)) % vocab) as u32)
        .collect();
    Source::stream(Tokens { ids, vocab }, seq, &[])
}

fn config(spec: ModelSpec, batch_size: usize, steps: usize, decay: Decay) -> TrainConfig {
    TrainConfig {
        spec,
        batch_size,
        budget: Budget::Steps(steps),
        lr: 1e-2,
        min_lr_ratio: 0.1,
        warmup_steps: Some(3),
        schedule: ScheduleChoice::Wsd {
            cooldown: 0.25,
            decay,
        },
        adamw: AdamWConfig::default(),
        seed: 5,
    }
}

fn run(cfg: &TrainConfig, source: &Source, dir: &Path, from: &[PathBuf]) -> TrainReport {
    let hooks = Hooks {
        progress: &|_, _, _| {},
        cancelled: &|| false,
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| train_resuming(Cpu::default(), cfg, source, dir, &hooks, from))
        .unwrap()
}

fn bytes(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

/// Trains `long` steps from scratch and again continuing a `short`-step run's
/// stable phase, and compares every file both write.
fn resumed_equals_scratch(spec: ModelSpec, source: &Source, batch: usize, decay: Decay) {
    let (short, long) = (24, 40);
    let tmp = tempfile::tempdir().unwrap();
    let [scratch, first, resumed] = ["scratch", "first", "resumed"].map(|d| {
        let p = tmp.path().join(d);
        std::fs::create_dir(&p).unwrap();
        p
    });
    let whole = run(
        &config(spec.clone(), batch, long, decay),
        source,
        &scratch,
        &[],
    );
    assert_eq!(
        (whole.steps, whole.steps_resumed, whole.stable_end),
        (40, 0, Some(30))
    );
    // The long run's checkpoint (step 30) lies past the short run's stable
    // end (18): the short run cannot use it and starts from scratch.
    let part = run(
        &config(spec.clone(), batch, short, decay),
        source,
        &first,
        std::slice::from_ref(&scratch),
    );
    assert_eq!((part.stable_end, part.steps_resumed), (Some(18), 0));
    // For the long run the latest usable checkpoint wins; a directory without
    // one is passed over.
    let again = run(
        &config(spec, batch, long, decay),
        source,
        &resumed,
        &[
            scratch.clone(),
            first.clone(),
            tmp.path().join("nothing-here"),
        ],
    );
    assert_eq!(again.steps_resumed, 30, "resumes from its own stable end");
    assert_eq!(again.steps_executed(), 10);
    let resumed2 = tmp.path().join("resumed2");
    std::fs::create_dir(&resumed2).unwrap();
    let from_short = run(
        &config(again_dir_spec(&resumed), batch, long, decay),
        source,
        &resumed2,
        std::slice::from_ref(&first),
    );
    assert_eq!(from_short.steps_resumed, 18);
    assert_eq!(from_short.steps_executed(), 22);
    assert!((from_short.flops_executed() / from_short.flops_exact - 22.0 / 40.0).abs() < 1e-12);
    for dir in [&resumed, &resumed2] {
        for file in [
            "model.safetensors",
            "loss_curve.csv",
            "stable.safetensors",
            "stable.json",
        ] {
            assert!(
                bytes(&scratch, file) == bytes(dir, file),
                "{file} differs in {dir:?}"
            );
        }
    }
    assert_eq!(from_short.final_loss.to_bits(), whole.final_loss.to_bits());
    assert_eq!(from_short.d, whole.d);
}

/// The model a run wrote (so the last run is configured from files alone).
fn again_dir_spec(dir: &Path) -> ModelSpec {
    scalepipe::train::checkpoint::read_spec(dir).unwrap().spec
}

#[test]
fn an_mlp_resumed_from_a_stable_checkpoint_is_bitwise_the_run_from_scratch() {
    let spec = ModelSpec {
        arch: Arch::Mlp(MlpSpec {
            input_dim: 4,
            width: 16,
            depth: 2,
            output_dim: 1,
            activation: Activation::Relu,
        }),
        loss: LossKind::Mse,
    };
    // 100 rows in batches of 16: epochs end mid-batch, and the stable end
    // (step 18, row 288) is mid-epoch.
    resumed_equals_scratch(spec, &table(100, 4), 16, Decay::Linear);
}

#[test]
fn a_transformer_resumed_from_a_stable_checkpoint_is_bitwise_the_run_from_scratch() {
    let spec = ModelSpec {
        arch: Arch::Transformer(TransformerSpec {
            vocab: 11,
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            context: 8,
            mlp_ratio: 2,
            tied_embeddings: true,
        }),
        loss: LossKind::CrossEntropy,
    };
    resumed_equals_scratch(spec, &stream(2000, 11, 8), 4, Decay::OneMinusSqrt);
}
