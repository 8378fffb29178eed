//! Slurm's commands as scalepipe calls them: `sbatch` to submit, one `squeue`
//! per poll for every job of a run, `scontrol show job` for why a job left the
//! queue without a status file, `scancel` for Ctrl-C. No accounting (`sacct`,
//! slurmdbd) is needed.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

/// A Slurm command that could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{command}` (is Slurm installed and on PATH?): {source}")]
    Spawn {
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: &'static str,
        status: String,
        stderr: String,
    },
}

fn run(command: &'static str, args: &[String]) -> Result<Output, SlurmError> {
    Command::new(command)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Spawn { command, source })
}

fn failed(command: &'static str, output: &Output) -> SlurmError {
    SlurmError::Failed {
        command,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    }
}

/// Submits `script` with `args` before it; returns the job id (of the array,
/// for an array job).
pub fn sbatch(args: &[String], script: &Path) -> Result<String, SlurmError> {
    let mut all = vec!["--parsable".to_string()];
    all.extend_from_slice(args);
    all.push(script.display().to_string());
    let output = run("sbatch", &all)?;
    if !output.status.success() {
        return Err(failed("sbatch", &output));
    }
    // `--parsable` prints `<id>` or `<id>;<cluster>`.
    let text = String::from_utf8_lossy(&output.stdout);
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SlurmError::Failed {
            command: "sbatch",
            status: "unexpected output".into(),
            stderr: text.trim().to_string(),
        });
    }
    Ok(id)
}

/// Where a job is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Pending,
    Running,
}

/// One `squeue` for the given jobs (array ids stand for all their tasks):
/// each queued job or array task by id (`123`, `123_4`) and its state. Jobs
/// that left the queue are absent.
pub fn squeue(jobs: &[String]) -> Result<HashMap<String, Queued>, SlurmError> {
    if jobs.is_empty() {
        return Ok(HashMap::new());
    }
    let args = vec![
        "--noheader".to_string(),
        "--array".to_string(),
        "--format=%i|%T".to_string(),
        format!("--jobs={}", jobs.join(",")),
    ];
    let output = run("squeue", &args)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // A single job id Slurm no longer knows is an error, not an empty list.
        if stderr.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        return Err(failed("squeue", &output));
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_squeue(text: &str) -> HashMap<String, Queued> {
    text.lines()
        .filter_map(|line| {
            let (id, state) = line.trim().split_once('|')?;
            let state = match state.trim() {
                "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" => Queued::Running,
                _ => Queued::Pending,
            };
            Some((id.trim().to_string(), state))
        })
        .collect()
}

/// What `scontrol show job` says about a job that ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobEnd {
    /// `TIMEOUT`, `CANCELLED`, `NODE_FAIL`, `OUT_OF_MEMORY`, `PREEMPTED`, `FAILED`, ...
    pub state: String,
    pub reason: String,
    pub exit_code: String,
    pub time_limit: String,
}

impl JobEnd {
    /// Whether resubmitting may help: Slurm, not the stage, ended it.
    pub fn retriable(&self) -> bool {
        matches!(
            self.state.as_str(),
            "TIMEOUT" | "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL"
        )
    }

    /// The state in words a user can act on.
    pub fn describe(&self) -> String {
        let what = match self.state.as_str() {
            "TIMEOUT" => format!(
                "timed out: Slurm ended it at its time limit ({})",
                self.time_limit
            ),
            "CANCELLED" => "cancelled on Slurm (scancel, or an administrator)".to_string(),
            "NODE_FAIL" => "its node failed".to_string(),
            "BOOT_FAIL" => "its node failed to boot".to_string(),
            "OUT_OF_MEMORY" => "out of memory: Slurm killed it at its `mem` limit".to_string(),
            "PREEMPTED" => "preempted by Slurm".to_string(),
            "DEADLINE" => "ended at its deadline".to_string(),
            "FAILED" => format!(
                "failed with exit code {} before the worker wrote its status",
                self.exit_code
            ),
            other => format!("ended in Slurm state {other}"),
        };
        match self.reason.as_str() {
            "" | "None" => format!("{what} [Slurm state {}]", self.state),
            reason => format!("{what} [Slurm state {}, reason {reason}]", self.state),
        }
    }
}

/// How a job ended, `None` when Slurm no longer knows it (ended more than
/// `MinJobAge` ago).
pub fn show_job(id: &str) -> Result<Option<JobEnd>, SlurmError> {
    let output = run("scontrol", &["show".into(), "job".into(), id.to_string()])?;
    if !output.status.success() {
        if String::from_utf8_lossy(&output.stderr).contains("Invalid job id") {
            return Ok(None);
        }
        return Err(failed("scontrol", &output));
    }
    Ok(Some(parse_show_job(&String::from_utf8_lossy(
        &output.stdout,
    ))))
}

fn parse_show_job(text: &str) -> JobEnd {
    let mut end = JobEnd::default();
    for field in text.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let slot = match key {
            "JobState" => &mut end.state,
            "Reason" => &mut end.reason,
            "ExitCode" => &mut end.exit_code,
            "TimeLimit" => &mut end.time_limit,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = value.to_string();
        }
    }
    end
}

/// Cancels jobs (an array id cancels all its tasks).
pub fn scancel(jobs: &[String]) -> Result<(), SlurmError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let output = run("scancel", jobs)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed("scancel", &output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_become_states_by_task() {
        let q = parse_squeue("12_0|RUNNING\n12_1|PENDING\n13|COMPLETING\n\n");
        assert_eq!(q["12_0"], Queued::Running);
        assert_eq!(q["12_1"], Queued::Pending);
        assert_eq!(q["13"], Queued::Running);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn show_job_gives_state_reason_and_limit() {
        let text = "JobId=7 JobName=x\n   JobState=TIMEOUT Reason=TimeLimit Dependency=(null)\n   \
                    Requeue=1 ExitCode=0:15\n   RunTime=00:01:01 TimeLimit=00:01:00 TimeMin=N/A\n";
        let end = parse_show_job(text);
        assert_eq!(end.state, "TIMEOUT");
        assert_eq!(end.reason, "TimeLimit");
        assert_eq!(end.exit_code, "0:15");
        assert_eq!(end.time_limit, "00:01:00");
        assert!(end.retriable());
        assert!(end.describe().starts_with("timed out"));
        let cancelled = parse_show_job("JobState=CANCELLED Reason=None ExitCode=0:15");
        assert!(!cancelled.retriable());
        assert!(cancelled.describe().contains("cancelled"));
    }
}
