//! The context a running stage sees: where to write, what its inputs are, how to
//! report progress and whether the run has been interrupted.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One committed output of an upstream stage instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputRef {
    /// Stage name in the pipeline file (`train`).
    pub stage: String,
    /// Instance id (`train[width=64]`).
    pub id: String,
    /// Stage kind (`train`, `dataset.teacher`).
    pub kind: String,
    /// Resolved parameters of that instance.
    pub params: toml::Table,
    /// Directory holding the instance's outputs (read-only).
    pub dir: PathBuf,
    /// The instance's fingerprint.
    pub fingerprint: String,
}

/// A committed entry of an instance that shares this one's prefix
/// ([`super::Job::prefix`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefixEntry {
    /// The instance id it was committed under.
    pub id: String,
    pub fingerprint: String,
    /// Its outputs (read-only).
    pub dir: PathBuf,
}

/// Progress callback: `(position, length, message)`.
pub type ProgressFn<'a> = dyn Fn(u64, u64, &str) + Send + Sync + 'a;

/// Warning callback: the message, already written to the stage's log.
pub type WarnFn<'a> = dyn Fn(&str) + Send + Sync + 'a;

/// Records a process group a stage started; `Ok` once it is on disk.
pub type GroupHook<'a> = dyn Fn(u32) -> std::io::Result<()> + Sync + 'a;

/// Everything a stage may use while it runs.
pub struct StageContext<'a> {
    pub(crate) id: &'a str,
    pub(crate) out_dir: &'a Path,
    pub(crate) inputs: &'a [InputRef],
    pub(crate) params: &'a toml::Table,
    pub(crate) threads: usize,
    pub(crate) cancel: &'a AtomicBool,
    pub(crate) progress: &'a ProgressFn<'a>,
    pub(crate) log: Mutex<Option<File>>,
    /// The stage's `timeout`, and when it runs out.
    pub(crate) deadline: Option<(Duration, Instant)>,
    /// Variables the engine exports to processes a stage starts.
    pub(crate) env: Vec<(String, String)>,
    /// Told of every process group a stage starts (the engine records it in the
    /// instance's claim, so a later run can end it if this one is killed).
    pub(crate) on_group: Option<&'a GroupHook<'a>>,
    pub(crate) warn: Option<&'a WarnFn<'a>>,
    pub(crate) pipeline_file: Option<&'a Path>,
    pub(crate) prefix_entries: Vec<PrefixEntry>,
}

/// The variable, set for every process a stage starts, holding the workspace a
/// run writes; `scalepipe run` on that workspace from inside a stage fails fast.
pub const ENV_WORKSPACE: &str = "SCALEPIPE_WORKSPACE";
/// The pid of the run that started a stage's processes.
pub const ENV_RUN_PID: &str = "SCALEPIPE_RUN_PID";

impl<'a> StageContext<'a> {
    /// Builds a context; the engine does this, and tests of single stages may too.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &'a str,
        out_dir: &'a Path,
        inputs: &'a [InputRef],
        params: &'a toml::Table,
        threads: usize,
        cancel: &'a AtomicBool,
        progress: &'a ProgressFn<'a>,
        log: Option<File>,
    ) -> Self {
        StageContext {
            id,
            out_dir,
            inputs,
            params,
            threads,
            cancel,
            progress,
            log: Mutex::new(log),
            deadline: None,
            env: Vec::new(),
            on_group: None,
            warn: None,
            pipeline_file: None,
            prefix_entries: Vec::new(),
        }
    }

    /// Sets the committed entries that share the instance's prefix.
    pub fn with_prefix_entries(mut self, entries: Vec<PrefixEntry>) -> Self {
        self.prefix_entries = entries;
        self
    }

    /// Committed entries of instances sharing this one's prefix
    /// ([`super::Job::prefix`]), checked against their manifests; empty for
    /// kinds without one.
    pub fn prefix_entries(&self) -> &[PrefixEntry] {
        &self.prefix_entries
    }

    /// Where [`Self::warn`] sends warnings besides the log (the engine shows them
    /// on the terminal).
    pub fn with_warnings(mut self, warn: &'a WarnFn<'a>) -> Self {
        self.warn = Some(warn);
        self
    }

    /// The pipeline file the run was started from, as given on the command line.
    pub fn with_pipeline_file(mut self, file: &'a Path) -> Self {
        self.pipeline_file = Some(file);
        self
    }

    /// The pipeline file of the run, when the engine runs the stage.
    pub fn pipeline_file(&self) -> Option<&Path> {
        self.pipeline_file
    }

    /// A problem that does not stop the stage but that the user should see: written
    /// to the log as `warning: ...` and shown on the terminal.
    pub fn warn(&self, message: &str) {
        self.log(&format!("warning: {message}"));
        if let Some(warn) = self.warn {
            warn(message);
        }
    }

    /// Gives the stage `timeout` from now: then [`Self::cancelled`] turns true
    /// and [`Self::timed_out`] says why.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.deadline = timeout.map(|t| (t, Instant::now() + t));
        self
    }

    /// Sets the variables exported to processes the stage starts.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// Sets who is told of process groups the stage starts.
    pub fn with_group_hook(mut self, hook: &'a GroupHook<'a>) -> Self {
        self.on_group = Some(hook);
        self
    }

    /// The stage's timeout if it has run out.
    pub fn timed_out(&self) -> Option<Duration> {
        self.deadline
            .filter(|(_, at)| Instant::now() >= *at)
            .map(|(timeout, _)| timeout)
    }

    /// Variables to export to every process the stage starts.
    pub fn engine_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Reports a process group the stage started; returns once the engine
    /// has recorded it durably (a stage must not let the group run before:
    /// if the engine died in between, nothing would know to end it).
    pub fn started_group(&self, pgid: u32) -> std::io::Result<()> {
        match self.on_group {
            Some(hook) => hook(pgid),
            None => Ok(()),
        }
    }

    /// The instance id, e.g. `train[width=64]`.
    pub fn id(&self) -> &str {
        self.id
    }

    /// Fresh, empty directory the stage writes its outputs into.
    pub fn out_dir(&self) -> &Path {
        self.out_dir
    }

    /// Upstream instances, in the order the stage lists its inputs (all instances
    /// of a swept input, in sweep order).
    pub fn inputs(&self) -> &[InputRef] {
        self.inputs
    }

    /// Resolved parameters of this instance.
    pub fn params(&self) -> &toml::Table {
        self.params
    }

    /// Threads the scheduler granted this stage.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// True once the user interrupted the run or the stage's timeout ran out;
    /// long loops should check it and return [`super::StageError::Cancelled`].
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.timed_out().is_some()
    }

    /// Reports progress of long work (shown as a progress bar).
    pub fn progress(&self, pos: u64, len: u64, message: &str) {
        (self.progress)(pos, len, message);
    }

    /// Appends a line to the stage's log, kept with its cache entry.
    pub fn log(&self, line: &str) {
        if let Ok(mut guard) = self.log.lock() {
            if let Some(file) = guard.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    }
}
