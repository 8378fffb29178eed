//! Seed replicates: `seeds = K` expands a stage into K instances with seeds
//! derived from the stage's seed; fits group them (`replicates`), the
//! bootstrap resamples seeds, and prediction intervals for new runs cover
//! fresh draws at the rate they claim.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use scalepipe::fit::analysis::{Analysis, Hooks};
use scalepipe::fit::bootstrap::BootstrapSettings;
use scalepipe::fit::holdout::Holdout;
use scalepipe::fit::replicates::ReplicateMode;
use scalepipe::fit::{Form, FormKind, Grid, Irreducible, Observation, Variable};

use super::harness::{ids, Workspace};

/// Three widths of tiny MLPs on one data size; `train_extra` adds `seeds`.
fn pipeline(train_extra: &str, fit_extra: &str) -> String {
    format!(
        r#"
[pipeline]
name = "seeds"
seed = 1

[stages.data]
kind = "dataset.teacher"
noise_std = 0.3
input_dim = 4
teacher_width = 8
n = 800
split = {{ val = 300, test = 300 }}

[stages.train]
kind = "train"
inputs = ["data"]
model = "mlp"
depth = 1
epochs = 1
batch_size = 16
lr = 1e-2
{train_extra}
[stages.train.sweep]
width = [2, 4, 8, 16]

[stages.eval]
kind = "eval"
inputs = ["train"]

[stages.fit]
kind = "fit"
inputs = ["eval"]
form = "power_n"
e = "irreducible"
bootstrap = 20
holdout = {{ top_n = 1 }}
grid = {{ a = [0.0, 2.0], alpha = [0.3, 1.0] }}
{fit_extra}

[stages.report]
kind = "report"
inputs = ["fit", "eval", "train"]
title = "seeds"
"#
    )
}

#[test]
fn seeds_expand_into_replicates_that_reuse_the_unreplicated_run() {
    let ws = Workspace::new();
    ws.write("p.toml", &pipeline("seed = 5", ""));
    ws.run(&["run", "p.toml", "--json"]).success();

    // seeds = 3 with the stage's seed 5: replicates 5, 6, 7; replicate 5 is
    // the run just made (same parameters, same fingerprint): cached.
    ws.write("p.toml", &pipeline("seed = 5\nseeds = 3", ""));
    let out = ws.run(&["run", "p.toml", "--json"]).success().json();
    let cached = ids(&out, "cached");
    let executed = ids(&out, "executed");
    for width in [2, 4, 8, 16] {
        assert!(
            cached.contains(&format!("train[seed=5,width={width}]")),
            "{cached:?}"
        );
        for seed in [6, 7] {
            assert!(
                executed.contains(&format!("train[seed={seed},width={width}]")),
                "{executed:?}"
            );
            assert!(
                executed.contains(&format!("eval[seed={seed},width={width}]")),
                "{executed:?}"
            );
        }
    }
    let m: serde_json::Value =
        serde_json::from_str(&ws.read("results/seeds/train[seed=7,width=2]/metrics.json")).unwrap();
    assert_eq!(m["params"]["seed"], 7);

    // The fit groups the 12 runs into 4 (N, D) groups of 3 seeds.
    let fit: serde_json::Value =
        serde_json::from_str(&ws.read("results/seeds/fit/fit.json")).unwrap();
    assert_eq!(fit["replicates"]["mode"], "mean");
    assert_eq!(fit["replicates"]["groups"], 4);
    assert_eq!(fit["replicates"]["max_seeds"], 3);
    assert_eq!(fit["replicates"]["spread"].as_array().unwrap().len(), 4);
    assert_eq!(fit["n_points"], 4, "one mean per group");
    let intervals = fit["prediction_intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 1, "the held-out group: {fit}");
    let p = &intervals[0];
    let (lo, hi) = (p["lo"].as_f64().unwrap(), p["hi"].as_f64().unwrap());
    assert!(lo < p["predicted"].as_f64().unwrap() && p["predicted"].as_f64().unwrap() < hi);
    assert!(
        p["what"].as_str().unwrap().contains("mean of 3 seeds"),
        "{p}"
    );

    let summary = ws.read("results/seeds/fit/summary.md");
    assert!(
        summary.contains("Seed replicates: 4 groups of up to 3 seeds (mean)"),
        "{summary}"
    );
    assert!(summary.contains("held-out runs."), "{summary}");
    let md = ws.read("results/seeds/report/report.md");
    assert!(
        md.contains("### Seed spread") && md.contains("### Prediction intervals"),
        "{md}"
    );

    // replicates = "all": every run is a point.
    ws.write(
        "p.toml",
        &pipeline("seed = 5\nseeds = 3", "replicates = \"all\""),
    );
    ws.run(&["run", "p.toml"]).success();
    let fit: serde_json::Value =
        serde_json::from_str(&ws.read("results/seeds/fit/fit.json")).unwrap();
    assert_eq!(fit["n_points"], 12);
    assert_eq!(fit["replicates"]["mode"], "all");
}

#[test]
fn seeds_are_checked_where_they_are_written() {
    let cases = [
        ("seeds = 0", "`seeds` must be an integer >= 1"),
        (
            "seeds = 2\nwidth = 4\n[stages.train.sweep]\nseed = [1, 2]",
            "`seed` is swept and `seeds` is set",
        ),
    ];
    for (extra, message) in cases {
        let ws = Workspace::new();
        let text = pipeline(extra, "");
        // The second case brings its own sweep table: drop the width sweep.
        let text = if extra.contains("sweep") {
            text.replace("[stages.train.sweep]\nwidth = [2, 4, 8, 16]\n", "")
        } else {
            text
        };
        ws.write("p.toml", &text);
        let out = ws.run(&["plan", "p.toml"]);
        assert_eq!(out.code, 2, "{extra}: {out:?}");
        assert!(out.stderr.contains(message), "{extra}: {}", out.stderr);
        assert!(out.stderr.contains("p.toml:"), "located: {}", out.stderr);
    }
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &pipeline("", "").replace("kind = \"eval\"", "kind = \"eval\"\nseeds = 2"),
    );
    let out = ws.run(&["plan", "p.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("kind `eval` takes no seed"),
        "{}",
        out.stderr
    );
}

/// A Chinchilla law with known parameters, K seeds per (N, D), each seed's
/// loss the law times exp(noise) with a known standard deviation.
fn replicated(seed: u64, seeds: usize, sigma: f64) -> Vec<Observation> {
    let [big_a, big_b, e, alpha, beta] = [406.4, 410.7, 1.69, 0.34, 0.28];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sigma).unwrap();
    let mut runs = Vec::new();
    for i in 0..6 {
        for j in 0..5 {
            let n = 1e7 * 10f64.powf(2.5 * i as f64 / 5.0);
            let d = 1e9 * 10f64.powf(2.0 * j as f64 / 4.0);
            let clean = e + big_a / n.powf(alpha) + big_b / d.powf(beta);
            for _ in 0..seeds {
                runs.push(Observation {
                    n,
                    d,
                    c: 6.0 * n * d,
                    loss: clean * noise.sample(&mut rng).exp(),
                });
            }
        }
    }
    runs
}

/// In 10 seeded experiments (6 N x 5 D x 3 seeds, seed noise 2% on the loss),
/// the runs at the largest N are held out and predicted by a fit on the others;
/// the 95% prediction interval of each must hold a held-out run's loss about 95%
/// of the time. Measured over the 150 held-out runs: at least 85% (a correct
/// 95% interval falls below that with negligible probability even with the
/// runs of one experiment correlated) and not all of them by a wide margin
/// (an interval too wide to mean anything would cover everything).
#[test]
fn prediction_intervals_cover_new_seeds() {
    let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
    let grid = {
        let mut axes = std::collections::BTreeMap::new();
        axes.insert("a".to_string(), vec![5.0, 10.0]);
        axes.insert("b".to_string(), vec![5.0, 10.0]);
        axes.insert("e".to_string(), vec![0.0, 1.0]);
        axes.insert("alpha".to_string(), vec![0.2, 0.5]);
        axes.insert("beta".to_string(), vec![0.2, 0.5]);
        Grid::with_overrides(&form, &axes).unwrap()
    };
    let sigma = 0.02;
    let (mut covered, mut total, mut width) = (0usize, 0usize, 0.0f64);
    for rep in 0..10u64 {
        let runs = replicated(200 + rep, 3, sigma);
        let ids: Vec<String> = (0..runs.len()).map(|i| format!("run{i}")).collect();
        let groups: Vec<Vec<usize>> = (0..runs.len() / 3)
            .map(|g| vec![3 * g, 3 * g + 1, 3 * g + 2])
            .collect();
        let analysis = Analysis {
            grid: grid.clone(),
            bootstrap: Some(BootstrapSettings {
                replicates: 100,
                random_starts: 1,
                seed: rep,
            }),
            holdout: Some(Holdout::Above {
                variable: Variable::N,
                threshold: 2e9,
            }),
            replicates: ReplicateMode::All,
            ..Analysis::new(form)
        };
        let report = analysis
            .run_grouped(&ids, &runs, &groups, &Hooks::NONE)
            .unwrap();
        let r = report.replicates.as_ref().unwrap();
        assert!(
            (r.log_seed_std / sigma - 1.0).abs() < 0.25,
            "seed noise {} vs {sigma}",
            r.log_seed_std
        );
        for p in &report.prediction_intervals {
            let o = p.observed.expect("held-out runs have an observed loss");
            total += 1;
            covered += (p.lo <= o && o <= p.hi) as usize;
            width += (p.hi / p.lo).ln();
        }
    }
    let rate = covered as f64 / total as f64;
    let mean_width = width / total as f64;
    println!("coverage {covered}/{total} = {rate:.3}; mean width {mean_width:.4} in ln loss (noise alone: {:.4})", 2.0 * 1.96 * sigma);
    assert_eq!(
        total, 150,
        "5 D x 3 seeds held out in each of 10 experiments"
    );
    assert!(
        rate >= 0.85,
        "prediction intervals covered {covered} of {total}"
    );
    assert!(
        mean_width < 4.0 * 2.0 * 1.96 * sigma,
        "intervals {mean_width} wide in ln loss, noise alone {}",
        2.0 * 1.96 * sigma
    );
}
