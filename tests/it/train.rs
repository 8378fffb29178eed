//! Training and evaluation: gradients against finite differences, parameter
//! counts against closed forms, learning on teacher and Markov data, divergence,
//! determinism, and the `train`/`eval` stages end to end on dataset directories.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use scalepipe::data::{Table, Targets as DataTargets, Tokens};
use scalepipe::train::adamw::AdamWConfig;
use scalepipe::train::batches::{Batch, Inputs, Source, Targets};
use scalepipe::train::evaluate::evaluate;
use scalepipe::train::layers::Activation;
use scalepipe::train::mlp::MlpSpec;
use scalepipe::train::model::{Arch, LossKind, Model, ModelSpec};
use scalepipe::train::params::{ParamId, Params};
use scalepipe::train::schedule::ScheduleChoice;
use scalepipe::train::text_classifier::{Pooling, TextClassifierSpec};
use scalepipe::train::trainer::{train, Budget, Hooks, Status, TrainConfig, TrainReport};
use scalepipe::train::transformer::TransformerSpec;

// ---------------------------------------------------------------- data makers

/// Rows of `x ~ N(0, 1)^dim` labelled by a random tanh teacher network.
fn teacher_table(seed: u64, rows: usize, dim: usize) -> Table {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let hidden = 8;
    let w1: Vec<f32> = (0..dim * hidden).map(|_| normal.sample(&mut rng)).collect();
    let w2: Vec<f32> = (0..hidden).map(|_| normal.sample(&mut rng)).collect();
    let mut x = Vec::with_capacity(rows * dim);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let row: Vec<f32> = (0..dim).map(|_| normal.sample(&mut rng)).collect();
        let mut out = 0.0;
        for h in 0..hidden {
            let pre: f32 = (0..dim).map(|i| row[i] * w1[i * hidden + h]).sum::<f32>();
            out += (pre / (dim as f32).sqrt()).tanh() * w2[h];
        }
        x.extend(row);
        y.push(out / (hidden as f32).sqrt());
    }
    Table {
        x,
        rows,
        cols: dim,
        y: DataTargets::Regression(y),
    }
}

/// A first-order Markov chain over `vocab` tokens whose rows are peaked
/// (Zipf-like over a random permutation), and its exact entropy rate in nats.
struct Markov {
    probs: Vec<Vec<f64>>,
    entropy_rate: f64,
}

impl Markov {
    fn new(seed: u64, vocab: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let probs: Vec<Vec<f64>> = (0..vocab)
            .map(|_| {
                let mut order: Vec<usize> = (0..vocab).collect();
                for i in (1..vocab).rev() {
                    order.swap(i, rng.gen_range(0..=i));
                }
                let mut row = vec![0.0; vocab];
                for (rank, &tok) in order.iter().enumerate() {
                    row[tok] = 1.0 / ((rank + 1) as f64).powf(1.5);
                }
                let z: f64 = row.iter().sum();
                row.iter().map(|p| p / z).collect()
            })
            .collect();
        // Stationary distribution by power iteration.
        let mut pi = vec![1.0 / vocab as f64; vocab];
        for _ in 0..2000 {
            let mut next = vec![0.0; vocab];
            for (i, row) in probs.iter().enumerate() {
                for (j, p) in row.iter().enumerate() {
                    next[j] += pi[i] * p;
                }
            }
            pi = next;
        }
        let entropy_rate = probs
            .iter()
            .zip(&pi)
            .map(|(row, w)| w * -row.iter().map(|p| p * p.ln()).sum::<f64>())
            .sum();
        Markov {
            probs,
            entropy_rate,
        }
    }

    fn sample(&self, seed: u64, len: usize) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut t = 0usize;
        (0..len)
            .map(|_| {
                let u: f64 = rng.gen();
                let mut acc = 0.0;
                let row = &self.probs[t];
                let mut next = row.len() - 1;
                for (j, p) in row.iter().enumerate() {
                    acc += p;
                    if u < acc {
                        next = j;
                        break;
                    }
                }
                t = next;
                t as u32
            })
            .collect()
    }
}

fn mlp_spec(dim: usize, width: usize, depth: usize) -> ModelSpec {
    ModelSpec {
        arch: Arch::Mlp(MlpSpec {
            input_dim: dim,
            width,
            depth,
            output_dim: 1,
            activation: Activation::Relu,
        }),
        loss: LossKind::Mse,
    }
}

fn gpt_spec(vocab: usize, d: usize, layers: usize, heads: usize, context: usize) -> ModelSpec {
    ModelSpec {
        arch: Arch::Transformer(TransformerSpec {
            vocab,
            d_model: d,
            n_layers: layers,
            n_heads: heads,
            context,
            mlp_ratio: 4,
            tied_embeddings: true,
        }),
        loss: LossKind::CrossEntropy,
    }
}

fn config(spec: ModelSpec, batch: usize, budget: Budget, lr: f64, seed: u64) -> TrainConfig {
    TrainConfig {
        spec,
        batch_size: batch,
        budget,
        lr,
        min_lr_ratio: 0.1,
        warmup_steps: None,
        schedule: ScheduleChoice::Cosine,
        adamw: AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
        seed,
    }
}

fn run(cfg: &TrainConfig, source: &Source, threads: usize) -> (TrainReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let hooks = Hooks {
        progress: &|_, _, _| {},
        cancelled: &|| false,
    };
    let report = pool
        .install(|| train(Cpu::default(), cfg, source, dir.path(), &hooks, None))
        .unwrap();
    (report, dir)
}

// ------------------------------------------------------------ gradient checks

/// Compares dfdx's gradient of the loss with central finite differences, for
/// every entry of every parameter (or every `stride`-th entry), in f32.
fn gradient_check(spec: &ModelSpec, batch: &Batch, stride: usize, tol: f64) {
    let dev = Cpu::default();
    let mut params = Params::new(dev.clone());
    let model = Model::build(spec, &mut params, &mut ChaCha8Rng::seed_from_u64(3));
    let (loss, _) = model.loss(&params, batch, params.tape());
    let grads = loss.backward();
    let loss_at = |params: &Params<Cpu>| model.loss(params, batch, NoneTape).0.as_vec()[0] as f64;
    let eps = 1e-2f32;
    let mut checked = 0;
    for i in 0..params.len() {
        let analytic = grads.get(&params.get(ParamId(i)).value).as_vec();
        let base = params.get(ParamId(i)).value.as_vec();
        for j in (0..base.len()).step_by(stride) {
            let mut shifted = base.clone();
            shifted[j] = base[j] + eps;
            params.set(i, dev.tensor_from_vec(shifted.clone(), (base.len(),)));
            let up = loss_at(&params);
            shifted[j] = base[j] - eps;
            params.set(i, dev.tensor_from_vec(shifted, (base.len(),)));
            let down = loss_at(&params);
            params.set(i, dev.tensor_from_vec(base.clone(), (base.len(),)));
            let numeric = (up - down) / (2.0 * eps as f64);
            let a = analytic[j] as f64;
            let name = &params.get(ParamId(i)).name;
            assert!(
                (a - numeric).abs() <= tol * (1.0 + numeric.abs()),
                "{name}[{j}]: analytic {a} vs numeric {numeric}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "checked only {checked} entries");
}

#[test]
fn mlp_gradients_match_finite_differences() {
    let spec = ModelSpec {
        arch: Arch::Mlp(MlpSpec {
            input_dim: 3,
            width: 5,
            depth: 2,
            output_dim: 1,
            activation: Activation::Tanh,
        }),
        loss: LossKind::Mse,
    };
    let table = teacher_table(1, 6, 3);
    let source = Source::Table { table, ids: false };
    let batch = source.gather(&[0, 1, 2, 3, 4, 5]);
    gradient_check(&spec, &batch, 1, 2e-3);
}

#[test]
fn classifier_mlp_gradients_match_finite_differences() {
    let spec = ModelSpec {
        arch: Arch::Mlp(MlpSpec {
            input_dim: 4,
            width: 6,
            depth: 1,
            output_dim: 3,
            activation: Activation::Gelu,
        }),
        loss: LossKind::CrossEntropy,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let batch = Batch {
        inputs: Inputs::Features {
            x: (0..20).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            cols: 4,
        },
        rows: 5,
        targets: Targets::Classes(vec![0, 2, 1, 1, 0]),
    };
    gradient_check(&spec, &batch, 1, 2e-3);
}

#[test]
fn transformer_gradients_match_finite_differences() {
    for tied in [true, false] {
        let mut spec = gpt_spec(7, 8, 2, 2, 5);
        if let Arch::Transformer(s) = &mut spec.arch {
            s.tied_embeddings = tied;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let ids: Vec<usize> = (0..2 * 5).map(|_| rng.gen_range(0..7)).collect();
        let targets: Vec<usize> = (0..2 * 4).map(|_| rng.gen_range(0..7)).collect();
        // Sequences of 4 out of a context of 5: the positional table's last row
        // gets no gradient, which the check covers too.
        let batch = Batch {
            inputs: Inputs::Ids {
                ids: ids[..8].to_vec(),
                cols: 4,
            },
            rows: 2,
            targets: Targets::Classes(targets),
        };
        gradient_check(&spec, &batch, 3, 5e-3);
    }
}

#[test]
fn text_classifier_gradients_match_finite_differences() {
    for pooling in [Pooling::Mean, Pooling::Max] {
        let spec = ModelSpec {
            arch: Arch::TextClassifier(TextClassifierSpec {
                vocab: 9,
                seq_len: 4,
                embed_dim: 5,
                pooling,
                width: 6,
                depth: 1,
                classes: 2,
                activation: Activation::Tanh,
            }),
            loss: LossKind::CrossEntropy,
        };
        // Row 2 is all padding.
        let batch = Batch {
            inputs: Inputs::Ids {
                ids: vec![3, 1, 4, 0, 5, 8, 2, 6, 0, 0, 0, 0],
                cols: 4,
            },
            rows: 3,
            targets: Targets::Classes(vec![1, 0, 1]),
        };
        gradient_check(&spec, &batch, 1, 2e-3);
    }
}

// ------------------------------------------------------------ parameter counts

#[test]
fn parameter_counts_match_closed_forms() {
    for (dim, width, depth) in [(1, 1, 1), (8, 16, 1), (8, 64, 3), (784, 100, 2)] {
        let spec = mlp_spec(dim, width, depth);
        let mut params = Params::new(Cpu::default());
        Model::build(&spec, &mut params, &mut ChaCha8Rng::seed_from_u64(0));
        let closed = dim * width + width + (depth - 1) * (width * width + width) + width + 1;
        assert_eq!(params.count(), closed, "mlp {dim} {width} {depth}");
        assert_eq!(params.count_non_embedding(), closed);
    }
    for (v, d, l, h, c, tied) in [
        (16, 8, 1, 2, 4, true),
        (16, 8, 1, 2, 4, false),
        (256, 64, 4, 4, 128, true),
        (50, 48, 3, 6, 32, false),
    ] {
        let mut spec = gpt_spec(v, d, l, h, c);
        if let Arch::Transformer(s) = &mut spec.arch {
            s.tied_embeddings = tied;
        }
        let mut params = Params::new(Cpu::default());
        Model::build(&spec, &mut params, &mut ChaCha8Rng::seed_from_u64(0));
        // 12 d^2 weights and 13 d biases/norm parameters per layer, final norm,
        // token and positional embeddings, optional untied read-out.
        let non_embedding = l * (12 * d * d + 13 * d) + 2 * d;
        let embedding = v * d + c * d + if tied { 0 } else { d * v };
        assert_eq!(
            params.count_non_embedding(),
            non_embedding,
            "gpt {v} {d} {l}"
        );
        assert_eq!(params.count(), non_embedding + embedding, "gpt {v} {d} {l}");
        assert_eq!(spec.param_count(), (params.count(), non_embedding));
    }
}

// ------------------------------------------------------------------ learning

#[test]
fn tiny_mlp_learns_a_teacher() {
    let source = Source::Table {
        table: teacher_table(7, 512, 8),
        ids: false,
    };
    let cfg = config(mlp_spec(8, 32, 2), 32, Budget::Steps(300), 3e-3, 0);
    let (report, _dir) = run(&cfg, &source, 1);
    assert_eq!(report.status, Status::Ok);
    assert_eq!(report.steps, 300);
    assert_eq!(report.d, 300 * 32);
    let first = report.curve[0].loss as f64;
    assert!(
        report.final_loss < 0.2 * first,
        "loss {first} -> {}",
        report.final_loss
    );
}

#[test]
fn tiny_transformer_learns_a_markov_stream() {
    let chain = Markov::new(11, 16);
    let tokens = Tokens {
        ids: chain.sample(1, 20_000),
        vocab: 16,
    };
    let source = Source::stream(tokens, 16, &[]);
    let cfg = config(gpt_spec(16, 32, 1, 2, 16), 16, Budget::Steps(200), 1e-2, 0);
    let (report, _dir) = run(&cfg, &source, 1);
    assert_eq!(report.status, Status::Ok);
    let first = report.curve[0].loss as f64;
    assert!((first - (16f64).ln()).abs() < 0.3, "initial loss {first}");
    // Well below the uniform loss, within reach of the entropy rate.
    assert!(
        report.final_loss < chain.entropy_rate + 0.35 * (first - chain.entropy_rate),
        "loss {first} -> {} (entropy rate {})",
        report.final_loss,
        chain.entropy_rate
    );
}

#[test]
fn larger_model_trained_longer_gets_closer_to_the_entropy_rate() {
    let chain = Markov::new(21, 24);
    let train_src = Source::stream(
        Tokens {
            ids: chain.sample(2, 40_000),
            vocab: 24,
        },
        16,
        &[],
    );
    let val = Source::stream(
        Tokens {
            ids: chain.sample(3, 8_000),
            vocab: 24,
        },
        16,
        &[],
    );
    let held_out = |spec: ModelSpec, steps: usize| {
        let cfg = config(spec, 16, Budget::Steps(steps), 1e-2, 0);
        let (report, dir) = run(&cfg, &train_src, 1);
        assert_eq!(report.status, Status::Ok);
        let (_, model, params) =
            scalepipe::train::checkpoint::load(dir.path(), Cpu::default()).unwrap();
        evaluate(&model, &params, &val, 32, None).loss
    };
    let small = held_out(gpt_spec(24, 8, 1, 1, 16), 60);
    let large = held_out(gpt_spec(24, 32, 2, 2, 16), 300);
    let h = chain.entropy_rate;
    assert!(
        large - h < small - h && large > h - 0.05,
        "entropy rate {h}: small {small}, large {large}"
    );
}

#[test]
fn text_classifier_learns_keyword_sentiment() {
    // Label 1 when token 5 appears more often than token 6.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (rows, len) = (600, 8);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..rows {
        let n = rng.gen_range(1..=len);
        let toks: Vec<u32> = (0..len)
            .map(|j| if j < n { rng.gen_range(1..12) } else { 0 })
            .collect();
        let pos = toks.iter().filter(|&&t| t == 5).count();
        let neg = toks.iter().filter(|&&t| t == 6).count();
        x.extend(toks.iter().map(|&t| t as f32));
        y.push(u32::from(pos > neg));
    }
    let source = Source::Table {
        table: Table {
            x,
            rows,
            cols: len,
            y: DataTargets::Classes(y),
        },
        ids: true,
    };
    let spec = ModelSpec {
        arch: Arch::TextClassifier(TextClassifierSpec {
            vocab: 12,
            seq_len: len,
            embed_dim: 16,
            pooling: Pooling::Mean,
            width: 32,
            depth: 1,
            classes: 2,
            activation: Activation::Relu,
        }),
        loss: LossKind::CrossEntropy,
    };
    let cfg = config(spec, 32, Budget::Epochs(8.0), 1e-2, 0);
    let (report, dir) = run(&cfg, &source, 1);
    assert_eq!(report.status, Status::Ok);
    let (_, model, params) =
        scalepipe::train::checkpoint::load(dir.path(), Cpu::default()).unwrap();
    let eval = evaluate(&model, &params, &source, 64, None);
    assert!(eval.accuracy.unwrap() > 0.85, "{eval:?}");
}

// ------------------------------------------------------ divergence, determinism

#[test]
fn huge_learning_rate_diverges_without_failing() {
    let source = Source::Table {
        table: teacher_table(7, 256, 8),
        ids: false,
    };
    let mut cfg = config(mlp_spec(8, 64, 3), 32, Budget::Steps(200), 1e6, 0);
    cfg.adamw.grad_clip = None;
    cfg.warmup_steps = Some(0);
    let (report, dir) = run(&cfg, &source, 1);
    assert_eq!(report.status, Status::Diverged);
    let at = report.diverged_at_step.unwrap();
    assert!(at < 200 && report.steps == at, "{report:?}");
    assert!(!report.curve.last().unwrap().loss.is_finite());
    // The checkpoint of the last finite parameters is still written.
    assert!(dir.path().join("model.safetensors").is_file());
}

#[test]
fn same_seed_gives_identical_curves_and_checkpoints_across_runs_and_threads() {
    let chain = Markov::new(31, 16);
    let source = Source::stream(
        Tokens {
            ids: chain.sample(1, 10_000),
            vocab: 16,
        },
        32,
        &[],
    );
    // Wide enough that gemm splits work across threads.
    let cfg = config(gpt_spec(16, 64, 2, 4, 32), 8, Budget::Steps(12), 3e-3, 5);
    let read = |d: &tempfile::TempDir, f: &str| std::fs::read(d.path().join(f)).unwrap();
    let (a, da) = run(&cfg, &source, 1);
    let (b, db) = run(&cfg, &source, 1);
    let (c, dc) = run(&cfg, &source, 2);
    for f in ["loss_curve.csv", "model.safetensors", "model.json"] {
        assert_eq!(read(&da, f), read(&db, f), "{f} differs between runs");
        assert_eq!(
            read(&da, f),
            read(&dc, f),
            "{f} differs between 1 and 2 threads"
        );
    }
    assert_eq!(a.curve, b.curve);
    assert_eq!(a.curve, c.curve);
    // A different seed changes the run.
    let mut other = cfg.clone();
    other.seed = 6;
    let (d, _dd) = run(&other, &source, 1);
    assert_ne!(a.curve, d.curve);
    // And the MLP path, with batch rows large enough for threaded gemm.
    let source = Source::Table {
        table: teacher_table(7, 512, 64),
        ids: false,
    };
    let cfg = config(mlp_spec(64, 256, 2), 128, Budget::Steps(6), 1e-3, 1);
    let (e, de) = run(&cfg, &source, 1);
    let (f, df) = run(&cfg, &source, 2);
    assert_eq!(e.curve, f.curve);
    assert_eq!(
        read(&de, "model.safetensors"),
        read(&df, "model.safetensors")
    );
}

// ------------------------------------------------------------ stages end to end

mod stages {
    use super::*;
    use scalepipe::data::{
        write_meta, write_table, write_tokens, Columns, DatasetMeta, Split, Task,
    };
    use scalepipe::stages::{kind, ConfigureContext, InputRef, Job, StageContext};
    use std::path::Path;
    use std::sync::atomic::AtomicBool;

    fn markov_dataset(dir: &Path) -> f64 {
        let chain = Markov::new(41, 16);
        let train = chain.sample(1, 20_000);
        let val = chain.sample(2, 4_000);
        write_tokens(dir, Split::Train, &train).unwrap();
        write_tokens(dir, Split::Val, &val).unwrap();
        write_tokens(dir, Split::Test, &val[..2000]).unwrap();
        let meta = DatasetMeta {
            kind: "dataset.markov_text".into(),
            task: Task::LanguageModel,
            n_train: train.len(),
            n_val: val.len(),
            n_test: 2000,
            input_dim: None,
            classes: None,
            vocab: Some(16),
            irreducible_loss: Some(chain.entropy_rate),
            sources: vec![],
            extra: Default::default(),
        };
        write_meta(dir, &meta).unwrap();
        chain.entropy_rate
    }

    fn teacher_dataset(dir: &Path) {
        let table = teacher_table(3, 700, 6);
        let slice = |a: usize, b: usize| {
            let DataTargets::Regression(y) = &table.y else {
                unreachable!()
            };
            Table {
                x: table.x[a * 6..b * 6].to_vec(),
                rows: b - a,
                cols: 6,
                y: DataTargets::Regression(y[a..b].to_vec()),
            }
        };
        write_table(dir, Split::Train, &slice(0, 500), Columns::Features).unwrap();
        write_table(dir, Split::Val, &slice(500, 600), Columns::Features).unwrap();
        write_table(dir, Split::Test, &slice(600, 700), Columns::Features).unwrap();
        let meta = DatasetMeta {
            kind: "dataset.teacher".into(),
            task: Task::Regression,
            n_train: 500,
            n_val: 100,
            n_test: 100,
            input_dim: Some(6),
            classes: None,
            vocab: None,
            irreducible_loss: Some(0.0),
            sources: vec![],
            extra: Default::default(),
        };
        write_meta(dir, &meta).unwrap();
    }

    fn configure(kind_name: &str, params: &str, inputs: &[&str]) -> Result<Box<dyn Job>, String> {
        let table: toml::Table = params.parse().unwrap();
        let input_kinds: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        let cx = ConfigureContext {
            base_dir: Path::new("."),
            input_kinds: &input_kinds,
        };
        (kind(kind_name).unwrap().configure)(&table, &cx)
            .map_err(|e| format!("{:?}: {}", e.key, e.message))
    }

    fn input(stage: &str, kind: &str, params: &str, dir: &Path, fp: &str) -> InputRef {
        InputRef {
            stage: stage.into(),
            id: format!("{stage}[x]"),
            kind: kind.into(),
            params: params.parse().unwrap(),
            dir: dir.to_path_buf(),
            fingerprint: fp.into(),
        }
    }

    fn run_stage(stage: &dyn Job, params: &str, inputs: &[InputRef], out: &Path, threads: usize) {
        let table: toml::Table = params.parse().unwrap();
        let cancel = AtomicBool::new(false);
        let last = std::sync::Mutex::new(String::new());
        let progress = |pos: u64, len: u64, msg: &str| {
            *last.lock().unwrap() = format!("{pos}/{len} {msg}");
        };
        let ctx = StageContext::new(
            "s[x]", out, inputs, &table, threads, &cancel, &progress, None,
        );
        stage.run(&ctx).unwrap();
        assert!(
            last.lock().unwrap().contains("loss"),
            "{}",
            last.lock().unwrap()
        );
    }

    fn json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn train_then_eval_a_transformer_on_a_token_dataset() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, train_out, eval_out) = (
            tmp.path().join("d"),
            tmp.path().join("t"),
            tmp.path().join("e"),
        );
        for d in [&data, &train_out, &eval_out] {
            std::fs::create_dir(d).unwrap();
        }
        let h = markov_dataset(&data);
        let params = r#"model = "transformer"
d_model = 32
n_layers = 1
n_heads = 2
context = 16
batch_size = 16
lr = 1e-2
tokens = 40960
seed = 0
threads = 2"#;
        let stage = configure("train", params, &["dataset.markov_text"]).unwrap();
        assert_eq!(stage.resources().threads, 2);
        let data_in = input("data", "dataset.markov_text", "", &data, "fp-data");
        run_stage(
            stage.as_ref(),
            params,
            std::slice::from_ref(&data_in),
            &train_out,
            2,
        );
        for f in [
            "metrics.json",
            "loss_curve.csv",
            "model.safetensors",
            "model.json",
            "dataset.json",
        ] {
            assert!(train_out.join(f).is_file(), "{f}");
        }
        let m = json(&train_out.join("metrics.json"));
        assert_eq!(m["status"], "ok");
        assert_eq!(m["model"], "transformer");
        assert_eq!(m["d"], 40960);
        assert_eq!(m["steps"], 160);
        let n = m["n_params"].as_u64().unwrap();
        assert_eq!(
            n,
            (16 * 32 + 16 * 32 + 12 * 32 * 32 + 13 * 32 + 2 * 32) as u64
        );
        assert_eq!(m["flops"].as_f64().unwrap(), 6.0 * n as f64 * 40960.0);
        assert!(m["flops_exact"].as_f64().unwrap() > 0.0);
        assert!((m["irreducible_loss"].as_f64().unwrap() - h).abs() < 1e-12);
        assert_eq!(m["params"]["d_model"], 32);
        let curve = std::fs::read_to_string(train_out.join("loss_curve.csv")).unwrap();
        assert!(curve.starts_with("step,loss,lr\n0,"));
        assert_eq!(curve.lines().count(), 161);

        // eval receives the train instance and the dataset it read (the engine
        // adds the dataset; see formats::eval_receives_its_train_runs_dataset_as_an_input).
        let eval = configure(
            "eval",
            "split = \"test\"",
            &["train", "dataset.markov_text"],
        )
        .unwrap();
        let train_in = input("train", "train", params, &train_out, "fp-train");
        let other = input("other", "dataset.markov_text", "", &data, "fp-other");
        let table: toml::Table = "split = \"test\"".parse().unwrap();
        let cancel = AtomicBool::new(false);
        let refused = [train_in.clone(), other];
        let ctx = StageContext::new(
            "s[x]",
            &eval_out,
            &refused,
            &table,
            1,
            &cancel,
            &|_, _, _| {},
            None,
        );
        let err = eval
            .run(&ctx)
            .expect_err("a dataset the model was not trained on");
        assert!(
            err.to_string().contains("not among this eval's inputs"),
            "{err}"
        );
        run_stage(
            eval.as_ref(),
            "split = \"test\"",
            &[train_in, data_in],
            &eval_out,
            1,
        );
        let e = json(&eval_out.join("metrics.json"));
        assert_eq!(e["status"], "ok");
        assert_eq!(e["split"], "test");
        assert_eq!(e["n_params"], m["n_params"]);
        assert_eq!(e["d"], m["d"]);
        assert_eq!(e["train_loss"], m["loss"]);
        assert_eq!(e["eval_units"], 16 * (1999 / 16));
        let loss = e["loss"].as_f64().unwrap();
        assert!(
            loss > h - 0.05 && loss < (16f64).ln() - 0.3,
            "held-out {loss}, entropy rate {h}"
        );
    }

    #[test]
    fn train_then_eval_an_mlp_and_diverge_without_failing() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("d");
        std::fs::create_dir(&data).unwrap();
        teacher_dataset(&data);
        let data_in = input("data", "dataset.teacher", "", &data, "fp-data");
        for (lr, status) in [("3e-3", "ok"), ("1e7", "diverged")] {
            let out = tmp.path().join(format!("t{lr}"));
            let eout = tmp.path().join(format!("e{lr}"));
            std::fs::create_dir(&out).unwrap();
            std::fs::create_dir(&eout).unwrap();
            let params = format!(
                "model = \"mlp\"\nwidth = 32\ndepth = 2\nlr = {lr}\ngrad_clip = 0\nwarmup_steps = 0\nepochs = 20\nseed = 1"
            );
            let stage = configure("train", &params, &["dataset.teacher"]).unwrap();
            run_stage(
                stage.as_ref(),
                &params,
                std::slice::from_ref(&data_in),
                &out,
                1,
            );
            let m = json(&out.join("metrics.json"));
            assert_eq!(m["status"], status, "{m}");
            assert_eq!(m["d_unit"], "examples");
            // Eval finds the dataset among its own inputs by fingerprint too.
            let eval = configure("eval", "", &["train", "dataset.teacher"]).unwrap();
            let train_in = input("train", "train", &params, &out, "fp-t");
            run_stage(eval.as_ref(), "", &[train_in, data_in.clone()], &eout, 1);
            let e = json(&eout.join("metrics.json"));
            assert_eq!(e["status"], status);
            if status == "ok" {
                assert_eq!(m["steps"], (20 * 500 + 31) / 32);
                let (first, last) = (
                    m["initial_loss"].as_f64().unwrap(),
                    e["loss"].as_f64().unwrap(),
                );
                assert!(last < 0.3 * first, "held-out {last} vs initial {first}");
                assert_eq!(e["eval_units"], 100);
            } else {
                assert!(m["diverged_at_step"].as_u64().is_some());
            }
        }
    }

    #[test]
    fn bad_parameters_are_rejected_at_configure_time() {
        let t = &["dataset.teacher"];
        let base = "model = \"mlp\"\nwidth = 8\ndepth = 1\nseed = 0\n";
        let err = |p: &str| {
            configure("train", p, t)
                .err()
                .unwrap_or_else(|| panic!("accepted: {p}"))
        };
        assert!(err(base).contains("exactly one training budget"));
        assert!(err(&format!("{base}steps = 1\nepochs = 1")).contains("got steps, epochs"));
        assert!(err(&format!("{base}steps = 1\nd_model = 8")).contains("d_model"));
        assert!(err(&format!("{base}steps = 1\nwidht = 8")).contains("widht"));
        assert!(err(&format!("{base}tokens = 100")).contains("tokens"));
        assert!(err("model = \"transformer\"\nd_model = 10\nn_layers = 1\nn_heads = 3\ncontext = 4\nsteps = 1\nseed = 0").contains("n_heads"));
        assert!(configure("train", &format!("{base}steps = 1"), &["train"]).is_err());
        let cuda = configure("train", &format!("{base}steps = 1\ndevice = \"cuda\""), t);
        if cfg!(feature = "cuda") {
            assert!(cuda.is_ok());
        } else {
            let e = cuda.err().unwrap();
            assert!(
                e.contains("device") && e.contains("`cuda` cargo feature"),
                "{e}"
            );
        }
        assert!(configure("eval", "split = \"train\"", &["train"]).is_err());
        assert!(configure("eval", "", &["dataset.teacher"]).is_err());
    }
}

#[test]
fn fused_adamw_matches_the_tensor_op_reference() {
    use scalepipe::train::adamw::{AdamW, TensorOpAdamW};
    let spec = gpt_spec(11, 16, 1, 2, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let batch = Batch {
        inputs: Inputs::Ids {
            ids: (0..12).map(|_| rng.gen_range(0..11)).collect(),
            cols: 6,
        },
        rows: 2,
        targets: Targets::Classes((0..12).map(|_| rng.gen_range(0..11)).collect()),
    };
    let build = || {
        let mut params = Params::new(Cpu::default());
        let model = Model::build(&spec, &mut params, &mut ChaCha8Rng::seed_from_u64(1));
        (model, params)
    };
    // Clipping at 0.5 fires on these gradients, weight decay on the matrices.
    let cfg = AdamWConfig {
        grad_clip: Some(0.5),
        ..AdamWConfig::default()
    };
    let (model, mut fused_params) = build();
    let (_, mut ref_params) = build();
    let mut fused = AdamW::new(cfg, &fused_params);
    let mut reference = TensorOpAdamW::new(cfg, &ref_params);
    for step in 0..5 {
        let lr = 1e-2 * (step + 1) as f64;
        let (loss, _) = model.loss(&fused_params, &batch, fused_params.tape());
        let mut grads = loss.backward();
        let a = fused
            .step(&mut fused_params, &mut grads, lr)
            .unwrap()
            .unwrap();
        let (loss, _) = model.loss(&ref_params, &batch, ref_params.tape());
        let mut grads = loss.backward();
        let b = reference.step(&mut ref_params, &mut grads, lr).unwrap();
        assert!((a.grad_norm - b.grad_norm).abs() < 1e-4 * b.grad_norm);
        assert!(a.grad_norm > 0.5, "clipping should fire");
    }
    for (p, q) in fused_params.iter().zip(ref_params.iter()) {
        // The key bias's exact gradient is zero (it adds the same q.b to every
        // score of a row, which softmax ignores); Adam normalises its rounding
        // noise, so the two implementations need not agree there.
        if p.name.ends_with("attn.k.bias") {
            continue;
        }
        for (x, y) in p.value.as_vec().iter().zip(q.value.as_vec()) {
            assert!((x - y).abs() < 1e-5, "{}: {x} vs {y}", p.name);
        }
    }
}

/// The CPU's fused attention softmax against the composed dfdx ops it replaces:
/// values, and gradients of a weighted sum, where the scores also feed a second
/// op (so the fused backward must accumulate, not overwrite).
#[test]
fn fused_causal_softmax_equals_composed_ops() {
    use scalepipe::train::fused::{causal_softmax_composed, FusedOps};
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Square (self-attention), more keys than queries, more queries than keys.
    for shape in [(2, 3, 5, 5), (1, 2, 4, 6), (1, 1, 6, 3)] {
        let (b, h, q, k) = shape;
        let numel = b * h * q * k;
        let mut random = |sd: f32| -> Vec<f32> {
            (0..numel)
                .map(|_| sd * rng.gen_range(-1.0f32..1.0))
                .collect()
        };
        let scores = dev.tensor_from_vec(random(4.0), shape);
        let w = dev.tensor_from_vec(random(1.0), shape);
        let w2 = dev.tensor_from_vec(random(1.0), shape);
        let scale = 0.7f32;
        let run = |fused: bool| {
            let s = scores.leaky_trace();
            let att = if fused {
                Cpu::causal_softmax(s.retaped::<OwnedTape<f32, Cpu>>(), scale)
            } else {
                causal_softmax_composed(s.retaped::<OwnedTape<f32, Cpu>>(), scale)
            };
            let values = att.retaped::<NoneTape>().as_vec();
            let loss = (att * w.clone()).sum::<Rank0, _>() + (s * w2.clone()).sum::<Rank0, _>();
            let grads = loss.backward();
            (values, grads.get(&scores).as_vec())
        };
        let (fv, fg) = run(true);
        let (cv, cg) = run(false);
        for (i, (a, c)) in fv.iter().zip(&cv).enumerate() {
            assert!((a - c).abs() <= 1e-6, "{shape:?} value {i}: {a} vs {c}");
            let (row, key) = ((i / k) % q, i % k);
            if key > row {
                assert_eq!(*a, 0.0, "{shape:?}: masked entry {i} is {a}");
            }
        }
        for row in fv.chunks(k) {
            let total: f32 = row.iter().sum();
            assert!(
                (total - 1.0).abs() < 1e-5,
                "{shape:?}: a row sums to {total}"
            );
        }
        for (i, (a, c)) in fg.iter().zip(&cg).enumerate() {
            assert!(
                (a - c).abs() <= 1e-5 * (1.0 + c.abs()),
                "{shape:?} gradient {i}: {a} vs {c}"
            );
        }
        // Without a tape the fused op computes the same values.
        let plain = Cpu::causal_softmax(scores.clone(), scale).as_vec();
        assert_eq!(plain, fv);
    }
}

#[test]
fn composed_gelu_equals_dfdx_fast_gelu() {
    let dev = Cpu::default();
    let x: Tensor<(usize, usize), f32, _> = dev.tensor_from_vec(
        (0..400).map(|i| (i as f32 - 200.0) / 25.0).collect(),
        (20, 20),
    );
    let a = scalepipe::train::layers::gelu(x.clone()).as_vec();
    let b = x.fast_gelu().as_vec();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
    }
}

// ---------------------------------------------------------- through the engine

mod pipeline {
    use crate::harness::{ids, Workspace};

    const PIPELINE: &str = r#"
[pipeline]
name = "lm"
seed = 3

[stages.data]
kind = "dataset.markov_text"
tokens = 30000
vocab = 16

[stages.train]
kind = "train"
inputs = ["data"]
model = "transformer"
n_layers = 1
n_heads = 2
context = 16
batch_size = 16
lr = 1e-2
steps = 150
threads = 2
sweep = { d_model = [4, 32] }

[stages.eval]
kind = "eval"
inputs = ["train"]
split = "test"
"#;

    fn metrics(ws: &Workspace, id: &str) -> serde_json::Value {
        serde_json::from_str(&ws.read(&format!("results/lm/{id}/metrics.json"))).unwrap()
    }

    #[test]
    fn a_width_sweep_trains_evaluates_and_is_identical_across_jobs() {
        let one = Workspace::new();
        one.write("p.toml", PIPELINE);
        let out = one
            .run(&["run", "p.toml", "--json", "--jobs", "1"])
            .success()
            .json();
        let ran = ids(&out, "executed");
        assert!(ran.iter().any(|i| i.starts_with("eval")), "{ran:?}");
        let small = metrics(&one, "eval[d_model=4]");
        let large = metrics(&one, "eval[d_model=32]");
        let h = large["irreducible_loss"].as_f64().unwrap();
        let (ls, ll) = (
            small["loss"].as_f64().unwrap(),
            large["loss"].as_f64().unwrap(),
        );
        assert!(
            ll < ls && ll > h - 0.05,
            "entropy rate {h}: d4 {ls}, d32 {ll}"
        );
        assert!(large["n_params"].as_u64() > small["n_params"].as_u64());
        assert_eq!(large["d"], 150 * 16 * 16);

        // The same pipeline with two jobs (threads clamped differently, runs in
        // parallel) gives byte-identical training outputs.
        let two = Workspace::new();
        two.write("p.toml", PIPELINE);
        two.run(&["run", "p.toml", "--json", "--jobs", "2"])
            .success();
        for id in ["train[d_model=4]", "train[d_model=32]"] {
            for f in ["loss_curve.csv", "model.safetensors"] {
                let path = format!("results/lm/{id}/{f}");
                let read = |ws: &Workspace| std::fs::read(ws.join(&path)).unwrap();
                assert!(
                    read(&one) == read(&two),
                    "{path} differs between --jobs 1 and 2"
                );
            }
        }
    }
}

/// `eval` reads the dataset its train instance used without listing it as an
/// input. After the workspace moves, the directory recorded at training time is
/// gone; the engine's store still holds the dataset entry, and eval finds it there.
#[test]
fn eval_finds_the_dataset_in_the_store_after_the_workspace_moves() {
    let pipeline = |split: &str| {
        format!(
            "[pipeline]\nname = \"moved\"\nseed = 1\n\n[stages.data]\nkind = \"dataset.markov_text\"\ntokens = 4000\nvocab = 8\n\n[stages.train]\nkind = \"train\"\ninputs = [\"data\"]\nmodel = \"transformer\"\nd_model = 8\nn_layers = 1\nn_heads = 2\ncontext = 8\nbatch_size = 8\nsteps = 10\n\n[stages.eval]\nkind = \"eval\"\ninputs = [\"train\"]\nsplit = \"{split}\"\n"
        )
    };
    let parent = tempfile::tempdir().expect("temp dir");
    let before = parent.path().join("before");
    let after = parent.path().join("after");
    std::fs::create_dir_all(&before).unwrap();
    std::fs::write(before.join("p.toml"), pipeline("val")).unwrap();
    let run = |dir: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scalepipe"))
            .args(["run", "p.toml", "--json"])
            .current_dir(dir)
            .output()
            .expect("scalepipe runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    run(&before);
    std::fs::rename(&before, &after).unwrap();
    std::fs::write(after.join("p.toml"), pipeline("test")).unwrap();
    let json = run(&after);
    assert_eq!(crate::harness::ids(&json, "executed"), vec!["eval"]);
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(after.join("results/moved/eval/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["split"], "test");
    assert!(metrics["loss"].as_f64().unwrap().is_finite());
}
