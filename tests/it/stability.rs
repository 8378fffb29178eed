//! What the engine's performance work must not change: fingerprints (so existing
//! caches stay valid), the parameters and environment stages see, results views
//! kept current and pruned, and old state read back with the same reasons.

use crate::harness::{ids, Timeline, Workspace};

const GOLDEN: &str = r#"
[pipeline]
name = "golden"
seed = 7

[stages.gen]
kind = "command"
cmd = "echo {width} {lr} {name} > out.txt"
label = "quote \" and é ✓"
flag = true
deps = ["data.csv"]
[stages.gen.sweep]
width = [64, 128]
lr = [0.001, 1e-5]
name = ["a/b", "c"]

[stages.total]
kind = "command"
inputs = ["gen"]
cmd = "cat $SCALEPIPE_INPUTS > all.json"
"#;

/// Fingerprints computed by the engine before its performance work (commit
/// 6ebcfa0). A change here invalidates every user's cache: it must be a
/// deliberate engine-version bump, never a side effect.
#[test]
fn fingerprints_match_those_of_earlier_versions() {
    let ws = Workspace::new();
    ws.write("data.csv", "a,b\n1,2\n");
    ws.write("golden.toml", GOLDEN);
    let plan = ws.run(&["plan", "golden.toml", "--json"]).success().json();
    let got: Vec<(String, String)> = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (
            "gen[lr=0.001,name=a/b,width=64]",
            "43dc3d8d9738c5f84d2bcef53ebf4822",
        ),
        (
            "gen[lr=0.001,name=c,width=64]",
            "2ba27cfc59fc7239424fa054a73fd3a5",
        ),
        (
            "gen[lr=1e-5,name=a/b,width=64]",
            "a05db721b7963416ff9abd1a6db22306",
        ),
        (
            "gen[lr=1e-5,name=c,width=64]",
            "fd28beab30dee603501f3472c07f50bd",
        ),
        (
            "gen[lr=0.001,name=a/b,width=128]",
            "c46971a3f2f47818df3e93467b0057ce",
        ),
        (
            "gen[lr=0.001,name=c,width=128]",
            "3057f7d7bc25a1c61010a80f20e55beb",
        ),
        (
            "gen[lr=1e-5,name=a/b,width=128]",
            "0a1c6b1e5cdbcf38e0dd63339a863825",
        ),
        (
            "gen[lr=1e-5,name=c,width=128]",
            "68d060e2947fa294658c184b30369358",
        ),
        ("total", "13d1c5476d93219c3e60e2b9826a3030"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, expected);
}

/// Parameters are rebuilt from the pipeline when an instance runs: consumers
/// must still see every input's resolved parameters (sweep values, seed-less
/// kind), and commands their substituted text and environment.
#[test]
fn stages_see_resolved_parameters_and_environment() {
    let ws = Workspace::new();
    ws.write("data.csv", "a,b\n1,2\n");
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "env"

[stages.gen]
kind = "command"
cmd = "echo {width} $SCALEPIPE_PARAM_WIDTH $SCALEPIPE_PARAM_TAG > out.txt"
tag = "x"
[stages.gen.sweep]
width = [1, 2]

[stages.total]
kind = "command"
inputs = ["gen"]
cmd = "cat $SCALEPIPE_INPUTS > inputs.json"
"#,
    );
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(ws.read("results/env/gen[width=2]/out.txt"), "2 2 x\n");
    let inputs: serde_json::Value =
        serde_json::from_str(&ws.read("results/env/total/inputs.json")).unwrap();
    let params: Vec<&serde_json::Value> = inputs
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["params"])
        .collect();
    assert_eq!(params.len(), 2);
    assert_eq!(params[0]["width"], 1);
    assert_eq!(params[1]["width"], 2);
    assert_eq!(params[1]["tag"], "x");
    assert_eq!(
        params[1]["cmd"],
        "echo {width} $SCALEPIPE_PARAM_WIDTH $SCALEPIPE_PARAM_TAG > out.txt"
    );
}

/// The results view is checked from one directory listing: a missing instance
/// directory is published again on a no-op run, and instances that left the
/// pipeline are pruned, while other files stay.
#[test]
fn no_op_runs_restore_missing_views_and_prune_removed_instances() {
    let ws = Workspace::new();
    let text = |values: &str| {
        format!(
            "[pipeline]\nname = \"v\"\n[stages.gen]\nkind = \"command\"\ncmd = \"echo {{n}} > out.txt\"\n[stages.gen.sweep]\nn = [{values}]\n"
        )
    };
    ws.write("p.toml", &text("1, 2, 3"));
    ws.run(&["run", "p.toml"]).success();
    std::fs::remove_dir_all(ws.join("results/v/gen[n=2]")).unwrap();
    ws.write("results/v/notes.txt", "mine");
    let run = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert!(ids(&run, "executed").is_empty());
    assert_eq!(ws.read("results/v/gen[n=2]/out.txt"), "2\n");

    ws.write("p.toml", &text("1, 3"));
    let run = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert!(ids(&run, "executed").is_empty());
    assert!(!ws.join("results/v/gen[n=2]").exists());
    assert!(ws.join("results/v/gen[n=3]/out.txt").is_file());
    assert_eq!(ws.read("results/v/notes.txt"), "mine");
}

/// The state keeps keys as text and parses them only for instances that run:
/// the reasons `plan` gives must be what they were.
#[test]
fn plan_reasons_come_from_the_stored_keys() {
    let ws = Workspace::new();
    ws.write("data.csv", "1\n");
    let text = |cmd: &str| {
        format!(
            "[pipeline]\nname = \"r\"\n[stages.a]\nkind = \"command\"\ncmd = \"{cmd}\"\ndeps = [\"data.csv\"]\n[stages.b]\nkind = \"command\"\ninputs = [\"a\"]\ncmd = \"true\"\n"
        )
    };
    ws.write("p.toml", &text("echo 1 > x"));
    ws.run(&["run", "p.toml"]).success();
    let reasons = |ws: &Workspace| -> Vec<(String, String)> {
        ws.run(&["plan", "p.toml", "--json"]).success().json()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["status"].as_str().unwrap().to_string(),
                    s["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        reasons(&ws),
        [("cached".into(), "".into()), ("cached".into(), "".into())]
    );
    ws.write("p.toml", &text("echo 2 > x"));
    assert_eq!(
        reasons(&ws),
        [
            ("run".into(), "params changed".into()),
            ("run".into(), "input changed".into())
        ]
    );
    ws.write("p.toml", &text("echo 1 > x"));
    ws.write("data.csv", "2\n");
    assert_eq!(
        reasons(&ws),
        [
            ("run".into(), "file changed: data.csv".into()),
            ("run".into(), "input changed".into())
        ]
    );
}

/// A wide sweep whose stages need more threads than are free, with consumers:
/// the ready queue must still start every instance, each only after its inputs
/// finished, and never more threads at once than `--jobs`. The evidence is the
/// start/end markers the commands append to one file (see [`Timeline`]); the
/// short sleep between them only gives overlaps a chance to show, no assertion
/// depends on how long anything takes.
#[test]
fn mixed_thread_requests_run_after_their_inputs_and_within_the_budget() {
    let ws = Workspace::new();
    let events = ws.join("events.txt");
    let cmd = Timeline::wrap(&events, "sleep 0.05; echo {i} > out.txt");
    let join = Timeline::wrap(&events, "true");
    ws.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
name = "mix"

[stages.wide]
kind = "command"
threads = 2
cmd = '{cmd}'
[stages.wide.sweep]
i = [1, 2, 3]

[stages.narrow]
kind = "command"
cmd = '{cmd}'
[stages.narrow.sweep]
i = [1, 2, 3, 4, 5, 6]

[stages.after]
kind = "command"
inputs = ["wide"]
foreach = ["wide"]
cmd = '{join}'

[stages.join]
kind = "command"
inputs = ["narrow", "after"]
cmd = '{join}'
"#
        ),
    );
    let run = ws
        .run(&["run", "p.toml", "--jobs", "2", "--json"])
        .success()
        .json();
    let executed = ids(&run, "executed");
    assert_eq!(executed.len(), 3 + 6 + 3 + 1, "{run}");

    let timeline = Timeline::read(&events);
    assert_eq!(timeline.ids(), executed, "every instance ran exactly once");
    for i in 1..=3 {
        timeline.assert_before(&format!("wide[i={i}]"), &format!("after[i={i}]"));
        timeline.assert_before(&format!("after[i={i}]"), "join");
    }
    for i in 1..=6 {
        timeline.assert_before(&format!("narrow[i={i}]"), "join");
    }
    let threads = |id: &str| if id.starts_with("wide[") { 2 } else { 1 };
    let max = timeline.max_in_flight(threads);
    println!("most threads in flight: {max}");
    assert!(
        max <= 2,
        "more than --jobs 2 threads at once: {timeline:#?}"
    );
}
