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
        let out = self.command(args).output().expect("scalepipe runs");
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
