//! `just bench-faults`: SIGKILL the engine at seeded random moments of a
//! 50-instance run and check what the store guarantees afterwards.
//!
//! Each trial runs the pipeline in a fresh workspace and kills `scalepipe run`
//! at a seeded moment: uniform over [0, 1.1] or [0.8, 1.15] times an
//! uninterrupted run's duration, or 0-10 ms after the last entry is committed,
//! so kills land during stage execution, commits, publishing and the state save,
//! then checks: every committed entry re-hashes to its manifest, no entry without
//! a manifest is in the cache, a second run completes, it executes none of the
//! instances committed before the kill, and no stage process is left running.
//! Prints one JSON object with the counts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use scalepipe::store::{Manifest, Store};

const PIPELINE: &str = r#"[pipeline]
name = "faults"

[stages.gen]
kind = "command"
cmd = "seq {i} 20000 > data.txt; sleep 0.02"
sweep = { i = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24] }

[stages.sum]
kind = "command"
inputs = ["gen"]
foreach = ["gen"]
cmd = "cat $SCALEPIPE_INPUTS > seen.json; sleep 0.02"
"#;

#[derive(Default, serde::Serialize)]
struct Counts {
    trials: usize,
    seed: u64,
    /// Where the kills landed: no entry committed yet, some, all (publishing or
    /// saving state), or the run had already exited.
    killed_before_first_commit: usize,
    killed_while_executing: usize,
    /// Every entry committed, no run record yet: publishing or saving state.
    killed_while_publishing_or_saving_state: usize,
    /// The run record written: the engine was exiting.
    killed_after_the_run_record: usize,
    finished_before_kill: usize,
    entries_committed_before_kills: usize,
    corrupt_entries: usize,
    partial_entries: usize,
    failed_resumes: usize,
    re_executions: usize,
    leftover_processes: usize,
}

struct Args {
    trials: usize,
    seed: u64,
    jobs: usize,
    scalepipe: PathBuf,
}

fn args() -> Args {
    let mut args = Args {
        trials: 200,
        seed: 1,
        jobs: 4,
        scalepipe: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("scalepipe")))
            .unwrap_or_else(|| "scalepipe".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--trials" => args.trials = value.parse().expect("--trials N"),
            "--seed" => args.seed = value.parse().expect("--seed N"),
            "--jobs" => args.jobs = value.parse().expect("--jobs N"),
            "--scalepipe" => args.scalepipe = value.into(),
            other => panic!("unknown flag {other} (--trials, --seed, --jobs, --scalepipe)"),
        }
    }
    args
}

fn run_command(args: &Args, ws: &Path) -> Command {
    let mut cmd = Command::new(&args.scalepipe);
    cmd.args(["--workspace"])
        .arg(ws)
        .args(["run", "p.toml", "--jobs", &args.jobs.to_string()])
        .current_dir(ws)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Checks every directory under `cache/`: (corrupt, partial).
fn verify(store: &Store) -> (usize, usize) {
    let (mut corrupt, mut partial) = (0, 0);
    for fp in store.listed() {
        let dir = store.entry_dir(&fp);
        match Manifest::read(&dir.join("manifest.json")) {
            Err(_) => partial += 1,
            Ok(manifest) => match Manifest::hash_outputs(&dir.join("out")) {
                Ok(outputs) if outputs == manifest.outputs => {}
                _ => corrupt += 1,
            },
        }
    }
    (corrupt, partial)
}

/// Processes whose working directory is inside `ws` (stage processes).
fn processes_in(ws: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(ws))
                && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                    s.rfind(')')
                        .is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z'))
                })
        })
        .count()
}

fn executed_fingerprints(ws: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(ws.join("results/faults/run.json")).unwrap_or_default();
    let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    record["instances"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|i| i["status"] == "executed")
                .filter_map(|i| i["fingerprint"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let args = args();
    let root = std::env::temp_dir().join(format!("bench-faults-{}", std::process::id()));
    // An uninterrupted run sets the window the kills are drawn from.
    let calibration = root.join("calibration");
    std::fs::create_dir_all(&calibration).unwrap();
    std::fs::write(calibration.join("p.toml"), PIPELINE).unwrap();
    let clock = Instant::now();
    let status = run_command(&args, &calibration)
        .status()
        .expect("scalepipe starts");
    assert!(status.success(), "the uninterrupted run failed");
    let full = clock.elapsed();
    eprintln!("uninterrupted run: {:.2}s", full.as_secs_f64());

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let mut counts = Counts {
        seed: args.seed,
        ..Counts::default()
    };
    for trial in 0..args.trials {
        let ws = root.join(format!("trial-{trial}"));
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("p.toml"), PIPELINE).unwrap();
        let store = Store::new(&ws);
        // A uniform draw over the whole run seldom lands after the last commit:
        // one trial in three waits for every entry to be committed, then kills
        // within 10 ms (publishing, the state save), one aims at the last 35%.
        let mut child = run_command(&args, &ws).spawn().expect("scalepipe starts");
        let clock = Instant::now();
        match trial % 3 {
            0 => std::thread::sleep(full.mul_f64(rng.gen_range(0.0..1.1))),
            1 => std::thread::sleep(full.mul_f64(rng.gen_range(0.8..1.15))),
            _ => {
                let after = std::time::Duration::from_micros(rng.gen_range(0..10_000));
                while store.listed().len() < 50 && clock.elapsed() < full * 20 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                std::thread::sleep(after);
            }
        }
        let delay = clock.elapsed();
        let finished = child.try_wait().ok().flatten().is_some();
        let _ = child.kill();
        let _ = child.wait();
        let committed: Vec<String> = store.listed().into_iter().collect();
        match committed.len() {
            _ if finished => counts.finished_before_kill += 1,
            0 => counts.killed_before_first_commit += 1,
            50 if ws.join("results/faults/run.json").exists() => {
                counts.killed_after_the_run_record += 1
            }
            50 => counts.killed_while_publishing_or_saving_state += 1,
            _ => counts.killed_while_executing += 1,
        }
        counts.entries_committed_before_kills += committed.len();
        let (corrupt, partial) = verify(&store);

        let resumed = run_command(&args, &ws).status().is_ok_and(|s| s.success());
        let executed = executed_fingerprints(&ws);
        let again = executed.iter().filter(|fp| committed.contains(fp)).count();
        let (corrupt_after, partial_after) = verify(&store);
        let leftovers = processes_in(&ws);
        counts.trials += 1;
        counts.corrupt_entries += corrupt + corrupt_after;
        counts.partial_entries += partial + partial_after;
        counts.failed_resumes += usize::from(!resumed || store.listed().len() != 50);
        counts.re_executions += again;
        counts.leftover_processes += leftovers;
        eprintln!(
            "trial {trial}: killed at {:.3}s, {} committed, resume {}, {} re-executed, {} corrupt, {} partial, {} leftover",
            delay.as_secs_f64(),
            committed.len(),
            if resumed { "ok" } else { "FAILED" },
            again,
            corrupt + corrupt_after,
            partial + partial_after,
            leftovers
        );
        let _ = std::fs::remove_dir_all(&ws);
    }
    let _ = std::fs::remove_dir_all(&root);
    println!("{}", serde_json::to_string_pretty(&counts).unwrap());
}
