//! The fit stage against published results, synthetic laws with known truth, and
//! the files other stages write.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use scalepipe::fit::analysis::{Analysis, Hooks};
use scalepipe::fit::bootstrap::BootstrapSettings;
use scalepipe::fit::table::{self, ColumnMap};
use scalepipe::fit::{Form, FormKind, Grid, Irreducible, Observation, Variable};
use scalepipe::stages::{self, ConfigureContext, InputRef, StageContext};

/// Besiroglu et al. (2024), Table 1: their fit of the extracted data.
const BESIROGLU: [(&str, f64); 5] = [
    ("A", 482.01),
    ("B", 2085.43),
    ("E", 1.82),
    ("alpha", 0.3478),
    ("beta", 0.3658),
];
/// Hoffmann et al. (2022), Approach 3, fitted on their full data.
const HOFFMANN: [(&str, f64); 5] = [
    ("A", 406.4),
    ("B", 410.7),
    ("E", 1.69),
    ("alpha", 0.34),
    ("beta", 0.28),
];

/// The shared reference CSV, which lives beside the repository (`../shared`).
/// Its absence is a failure, never a skip: in CI (`CI=true`) the folder is
/// required, and locally a missing file means the check did not happen.
fn chinchilla_csv() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join("reference")
        .join("chinchilla_svg_extracted.csv");
    if !path.is_file() {
        let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        panic!(
            "reference data missing: expected {} (the `shared` folder next to the repository; see shared/reference/README.md).{}",
            path.display(),
            if ci {
                " CI=true: the shared folder must be present in CI."
            } else {
                " This test reproduces published numbers and cannot pass without it."
            }
        );
    }
    path
}

fn chinchilla_runs() -> (Vec<String>, Vec<Observation>, usize) {
    let path = chinchilla_csv();
    let raw = table::read_file(&path).unwrap();
    let map = ColumnMap {
        n: Some("Model Size".into()),
        c: Some("Training FLOP".into()),
        d_from_c: true,
        ..ColumnMap::default()
    };
    let df = table::canonical(&raw, &map, &path, "chinchilla").unwrap();
    let runs = table::runs(&df).unwrap();
    let sel = table::select(&runs, &[Variable::N, Variable::D], 5);
    let ids = sel.included.iter().map(|&i| runs[i].id.clone()).collect();
    let obs = sel
        .included
        .iter()
        .map(|&i| runs[i].observation())
        .collect();
    (ids, obs, sel.excluded.len())
}

/// Besiroglu et al.'s procedure on their extraction of Hoffmann et al.'s data:
/// drop the 5 highest losses, Huber(1e-3) on log loss, L-BFGS from their
/// 4,500-point grid, keep the best.
#[test]
fn reproduces_besiroglu_on_the_chinchilla_data() {
    let (ids, obs, excluded) = chinchilla_runs();
    assert_eq!(obs.len(), 240);
    assert_eq!(excluded, 5);
    let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
    let report = Analysis::new(form).run(&ids, &obs, &Hooks::NONE).unwrap();
    assert_eq!(report.optimizer.starts, 4500);
    assert!(report.optimizer.converged, "{:?}", report.optimizer);
    // Their notebook's optimum on this grid has objective ~1.01827e-3.
    assert!(
        (report.objective / 1.01827e-3 - 1.0).abs() < 1e-5,
        "objective {}",
        report.objective
    );
    println!("parameter   fitted   Besiroglu (diff)   Hoffmann (diff, reported only)");
    for ((name, besiroglu), (_, hoffmann)) in BESIROGLU.iter().zip(HOFFMANN.iter()) {
        let got = report.parameters.get(name).unwrap().value;
        let rel = got / besiroglu - 1.0;
        // The issue's bar was exponents and E within 1%, coefficients within
        // 10% (A and B trade off against the exponents along a flat valley).
        // The fit is deterministic and lands at A -0.87%, B +2.78%, E -0.15%,
        // alpha -0.14%, beta +0.38% from their table; each bound leaves about
        // twice that, so a drift along the valley fails.
        let tolerance = match *name {
            "A" => 0.02,
            "B" => 0.05,
            "beta" => 0.008,
            _ => 0.004,
        };
        println!(
            "{name:>9} {got:>9.4} {besiroglu:>9.4} ({:+.2}%) {hoffmann:>9.4} ({:+.1}%)",
            100.0 * rel,
            100.0 * (got / hoffmann - 1.0)
        );
        assert!(
            rel.abs() <= tolerance,
            "{name} = {got}, Besiroglu et al. {besiroglu}: off by {:.2}% (> {}%)",
            100.0 * rel,
            100.0 * tolerance
        );
    }
}

/// Draws runs on an N x D grid from `L = E + A/N^alpha + B/D^beta`, with
/// multiplicative log-normal noise of standard deviation `sigma` in log loss.
fn synthetic(truth: [f64; 5], sigma: f64, seed: u64) -> Vec<Observation> {
    let [big_a, big_b, e, alpha, beta] = truth;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sigma).unwrap();
    let mut runs = Vec::new();
    for i in 0..8 {
        for j in 0..8 {
            let n = 1e7 * 10f64.powf(3.0 * i as f64 / 7.0);
            let d = 1e9 * 10f64.powf(3.0 * j as f64 / 7.0);
            let clean = e + big_a / n.powf(alpha) + big_b / d.powf(beta);
            runs.push(Observation {
                n,
                d,
                c: 6.0 * n * d,
                loss: clean * noise.sample(&mut rng).exp(),
            });
        }
    }
    runs
}

const TRUTH: [f64; 5] = [406.4, 410.7, 1.69, 0.34, 0.28];
const NAMES: [&str; 5] = ["A", "B", "E", "alpha", "beta"];

fn fit_synthetic(
    runs: &[Observation],
    grid: Option<Grid>,
    boot: Option<BootstrapSettings>,
) -> scalepipe::fit::FitReport {
    let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
    let ids: Vec<String> = (0..runs.len()).map(|i| format!("run{i}")).collect();
    let mut a = Analysis::new(form);
    if let Some(g) = grid {
        a.grid = g;
    }
    a.bootstrap = boot;
    a.run(&ids, runs, &Hooks::NONE).unwrap()
}

/// Without noise the optimum is the truth, so only the optimiser's precision
/// limits recovery.
#[test]
fn recovers_an_exact_law() {
    let runs = synthetic(TRUTH, 0.0, 1);
    let report = fit_synthetic(&runs, None, None);
    for (name, truth) in NAMES.iter().zip(TRUTH) {
        let got = report.parameters.get(name).unwrap().value;
        println!("{name}: relative error {:e}", got / truth - 1.0);
        // Measured: at most 1e-14 (machine precision); 1e-8 leaves room for
        // another platform's floating point, not for a poorly converged fit.
        assert!(
            (got / truth - 1.0).abs() < 1e-8,
            "{name}: {got} vs true {truth}"
        );
    }
}

/// With 0.2% noise, each parameter must land within 5 asymptotic standard errors
/// of the truth. The standard errors come from the linearised least-squares
/// covariance `sigma^2 (J^T J)^-1` in the optimiser's coordinates (`a = ln A`,
/// ...), inflated 1.5x because Huber with delta = sigma/2 is less efficient
/// than least squares under Gaussian noise (about 0.8, i.e. 1.13x wider). A
/// parameter outside 5 such errors is a fitting bug, not bad luck
/// (two-sided probability below 1e-6 per parameter).
#[test]
fn recovers_a_noisy_law_within_its_standard_errors() {
    let sigma = 0.002;
    let runs = synthetic(TRUTH, sigma, 2);
    let report = fit_synthetic(&runs, None, None);
    let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
    let truth_theta = [
        TRUTH[0].ln(),
        TRUTH[1].ln(),
        TRUTH[2].ln(),
        TRUTH[3],
        TRUTH[4],
    ];
    let se = standard_errors(&form, &truth_theta, &runs, sigma);
    for (k, name) in ["a", "b", "e", "alpha", "beta"].iter().enumerate() {
        let got = *report.log_parameters.get(name).unwrap();
        let tolerance = 5.0 * 1.5 * se[k];
        println!(
            "{name}: fitted {got:.5}, true {:.5}, error {:+.5}, tolerance {tolerance:.5}",
            truth_theta[k],
            got - truth_theta[k]
        );
        assert!(
            (got - truth_theta[k]).abs() <= tolerance,
            "{name}: fitted {got}, true {}, tolerance {tolerance}",
            truth_theta[k]
        );
    }
}

/// `sqrt(diag(sigma^2 (J^T J)^-1))` with J the Jacobian of the log prediction.
fn standard_errors(form: &Form, theta: &[f64], runs: &[Observation], sigma: f64) -> Vec<f64> {
    let k = theta.len();
    let mut jtj = vec![vec![0.0; k]; k];
    for r in runs {
        let mut row = vec![0.0; k];
        for (j, slot) in row.iter_mut().enumerate() {
            let h = 1e-6;
            let mut tp = theta.to_vec();
            let mut tm = theta.to_vec();
            tp[j] += h;
            tm[j] -= h;
            *slot = (form.predict(&tp, r.n, r.d, r.c).ln() - form.predict(&tm, r.n, r.d, r.c).ln())
                / (2.0 * h);
        }
        for a in 0..k {
            for b in 0..k {
                jtj[a][b] += row[a] * row[b];
            }
        }
    }
    let inv = invert(jtj);
    (0..k).map(|j| sigma * inv[j][j].sqrt()).collect()
}

/// Gauss-Jordan inverse of a small symmetric positive definite matrix.
fn invert(mut m: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let k = m.len();
    let mut inv: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..k).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for c in 0..k {
        let p = (c..k)
            .max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))
            .unwrap();
        m.swap(c, p);
        inv.swap(c, p);
        let d = m[c][c];
        for j in 0..k {
            m[c][j] /= d;
            inv[c][j] /= d;
        }
        for r in 0..k {
            if r != c {
                let f = m[r][c];
                for j in 0..k {
                    m[r][j] -= f * m[c][j];
                    inv[r][j] -= f * inv[c][j];
                }
            }
        }
    }
    inv
}

/// In 20 seeded repetitions of a noisy experiment, the 95% bootstrap interval
/// of each parameter must cover the truth in most (at least 15; a correct 95%
/// interval misses 6 or more of 20 with probability below 0.03%).
#[test]
fn bootstrap_intervals_cover_the_truth() {
    let small_grid = {
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        let mut axes = std::collections::BTreeMap::new();
        axes.insert("a".to_string(), vec![5.0, 10.0]);
        axes.insert("b".to_string(), vec![5.0, 10.0]);
        axes.insert("e".to_string(), vec![0.0, 1.0]);
        axes.insert("alpha".to_string(), vec![0.2, 0.5]);
        axes.insert("beta".to_string(), vec![0.2, 0.5]);
        Grid::with_overrides(&form, &axes).unwrap()
    };
    let mut covered = [0usize; 5];
    for rep in 0..20u64 {
        let runs = synthetic(TRUTH, 0.01, 100 + rep);
        let report = fit_synthetic(
            &runs,
            Some(small_grid.clone()),
            Some(BootstrapSettings {
                replicates: 200,
                random_starts: 1,
                seed: rep,
            }),
        );
        for (k, name) in NAMES.iter().enumerate() {
            let est = report.parameters.get(name).unwrap();
            if est.lo.unwrap() <= TRUTH[k] && TRUTH[k] <= est.hi.unwrap() {
                covered[k] += 1;
            }
        }
    }
    println!(
        "coverage of 20: {:?}",
        NAMES.iter().zip(covered).collect::<Vec<_>>()
    );
    for (name, c) in NAMES.iter().zip(covered) {
        assert!(
            c >= 15,
            "{name}: interval covered the truth in only {c} of 20"
        );
    }
}

// ---- the stage, driven directly (the engine is not needed) ----

fn configure(
    params: &str,
    base: &Path,
    input_kinds: &[String],
) -> Result<Box<dyn stages::Job>, stages::ParamError> {
    let table: toml::Table = params.parse().unwrap();
    let kind = stages::kind("fit").expect("fit is registered");
    (kind.configure)(
        &table,
        &ConfigureContext {
            base_dir: base,
            input_kinds,
        },
    )
}

fn run_stage(params: &str, base: &Path, inputs: &[InputRef], threads: usize, out: &Path) {
    let kinds: Vec<String> = inputs.iter().map(|i| i.kind.clone()).collect();
    let stage = configure(params, base, &kinds).unwrap();
    let table: toml::Table = params.parse().unwrap();
    let cancel = AtomicBool::new(false);
    let ctx = StageContext::new(
        "fit",
        out,
        inputs,
        &table,
        threads,
        &cancel,
        &|_, _, _| {},
        None,
    );
    stage.run(&ctx).unwrap();
}

/// The Chinchilla fit through the stage with `table = ...`: every output is
/// written, the excluded runs are listed, and the outputs are byte-identical
/// whatever the thread count.
#[test]
fn stage_fits_a_table_file_deterministically() {
    let csv = chinchilla_csv();
    let dir = tempfile::tempdir().unwrap();
    let params = format!(
        r#"
table = "{}"
n = "Model Size"
c = "Training FLOP"
d_from_c = true
exclude_top_loss = 5
bootstrap = 40
budgets = [5.76e23]
holdout = {{ top_n = 20 }}
isoflop = true
seed = 3
grid = {{ a = [5.0, 10.0], b = [5.0, 10.0], e = [0.0, 1.0] }}
"#,
        csv.display()
    );
    let out1 = dir.path().join("one");
    let out2 = dir.path().join("two");
    std::fs::create_dir_all(&out1).unwrap();
    std::fs::create_dir_all(&out2).unwrap();
    run_stage(&params, dir.path(), &[], 1, &out1);
    run_stage(&params, dir.path(), &[], 2, &out2);
    for name in ["fit.json", "predictions.parquet", "summary.md"] {
        let a = std::fs::read(out1.join(name)).unwrap();
        let b = std::fs::read(out2.join(name)).unwrap();
        assert!(!a.is_empty(), "{name} is empty");
        assert_eq!(a, b, "{name} differs between 1 and 2 threads");
    }
    let fit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join("fit.json")).unwrap()).unwrap();
    assert_eq!(fit["n_points"], 240);
    assert_eq!(fit["excluded"].as_array().unwrap().len(), 5);
    assert!(fit["excluded"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("highest losses"));
    let value = |name: &str| fit["parameters"][name]["value"].as_f64().unwrap();
    // The same optimum as `reproduces_besiroglu_on_the_chinchilla_data`
    // (alpha 0.34731, E 1.8172 there); the smaller grid must not move it.
    let alpha = &fit["parameters"]["alpha"];
    assert!((value("alpha") - 0.3473).abs() < 2e-4, "{alpha}");
    assert!(
        (value("E") - 1.8172).abs() < 1e-3,
        "{}",
        fit["parameters"]["E"]
    );
    // The bootstrap interval (40 replicates: [0.3207, 0.3705]) holds the estimate.
    let (lo, hi) = (alpha["lo"].as_f64().unwrap(), alpha["hi"].as_f64().unwrap());
    assert!(lo < value("alpha") && value("alpha") < hi, "{alpha}");
    assert!(hi - lo < 0.2, "{alpha}");
    // The compute-optimal allocation at C = 5.76e23, worked out here from the
    // fitted law: N_opt = G (C/6)^a with a = beta/(alpha+beta) and
    // G = (alpha A / (beta B))^(1/(alpha+beta)), D_opt = C/6/N_opt
    // (about 7.32e10 parameters and 17.9 tokens per parameter).
    let budget = &fit["derived"]["budgets"][0];
    let (big_a, big_b, a_exp, b_exp) = (value("A"), value("B"), value("alpha"), value("beta"));
    let c6: f64 = 5.76e23 / 6.0;
    let g = (a_exp * big_a / (b_exp * big_b)).powf(1.0 / (a_exp + b_exp));
    let n_opt = g * c6.powf(b_exp / (a_exp + b_exp));
    let d_opt = c6 / n_opt;
    let close = |got: f64, want: f64| (got / want - 1.0).abs() < 1e-9;
    let got = |key: &str| budget[key]["value"].as_f64().unwrap();
    assert!(close(got("n_opt"), n_opt), "n_opt {n_opt}: {budget}");
    assert!(close(got("d_opt"), d_opt), "d_opt {d_opt}: {budget}");
    assert!(close(got("tokens_per_param"), d_opt / n_opt), "{budget}");
    let loss = value("E") + big_a / n_opt.powf(a_exp) + big_b / d_opt.powf(b_exp);
    assert!(close(got("loss"), loss), "loss {loss}: {budget}");
    assert!((d_opt / n_opt - 17.92).abs() < 0.05, "tokens per parameter");
    // Holding out the 20 largest models, the rest predict them to 1.39% on
    // average and 3.49% at worst.
    let holdout = &fit["holdout"];
    assert_eq!(holdout["n_held_out"], 20);
    assert_eq!(holdout["n_fit"], 220);
    let mean = holdout["mean_rel_error"].as_f64().unwrap();
    let max = holdout["max_rel_error"].as_f64().unwrap();
    assert!(mean < 0.02 && max < 0.05, "{holdout}");
    // IsoFLOP profiles: 36 bands, 22 with enough runs for a minimum; their
    // exponent (0.5085) agrees with the parametric fit's a (0.5139).
    let bands = fit["isoflop"]["bands"].as_array().unwrap();
    let used = bands.iter().filter(|b| b["used"] == true).count();
    assert_eq!((bands.len(), used), (36, 22));
    let iso_a = fit["isoflop"]["a"].as_f64().unwrap();
    let fit_a = fit["derived"]["a"]["value"].as_f64().unwrap();
    assert!(
        (iso_a - fit_a).abs() < 0.02,
        "isoflop a {iso_a}, fit a {fit_a}"
    );

    let df = table::read_file(&out1.join("predictions.parquet")).unwrap();
    assert_eq!(df.height(), 245);
    let predicted = df.column("predicted").unwrap().f64().unwrap();
    assert_eq!(predicted.null_count(), 0);
    let summary = std::fs::read_to_string(out1.join("summary.md")).unwrap();
    assert!(summary.contains("240 runs (5 excluded)"), "{summary}");
}

fn write_metrics(dir: &Path, value: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metrics.json"), value.to_string()).unwrap();
}

/// Runs from train/eval `metrics.json` files with a known power law in N and a
/// known irreducible loss: `e = "irreducible"` fixes E, diverged and non-finite
/// runs are listed as excluded, and the exponent comes back.
#[test]
fn stage_fits_eval_metrics_with_irreducible_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    let law = |n: f64| 0.5 + 30.0 / n.powf(0.3);
    for (k, width) in [8, 16, 32, 64, 128, 256, 512, 1024].iter().enumerate() {
        let n = (*width as f64) * (*width as f64) * 3.0;
        let id = format!("eval[width={width}]");
        let d = dir.path().join(format!("in{k}"));
        let (status, loss) = match k {
            2 => ("diverged", serde_json::json!(9.0)),
            5 => ("ok", serde_json::Value::Null),
            _ => ("ok", serde_json::json!(law(n))),
        };
        write_metrics(
            &d,
            serde_json::json!({
                "status": status, "model": "mlp", "n_params": n,
                "n_params_non_embedding": n, "d": 1000, "flops": 6000.0 * n,
                "flops_exact": 6000.0 * n, "loss": loss, "params": {"width": width},
                "irreducible_loss": 0.5,
            }),
        );
        inputs.push(InputRef {
            stage: "eval".into(),
            id,
            kind: "eval".into(),
            params: toml::Table::new(),
            dir: d,
            fingerprint: format!("fp{k}"),
        });
    }
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    run_stage(
        "form = \"power_n\"\ne = \"irreducible\"\nseed = 0",
        dir.path(),
        &inputs,
        2,
        &out,
    );
    let fit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("fit.json")).unwrap()).unwrap();
    assert_eq!(fit["e"], 0.5);
    assert_eq!(fit["n_points"], 6);
    let excluded = fit["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), 2);
    assert_eq!(excluded[0]["id"], "eval[width=32]");
    assert_eq!(excluded[0]["reason"], "diverged");
    assert_eq!(excluded[1]["reason"], "loss is missing");
    let alpha = fit["parameters"]["alpha"]["value"].as_f64().unwrap();
    println!("alpha error {:e}", alpha - 0.3);
    // Measured: exact (the data are noiseless and E is fixed, a straight line
    // in log-log); 1e-9 allows for rounding only.
    assert!((alpha - 0.3).abs() < 1e-9, "alpha {alpha}");
    let df = table::read_file(&out.join("predictions.parquet")).unwrap();
    let params = df.column("params").unwrap().str().unwrap();
    assert_eq!(params.get(0), Some("{\"width\":8}"));
}

/// A dataset.csv-style input: runs are the rows of `source.parquet`, mapped by
/// column name.
#[test]
fn stage_reads_a_table_stage_source_parquet() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("ds");
    std::fs::create_dir_all(&src).unwrap();
    let tokens: Vec<f64> = (0..10).map(|i| 1e6 * 2f64.powi(i)).collect();
    let loss: Vec<f64> = tokens.iter().map(|d| 1.2 + 80.0 / d.powf(0.25)).collect();
    let mut df = DataFrame::new(
        10,
        vec![
            Column::new("Tokens".into(), tokens),
            Column::new("Eval Loss".into(), loss),
        ],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(src.join("source.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    let inputs = [InputRef {
        stage: "runs".into(),
        id: "runs".into(),
        kind: "dataset.csv".into(),
        params: toml::Table::new(),
        dir: src,
        fingerprint: "x".into(),
    }];
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    run_stage(
        "form = \"power_d\"\nd = \"Tokens\"\nloss = \"Eval Loss\"\nseed = 0",
        dir.path(),
        &inputs,
        1,
        &out,
    );
    let fit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("fit.json")).unwrap()).unwrap();
    let beta = fit["parameters"]["beta"]["value"].as_f64().unwrap();
    let e = fit["parameters"]["E"]["value"].as_f64().unwrap();
    println!("beta error {:e}, E error {:e}", beta - 0.25, e - 1.2);
    // Measured: errors below 1e-15 on noiseless data; 1e-9 allows for rounding.
    assert!(
        (beta - 0.25).abs() < 1e-9 && (e - 1.2).abs() < 1e-9,
        "{fit}"
    );
}

#[test]
fn bad_parameters_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = ["eval".to_string()];
    let err = |p: &str| {
        configure(p, dir.path(), &inputs)
            .err()
            .expect("should be rejected")
    };
    assert_eq!(
        err("seed = 0\nbootstraps = 3").key.as_deref(),
        Some("bootstraps")
    );
    assert_eq!(err("seed = 0\ne = \"maybe\"").key.as_deref(), Some("e"));
    assert_eq!(
        err("seed = 0\nform = \"power_n\"\ngrid = { beta = [1.0] }")
            .key
            .as_deref(),
        Some("grid.beta")
    );
    assert_eq!(
        err("seed = 0\nholdout = { top_n = 2, n_above = 1e9 }")
            .key
            .as_deref(),
        Some("holdout")
    );
    assert_eq!(
        err("seed = 0\nform = \"power_n\"\nbudgets = [1e21]")
            .key
            .as_deref(),
        Some("budgets")
    );
    assert_eq!(
        err("seed = 0\nisoflop = { width = 0.1, gap = 0.1 }")
            .key
            .as_deref(),
        Some("isoflop")
    );
    assert_eq!(
        err("seed = 0\nisoflop = { widht = 0.1 }").key.as_deref(),
        Some("isoflop.widht")
    );
    let missing = configure("seed = 0\ntable = \"nope.csv\"", dir.path(), &[])
        .err()
        .unwrap();
    assert_eq!(missing.key.as_deref(), Some("table"));
    assert!(missing.message.contains("nope.csv"));
    let none = configure("seed = 0", dir.path(), &[]).err().unwrap();
    assert!(none.message.contains("needs runs"), "{}", none.message);
}
