//! The engine through the CLI: caching, incremental re-runs, sweeps, fan-in,
//! parallelism, failures, interruption and the store's consistency.

use std::time::{Duration, Instant};

use crate::harness::{ids, Timeline, Workspace};

/// A sweep of three command stages fanning into one aggregate, with a file dep.
const SWEEP: &str = r#"
[pipeline]
name = "sweep"
seed = 7

[stages.gen]
kind = "command"
cmd = "echo {n} > value.txt"
[stages.gen.sweep]
n = [1, 2, 3]

[stages.square]
kind = "command"
inputs = ["gen"]
foreach = ["gen"]
cmd = "v=$(cat $(python3 -c 'import json,os;print(json.load(open(os.environ[\"SCALEPIPE_INPUTS\"]))[0][\"dir\"])')/value.txt); echo $((v*v)) > sq.txt"

[stages.total]
kind = "command"
inputs = ["square"]
deps = ["extra.txt"]
cmd = "python3 -c 'import json,os;d=json.load(open(os.environ[\"SCALEPIPE_INPUTS\"]));print(sum(int(open(i[\"dir\"]+\"/sq.txt\").read()) for i in d))' > total.txt; cat {extra} >> total.txt"
extra = "EXTRA"
"#;

fn sweep_workspace(text: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("p.toml", text);
    ws.write("extra.txt", "100\n");
    ws
}

/// The pipeline above with its sweep values and the absolute path of `extra.txt`
/// (commands run in their entry's directory).
fn sweep_text(ws: &Workspace, values: &str) -> String {
    SWEEP
        .replace("n = [1, 2, 3]", &format!("n = [{values}]"))
        .replace("EXTRA", &ws.join("extra.txt").display().to_string())
}

#[test]
fn second_run_executes_nothing_and_a_changed_sweep_value_reruns_only_its_descendants() {
    let ws = sweep_workspace(SWEEP);
    ws.write("p.toml", &sweep_text(&ws, "1, 2, 3"));
    let first = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(ids(&first, "executed").len(), 7, "{first}");
    let total = ws.read("results/sweep/total/total.txt");
    assert_eq!(total.lines().next(), Some("14"), "1+4+9: {total}");
    assert!(total.contains("100"));

    let second = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert!(ids(&second, "executed").is_empty(), "{second}");
    assert_eq!(ids(&second, "cached").len(), 7);

    ws.write("p.toml", &sweep_text(&ws, "1, 2, 5"));
    let plan = ws.run(&["plan", "p.toml", "--json"]).success().json();
    let runs: Vec<(String, String)> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "run")
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            ("gen[n=5]".to_string(), "new".to_string()),
            ("square[n=5]".to_string(), "new".to_string()),
            ("total".to_string(), "input changed".to_string()),
        ]
    );
    let third = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(
        ids(&third, "executed"),
        vec!["gen[n=5]", "square[n=5]", "total"]
    );
    assert_eq!(
        ws.read("results/sweep/total/total.txt").lines().next(),
        Some("30")
    );
    // The dropped instance leaves the readable view.
    assert!(!ws.join("results/sweep/gen[n=3]").exists());
    assert!(ws.join("results/sweep/gen[n=5]/value.txt").is_file());
}

#[test]
fn a_changed_dependency_file_reruns_its_stage_and_the_plan_says_why() {
    let ws = sweep_workspace(SWEEP);
    ws.write("p.toml", &sweep_text(&ws, "1, 2"));
    ws.run(&["run", "p.toml"]).success();
    ws.write("extra.txt", "200\n");
    let plan = ws.run(&["plan", "p.toml"]).success();
    assert!(
        plan.stdout.contains("file changed: extra.txt"),
        "{}",
        plan.stdout
    );
    let run = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(ids(&run, "executed"), vec!["total"]);
    assert!(ws.read("results/sweep/total/total.txt").contains("200"));
}

#[test]
fn a_changed_parameter_reruns_the_stage_with_reason_params_changed() {
    let ws = Workspace::new();
    let text = |msg: &str| {
        format!(
            "[pipeline]\nname = \"p\"\n[stages.a]\nkind = \"command\"\ncmd = \"echo {{msg}} > a.txt\"\nmsg = \"{msg}\"\n[stages.b]\nkind = \"command\"\ninputs = [\"a\"]\ncmd = \"true\"\n"
        )
    };
    ws.write("p.toml", &text("hello"));
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(ws.read("results/p/a/a.txt"), "hello\n");
    ws.write("p.toml", &text("bye"));
    let plan = ws.run(&["plan", "p.toml", "--json"]).success().json();
    let stages = plan["stages"].as_array().unwrap();
    assert_eq!(stages[0]["reason"], "params changed");
    assert_eq!(stages[1]["reason"], "input changed");
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(ws.read("results/p/a/a.txt"), "bye\n");
}

#[test]
fn fan_in_and_point_to_point_matching_give_the_documented_instances() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "match"

[stages.data]
kind = "command"
cmd = "true"
sweep = { d = [10, 20] }

[stages.train]
kind = "command"
cmd = "true"
inputs = ["data"]
[stages.train.sweep]
d = [10, 20]
w = [1, 2]

[stages.each]
kind = "command"
cmd = "true"
inputs = ["data"]
foreach = ["data"]
sweep = { w = [1, 2] }

[stages.fit]
kind = "command"
cmd = "true"
inputs = ["train"]

[stages.zipped]
kind = "command"
cmd = "true"
inputs = ["data"]
sweep_mode = "zip"
sweep = { d = [10, 20], lr = [0.1, 0.01] }

[stages.per_w]
kind = "command"
cmd = "true"
inputs = ["train"]
foreach = ["train.w"]
"#,
    );
    let out = ws.run(&["dag", "p.toml", "--format", "mermaid"]).success();
    let edges = |from: &str, to: &str| {
        let id_of = |id: &str| {
            out.stdout
                .lines()
                .find(|l| l.contains(&format!("[\"{id}<br/>")))
                .unwrap_or_else(|| panic!("no node {id} in\n{}", out.stdout))
                .trim()
                .split('[')
                .next()
                .unwrap()
                .to_string()
        };
        out.stdout
            .contains(&format!("{} --> {}", id_of(from), id_of(to)))
    };
    // Point to point: train[d=10,*] reads only data[d=10].
    assert!(edges("data[d=10]", "train[d=10,w=1]"));
    assert!(!edges("data[d=20]", "train[d=10,w=1]"));
    // foreach: one `each` instance per data instance and w, inheriting d.
    assert!(edges("data[d=20]", "each[d=20,w=2]"));
    assert!(!edges("data[d=10]", "each[d=20,w=2]"));
    // Fan-in: the unswept fit reads all four train instances.
    for id in [
        "train[d=10,w=1]",
        "train[d=10,w=2]",
        "train[d=20,w=1]",
        "train[d=20,w=2]",
    ] {
        assert!(edges(id, "fit"), "{id} -> fit");
    }
    // Zip pairs values instead of crossing them.
    assert!(edges("data[d=20]", "zipped[d=20,lr=0.01]"));
    assert!(!out.stdout.contains("zipped[d=10,lr=0.01]"));
    // foreach over one key: one per_w instance per value of w, each reading
    // the train instances of that w at every d.
    for w in [1, 2] {
        for d in [10, 20] {
            let train = format!("train[d={d},w={w}]");
            assert!(edges(&train, &format!("per_w[w={w}]")), "{train}");
            assert!(!edges(&train, &format!("per_w[w={}]", 3 - w)), "{train}");
        }
    }
    assert!(!out.stdout.contains("per_w[d="));
    let plan = ws.run(&["plan", "p.toml", "--json"]).success().json();
    assert_eq!(
        plan["stages"].as_array().unwrap().len(),
        2 + 4 + 4 + 1 + 2 + 2
    );
}

/// Shell text that waits, polling, until `count` files are in `dir`; after 3000
/// polls (a minute or more) it gives up and fails the stage, so a broken engine
/// fails the test instead of hanging it.
fn wait_for_files(dir: &std::path::Path, count: usize) -> String {
    format!(
        "n=0; while [ $(ls {dir} | wc -l) -lt {count} ]; do n=$((n+1)); if [ $n -ge 3000 ]; then echo gave up waiting for {count} files in {dir}; exit 1; fi; sleep 0.02; done",
        dir = dir.display()
    )
}

#[test]
fn independent_stages_run_in_parallel_within_the_jobs_budget() {
    // Four stages that each wait until all four have started: they finish only
    // if --jobs 4 runs them at the same time (run one by one, the first gives up).
    let ws = Workspace::new();
    let barrier = ws.join("barrier");
    std::fs::create_dir_all(&barrier).unwrap();
    let cmd = format!(
        "touch {}/arrived.$SCALEPIPE_PARAM_I; {}",
        barrier.display(),
        wait_for_files(&barrier, 4)
    );
    ws.write(
        "p.toml",
        &format!("[pipeline]\nname = \"par\"\n[stages.s]\nkind = \"command\"\ncmd = '{cmd}'\nsweep = {{ i = [1, 2, 3, 4] }}\n"),
    );
    let out = ws.run(&["run", "p.toml", "--jobs", "4", "--force", "--json"]);
    assert_eq!(
        out.code, 0,
        "the four stages did not all run at once: {out:#?}"
    );
    assert_eq!(ids(&out.json(), "executed").len(), 4);

    // Stages that declare 2 threads each fit one at a time into --jobs 2: their
    // start/end markers never overlap.
    let events = ws.join("events.txt");
    ws.write(
        "q.toml",
        &format!(
            "[pipeline]\nname = \"wide\"\n[stages.s]\nkind = \"command\"\ncmd = '{}'\nthreads = 2\nsweep = {{ i = [1, 2, 3] }}\n",
            Timeline::wrap(&events, "sleep 0.1")
        ),
    );
    let run = ws
        .run(&["run", "q.toml", "--jobs", "2", "--json"])
        .success()
        .json();
    let timeline = Timeline::read(&events);
    assert_eq!(timeline.ids(), ids(&run, "executed"));
    assert_eq!(timeline.ids().len(), 3);
    assert_eq!(
        timeline.max_in_flight(|_| 2),
        2,
        "three 2-thread stages under --jobs 2 overlapped: {timeline:#?}"
    );
}

#[test]
fn a_failure_stops_the_run_unless_keep_going_and_skips_only_dependents() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "fail"
[stages.bad]
kind = "command"
cmd = "echo about to fail; exit 3"
[stages.after_bad]
kind = "command"
inputs = ["bad"]
cmd = "true"
[stages.good]
kind = "command"
cmd = "sleep 0.2; echo ok > ok.txt"
"#,
    );
    let out = ws.run(&["run", "p.toml", "--jobs", "1", "--keep-going", "--json"]);
    assert_eq!(out.code, 1, "{out:#?}");
    let json = out.json();
    assert_eq!(ids(&json, "failed"), vec!["bad"]);
    assert_eq!(ids(&json, "skipped"), vec!["after_bad"]);
    assert_eq!(ids(&json, "executed"), vec!["good"]);
    assert!(out.stderr.contains("about to fail"), "{}", out.stderr);
    assert!(out.stderr.contains("exited with"), "{}", out.stderr);
    // The failed attempt is kept, outside the cache, with a log holding the
    // command, its output and the error; the message names that log.
    let record: serde_json::Value =
        serde_json::from_str(&ws.read("results/fail/run.json")).unwrap();
    let bad = record["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "bad")
        .expect("bad in the run record");
    assert_eq!(bad["status"], "failed", "{bad}");
    let fp = bad["fingerprint"].as_str().unwrap();
    assert!(!ws.join(&format!(".scalepipe/cache/{fp}")).exists());
    let log_rel = format!(".scalepipe/failed/{fp}/log.txt");
    let log = ws.read(&log_rel);
    // The command, what it printed, then the error (which repeats the output's
    // tail): "$ echo ..", "about to fail", "error: command `..` exited with
    // exit status: 3", "about to fail".
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log_rel}:\n{log}");
    assert_eq!(lines[0], "$ echo about to fail; exit 3", "{log_rel}");
    assert_eq!(lines[1], "about to fail", "{log_rel}");
    assert!(
        lines[2].starts_with("error: command `echo about to fail; exit 3` exited with")
            && lines[2].ends_with('3'),
        "{log_rel}: {}",
        lines[2]
    );
    assert_eq!(lines[3], "about to fail", "{log_rel}");
    assert_eq!(
        ws.read(&format!(".scalepipe/failed/{fp}/command.log")),
        "about to fail\n"
    );
    assert!(out.stderr.contains(&log_rel), "{}", out.stderr);

    // Without --keep-going, nothing after the failure starts (one job: `bad`
    // comes first in the file).
    let ws = Workspace::new();
    ws.write("p.toml", &ws_text_fail());
    let out = ws.run(&["run", "p.toml", "--jobs", "1", "--json"]);
    assert_eq!(out.code, 1);
    let json = out.json();
    assert_eq!(ids(&json, "failed"), vec!["bad"]);
    assert!(ids(&json, "executed").is_empty(), "{json}");
}

fn ws_text_fail() -> String {
    "[pipeline]\nname = \"f\"\n[stages.bad]\nkind = \"command\"\ncmd = \"exit 1\"\n[stages.good]\nkind = \"command\"\ncmd = \"true\"\n".to_string()
}

#[test]
fn a_killed_run_leaves_no_committed_entry_and_the_next_run_reuses_finished_ones() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "kill"
[stages.quick]
kind = "command"
cmd = "echo done > q.txt"
[stages.slow]
kind = "command"
inputs = ["quick"]
cmd = "echo partial > part.txt; sleep 30; echo finished >> part.txt"
"#,
    );
    let mut child = ws.spawn(&["run", "p.toml", "--jobs", "1"]);
    // Wait until the slow stage has written into its temporary entry.
    wait_until("the slow stage to write into its temporary entry", || {
        std::fs::read_dir(ws.join(".scalepipe/tmp"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.path().join("out/part.txt").is_file())
            })
            .unwrap_or(false)
    });
    child.kill().expect("kill");
    child.wait().expect("wait");
    // Only `quick` is committed; the half-written `slow` is not an entry.
    assert_eq!(ws.entries().len(), 1);
    for fp in ws.entries() {
        let manifest = ws.read(&format!(".scalepipe/cache/{fp}/manifest.json"));
        assert!(manifest.contains("\"id\": \"quick\""));
    }
    let plan = ws.run(&["plan", "p.toml", "--json"]).success().json();
    assert_eq!(plan["stages"][0]["status"], "cached");
    assert_eq!(plan["stages"][1]["status"], "run");

    // Make the slow stage quick and check the finished one is reused.
    let text = ws.read("p.toml").replace("sleep 30", "sleep 0");
    ws.write("p.toml", &text);
    let run = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(ids(&run, "cached"), vec!["quick"]);
    assert_eq!(ids(&run, "executed"), vec!["slow"]);
    assert!(
        std::fs::read_dir(ws.join(".scalepipe/tmp"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "the killed run's temporary entry was not cleaned up"
    );
}

#[test]
fn two_concurrent_runs_on_one_workspace_wait_for_each_other() {
    // The first run's stages hold until `release` exists, so the first run is
    // certainly busy, holding the lock, while the second one starts.
    let ws = Workspace::new();
    let started = ws.join("started");
    let gate = ws.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let cmd = format!(
        "touch {started}; {wait}; echo $SCALEPIPE_PARAM_I > i.txt",
        started = started.display(),
        wait = wait_for_files(&gate, 1)
    );
    ws.write(
        "p.toml",
        &format!("[pipeline]\nname = \"lock\"\n[stages.s]\nkind = \"command\"\ncmd = '{cmd}'\nsweep = {{ i = [1, 2, 3, 4] }}\n"),
    );
    let a = ws.spawn(&["run", "p.toml", "--jobs", "2", "--json"]);
    wait_until("the first run to start a stage", || started.exists());
    let mut b = ws.spawn(&["run", "p.toml", "--jobs", "2", "--json"]);
    // Read b's stderr until it says it waits; keep the rest for the end.
    let b_stderr = b.stderr.take().unwrap();
    let (said_waiting, heard) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut text = String::new();
        for line in std::io::BufReader::new(b_stderr).lines() {
            let line = line.expect("stderr is text");
            if line.contains("waiting for another scalepipe run") {
                let _ = said_waiting.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let waited = heard.recv_timeout(Duration::from_secs(60));
    // Let the first run finish whatever happened, so nothing is left hanging.
    std::fs::write(gate.join("release"), "").unwrap();
    let a = a.wait_with_output().expect("a");
    let b = b.wait_with_output().expect("b");
    let b_stderr = reader.join().expect("reader");
    assert!(
        waited.is_ok(),
        "the second run did not wait for the first: {b_stderr}"
    );
    assert!(
        a.status.success() && b.status.success(),
        "{a:?}\n{b_stderr}"
    );
    let a: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    // The first ran everything; the second, let in after it, found it cached.
    assert_eq!(ids(&a, "executed").len(), 4, "{a}");
    assert!(ids(&b, "executed").is_empty(), "{b}");
    assert_eq!(ids(&b, "cached").len(), 4, "{b}");
    assert_eq!(ws.entries().len(), 4);
}

/// Polls `done` every 20 ms until it holds; fails after a generous minute.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn gc_removes_only_unreferenced_entries_and_results_survive_it() {
    let ws = Workspace::new();
    let text = |v: &str| {
        format!("[pipeline]\nname = \"g\"\n[stages.s]\nkind = \"command\"\ncmd = \"echo {{v}} > v.txt\"\nsweep = {{ v = [{v}] }}\n")
    };
    ws.write("p.toml", &text("1, 2"));
    ws.run(&["run", "p.toml"]).success();
    ws.write("p.toml", &text("1, 3"));
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(ws.entries().len(), 3);
    let dry = ws.run(&["gc", "--dry-run"]).success();
    assert!(
        dry.stdout.contains("would remove 1 entries"),
        "{}",
        dry.stdout
    );
    assert_eq!(ws.entries().len(), 3);
    let status = ws.run(&["status"]).success();
    assert!(status.stdout.contains("3 entries"), "{}", status.stdout);
    assert!(
        status.stdout.contains("1 not referenced"),
        "{}",
        status.stdout
    );
    ws.run(&["gc"]).success();
    assert_eq!(ws.entries().len(), 2);
    assert_eq!(ws.read("results/g/s[v=3]/v.txt"), "3\n");
    let again = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(ids(&again, "cached").len(), 2);
}

#[test]
fn the_run_record_lists_every_instance_with_its_status_and_reason() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"rec\"\nseed = 3\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    ws.run(&["run", "p.toml"]).success();
    let record: serde_json::Value = serde_json::from_str(&ws.read("results/rec/run.json")).unwrap();
    assert_eq!(record["seed"], 3);
    assert_eq!(record["instances"][0]["status"], "executed");
    assert_eq!(record["instances"][0]["reason"], "new");
    assert!(
        record["instances"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .len()
            == 32
    );
    ws.run(&["run", "p.toml"]).success();
    let record: serde_json::Value = serde_json::from_str(&ws.read("results/rec/run.json")).unwrap();
    assert_eq!(record["instances"][0]["status"], "cached");
    // The command's environment and log are kept with the entry.
    let fp = record["instances"][0]["fingerprint"].as_str().unwrap();
    assert!(ws.join(&format!(".scalepipe/cache/{fp}/log.txt")).is_file());
}

#[test]
fn command_parameters_are_substituted_and_exported() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"env\"\n[stages.a]\nkind = \"command\"\ncmd = \"echo {word} $SCALEPIPE_PARAM_COUNT > out.txt; test -f $SCALEPIPE_INPUTS\"\nword = \"hi\"\ncount = 3\n",
    );
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(ws.read("results/env/a/out.txt"), "hi 3\n");
}

#[test]
fn ctrl_c_stops_the_run_cleanly_with_exit_130() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"int\"\n[stages.slow]\nkind = \"command\"\ncmd = \"touch started; sleep 30\"\n",
    );
    let child = ws.spawn(&["run", "p.toml"]);
    wait_until("the stage to start", || {
        std::fs::read_dir(ws.join(".scalepipe/tmp"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.path().join("out/started").exists())
            })
            .unwrap_or(false)
    });
    let start = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    // Promptly: well before the 30 s the stage would otherwise sleep (the
    // bound is loose so a loaded machine does not fail it).
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "did not stop promptly: {:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(130));
    assert!(ws.entries().is_empty());
    let record: serde_json::Value = serde_json::from_str(&ws.read("results/int/run.json")).unwrap();
    assert_eq!(record["interrupted"], true);
}
