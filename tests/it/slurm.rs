//! The Slurm executor against a real one-node cluster (munged, slurmctld,
//! slurmd; `scripts/slurm-local.sh` starts it, and these tests run it
//! themselves when `sinfo` does not answer). They never skip: without a cluster
//! they fail and say how to start one.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::harness::{ids, Workspace};

/// Starts the local cluster once per test binary, or fails saying why.
fn cluster() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if node_idle() {
            return Ok(());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
        let out = Command::new("bash").arg(&script).output();
        match out {
            Ok(out) if out.status.success() && node_idle() => Ok(()),
            Ok(out) => Err(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run {}: {e}", script.display())),
        }
    });
    if let Err(e) = ready {
        panic!(
            "the Slurm tests need a running cluster and could not start one: {e}\n\
             start it as root with `bash scripts/slurm-local.sh` (Debian: installs slurm-wlm and munge)"
        );
    }
}

fn node_idle() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            o.status.success()
                && text
                    .lines()
                    .any(|l| matches!(l.trim(), "idle" | "mixed" | "allocated"))
        })
}

/// Jobs in the queue with this name (`<pipeline>.<stage>`): id and state.
fn queue(name: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T", &format!("--name={name}")])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, state)| (id.to_string(), state.to_string()))
        .collect()
}

/// Waits until a job named `name` runs; returns its id.
fn wait_running(name: &str, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some((id, _)) = queue(name).into_iter().find(|(_, s)| s == "RUNNING") {
            return id;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("scalepipe ended ({status}) before a job named {name} ran");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no job named {name} running after 120 s: {:?}", queue(name));
}

fn run_json(ws: &Workspace, pipeline: &str) -> serde_json::Value {
    serde_json::from_str(&ws.read(&format!("results/{pipeline}/run.json"))).expect("run.json")
}

/// Each instance's record in run.json, by id.
fn records(run: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    run["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

fn slurm_jobs(record: &serde_json::Value) -> Vec<String> {
    record["slurm_jobs"]
        .as_array()
        .map(|a| a.iter().map(|j| j.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Two data sizes x three widths of tiny MLPs, evaluated, fitted per data size
/// (`foreach`) and over everything (fan-in). The fits run on the submitting
/// machine (`executor = "local"`), like Snakemake's localrules.
const STUDY: &str = r#"
[pipeline]
name = "study"
seed = 5

[executor.slurm]
poll = "200ms"

[stages.data]
kind = "dataset.teacher"
noise_std = 0.3
input_dim = 4
teacher_width = 8
split = { val = 200, test = 200 }
[stages.data.sweep]
n = [300, 900]

[stages.train]
kind = "train"
inputs = ["data"]
model = "mlp"
depth = 1
epochs = 1
batch_size = 16
lr = 1e-2
mem = "500M"
time = "10"
[stages.train.sweep]
width = [4, 8, 16]

[stages.eval]
kind = "eval"
inputs = ["train"]

[stages.fit_n]
kind = "fit"
inputs = ["data", "eval"]
foreach = ["data"]
form = "power_n"
grid = { a = [0.0, 2.0], e = [-2.0, -1.0], alpha = [0.3, 1.0] }
executor = "local"

[stages.fit]
kind = "fit"
inputs = ["eval"]
form = "chinchilla"
grid = { a = [0.0, 2.0], b = [0.0, 4.0], alpha = [0.3, 1.0], beta = [0.3, 1.0] }
"#;

/// Every file under `results/<pipeline>/` but run.json, with JSON files
/// compared without the fields that record wall time.
fn results(ws: &Workspace, pipeline: &str) -> BTreeMap<String, String> {
    let root = ws.join(&format!("results/{pipeline}"));
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.expect("walk");
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(&root)
            .unwrap()
            .display()
            .to_string();
        if rel == "run.json" {
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read");
        let text = if rel.ends_with(".json") {
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            strip_wall_time(&mut value);
            value.to_string()
        } else {
            format!(
                "{} bytes, blake3 {}",
                bytes.len(),
                blake3::hash(&bytes).to_hex()
            )
        };
        out.insert(rel, text);
    }
    out
}

fn strip_wall_time(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !["wall_time_s", "throughput", "gflops_per_s"].contains(&k.as_str()));
            map.values_mut().for_each(strip_wall_time);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_wall_time),
        _ => {}
    }
}

#[test]
fn a_study_through_slurm_matches_a_local_run_and_a_second_run_submits_nothing() {
    cluster();
    let local = Workspace::new();
    local.write("study.toml", STUDY);
    local.run(&["run", "study.toml", "--json"]).success();

    let ws = Workspace::new();
    ws.write("study.toml", STUDY);
    let first = ws
        .run(&["run", "study.toml", "--executor", "slurm", "--json"])
        .success();
    let summary = first.json();
    assert_eq!(ids(&summary, "executed").len(), 17, "{first:#?}");
    assert!(first.stderr.contains("slurm: 6 queued"), "{}", first.stderr);

    // Same outputs, byte for byte, as the local run (wall times aside).
    let (got, expected) = (results(&ws, "study"), results(&local, "study"));
    assert_eq!(got.len(), expected.len());
    for (file, content) in &expected {
        assert_eq!(
            got.get(file),
            Some(content),
            "{file} differs from the local run"
        );
    }

    // Jobs went through Slurm: every instance but the local fits has a job id.
    // The three trainings of one data size become ready in one scheduling pass
    // (when that dataset's job ends) and go as one array; the two data jobs may
    // end in one poll or in two, so there are one or two train arrays.
    let run = run_json(&ws, "study");
    assert_eq!(run["executor"], "slurm");
    let records = records(&run);
    let mut train_arrays: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (id, record) in &records {
        let jobs = slurm_jobs(record);
        if id.starts_with("fit_n[") {
            assert!(jobs.is_empty(), "{id} ran locally: {record}");
        } else {
            assert_eq!(jobs.len(), 1, "{id}: {record}");
        }
        if id.starts_with("train[") {
            let (array, _task) = jobs[0].split_once('_').expect("an array task id");
            let n = if id.contains("n=300") { "300" } else { "900" };
            train_arrays
                .entry(n.to_string())
                .or_default()
                .insert(array.to_string());
        }
    }
    assert_eq!(train_arrays.len(), 2, "{records:#?}");
    for (n, arrays) in &train_arrays {
        assert_eq!(arrays.len(), 1, "n = {n}: {records:#?}");
    }
    assert_eq!(summary["slurm_jobs"], 15);

    // A second run finds everything in the store and submits nothing.
    let second = ws
        .run(&["run", "study.toml", "--executor", "slurm", "--json"])
        .success()
        .json();
    assert_eq!(ids(&second, "cached").len(), 17);
    assert_eq!(second["slurm_jobs"], 0);
}

#[test]
fn a_job_cancelled_on_slurm_is_reported_with_its_reason_and_only_it_reruns() {
    cluster();
    let ws = Workspace::new();
    let marker = ws.join("second-attempt");
    ws.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
name = "scancelled"

[executor.slurm]
poll = "200ms"

[stages.quick]
kind = "command"
cmd = "echo {{n}} > out.txt"
sweep = {{ n = [1, 2] }}

[stages.slow]
kind = "command"
cmd = "if [ -e {marker} ]; then echo done > out.txt; else sleep 300; fi"
"#,
            marker = marker.display()
        ),
    );
    let mut child = ws.spawn(&["run", "p.toml", "--executor", "slurm", "--keep-going"]);
    let job = wait_running("scancelled.slow", &mut child);
    let status = Command::new("scancel").arg(&job).status().expect("scancel");
    assert!(status.success());
    let out = child.wait_with_output().expect("scalepipe ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let run = run_json(&ws, "scancelled");
    let records = records(&run);
    let slow = &records["slow"];
    assert_eq!(slow["status"], "failed");
    let error = slow["error"].as_str().unwrap();
    assert!(
        error.contains("cancelled") && error.contains("CANCELLED"),
        "{error}"
    );
    assert!(stderr.contains(&format!("slurm-{job}.out")), "{stderr}");
    assert_eq!(records["quick[n=1]"]["status"], "executed");

    std::fs::write(&marker, "").unwrap();
    let again = ws
        .run(&["run", "p.toml", "--executor", "slurm", "--json"])
        .success()
        .json();
    assert_eq!(ids(&again, "executed"), ["slow"]);
    assert_eq!(ids(&again, "cached"), ["quick[n=1]", "quick[n=2]"]);
    assert_eq!(again["slurm_jobs"], 1);
}

/// Slurm's time limits are whole minutes, checked every half minute: this
/// test takes one to two minutes.
#[test]
fn a_too_short_time_limit_is_a_timeout_and_retries_resubmit() {
    cluster();
    let ws = Workspace::new();
    let marker = ws.join("timed-out-once");
    ws.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
name = "limits"

[executor.slurm]
poll = "500ms"

[stages.limited]
kind = "command"
cmd = "sleep 600"
time = "1"

[stages.retried]
kind = "command"
cmd = "if [ -e {marker} ]; then echo ok > out.txt; else touch {marker}; sleep 600; fi"
time = "1"
retries = 1
"#,
            marker = marker.display()
        ),
    );
    let out = ws.run(&["run", "p.toml", "--executor", "slurm", "--keep-going"]);
    assert_eq!(out.code, 1, "{out:#?}");
    let records = records(&run_json(&ws, "limits"));
    let limited = &records["limited"];
    assert_eq!(limited["status"], "failed");
    let error = limited["error"].as_str().unwrap();
    assert!(
        error.contains("timed out") && error.contains("TIMEOUT"),
        "{error}"
    );
    let retried = &records["retried"];
    assert_eq!(retried["status"], "executed", "{retried}");
    assert_eq!(slurm_jobs(retried).len(), 2, "{retried}");
    assert!(
        out.stderr.contains("resubmitting (retry 1 of 1)"),
        "{}",
        out.stderr
    );
}

#[test]
fn ctrl_c_or_sigterm_cancels_every_job_of_the_run() {
    cluster();
    for signal in ["-INT", "-TERM"] {
        let ws = Workspace::new();
        ws.write(
            "p.toml",
            r#"
[pipeline]
name = "interrupted"

[executor.slurm]
poll = "200ms"

[stages.nap]
kind = "command"
cmd = "sleep 300"
sweep = { n = [1, 2, 3, 4] }
"#,
        );
        let mut child = ws.spawn(&["run", "p.toml", "--executor", "slurm"]);
        wait_running("interrupted.nap", &mut child);
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let out = child.wait_with_output().expect("scalepipe ends");
        assert_eq!(
            out.status.code(),
            Some(130),
            "{signal}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(queue("interrupted.nap"), Vec::new(), "{signal}");
        assert!(ws.entries().is_empty(), "{signal}");
    }
}

/// A training long enough to report progress over several polls (about 3 s
/// on an idle node: tiny models train 1,500 steps in well under a second).
const TRAINING: &str = r#"
[pipeline]
name = "progress"
seed = 1

[executor.slurm]
poll = "200ms"

[stages.data]
kind = "dataset.markov_text"
vocab = 8
tokens = 20000
split = { val = 2000, test = 2000 }

[stages.train]
kind = "train"
inputs = ["data"]
model = "transformer"
n_layers = 1
n_heads = 1
d_model = 16
context = 8
batch_size = 4
steps = 12000
"#;

/// A Slurm run shows the progress lines of a local run (here with `--json`, as
/// `defaults::json_run_prints_progress_on_stderr_and_one_object_on_stdout`):
/// the worker writes its progress file, the submitter reads it on each poll.
#[test]
fn a_running_training_shows_its_progress_lines_as_locally() {
    cluster();
    let ws = Workspace::new();
    ws.write("p.toml", TRAINING);
    let out = ws
        .run_with_env(
            &["run", "p.toml", "--executor", "slurm", "--json"],
            &[("SCALEPIPE_PROGRESS_AFTER", "0")],
        )
        .success();
    let json = out.json();
    assert_eq!(ids(&json, "executed"), ["data", "train"]);
    assert_eq!(json["slurm_jobs"], 2);

    // Progress lines of the training, with percentages, loss and D, in the
    // order the worker reported them.
    let percents: Vec<u64> = out
        .stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("train: "))
        .filter(|l| l.contains("loss ") && l.contains("D "))
        .filter_map(|l| l.split_once('%')?.0.parse().ok())
        .collect();
    assert!(percents.len() >= 3, "{percents:?}\n{}", out.stderr);
    assert!(
        percents.windows(2).all(|w| w[0] < w[1]),
        "{percents:?}\n{}",
        out.stderr
    );
    // The end too, though the job may leave the queue before the next poll.
    assert_eq!(percents.last(), Some(&100), "{}", out.stderr);

    // The training's progress file, beside its spec, ends at its last step.
    let progress: Vec<serde_json::Value> = walkdir::WalkDir::new(ws.join(".scalepipe/slurm"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.to_string_lossy().ends_with(".progress.json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    assert!(
        progress.iter().any(|p| p["pos"] == 12000
            && p["len"] == 12000
            && p["message"].as_str().unwrap().contains("loss ")),
        "{progress:?}"
    );
}

/// A worker SIGKILLed while its stage is writing (as a node crash or an
/// out-of-memory kill would) leaves at most a temporary directory: nothing in
/// the store or the results, and the next run commits a complete entry and
/// leaves `tmp/` empty.
#[test]
fn a_worker_killed_mid_write_leaves_only_a_temporary_directory_the_next_run_removes() {
    fn error_of(ws: &Workspace) -> String {
        records(&run_json(ws, "killed"))["writer"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    cluster();
    let ws = Workspace::new();
    let marker = ws.join("second-attempt");
    ws.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
name = "killed"

[executor.slurm]
poll = "200ms"

[stages.writer]
kind = "command"
cmd = "echo partial > out.txt; if [ -e {marker} ]; then echo done > out.txt; else sleep 300; fi"
"#,
            marker = marker.display()
        ),
    );
    let tmp_entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(ws.join(".scalepipe/tmp"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let mut child = ws.spawn(&["run", "p.toml", "--executor", "slurm", "--keep-going"]);
    let job = wait_running("killed.writer", &mut child);
    // Wait until the stage has written its partial file in the worker's tmp/.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tmp_entries().iter().any(|d| {
        walkdir::WalkDir::new(d)
            .into_iter()
            .filter_map(Result::ok)
            .any(|e| e.file_name() == "out.txt")
    }) {
        assert!(Instant::now() < deadline, "no partial out.txt in tmp/");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGKILL the worker itself, as a node crash or the OOM killer would: it
    // gets no chance to clean up; Slurm then ends the rest of the job.
    let status = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &format!("worker {}", ws.join(".scalepipe/slurm").display()),
        ])
        .status()
        .expect("pkill");
    assert!(status.success(), "no worker process of job {job} found");
    let out = child.wait_with_output().expect("scalepipe ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        records(&run_json(&ws, "killed"))["writer"]["status"],
        "failed"
    );
    assert!(
        ws.entries().is_empty(),
        "a killed worker committed something"
    );
    assert!(!error_of(&ws).is_empty(), "{stderr}");
    assert!(
        !tmp_entries().is_empty(),
        "the killed worker left no temporary directory: was it killed mid-write?"
    );
    assert!(
        !ws.join("results/killed/writer").exists(),
        "a partial output was published"
    );

    std::fs::write(&marker, "").unwrap();
    let again = ws
        .run(&["run", "p.toml", "--executor", "slurm", "--json"])
        .success()
        .json();
    assert_eq!(ids(&again, "executed"), ["writer"]);
    assert_eq!(ws.read("results/killed/writer/out.txt"), "done\n");
    assert!(
        tmp_entries().is_empty(),
        "left in tmp/: {:?}",
        tmp_entries()
    );
    ws.run(&["verify"]).success();
}

/// Two workers executing one spec at once (as two jobs of one fingerprint on
/// two nodes would): one commits, the other uses its entry; nothing is lost.
#[test]
fn two_workers_on_one_spec_leave_one_complete_entry() {
    cluster();
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "twice"

[executor.slurm]
poll = "200ms"

[stages.gen]
kind = "command"
cmd = "sleep 0.5; echo hello > out.txt"
"#,
    );
    ws.run(&["run", "p.toml", "--executor", "slurm"]).success();
    let spec = walkdir::WalkDir::new(ws.join(".scalepipe/slurm"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| p.file_name().is_some_and(|n| n == "0.json"))
        .expect("a job spec");
    let entries = ws.entries();
    assert_eq!(entries.len(), 1);
    std::fs::remove_dir_all(ws.join(&format!(".scalepipe/cache/{}", entries[0]))).unwrap();
    std::fs::remove_file(spec.with_extension("status.json")).unwrap();

    let spec = spec.display().to_string();
    let workers: Vec<_> = (0..2).map(|_| ws.spawn(&["worker", &spec])).collect();
    for worker in workers {
        let out = worker.wait_with_output().expect("worker ends");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(ws.entries(), entries);
    ws.run(&["verify"]).success();
    let status = std::fs::read_to_string(Path::new(&spec).with_extension("status.json"))
        .expect("the workers wrote a status file");
    assert!(status.contains("\"outcome\""), "{status}");
}

/// Where a stage runs and what a cluster gives it is not what it computes.
#[test]
fn placement_keys_stay_out_of_the_fingerprint_and_bad_values_are_located() {
    let ws = Workspace::new();
    let base = "[pipeline]\nname = \"p\"\n\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n";
    ws.write("a.toml", base);
    ws.write(
        "b.toml",
        &format!("{base}mem = \"4G\"\ntime = \"01:00:00\"\ngpus = 1\nretries = 2\nexecutor = \"local\"\n\n[executor.slurm]\npartition = \"x\"\nmax_jobs = 3\npoll = \"1s\"\narray_limit = 2\nsbatch_args = [\"--exclusive\"]\n"),
    );
    let fingerprint = |file: &str| {
        ws.run(&["plan", file, "--json"]).success().json()["stages"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(fingerprint("a.toml"), fingerprint("b.toml"));

    for (line, expected) in [
        ("mem = \"4GB\"", "`mem` must be an amount of memory"),
        ("time = \"1h\"", "`time` must be a Slurm time limit"),
        (
            "executor = \"cloud\"",
            "`executor` must be \"local\" or \"slurm\"",
        ),
        ("retries = -1", "`retries` must be an integer"),
    ] {
        ws.write("bad.toml", &format!("{base}{line}\n"));
        let out = ws.run(&["plan", "bad.toml"]);
        assert_eq!(out.code, 2, "{out:#?}");
        assert!(out.stderr.contains(expected), "{line}: {}", out.stderr);
        assert!(out.stderr.contains("bad.toml:7:"), "{line}: {}", out.stderr);
    }
    ws.write(
        "bad.toml",
        &format!("{base}\n[executor.slurm]\nmax_job = 3\n"),
    );
    let out = ws.run(&["plan", "bad.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("unknown key `max_job` in `[executor.slurm]`"),
        "{}",
        out.stderr
    );
}
