//! Curve-based fits on fewer runs against final-loss fits on more runs (issue
//! 15), on a teacher task with known E: `pipelines/curve_fits.toml` through
//! the engine with 32 seeds instead of its 40, every setting fitted once per
//! seed and compared with the grid seed by seed (the settings are described
//! in the pipeline file's header, with the 40-seed measurement).
//!
//! How the assertion was chosen, from the 40-seed measurement: per seed,
//! the curve fits' |E - E*| minus the grid's had mean -0.025 and standard
//! deviation 0.035. With 32 seeds the mean's standard error is 0.0062, so the
//! threshold -0.0125, half-way between that effect and none, is passed by a
//! setting with the measured effect and failed by one without an effect, each
//! with probability about 0.98. On prediction of the larger runs the measured
//! advantage (-0.027, sd 0.08) is too small for 32 seeds to show, so the test
//! asks only that the curve fits are not worse on average (probability about
//! 0.97 with the measured effect). The seeds are the pipeline's first 32, not
//! chosen; they are the measurement's, so the outcome was known when the
//! thresholds were set (E: -0.022 and -0.024; prediction: -0.026 and -0.031).
//!
//! Contrasts, to show the criteria discriminate: `constant_late` (measured
//! -0.005 +- 0.009 on E) must fail the E criterion and `wsd` (measured
//! +0.012 +- 0.011 on prediction) the prediction one. Each would pass about
//! one time in five on 32 fresh seeds: they show the criteria can fail, not
//! more. (`cosine_late`, measured -0.014 +- 0.007, is not a contrast: its
//! effect is near the threshold.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::harness::Workspace;

const PIPELINE: &str = include_str!("../../pipelines/curve_fits.toml");
/// The teacher's noise is 0.3: E = 0.09.
const TRUE_E: f64 = 0.09;

/// A fit stage and the train stages whose runs it was fitted on.
struct Setting {
    name: &'static str,
    fit: &'static str,
    trains: &'static [&'static str],
}

const SETTINGS: [Setting; 6] = [
    Setting {
        name: "grid",
        fit: "fit_grid",
        trains: &["train"],
    },
    Setting {
        name: "cosine_curve",
        fit: "fit_cosine_curve",
        trains: &["train_long"],
    },
    Setting {
        name: "constant_curve",
        fit: "fit_constant_curve",
        trains: &["train_constant"],
    },
    Setting {
        name: "wsd",
        fit: "fit_wsd",
        trains: &["train_wsd"],
    },
    Setting {
        name: "cosine_late",
        fit: "fit_cosine_curve_late",
        trains: &["train_long"],
    },
    Setting {
        name: "constant_late",
        fit: "fit_constant_curve_late",
        trains: &["train_constant"],
    },
];

/// One setting's fits, indexed by seed (the pipeline's seeds are 0..K).
#[derive(Debug, Default)]
struct Outcome {
    /// |E - 0.09|.
    e_err: Vec<f64>,
    /// Mean |predicted / observed - 1| over the target runs.
    pred_err: Vec<f64>,
    /// Training FLOPs executed for the fit's runs.
    flops: Vec<f64>,
}

/// A published instance: its stage, sweep point and directory.
struct Instance {
    stage: String,
    point: BTreeMap<String, String>,
    dir: PathBuf,
}

fn instances(results: &Path) -> Vec<Instance> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(results).expect("results directory") {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let (stage, rest) = name.split_once('[').unwrap_or((name.as_str(), ""));
        let point = rest
            .trim_end_matches(']')
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push(Instance {
            stage: stage.to_string(),
            point,
            dir: entry.path(),
        });
    }
    out
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Runs the small study with `seeds` seeds and gathers every setting's errors.
fn measure(seeds: usize) -> BTreeMap<&'static str, Outcome> {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &PIPELINE.replace("seeds = 40", &format!("seeds = {seeds}")),
    );
    ws.run(&["run", "p.toml", "--json"]).success();
    let found = instances(&ws.join("results/curve_fits"));

    // What each fit must predict: the target runs' mean loss per (N, D).
    let mut targets: BTreeMap<(u64, u64), Vec<f64>> = BTreeMap::new();
    for i in found.iter().filter(|i| i.stage == "eval_target") {
        let m = json(&i.dir.join("metrics.json"));
        let key = (m["n_params"].as_u64().unwrap(), m["d"].as_u64().unwrap());
        targets
            .entry(key)
            .or_default()
            .push(m["loss"].as_f64().unwrap());
    }
    assert_eq!(targets.len(), 2, "two target runs");
    let targets: Vec<(f64, f64, f64)> = targets
        .into_iter()
        .map(|((n, d), l)| (n as f64, d as f64, l.iter().sum::<f64>() / l.len() as f64))
        .collect();

    let mut out = BTreeMap::new();
    for setting in &SETTINGS {
        let mut o = Outcome::default();
        for seed in 0..seeds {
            let seed = seed.to_string();
            let fit = found
                .iter()
                .find(|i| i.stage == setting.fit && i.point.get("seed") == Some(&seed))
                .unwrap_or_else(|| panic!("{}[seed={seed}]", setting.fit));
            let p = &json(&fit.dir.join("fit.json"))["parameters"];
            let v = |k: &str| p[k]["value"].as_f64().unwrap();
            let (e, a, b, alpha, beta) = (v("E"), v("A"), v("B"), v("alpha"), v("beta"));
            o.e_err.push((e - TRUE_E).abs());
            let pred = targets
                .iter()
                .map(|(n, d, obs)| ((e + a / n.powf(alpha) + b / d.powf(beta)) / obs - 1.0).abs())
                .sum::<f64>()
                / targets.len() as f64;
            o.pred_err.push(pred);
            let flops = found
                .iter()
                .filter(|i| {
                    setting.trains.contains(&i.stage.as_str()) && i.point.get("seed") == Some(&seed)
                })
                .map(|i| {
                    json(&i.dir.join("metrics.json"))["flops_executed"]
                        .as_f64()
                        .unwrap()
                })
                .sum();
            o.flops.push(flops);
        }
        out.insert(setting.name, o);
    }
    out
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Standard error of the mean.
fn se(xs: &[f64]) -> f64 {
    let m = mean(xs);
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    (var / xs.len() as f64).sqrt()
}

/// `a - b`, seed by seed.
fn paired(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn print(outcomes: &BTreeMap<&'static str, Outcome>) {
    let grid = &outcomes["grid"];
    for s in &SETTINGS {
        let o = &outcomes[s.name];
        let de = paired(&o.e_err, &grid.e_err);
        let dp = paired(&o.pred_err, &grid.pred_err);
        println!(
            "{:15} FLOPs {:.3e} ({:.0}%)  |E-E*| {:.4} +- {:.4}  target err {:.4} +- {:.4}  vs grid: dE {:+.4} +- {:.4} ({} closer)  dpred {:+.4} +- {:.4} ({} closer)",
            s.name,
            mean(&o.flops),
            100.0 * mean(&o.flops) / mean(&grid.flops),
            mean(&o.e_err),
            se(&o.e_err),
            mean(&o.pred_err),
            se(&o.pred_err),
            mean(&de),
            if de.len() > 1 { se(&de) } else { 0.0 },
            de.iter().filter(|x| **x < 0.0).count(),
            mean(&dp),
            if dp.len() > 1 { se(&dp) } else { 0.0 },
            dp.iter().filter(|x| **x < 0.0).count(),
        );
        println!("    E err per seed: {:.3?}", o.e_err);
        println!("    target err per seed: {:.3?}", o.pred_err);
    }
}

/// The threshold on the mean paired difference in |E - E*| (see the top).
const E_THRESHOLD: f64 = -0.0125;

#[test]
fn curve_fits_on_fewer_runs_recover_e_closer_than_final_fits_on_more_runs() {
    let outcomes = measure(32);
    print(&outcomes);
    let grid = &outcomes["grid"];
    for name in ["cosine_curve", "constant_curve"] {
        let o = &outcomes[name];
        let share = mean(&o.flops) / mean(&grid.flops);
        assert!(
            (0.5..0.55).contains(&share),
            "{name}: 5 runs of 8k against 20 runs of 1k-8k: {share}"
        );
        let de = mean(&paired(&o.e_err, &grid.e_err));
        assert!(
            de < E_THRESHOLD,
            "{name}: mean |E - E*| {:.4} against the grid's {:.4} (difference {de:.4})",
            mean(&o.e_err),
            mean(&grid.e_err)
        );
        let dp = mean(&paired(&o.pred_err, &grid.pred_err));
        assert!(
            dp < 0.0,
            "{name}: target error {:.4} against the grid's {:.4}",
            mean(&o.pred_err),
            mean(&grid.pred_err)
        );
    }
    let late = mean(&paired(&outcomes["constant_late"].e_err, &grid.e_err));
    assert!(
        late >= E_THRESHOLD,
        "constant_late: dropping half of each curve was measured to lose the advantage, got {late:.4}"
    );
    let wsd = mean(&paired(&outcomes["wsd"].pred_err, &grid.pred_err));
    assert!(
        wsd >= 0.0,
        "wsd: its fits were measured not to predict the larger runs better, got {wsd:.4}"
    );
}

#[test]
#[ignore = "measurement: cargo test --release --test it curve_compare::across_seeds -- --ignored --nocapture"]
fn across_seeds() {
    let seeds = std::env::var("CURVE_COMPARE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    print(&measure(seeds));
}
