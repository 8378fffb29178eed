//! `command`: runs any program with declared inputs and outputs, cached like every
//! other stage (what DVC and Snakemake stages do).
//!
//! `cmd` runs under `sh -c` in the fresh output directory. Every other scalar
//! parameter is substituted for `{name}` in `cmd` and exported as
//! `SCALEPIPE_PARAM_<NAME>`. `SCALEPIPE_OUT` is the output directory and
//! `SCALEPIPE_INPUTS` a JSON file listing the input instances. `deps` lists files
//! whose content enters the fingerprint; `threads` declares how many cores the
//! program keeps busy.
//!
//! The shell runs in its own process group. Ctrl-C and `timeout` end the whole
//! group (SIGTERM, then SIGKILL after [`process::GRACE`]), and whatever the
//! command left running in the background when it exited is killed too: nothing
//! it started may write into an entry after it is committed.
//!
//! The group is recorded in the instance's claim before the command starts, so a
//! run that replaces a SIGKILLed engine can end it: the shell is spawned gated
//! ([`GATE`]) and blocks on a read of its stdin until the engine, having
//! recorded the group durably, writes the go-ahead. If the engine dies first,
//! the pipe's write end closes with it, the read sees end-of-file, and the
//! shell exits without running anything.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{ConfigureContext, Job, Kind, ParamError, Resources, StageContext, StageError};
use crate::kinds_doc::ParamDoc;
use crate::process;

pub const KIND: Kind = Kind {
    name: "command",
    version: 1,
    takes_seed: false,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// A configured command stage: the command with its parameters substituted.
/// The `SCALEPIPE_PARAM_*` variables are built from the parameters when it runs,
/// not stored: a plan holds one configured stage per sweep point.
#[derive(Debug)]
pub struct CommandJob {
    cmd: String,
    deps: Vec<PathBuf>,
    threads: usize,
}

/// Parameters with a meaning of their own; every other one is substituted.
/// The reference of `command`'s own parameters ([`crate::kinds_doc`]); any other
/// scalar is a substitution.
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("cmd", "string", "required", "Shell command run with `sh -c` in the output directory; `{name}` is replaced by parameter `name`."),
    ParamDoc::new("deps", "list of strings", "[]", "Files whose content enters the fingerprint (editing one re-runs the stage)."),
    ParamDoc::new("threads", "integer", "1", "Cores the command keeps busy (the scheduler's budget)."),
];

pub(crate) const OWN_KEYS: [&str; 3] = ["cmd", "deps", "threads"];

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let mut cmd: Option<&str> = None;
    let mut deps = Vec::new();
    let mut threads = 1;
    let mut values = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "cmd" => match value {
                toml::Value::String(s) if !s.trim().is_empty() => cmd = Some(s),
                _ => return Err(ParamError::at("cmd", "expected a non-empty string")),
            },
            "deps" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| ParamError::at("deps", "expected a list of file paths"))?;
                for item in list {
                    let path = item.as_str().ok_or_else(|| {
                        ParamError::at("deps", "expected a list of file paths (strings)")
                    })?;
                    deps.push(cx.resolve(path));
                }
            }
            "threads" => {
                threads = value
                    .as_integer()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| ParamError::at("threads", "expected an integer >= 1"))?
                    as usize;
            }
            _ => {
                let text = scalar_text(value).ok_or_else(|| {
                    ParamError::at(
                        key.as_str(),
                        "expected a string, number or boolean (command parameters are substituted into `cmd`)",
                    )
                })?;
                values.push((key.as_str(), text));
            }
        }
    }
    let mut cmd = cmd
        .ok_or_else(|| ParamError::new("missing parameter `cmd` (the shell command to run)"))?
        .to_string();
    // In parameter order, each over the result of the previous one.
    let mut pattern = String::new();
    for (key, text) in &values {
        pattern.clear();
        pattern.push('{');
        pattern.push_str(key);
        pattern.push('}');
        if cmd.contains(pattern.as_str()) {
            cmd = cmd.replace(pattern.as_str(), text);
        }
    }
    Ok(Box::new(CommandJob { cmd, deps, threads }))
}

/// Text of a scalar parameter as substituted into the command.
fn scalar_text(value: &toml::Value) -> Option<Cow<'_, str>> {
    match value {
        toml::Value::String(s) => Some(Cow::Borrowed(s)),
        toml::Value::Integer(i) => Some(Cow::Owned(i.to_string())),
        toml::Value::Float(f) => Some(Cow::Owned(f.to_string())),
        toml::Value::Boolean(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// The script the stage's shell runs: wait for the engine's `go` on stdin
/// (end-of-file: the engine died, run nothing), then become `sh -c "$1"` with
/// stdin from `/dev/null`. `exec` keeps the pid, so the group the engine
/// recorded is the command's.
const GATE: &str =
    r#"IFS= read -r go && [ "$go" = go ] || exit 125; exec sh -c "$1" sh </dev/null"#;

/// `sh` running `cmd` behind [`GATE`], in a process group of its own, with its
/// stdin a pipe for the go-ahead.
fn gated(cmd: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(GATE)
        .arg("sh")
        .arg(cmd)
        .stdin(Stdio::piped())
        .process_group(0);
    command
}

/// Waits for the shell; on Ctrl-C or timeout ends its whole group (SIGTERM, then
/// SIGKILL after the grace period) and returns [`StageError::Cancelled`].
fn wait_or_end(
    child: &mut Child,
    group: u32,
    ctx: &StageContext,
) -> Result<ExitStatus, StageError> {
    let waiting = |e: std::io::Error| StageError::msg(format!("waiting for command: {e}"));
    // Poll with a growing pause: short commands finish with little latency,
    // long ones cost almost nothing to watch.
    let mut pause = Duration::from_micros(100);
    loop {
        if let Some(status) = child.try_wait().map_err(waiting)? {
            return Ok(status);
        }
        if ctx.cancelled() {
            process::signal_group(group, Signal::SIGTERM);
            let deadline = Instant::now() + process::GRACE;
            while child.try_wait().map_err(waiting)?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            process::signal_group(group, Signal::SIGKILL);
            let _ = child.wait();
            return Err(StageError::Cancelled);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `SCALEPIPE_PARAM_<NAME>` for every substituted parameter, in parameter order.
fn param_env(params: &toml::Table) -> Vec<(String, String)> {
    params
        .iter()
        .filter(|(key, _)| !OWN_KEYS.contains(&key.as_str()))
        .filter_map(|(key, value)| {
            let text = scalar_text(value)?;
            Some((
                format!("SCALEPIPE_PARAM_{}", key.to_uppercase()),
                text.into_owned(),
            ))
        })
        .collect()
}

impl Job for CommandJob {
    fn files(&self) -> Vec<PathBuf> {
        self.deps.clone()
    }

    fn resources(&self) -> Resources {
        Resources {
            threads: self.threads,
            gpu: false,
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let out = ctx.out_dir();
        // The inputs list lives beside the outputs, not among them.
        let inputs_path = out.parent().unwrap_or(out).join("inputs.json");
        let inputs = serde_json::to_vec_pretty(ctx.inputs())
            .map_err(|e| StageError::msg(format!("cannot encode inputs: {e}")))?;
        std::fs::write(&inputs_path, inputs).map_err(|e| StageError::io(&inputs_path, e))?;

        let log_path = out.parent().unwrap_or(out).join("command.log");
        let log = File::create(&log_path).map_err(|e| StageError::io(&log_path, e))?;
        let log_err = log.try_clone().map_err(|e| StageError::io(&log_path, e))?;

        let mut child = gated(&self.cmd)
            .current_dir(out)
            .env("SCALEPIPE_OUT", out)
            .env("SCALEPIPE_INPUTS", &inputs_path)
            .env("SCALEPIPE_ID", ctx.id())
            .envs(param_env(ctx.params()))
            .envs(ctx.engine_env().iter().map(|(k, v)| (k, v)))
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| StageError::msg(format!("cannot start `sh -c {}`: {e}", self.cmd)))?;
        // The shell leads its group: the group id is its pid. It waits at the
        // gate until the group is recorded.
        let group = child.id();
        let mut go = child.stdin.take().expect("stdin is piped");
        if let Err(e) = ctx.started_group(group) {
            // Unrecorded, it must not run: end-of-file closes the gate.
            drop(go);
            process::signal_group(group, Signal::SIGKILL);
            let _ = child.wait();
            return Err(StageError::msg(format!(
                "cannot record the command's process group {group} in its claim: {e}"
            )));
        }
        // A failed write means the shell is gone already; its status says why.
        let _ = go.write_all(b"go\n");
        drop(go);
        ctx.log(&format!("$ {}", self.cmd));

        let status = wait_or_end(&mut child, group, ctx)?;
        // Background processes the command left behind.
        process::signal_group(group, Signal::SIGKILL);
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in output.lines() {
            ctx.log(line);
        }
        if status.success() {
            Ok(())
        } else {
            let tail: Vec<&str> = output.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(StageError::msg(format!(
                "command `{}` exited with {}{}",
                self.cmd,
                status,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("\n{}", tail.join("\n"))
                }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    /// Runs `cmd` as a command stage in `dir` with `hook` recording groups.
    fn run_with_hook(
        dir: &std::path::Path,
        cmd: &str,
        hook: &crate::stages::GroupHook<'_>,
    ) -> Result<(), StageError> {
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let job = CommandJob {
            cmd: cmd.into(),
            deps: Vec::new(),
            threads: 1,
        };
        let params = toml::Table::new();
        let cancel = AtomicBool::new(false);
        let progress = |_: u64, _: u64, _: &str| {};
        let ctx = StageContext::new("c", &out, &[], &params, 1, &cancel, &progress, None)
            .with_group_hook(hook);
        job.run(&ctx)
    }

    #[test]
    fn the_command_starts_only_after_its_group_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("out/started");
        let seen = Mutex::new(None);
        let hook = |pgid: u32| {
            // A slow disk: the command must still be waiting at the gate.
            std::thread::sleep(Duration::from_millis(300));
            *seen.lock().unwrap() = Some((pgid, marker.exists()));
            Ok(())
        };
        run_with_hook(dir.path(), "touch started", &hook).unwrap();
        let (pgid, started_early) = seen.lock().unwrap().expect("the group was reported");
        assert!(
            !started_early,
            "the command ran before its group {pgid} was recorded"
        );
        assert!(marker.exists(), "the command ran after the go-ahead");
    }

    #[test]
    fn a_group_that_cannot_be_recorded_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let hook = |_: u32| Err(std::io::Error::other("disk full"));
        let err = run_with_hook(dir.path(), "touch started", &hook).unwrap_err();
        assert!(err.to_string().contains("cannot record"), "{err}");
        assert!(!dir.path().join("out/started").exists());
    }

    #[test]
    fn the_gate_runs_nothing_when_the_engine_dies_before_the_go_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = gated("touch started")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        // What the kernel does when the engine is killed: the pipe's write
        // end closes without a go-ahead.
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(125));
        assert!(!dir.path().join("started").exists());
    }
}
