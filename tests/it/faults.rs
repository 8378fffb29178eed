//! Faults: processes a stage starts, Ctrl-C and SIGTERM, timeouts, SIGKILL of the
//! engine, concurrent runs on one workspace, and command-line bounds. Every test
//! drives the real binary and checks real processes through `/proc`.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use scalepipe::process;

use crate::harness::Workspace;

/// Polls `done` every 20 ms; fails after `limit`.
fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file `name` some running instance wrote into its temporary entry.
fn in_tmp(ws: &Workspace, name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(ws.join(".scalepipe/tmp"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("out").join(name))
        .find(|p| p.is_file())
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for a child with a deadline, killing it if it overstays.
fn wait_within(mut child: Child, limit: Duration) -> (Option<i32>, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A command whose shell starts a pipeline and a detached background job, then
/// writes its pid (its process group's id) and waits.
const SPREADING: &str = "sh -c 'sleep 300 &' ; sleep 300 | cat & echo $$ > group.pid; wait";

#[test]
fn ctrl_c_and_sigterm_end_every_process_of_a_command_stage_within_5_seconds() {
    for sig in ["-INT", "-TERM"] {
        let ws = Workspace::new();
        ws.write(
            "p.toml",
            &format!(
                "[pipeline]\nname = \"g\"\n[stages.s]\nkind = \"command\"\ncmd = \"{SPREADING}\"\n"
            ),
        );
        let child = ws.spawn(&["run", "p.toml"]);
        wait_until("the stage to start", Duration::from_secs(60), || {
            in_tmp(&ws, "group.pid")
                .is_some_and(|p| std::fs::read_to_string(p).is_ok_and(|t| t.ends_with('\n')))
        });
        let group = read_pid(&in_tmp(&ws, "group.pid").unwrap());
        assert!(process::group_exists(group));
        signal(&child, sig);
        let (code, took) = wait_within(child, Duration::from_secs(30));
        assert_eq!(code, Some(130), "{sig}");
        assert!(took < Duration::from_secs(5), "{sig}: took {took:?}");
        // Every member, the detached `sleep` included, is gone.
        wait_until("the group to end", Duration::from_secs(5), || {
            !process::group_exists(group)
        });
    }
}

#[test]
fn a_stage_timeout_fails_it_with_timed_out_after_and_stays_out_of_the_fingerprint() {
    let ws = Workspace::new();
    let text = |timeout: &str| {
        format!("[pipeline]\nname = \"t\"\n[stages.slow]\nkind = \"command\"\ncmd = \"{SPREADING}\"\ntimeout = {timeout}\n[stages.quick]\nkind = \"command\"\ncmd = \"true\"\ntimeout = 30\n")
    };
    ws.write("p.toml", &text("\"1s\""));
    let start = Instant::now();
    let child = ws.spawn(&["run", "p.toml"]);
    // The group's pid, read while the stage runs (a failed attempt keeps its
    // log, not its outputs).
    wait_until("the stage to start", Duration::from_secs(10), || {
        in_tmp(&ws, "group.pid").is_some_and(|p| {
            !std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .is_empty()
        })
    });
    let group = read_pid(&in_tmp(&ws, "group.pid").unwrap());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timed out after 1 s"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(20));
    wait_until("the timed-out group to end", Duration::from_secs(5), || {
        !process::group_exists(group)
    });
    // Changing only the timeout changes no fingerprint.
    let fingerprints = |ws: &Workspace| {
        let out = ws.run(&["plan", "p.toml", "--json"]);
        let plan = out.success().json();
        plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["fingerprint"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let before = fingerprints(&ws);
    ws.write("p.toml", &text("\"2h\""));
    assert_eq!(before, fingerprints(&ws));
}

#[test]
fn the_next_run_ends_stage_processes_a_sigkilled_run_left_behind() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &format!(
            "[pipeline]\nname = \"k\"\n[stages.s]\nkind = \"command\"\ncmd = \"{SPREADING}\"\n"
        ),
    );
    ws.write(
        "other.toml",
        "[pipeline]\nname = \"o\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    let mut child = ws.spawn(&["run", "p.toml"]);
    wait_until("the stage to start", Duration::from_secs(60), || {
        in_tmp(&ws, "group.pid")
            .is_some_and(|p| std::fs::read_to_string(p).is_ok_and(|t| t.ends_with('\n')))
    });
    let group = read_pid(&in_tmp(&ws, "group.pid").unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    // The engine is gone; its stage's processes are not.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        process::group_exists(group),
        "the stage died with the engine"
    );
    // Any run on the workspace ends them, whatever pipeline it runs.
    ws.run(&["run", "other.toml"]).success();
    assert!(
        !process::group_exists(group),
        "a leftover stage process survived the next run"
    );
    assert_eq!(
        std::fs::read_dir(ws.join(".scalepipe/claims"))
            .unwrap()
            .count(),
        0,
        "the stale claim is gone"
    );
}

#[test]
fn two_instances_with_one_fingerprint_execute_once() {
    let ws = Workspace::new();
    let count = ws.join("count.txt");
    // `a` and `b` compute the same thing: one key, one fingerprint.
    let stage = |name: &str| {
        format!("[stages.{name}]\nkind = \"command\"\ncmd = \"echo x >> {}; sleep 1; echo done > out.txt\"\n", count.display())
    };
    ws.write(
        "p.toml",
        &format!("[pipeline]\nname = \"dup\"\n{}{}", stage("a"), stage("b")),
    );
    let out = ws
        .run(&["run", "p.toml", "--jobs", "2", "--json"])
        .success();
    assert_eq!(
        ws.read("count.txt"),
        "x\n",
        "the fingerprint executed twice"
    );
    let summary = out.json();
    assert_eq!(
        summary["executed"].as_array().unwrap().len(),
        1,
        "{summary}"
    );
    assert_eq!(summary["cached"].as_array().unwrap().len(), 1, "{summary}");
    assert_eq!(ws.read("results/dup/a/out.txt"), "done\n");
    assert_eq!(ws.read("results/dup/b/out.txt"), "done\n");
}

#[test]
fn two_overlapping_runs_both_succeed_and_execute_each_fingerprint_once() {
    let ws = Workspace::new();
    let shared = "[stages.shared]\nkind = \"command\"\ncmd = \"sleep 0.3; echo {n} > n.txt\"\nsweep = { n = [1, 2, 3, 4] }\n";
    let own = |name: &str| {
        format!("[stages.{name}]\nkind = \"command\"\ninputs = [\"shared\"]\ncmd = \"echo {name} > out.txt\"\n")
    };
    ws.write(
        "a.toml",
        &format!("[pipeline]\nname = \"a\"\n{shared}{}", own("first")),
    );
    ws.write(
        "b.toml",
        &format!("[pipeline]\nname = \"b\"\n{shared}{}", own("second")),
    );
    let a = ws.spawn(&["run", "a.toml", "--jobs", "2"]);
    let b = ws.spawn(&["run", "b.toml", "--jobs", "2"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let mut executed = Vec::new();
    for name in ["a", "b"] {
        let record: serde_json::Value =
            serde_json::from_str(&ws.read(&format!("results/{name}/run.json"))).unwrap();
        for inst in record["instances"].as_array().unwrap() {
            if inst["status"] == "executed" {
                executed.push(inst["fingerprint"].as_str().unwrap().to_string());
            }
        }
    }
    let all = executed.len();
    executed.sort();
    executed.dedup();
    assert_eq!(all, executed.len(), "a fingerprint executed in both runs");
    assert_eq!(all, 6, "4 shared instances + one of each pipeline's own");
}

#[test]
fn jobs_beyond_the_bound_is_a_usage_error_not_a_panic() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"j\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    let out = ws.run(&["run", "p.toml", "--jobs", "5000"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--jobs 5000"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        !ws.join(".scalepipe").exists(),
        "a refused run touched the store"
    );
    ws.run(&["run", "p.toml", "--jobs", "1024"]).success();
}

#[test]
fn a_nested_run_on_the_same_workspace_fails_fast_instead_of_waiting_forever() {
    let ws = Workspace::new();
    let bin = env!("CARGO_BIN_EXE_scalepipe");
    ws.write(
        "inner.toml",
        "[pipeline]\nname = \"inner\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    ws.write(
        "outer.toml",
        &format!(
            "[pipeline]\nname = \"outer\"\n[stages.nest]\nkind = \"command\"\ncmd = \"{bin} --workspace {ws} run {ws}/inner.toml > nested.txt 2>&1; echo $? > code.txt\"\n",
            ws = ws.path().display()
        ),
    );
    let child = ws.spawn(&["run", "outer.toml"]);
    let (code, _) = wait_within(child, Duration::from_secs(60));
    assert_eq!(code, Some(0));
    assert_eq!(ws.read("results/outer/nest/code.txt"), "2\n");
    let nested = ws.read("results/outer/nest/nested.txt");
    assert!(nested.contains("from inside one of its stages"), "{nested}");
}

/// Starts `pipeline`, waits until instance `id` has been working for a moment,
/// sends SIGINT, and asserts the run ends with 130 within 5 s of the signal.
fn interrupt_mid_work(pipeline: &str, id: &str) {
    let ws = Workspace::new();
    ws.write("runs.csv", &runs_csv());
    ws.write("p.toml", pipeline);
    interrupt_instance(&ws, "p.toml", id, "-INT");
}

/// Runs `file`, waits until instance `id` has been working for a moment, sends
/// `sig`, and asserts the run ends with 130 within 5 s of the signal, without
/// committing the instance.
fn interrupt_instance(ws: &Workspace, file: &str, id: &str, sig: &str) {
    let plan = ws.run(&["plan", file, "--json"]).success().json();
    let fingerprint = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no instance {id} in {plan}"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let child = ws.spawn(&["run", file, "--jobs", "1"]);
    wait_until(&format!("{id} to start"), Duration::from_secs(120), || {
        std::fs::read_dir(ws.join(".scalepipe/tmp")).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&fingerprint))
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, sig);
    let (code, took) = wait_within(child, Duration::from_secs(300));
    assert_eq!(code, Some(130), "{id} {sig}");
    assert!(
        took < Duration::from_secs(5),
        "{id}: exit {took:?} after {sig}"
    );
    assert!(
        !ws.join(&format!(".scalepipe/cache/{fingerprint}")).exists(),
        "{id} was committed although interrupted"
    );
}

/// 40 runs of a clean power law in N, for fit stages.
fn runs_csv() -> String {
    let mut text = String::from("n,loss\n");
    for i in 0..40 {
        let n = 1e6 * 1.2f64.powi(i);
        text.push_str(&format!("{n},{}\n", 1.7 + 400.0 * n.powf(-0.3)));
    }
    text
}

#[test]
fn sigint_ends_a_run_within_5_seconds_during_eval() {
    interrupt_mid_work(
        "[pipeline]\nname = \"e\"\nseed = 1\n[stages.data]\nkind = \"dataset.markov_text\"\ntokens = 2000\nvocab = 64\nsplit = { val = 1000, test = 3000000 }\n[stages.train]\nkind = \"train\"\ninputs = [\"data\"]\nmodel = \"transformer\"\nd_model = 64\nn_layers = 2\nn_heads = 4\ncontext = 64\nbatch_size = 8\nsteps = 1\n[stages.eval]\nkind = \"eval\"\ninputs = [\"train\"]\nsplit = \"test\"\nbatch_size = 64\n",
        "eval",
    );
}

#[test]
fn sigint_ends_a_run_within_5_seconds_during_dataset_preparation() {
    interrupt_mid_work(
        "[pipeline]\nname = \"d\"\nseed = 1\n[stages.data]\nkind = \"dataset.markov_text\"\ntokens = 400000000\nvocab = 64\n",
        "data",
    );
}

#[test]
fn sigint_ends_a_run_within_5_seconds_during_a_fit() {
    interrupt_mid_work(
        "[pipeline]\nname = \"f\"\n[stages.fit]\nkind = \"fit\"\ntable = \"runs.csv\"\nn = \"n\"\nloss = \"loss\"\nform = \"power_n\"\nbootstrap = 1000000\nthreads = 1\n",
        "fit",
    );
}

/// A report over a fit of a large table: 400,000 runs, nearly all excluded
/// from the fit (status `diverged`) but every one drawn and tabled, so the
/// report takes seconds (16 s for a million at load 12) after the signal lands.
#[test]
fn sigint_and_sigterm_end_a_run_within_5_seconds_during_a_report() {
    let ws = Workspace::new();
    let mut table = String::from("n,loss,status\n");
    for i in 0..40 {
        let n = 1e6 * 1.2f64.powi(i);
        table.push_str(&format!("{n},{},ok\n", 1.7 + 400.0 * n.powf(-0.3)));
    }
    for i in 0..REPORT_ROWS {
        let n = 1e6 + i as f64;
        table.push_str(&format!("{n},{},diverged\n", 2.0 + (i % 97) as f64 / 97.0));
    }
    ws.write("big.csv", &table);
    let fit = "[stages.fit]\nkind = \"fit\"\ntable = \"big.csv\"\nn = \"n\"\nloss = \"loss\"\nstatus = \"status\"\nform = \"power_n\"\nbootstrap = 0\n";
    // Two pipelines (one name each) sharing the fit's fingerprint.
    ws.write("fit.toml", &format!("[pipeline]\nname = \"f\"\n{fit}"));
    ws.write(
        "p.toml",
        &format!("[pipeline]\nname = \"r\"\n{fit}[stages.report]\nkind = \"report\"\ninputs = [\"fit\"]\n"),
    );
    // The fit first, so that the interrupted runs spend their time in the report.
    ws.run(&["run", "fit.toml"]).success();
    for sig in ["-INT", "-TERM"] {
        interrupt_instance(&ws, "p.toml", "report", sig);
    }
}

/// Rows of the report test's table beyond the 40 fitted ones.
const REPORT_ROWS: usize = 400_000;

/// The fault benchmark, shortened: 20 seeded SIGKILLs of a 50-instance run.
#[test]
fn twenty_seeded_sigkills_leave_no_corrupt_or_partial_entry_and_resume_without_rework() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench-faults"))
        .args([
            "--trials",
            "20",
            "--seed",
            "7",
            "--scalepipe",
            env!("CARGO_BIN_EXE_scalepipe"),
        ])
        .output()
        .expect("bench-faults runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts["trials"], 20);
    for key in [
        "corrupt_entries",
        "partial_entries",
        "failed_resumes",
        "re_executions",
        "leftover_processes",
    ] {
        assert_eq!(counts[key], 0, "{key}: {counts}\n{stderr}");
    }
    // The kills did land mid-run, not only before or after it.
    assert!(
        counts["killed_while_executing"].as_u64().unwrap() > 0,
        "{counts}"
    );
}

/// `timeout` is the engine's, so it holds for library kinds too (here a fit).
#[test]
fn a_timeout_ends_a_long_fit_and_fails_it() {
    let ws = Workspace::new();
    ws.write("runs.csv", &runs_csv());
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"ft\"\n[stages.fit]\nkind = \"fit\"\ntable = \"runs.csv\"\nn = \"n\"\nloss = \"loss\"\nform = \"power_n\"\nbootstrap = 1000000\nthreads = 1\ntimeout = \"1s\"\n",
    );
    let start = Instant::now();
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("timed out after 1 s"), "{}", out.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(ws.entries().is_empty(), "a timed-out fit was committed");
}

/// Sets a file's modification time `ago` in the past.
fn age_file(path: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

#[test]
fn a_claim_from_another_host_is_waited_for_until_its_heartbeat_is_a_minute_old() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"h\"\n[stages.s]\nkind = \"command\"\ncmd = \"echo done > out.txt\"\n",
    );
    let fp = ws.fingerprint("p.toml", "s");
    // A Slurm worker on another node holds the fingerprint, heartbeat fresh.
    let claim = ws.write(
        &format!(".scalepipe/claims/{fp}"),
        "pid 1 1\nhost another-node\npgid 1 1\n",
    );
    let mut child = ws.spawn(&["run", "p.toml"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a live claim from another host was taken over"
    );
    assert!(ws.entries().is_empty());
    // Its heartbeat stops: past the limit, the claim is taken over (and pid 1's
    // group, which lives on the other host, is left alone here).
    age_file(&claim, Duration::from_secs(61));
    let (code, _) = wait_within(child, Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert_eq!(ws.read("results/h/s/out.txt"), "done\n");
    assert!(!claim.exists());
}

#[test]
fn a_running_stage_keeps_its_claims_heartbeat() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"b\"\n[stages.s]\nkind = \"command\"\ncmd = \"sleep 7; echo done > out.txt\"\n",
    );
    let fp = ws.fingerprint("p.toml", "s");
    let claim = ws.join(&format!(".scalepipe/claims/{fp}"));
    let child = ws.spawn(&["run", "p.toml"]);
    wait_until("the claim", Duration::from_secs(30), || claim.is_file());
    age_file(&claim, Duration::from_secs(600));
    std::thread::sleep(Duration::from_secs(6));
    let age = std::fs::metadata(&claim)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap_or_default();
    assert!(age < Duration::from_secs(6), "no heartbeat: {age:?} old");
    // The holder and the stage's group are recorded with their start times.
    let text = std::fs::read_to_string(&claim).unwrap();
    for key in ["pid", "pgid"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line in {text:?}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        let pid: u32 = fields[1].parse().unwrap();
        assert_eq!(
            fields.get(2).map(|s| s.parse::<u64>().unwrap()),
            process::start_time(pid),
            "{line}"
        );
    }
    let (code, _) = wait_within(child, Duration::from_secs(30));
    assert_eq!(code, Some(0));
}

#[test]
fn a_reused_pid_is_neither_a_live_holder_nor_a_group_to_end() {
    use std::os::unix::process::CommandExt;
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"r\"\n[stages.s]\nkind = \"command\"\ncmd = \"echo done > out.txt\"\n",
    );
    let fp = ws.fingerprint("p.toml", "s");
    let host = process::hostname();
    // A process that now has the pid a dead holder and its group had.
    let mut stranger = Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = stranger.id();
    let start = process::start_time(pid).unwrap();
    let claim = ws.write(
        &format!(".scalepipe/claims/{fp}"),
        &format!(
            "pid {pid} {}\nhost {host}\npgid {pid} {}\n",
            start + 1,
            start + 1
        ),
    );
    let child = ws.spawn(&["run", "p.toml"]);
    let (code, took) = wait_within(child, Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(10),
        "waited for a dead holder: {took:?}"
    );
    assert!(!claim.exists());
    assert!(
        process::is_running(pid, Some(start)),
        "a stranger with a reused pid was killed"
    );

    // The same group recorded with its own start time is the dead holder's:
    // the next run ends it.
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"r\"\n[stages.s]\nkind = \"command\"\ncmd = \"echo again > out.txt\"\n",
    );
    let fp = ws.fingerprint("p.toml", "s");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    ws.write(
        &format!(".scalepipe/claims/{fp}"),
        &format!("pid {dead}\nhost {host}\npgid {pid} {start}\n"),
    );
    ws.run(&["run", "p.toml"]).success();
    stranger.wait().unwrap();
    assert!(!process::group_exists(pid));
}
