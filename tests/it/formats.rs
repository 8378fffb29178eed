//! Each file a stage writes has one owner module that writes and reads it; these
//! tests hold the owners to a round trip, and hold the outputs to not depending
//! on where the workspace is.

use scalepipe::fit::analysis::{Analysis, Hooks};
use scalepipe::fit::bootstrap::BootstrapSettings;
use scalepipe::fit::holdout::Holdout;
use scalepipe::fit::table::{Run, Selection};
use scalepipe::fit::{fit_json, predictions};
use scalepipe::fit::{Form, FormKind, Irreducible, Observation, Variable};

use crate::harness::Workspace;

/// A noiseless Chinchilla-form study on a 5 x 5 grid of N and D.
fn study() -> (Vec<String>, Vec<Observation>) {
    let (a, b, e, alpha, beta) = (400.0, 800.0, 1.7, 0.34, 0.3);
    let mut ids = Vec::new();
    let mut runs = Vec::new();
    for i in 0..5 {
        for j in 0..5 {
            let n = 1e7 * 10f64.powf(i as f64 / 2.0);
            let d = 1e9 * 10f64.powf(j as f64 / 2.0);
            ids.push(format!("run{i}{j}"));
            runs.push(Observation {
                n,
                d,
                c: 6.0 * n * d,
                loss: e + a / n.powf(alpha) + b / d.powf(beta),
            });
        }
    }
    (ids, runs)
}

#[test]
fn fit_json_reads_back_what_the_fit_wrote() {
    let (ids, runs) = study();
    let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
    let analysis = Analysis {
        budgets: vec![1e21],
        bootstrap: Some(BootstrapSettings {
            replicates: 8,
            random_starts: 2,
            seed: 1,
        }),
        holdout: Some(Holdout::TopN {
            k: 3,
            by: Variable::N,
        }),
        ..Analysis::new(form)
    };
    let report = analysis.run(&ids, &runs, &Hooks::NONE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fit_json::write(dir.path(), &report).unwrap();
    let back = fit_json::read(dir.path()).unwrap();

    // Everything written comes back; only the in-memory optima are not written.
    let mut expected = report.clone();
    expected.theta.clear();
    expected.bootstrap_thetas.clear();
    assert_eq!(back, expected);
    // ... and the optimum is rebuilt exactly from the written log parameters.
    let (back_form, theta) = back.fitted().expect("every parameter is present");
    assert_eq!(back_form, form);
    assert_eq!(theta, report.theta);
    assert!(back.holdout.as_ref().unwrap().errors.runs.len() == 3);

    // The order of the parameters is the form's reporting order, kept on disk.
    let names: Vec<&str> = back.parameters.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["A", "B", "E", "alpha", "beta"]);

    // An older, smaller fit.json (no bootstrap, no derived, no holdout) loads.
    std::fs::write(
        dir.path().join("fit.json"),
        r#"{"form": "power_n", "formula": "L = E + A/N^alpha", "e": "free",
            "parameters": {"A": {"value": 2.0}}, "log_parameters": {"a": 0.5},
            "n_points": 4, "optimizer": {"starts": 3, "converged": true}}"#,
    )
    .unwrap();
    let old = fit_json::read(dir.path()).unwrap();
    assert_eq!(old.n_points, 4);
    assert!(
        old.fitted().is_none(),
        "a missing parameter is reported as such"
    );

    // Garbage names the file.
    std::fs::write(dir.path().join("fit.json"), "{").unwrap();
    let err = fit_json::read(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("fit.json") && err.contains("not a valid"),
        "{err}"
    );
}

#[test]
fn predictions_read_back_what_the_fit_wrote() {
    let (ids, obs) = study();
    // The study is an N x D grid: chinchilla (power_n refuses runs pooled
    // over several D).
    let form = Form::new(FormKind::Chinchilla, Irreducible::Fixed(1.7));
    let runs: Vec<Run> = ids
        .iter()
        .zip(&obs)
        .map(|(id, o)| Run {
            id: id.clone(),
            n: Some(o.n),
            d: Some(o.d),
            c: Some(o.c),
            loss: Some(o.loss),
            status: Some("ok".into()),
            params: None,
        })
        .collect();
    let selection = Selection {
        included: (1..runs.len()).collect(),
        excluded: vec![(0, "for the test".into())],
    };
    let included: Vec<Observation> = selection.included.iter().map(|&i| obs[i]).collect();
    let included_ids: Vec<String> = selection.included.iter().map(|&i| ids[i].clone()).collect();
    let analysis = Analysis::new(form);
    let report = analysis
        .run(&included_ids, &included, &Hooks::NONE)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    predictions::write(dir.path(), &form, &report, &runs, &selection).unwrap();
    let rows = predictions::read(dir.path()).unwrap();
    assert_eq!(rows.len(), runs.len());
    assert_eq!(rows[0].id, "run00");
    assert_eq!(rows[0].role, "excluded");
    assert!(rows[1..].iter().all(|r| r.role == "fit"));
    for (row, run) in rows.iter().zip(&runs) {
        assert_eq!(row.n, run.n);
        assert_eq!(row.loss, run.loss);
        let expected = form.predict(
            &report.theta,
            run.n.unwrap(),
            run.d.unwrap(),
            run.c.unwrap(),
        );
        assert_eq!(row.predicted, Some(expected));
    }
}

const EVAL_PIPELINE: &str = r#"
[pipeline]
name = "formats"
seed = 3

[stages.data]
kind = "dataset.markov_text"
vocab = 8
[stages.data.sweep]
tokens = [3000, 4000]

[stages.train]
kind = "train"
inputs = ["data"]
model = "transformer"
n_layers = 1
n_heads = 2
context = 8
batch_size = 8
steps = 6
[stages.train.sweep]
d_model = [8, 16]

[stages.eval]
kind = "eval"
inputs = ["train"]
"#;

/// eval lists only `train`, yet receives the dataset that train read as an
/// input of its own: the dependency is in the DAG, matched per instance.
#[test]
fn eval_receives_its_train_runs_dataset_as_an_input() {
    let ws = Workspace::new();
    let file = ws.write("p.toml", EVAL_PIPELINE);
    let plan = scalepipe::Workspace::new(ws.path()).load(&file).unwrap();
    let evals: Vec<_> = plan
        .instances
        .iter()
        .filter(|i| &*i.stage_name == "eval")
        .collect();
    assert_eq!(evals.len(), 4);
    for eval in evals {
        let inputs: Vec<&str> = eval
            .inputs
            .iter()
            .map(|&i| plan.instances[i].id.as_str())
            .collect();
        assert_eq!(inputs.len(), 2, "{}: {inputs:?}", eval.id);
        let train = &plan.instances[eval.inputs[0]];
        let data = &plan.instances[eval.inputs[1]];
        assert_eq!(&*train.stage_name, "train");
        assert_eq!(&*data.stage_name, "data");
        // The dataset is the one this train instance read.
        assert_eq!(train.inputs, vec![eval.inputs[1]], "{}", eval.id);
    }
    let dot = ws.run(&["dag", "p.toml"]).success().stdout;
    assert!(dot.contains("data") && dot.contains("eval"), "{dot}");
}

/// Without the store lookup eval used to need, the same pipeline in two
/// workspaces gives the same bytes: `dataset.json` names its dataset by
/// fingerprint, not by a path under one workspace.
#[test]
fn outputs_do_not_depend_on_the_workspace_path() {
    let a = Workspace::new();
    let b = Workspace::new();
    for ws in [&a, &b] {
        ws.write("p.toml", EVAL_PIPELINE);
        ws.run(&["run", "p.toml"]).success();
    }
    let id = "train[d_model=8,tokens=3000]";
    let record = a.read(&format!("results/formats/{id}/dataset.json"));
    assert_eq!(
        record,
        b.read(&format!("results/formats/{id}/dataset.json"))
    );
    assert!(
        !record.contains(&a.path().display().to_string()),
        "dataset.json holds a workspace path: {record}"
    );
    let without_timing = |text: String| {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let m = v.as_object_mut().unwrap();
        for key in ["wall_time_s", "throughput", "gflops_per_s"] {
            assert!(m.remove(key).is_some(), "{key} is recorded");
        }
        v
    };
    let eval = "results/formats/eval[d_model=8,tokens=3000]/metrics.json";
    assert_eq!(without_timing(a.read(eval)), without_timing(b.read(eval)));
}
