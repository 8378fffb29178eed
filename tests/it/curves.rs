//! Fits on loss curves (`points = "curve"`): the held-out evaluations a train
//! stage makes with `eval_every` become fit points, the early part is dropped
//! and listed with its reason, and the report says which points entered.

use super::harness::Workspace;

/// Three widths of tiny MLPs on one data size, evaluated every 25 steps.
fn pipeline(fit_extra: &str) -> String {
    format!(
        r#"
[pipeline]
name = "curves"
seed = 1

[stages.data]
kind = "dataset.teacher"
noise_std = 0.3
input_dim = 4
teacher_width = 8
n = 4000
split = {{ val = 300, test = 300 }}

[stages.train]
kind = "train"
inputs = ["data"]
model = "mlp"
depth = 1
epochs = 1
lr = 1e-2
eval_every = 25
[stages.train.sweep]
width = [2, 4, 8]

[stages.fit]
kind = "fit"
inputs = ["train"]
form = "chinchilla"
e = "irreducible"
points = "curve"
grid = {{ a = [0.0, 2.0], b = [0.0, 4.0], alpha = [0.3, 1.0], beta = [0.3, 1.0] }}
{fit_extra}

[stages.report]
kind = "report"
inputs = ["fit", "train"]
title = "curves"
"#
    )
}

#[test]
fn curve_points_enter_the_fit_after_the_early_part() {
    let ws = Workspace::new();
    ws.write("p.toml", &pipeline("skip_fraction = 0.3"));
    ws.run(&["run", "p.toml", "--json"]).success();

    // 4000 examples / batch 32 = 125 steps: evaluations after steps 25, 50,
    // 75, 100 and 125, at D = 800 ... 4000; D < 0.3 x 4000 = 1200 is early.
    let curve = ws.read("results/curves/train[width=2]/loss_curve.csv");
    let header = curve.lines().next().unwrap();
    assert_eq!(header, "step,loss,lr,d,val_loss");
    let evaluated: Vec<&str> = curve
        .lines()
        .skip(1)
        .filter(|l| !l.ends_with(",,"))
        .collect();
    assert_eq!(evaluated.len(), 5, "{curve}");
    assert!(evaluated[0].starts_with("24,") && evaluated[0].contains(",800,"));

    let fit: serde_json::Value =
        serde_json::from_str(&ws.read("results/curves/fit/fit.json")).unwrap();
    assert_eq!(
        fit["n_points"], 12,
        "3 runs x 4 points after the early part"
    );
    let excluded = fit["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), 3, "{excluded:?}");
    assert!(excluded.iter().all(|e| {
        e["id"].as_str().unwrap().ends_with("@d=800")
            && e["reason"].as_str().unwrap().contains("early curve point")
    }));

    let summary = ws.read("results/curves/fit/summary.md");
    assert!(
        summary.contains("Points: 12 held-out points of 3 runs"),
        "{summary}"
    );
    let md = ws.read("results/curves/report/report.md");
    assert!(md.contains("12 curve points of 3 runs"), "{md}");
    let svg = ws.read("results/curves/report/figures/curve_points_fit.svg");
    assert!(svg.contains("N = "), "the figure has one series per N");
}

#[test]
fn curve_settings_are_checked() {
    let ws = Workspace::new();
    ws.write("p.toml", &pipeline("skip_fraction = 1.5"));
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("skip_fraction") && out.stderr.contains("[0, 1)"),
        "{out:?}"
    );

    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &pipeline("").replace("points = \"curve\"", "min_d = 100"),
    );
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("needs points = \"curve\""), "{out:?}");

    // Curves without held-out points: a clear error naming the fix.
    let ws = Workspace::new();
    ws.write("p.toml", &pipeline("").replace("eval_every = 25\n", ""));
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("set `eval_every`"), "{out:?}");
}
