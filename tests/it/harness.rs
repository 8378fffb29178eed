//! A temporary workspace and a runner for the real `scalepipe` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A temporary workspace directory that is removed when dropped.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// What a finished `scalepipe` process printed and returned.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Parses stdout as the single JSON object `--json` prints.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success, got:\n{self:#?}");
        self
    }
}

/// Ids listed under `key` in a `run --json` object, sorted.
pub fn ids(json: &serde_json::Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = json[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` in {json}"))
        .iter()
        .map(|v| v.as_str().expect("ids are strings").to_string())
        .collect();
    ids.sort();
    ids
}

impl Workspace {
    /// The fingerprint of instance `id` of pipeline `file`, from `plan --json`.
    pub fn fingerprint(&self, file: &str, id: &str) -> String {
        let plan = self.run(&["plan", file, "--json"]).success().json();
        plan["stages"]
            .as_array()
            .expect("plan --json lists stages")
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no instance {id} in {plan}"))["fingerprint"]
            .as_str()
            .expect("a fingerprint string")
            .to_string()
    }

    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating directories) and returns its path.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        path
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    /// A `scalepipe` command in this workspace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scalepipe"));
        cmd.args(args).current_dir(self.path());
        cmd
    }

    /// Runs `scalepipe` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// Runs `scalepipe` to completion with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .expect("scalepipe runs");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `scalepipe` without waiting.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scalepipe starts")
    }

    /// Every file and directory under the workspace (relative paths), sorted:
    /// a snapshot to show a command changed nothing.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(self.path())
            .min_depth(1)
            .into_iter()
            .map(|e| e.expect("walk"))
            .map(|e| {
                let rel = e
                    .path()
                    .strip_prefix(self.path())
                    .expect("under root")
                    .display()
                    .to_string();
                let bytes = if e.file_type().is_file() {
                    std::fs::read(e.path()).expect("read")
                } else {
                    Vec::new()
                };
                (rel, bytes)
            })
            .collect();
        out.sort();
        out
    }

    /// Committed store entries.
    pub fn entries(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.join(".scalepipe/cache")) else {
            return Vec::new();
        };
        let mut out: Vec<String> = dir
            .map(|e| e.expect("entry"))
            .filter(|e| e.path().join("manifest.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }
}

/// `start <id>` and `end <id>` lines that command stages append to one shared
/// file, in the order they were written (each append of one short line is
/// atomic). A stage's markers lie inside the time the engine counts it as
/// running (started after it was launched, ended before it was reaped), so
/// overlaps seen here happened, and an order seen here is the real one.
#[derive(Debug)]
pub struct Timeline {
    /// (is a start, instance id), in file order.
    pub events: Vec<(bool, String)>,
}

impl Timeline {
    /// Shell text that runs `body` between the two markers of `$SCALEPIPE_ID`,
    /// appended to `file`.
    pub fn wrap(file: &Path, body: &str) -> String {
        let f = file.display();
        format!("echo \"start $SCALEPIPE_ID\" >> {f}; {body}; echo \"end $SCALEPIPE_ID\" >> {f}")
    }

    pub fn read(file: &Path) -> Timeline {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let events = text
            .lines()
            .map(|line| match line.split_once(' ') {
                Some(("start", id)) => (true, id.to_string()),
                Some(("end", id)) => (false, id.to_string()),
                _ => panic!("not a marker line: {line:?}"),
            })
            .collect();
        Timeline { events }
    }

    /// Index of the one start (or end) marker of `id`.
    pub fn position(&self, start: bool, id: &str) -> usize {
        let found: Vec<usize> = (0..self.events.len())
            .filter(|&k| self.events[k].0 == start && self.events[k].1 == id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{} marker of {id}: expected exactly one in {:#?}",
            if start { "start" } else { "end" },
            self.events
        );
        found[0]
    }

    /// The instances that left markers, sorted; each must have exactly one
    /// start followed by exactly one end.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .events
            .iter()
            .filter(|(start, _)| *start)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort();
        for id in &ids {
            assert!(
                self.position(true, id) < self.position(false, id),
                "{id} ended before it started: {:#?}",
                self.events
            );
        }
        ids
    }

    /// Asserts `input` wrote its end marker before `consumer` wrote its start.
    pub fn assert_before(&self, input: &str, consumer: &str) {
        assert!(
            self.position(false, input) < self.position(true, consumer),
            "{consumer} started before its input {input} finished: {:#?}",
            self.events
        );
    }

    /// The most threads in flight at once, each instance counting
    /// `threads(id)` from its start marker to its end marker.
    pub fn max_in_flight(&self, threads: impl Fn(&str) -> usize) -> usize {
        let (mut now, mut max) = (0usize, 0usize);
        for (start, id) in &self.events {
            if *start {
                now += threads(id);
                max = max.max(now);
            } else {
                now = now
                    .checked_sub(threads(id))
                    .unwrap_or_else(|| panic!("{id} ended before it started: {:#?}", self.events));
            }
        }
        max
    }
}
