//! Fit diagnostics: through the fit library (degenerate, unidentifiable,
//! extrapolated and clean fits get exactly the findings they should) and
//! through the engine (the findings reach `fit.json`, `summary.md` and the
//! stage log; a single-variable form refuses runs pooled over several groups).

use scalepipe::fit::analysis::{Analysis, AnalysisError, Hooks};
use scalepipe::fit::bootstrap::BootstrapSettings;
use scalepipe::fit::diagnostics::{Code, Severity};
use scalepipe::fit::{FitReport, Form, FormKind, Grid, Irreducible, Observation};

use scalepipe::report::law::{band, Law};

use super::harness::Workspace;

fn fit(a: &Analysis, runs: &[Observation]) -> Result<FitReport, AnalysisError> {
    let ids: Vec<String> = (0..runs.len()).map(|i| format!("run{i}")).collect();
    a.run(&ids, runs, &Hooks::NONE)
}

fn codes(r: &FitReport) -> Vec<Code> {
    r.diagnostics.iter().map(|f| f.code).collect()
}

/// `L = E + A/N^alpha + B/D^beta` on `ns` x `ds`, noiseless.
fn chinchilla_runs(ns: &[f64], ds: &[f64]) -> Vec<Observation> {
    let mut runs = Vec::new();
    for &n in ns {
        for &d in ds {
            runs.push(Observation {
                n,
                d,
                c: 6.0 * n * d,
                loss: 1.69 + 406.4 / n.powf(0.34) + 410.7 / d.powf(0.28),
            });
        }
    }
    runs
}

/// Decades apart, `k` values from `lo`.
fn decades(lo: f64, k: usize, step: f64) -> Vec<f64> {
    (0..k).map(|i| lo * 10f64.powf(step * i as f64)).collect()
}

/// Separable data: the loss collapses toward zero as N grows (each doubling
/// of N divides it by far more than any power law would), as a classifier's
/// does once it separates the training data. The fit can only follow by
/// pushing E to its bound and the exponent far past 2.
#[test]
fn separable_data_get_the_bound_and_step_findings() {
    let runs: Vec<Observation> = [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0]
        .iter()
        .map(|&n: &f64| Observation {
            n,
            d: 1000.0,
            c: 6000.0 * n,
            loss: (-n / 60.0).exp(),
        })
        .collect();
    let report = fit(
        &Analysis::new(Form::new(FormKind::PowerN, Irreducible::Free)),
        &runs,
    )
    .unwrap();
    let e = report.parameters.get("E").unwrap().value;
    let alpha = report.parameters.get("alpha").unwrap().value;
    println!("E = {e:e}, alpha = {alpha}, findings {:?}", codes(&report));
    let at_zero = report
        .diagnostics
        .iter()
        .find(|f| f.code == Code::EAtZero)
        .unwrap_or_else(|| {
            panic!(
                "no e_at_zero finding for E = {e:e}: {:?}",
                report.diagnostics
            )
        });
    assert_eq!(at_zero.severity, Severity::Error);
    assert_eq!(at_zero.parameters, ["E"]);
    let step = report
        .diagnostics
        .iter()
        .find(|f| f.code == Code::ExponentTooLarge)
        .unwrap_or_else(|| panic!("no exponent finding for alpha = {alpha}"));
    assert_eq!(step.parameters[0], "alpha");
    assert!(step.message.contains("step"), "{}", step.message);
    assert!(!step.fix.is_empty());
}

/// Two data sizes cannot identify B and beta next to a free E: the finding
/// names both, is an error, and suggests more data sizes.
#[test]
fn two_data_sizes_leave_b_and_beta_unidentifiable() {
    let runs = chinchilla_runs(&decades(1e6, 6, 0.5), &[1e9, 4e9]);
    let report = fit(
        &Analysis::new(Form::new(FormKind::Chinchilla, Irreducible::Free)),
        &runs,
    )
    .unwrap();
    let few: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|f| f.code == Code::TooFewValues)
        .collect();
    assert_eq!(few.len(), 1, "{:?}", report.diagnostics);
    assert_eq!(few[0].parameters, ["B", "beta"]);
    assert_eq!(few[0].severity, Severity::Error);
    assert!(
        few[0].message.contains("2 distinct values of D"),
        "{}",
        few[0].message
    );
    assert!(
        few[0].fix.contains("3 or more values of D"),
        "{}",
        few[0].fix
    );
}

/// A budget a thousand times the largest run's compute: the budget records
/// its distance (3 decades) and a warning says so; a budget inside the runs
/// records a negative distance and no warning.
#[test]
fn a_budget_far_beyond_the_runs_is_flagged_with_its_distance() {
    let runs = chinchilla_runs(&decades(1e6, 4, 1.0), &decades(1e8, 4, 1.0));
    let largest = runs.iter().map(|r| r.c).fold(0.0, f64::max);
    let mut a = Analysis::new(Form::new(FormKind::Chinchilla, Irreducible::Free));
    a.budgets = vec![largest / 10.0, largest * 1000.0];
    let report = fit(&a, &runs).unwrap();
    let distances: Vec<f64> = report
        .derived
        .budgets
        .iter()
        .map(|b| b.decades_beyond_runs.unwrap())
        .collect();
    assert!((distances[0] + 1.0).abs() < 1e-9, "{distances:?}");
    assert!((distances[1] - 3.0).abs() < 1e-9, "{distances:?}");
    let far: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|f| f.code == Code::Extrapolation)
        .collect();
    assert_eq!(far.len(), 1, "{:?}", report.diagnostics);
    assert_eq!(far[0].severity, Severity::Warning);
    assert!(
        far[0].message.contains("3 decades beyond the largest run"),
        "{}",
        far[0].message
    );
    let summary = scalepipe::fit::summary::summary(&report);
    assert!(summary.starts_with("Diagnostics (1):"), "{summary}");
    assert!(
        summary.contains("(3 decades beyond the largest run)"),
        "{summary}"
    );
}

/// A law sampled well (8 x 8 sizes over three decades each, 0.2% noise) with
/// bootstrap intervals and a budget inside the runs: nothing to report.
#[test]
fn a_clean_synthetic_fit_has_no_findings() {
    let mut runs = chinchilla_runs(&decades(1e7, 8, 3.0 / 7.0), &decades(1e9, 8, 3.0 / 7.0));
    for (i, r) in runs.iter_mut().enumerate() {
        // Deterministic +-0.2% wobble.
        r.loss *= 1.0 + 0.002 * if i % 2 == 0 { 1.0 } else { -1.0 };
    }
    let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
    let mut a = Analysis::new(form);
    let mut axes = std::collections::BTreeMap::new();
    axes.insert("a".to_string(), vec![5.0, 10.0]);
    axes.insert("b".to_string(), vec![5.0, 10.0]);
    axes.insert("e".to_string(), vec![0.0, 1.0]);
    axes.insert("alpha".to_string(), vec![0.2, 0.5]);
    axes.insert("beta".to_string(), vec![0.2, 0.5]);
    a.grid = Grid::with_overrides(&form, &axes).unwrap();
    a.bootstrap = Some(BootstrapSettings {
        replicates: 50,
        random_starts: 1,
        seed: 0,
    });
    a.budgets = vec![1e20];
    let report = fit(&a, &runs).unwrap();
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let summary = scalepipe::fit::summary::summary(&report);
    assert!(summary.starts_with("Diagnostics: none"), "{summary}");

    // The replicates kept for bands: every one (50 < 100), and the band they
    // give at the largest run brackets the fitted law there.
    assert_eq!(report.band_log_parameters.len(), 50);
    let replicates = Law::replicates(&report);
    assert_eq!(replicates.len(), 50);
    let fitted = Law::of(&report).unwrap();
    let (n, d) = (1e10, 1e12);
    let (lo, hi) = band(&replicates, &[n], |l, n| Some(l.predict(n, d))).unwrap();
    let at = fitted.predict(n, d);
    assert!(lo[0].1 < at && at < hi[0].1, "{lo:?} {at} {hi:?}");
    // Narrow on clean data: within 1% of the fitted loss.
    assert!(hi[0].1 / lo[0].1 < 1.01, "{lo:?} {hi:?}");
}

/// `power_n` over runs at two data sizes would draw one curve between two
/// series: the fit refuses and names the groups.
#[test]
fn power_n_refuses_runs_pooled_over_two_data_sizes() {
    let runs = chinchilla_runs(&decades(1e6, 5, 0.5), &[1e9, 2e9]);
    let err = fit(
        &Analysis::new(Form::new(FormKind::PowerN, Irreducible::Free)),
        &runs,
    )
    .unwrap_err();
    assert!(matches!(err, AnalysisError::PooledGroups { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("2 distinct values of D (1e9, 2e9)"), "{text}");
    assert!(text.contains("foreach"), "{text}");
    // One data size is one series: fitted as before.
    let one = chinchilla_runs(&decades(1e6, 5, 0.5), &[1e9]);
    fit(
        &Analysis::new(Form::new(FormKind::PowerN, Irreducible::Free)),
        &one,
    )
    .unwrap();
}

/// A `fit.json` written before diagnostics existed still loads, with none.
#[test]
fn fit_json_without_diagnostics_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fit.json"),
        r#"{"form": "power_n", "formula": "L = E + A/N^alpha", "e": "free",
            "parameters": {"A": {"value": 2.0}}, "log_parameters": {"a": 0.69},
            "n_points": 3, "optimizer": {}, "bootstrap": null, "holdout": null,
            "isoflop": null,
            "derived": {"budgets": [{"c": 1e10, "loss": {"value": 1.0}}]}}"#,
    )
    .unwrap();
    let report = scalepipe::fit::fit_json::read(dir.path()).unwrap();
    assert!(report.diagnostics.is_empty());
    assert_eq!(report.derived.budgets[0].decades_beyond_runs, None);
}

/// Runs on a 2 x 5 grid with a budget 100x past the largest, through the
/// binary: `fit.json` carries the findings, `summary.md` opens with them, and
/// the stage log lists them.
#[test]
fn engine_writes_findings_to_fit_json_summary_and_log() {
    let ws = Workspace::new();
    let mut csv = String::from("n,d,loss\n");
    for r in chinchilla_runs(&decades(1e6, 5, 0.5), &[1e9, 4e9]) {
        csv.push_str(&format!("{},{},{}\n", r.n, r.d, r.loss));
    }
    ws.write("runs.csv", &csv);
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "diag"
seed = 0

[stages.fit]
kind = "fit"
table = "runs.csv"
form = "chinchilla"
budgets = [6e19]
"#,
    );
    let out = ws.run(&["run", "p.toml"]).success();
    // The end of the run prints the law with its findings under it.
    let law = out
        .stderr
        .lines()
        .position(|l| l.starts_with("law fit: "))
        .unwrap_or_else(|| panic!("no law line in {}", out.stderr));
    let below: Vec<&str> = out.stderr.lines().skip(law + 1).collect();
    assert!(
        below
            .iter()
            .any(|l| l.starts_with("  error too_few_values: ")),
        "{}",
        out.stderr
    );
    let doc: serde_json::Value =
        serde_json::from_str(&ws.read("results/diag/fit/fit.json")).unwrap();
    let found: Vec<&str> = doc["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(found.contains(&"too_few_values"), "{found:?}");
    assert!(found.contains(&"extrapolation"), "{found:?}");
    let first = &doc["diagnostics"][0];
    for key in ["severity", "parameters", "message", "fix"] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
    // Largest run: 6 * 1e8 * 4e9 = 2.4e18; 6e19 is 1.4 decades beyond.
    let beyond = doc["derived"]["budgets"][0]["decades_beyond_runs"]
        .as_f64()
        .unwrap();
    assert!(
        (beyond - (6e19f64 / 2.4e18).log10()).abs() < 1e-9,
        "{beyond}"
    );
    let summary = ws.read("results/diag/fit/summary.md");
    assert!(summary.starts_with("Diagnostics ("), "{summary}");
    assert!(summary.contains("too_few_values"), "{summary}");
    assert!(
        summary.contains("1.4 decades beyond the largest run"),
        "{summary}"
    );
    // The store keeps the stage's log beside its committed outputs.
    let logs: Vec<String> = std::fs::read_dir(ws.join(".scalepipe/cache"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("log.txt")).ok())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("diagnostics: error too_few_values")),
        "{logs:?}"
    );
}

/// `power_n` on runs at two data sizes, through the binary: the stage fails
/// with the message naming the groups, and nothing is committed for it.
#[test]
fn engine_refuses_power_n_pooled_over_data_sizes() {
    let ws = Workspace::new();
    let mut csv = String::from("n,d,loss\n");
    for r in chinchilla_runs(&decades(1e6, 4, 0.5), &[1e9, 2e9]) {
        csv.push_str(&format!("{},{},{}\n", r.n, r.d, r.loss));
    }
    ws.write("runs.csv", &csv);
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"pooled\"\n[stages.fit]\nkind = \"fit\"\ntable = \"runs.csv\"\nform = \"power_n\"\n",
    );
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("2 distinct values of D (1e9, 2e9)"), "{text}");
    assert!(!ws.join("results/pooled/fit/fit.json").exists());
}
