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
        .install(|| train_resuming(Cpu::default(), cfg, source, dir, &hooks, None, from))
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

// ------------------------------------------------------------ through the engine

use crate::harness::{ids, Workspace};

/// A teacher task and WSD runs of an MLP at the data sizes `examples`: 16 rows
/// a step, so D = 800 is 50 steps whose cooldown starts at step 40. Held-out
/// evaluations every 10 steps: a resumed run carries the ones before its
/// checkpoint, so its curve file is still the run from scratch's.
fn pipeline(examples: &[u32]) -> String {
    let list: Vec<String> = examples.iter().map(u32::to_string).collect();
    format!(
        r#"[pipeline]
name = "w"
seed = 0

[stages.data]
kind = "dataset.teacher"
n = 2000
noise_std = 0.3
input_dim = 4
teacher_width = 8
split = {{ val = 200, test = 200 }}

[stages.train]
kind = "train"
inputs = ["data"]
model = "mlp"
width = 8
depth = 1
lr = 1e-2
batch_size = 16
schedule = "wsd"
warmup_steps = 5
cooldown = 0.2
eval_every = 10
[stages.train.sweep]
examples = [{}]

[stages.report]
kind = "report"
inputs = ["train"]
title = "w"
"#,
        list.join(", ")
    )
}

/// Runs the pipeline with two stage threads and returns the executed ids.
fn run_wsd(ws: &Workspace, examples: &[u32]) -> Vec<String> {
    ws.write("w.toml", &pipeline(examples));
    let out = ws
        .run(&["run", "w.toml", "--json", "--jobs", "2"])
        .success();
    ids(&out.json(), "executed")
}

/// `(steps, steps_executed, steps_resumed, resumed_from)` of a train instance.
fn steps(ws: &Workspace, examples: u32) -> (u64, u64, u64, Option<String>) {
    let id = format!("train[examples={examples}]");
    let dir = scalepipe::store::dir_name(&id);
    let m: serde_json::Value =
        serde_json::from_str(&ws.read(&format!("results/w/{dir}/metrics.json"))).unwrap();
    assert_eq!(m["schedule"], "wsd-cooldown");
    let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k} in {m}"));
    let from = m["resumed_from"].as_str().map(str::to_string);
    (n("steps"), n("steps_executed"), n("steps_resumed"), from)
}

fn id(examples: u32) -> String {
    format!("train[examples={examples}]")
}

#[test]
fn wsd_runs_share_one_stable_phase_and_a_new_length_resumes_from_the_cache() {
    let ws = Workspace::new();
    // Two lengths in one run, two stage threads: the longer waits for the
    // shorter and continues its stable phase (40 of its 100 steps).
    let executed = run_wsd(&ws, &[800, 1600]);
    assert_eq!(executed, ["data", "report", &id(1600), &id(800)]);
    assert_eq!(steps(&ws, 800), (50, 50, 0, None));
    assert_eq!(steps(&ws, 1600), (100, 60, 40, Some(id(800))));

    // A longer run later continues from the longest cached stable checkpoint
    // (step 80 of 1600's run) instead of starting over.
    let executed = run_wsd(&ws, &[800, 1600, 3200]);
    assert_eq!(executed, ["report".to_string(), id(3200)]);
    assert_eq!(steps(&ws, 3200), (200, 120, 80, Some(id(1600))));

    // A length below the longest resumes from the nearest cached checkpoint
    // below its own cooldown start (800's, step 40 of its 60 stable steps).
    let executed = run_wsd(&ws, &[800, 1200, 1600, 3200]);
    assert_eq!(executed, ["report".to_string(), id(1200)]);
    assert_eq!(steps(&ws, 1200), (75, 35, 40, Some(id(800))));
    // 265 steps executed for 425 steps of runs (the four from scratch).
    let total: u64 = [800, 1200, 1600, 3200]
        .iter()
        .map(|&e| steps(&ws, e).1)
        .sum();
    assert_eq!(total, 50 + 35 + 60 + 120);
    // The report states it against the same runs from scratch (one model, so
    // FLOPs are in proportion to steps: 265 / 425).
    let report = ws.read("results/w/report/report.md");
    assert!(
        report.contains("The 4 train runs (4 with a WSD schedule) executed")
            && report.contains("62.4% of it"),
        "{report}"
    );

    // `--force` re-executes everything (the chain continuing only from what
    // this run executed); the store keeps the entries it had, whose bytes the
    // comparison below checks.
    let out = ws
        .run(&["run", "w.toml", "--json", "--jobs", "2", "--force"])
        .success();
    assert_eq!(ids(&out.json(), "executed").len(), 6);

    // Bitwise what the same run from scratch gives, in a fresh workspace.
    let fresh = Workspace::new();
    assert_eq!(run_wsd(&fresh, &[3200]), ["data", "report", &id(3200)]);
    assert_eq!(steps(&fresh, 3200), (200, 200, 0, None));
    let dir = scalepipe::store::dir_name(&id(3200)).into_owned();
    for file in ["model.safetensors", "loss_curve.csv", "stable.safetensors"] {
        let path = format!("results/w/{dir}/{file}");
        assert!(
            std::fs::read(ws.join(&path)).unwrap() == std::fs::read(fresh.join(&path)).unwrap(),
            "{file} differs"
        );
    }
}
