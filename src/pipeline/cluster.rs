//! Where stages run: the `[executor.slurm]` table of a pipeline file and the
//! per-stage engine keys `executor`, `mem`, `time`, `gpus` and `retries`.
//!
//! None of these enter a fingerprint: where and with how much memory an
//! instance runs does not change what it computes, so moving a study from a
//! workstation to a cluster re-runs nothing.

use std::time::Duration;

use toml_edit::{Item, TableLike};

/// Which executor runs a stage's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorKind {
    /// On this machine, on a pool of `--jobs` threads.
    #[default]
    Local,
    /// As Slurm jobs (`sbatch`), each running `scalepipe worker SPEC`.
    Slurm,
}

/// A stage's requests of a cluster executor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// `executor = "local"` keeps a stage on the submitting machine in a Slurm run.
    pub executor: Option<ExecutorKind>,
    /// Memory per job, as Slurm's `--mem` reads it (`"4G"`, `"500M"`).
    pub mem: Option<String>,
    /// Wall-time limit per job, as Slurm's `--time` reads it (`"01:30:00"`).
    pub time: Option<String>,
    /// GPUs per job (`--gres=gpu:N`); `device = "cuda"` asks for one.
    pub gpus: Option<u32>,
    /// How often a job Slurm killed (time limit, preemption, node failure) is
    /// resubmitted before the instance fails.
    pub retries: u32,
}

/// `[executor.slurm]`: how a Slurm run submits, each overridable on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Instances in flight (queued or running) at most.
    pub max_jobs: usize,
    /// Time between two status checks (`squeue`).
    pub poll: Duration,
    /// The `%N` throttle of job arrays: tasks of one array running at once.
    pub array_limit: Option<u32>,
    /// Passed to `sbatch` as they are, before the script.
    pub sbatch_args: Vec<String>,
    /// Whether instances of a stage ready together go as one job array
    /// (`false`: one job per instance).
    pub arrays: bool,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            account: None,
            qos: None,
            max_jobs: 500,
            poll: Duration::from_secs(5),
            array_limit: None,
            sbatch_args: Vec::new(),
            arrays: true,
        }
    }
}

/// `[executor.slurm]` options given on the command line: each replaces the file's.
#[derive(Debug, Clone, Default)]
pub struct SlurmOverrides {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub max_jobs: Option<usize>,
    pub poll: Option<Duration>,
    pub array_limit: Option<u32>,
    pub sbatch_args: Option<Vec<String>>,
    pub arrays: Option<bool>,
}

impl SlurmOverrides {
    /// The file's options with these applied.
    pub fn apply(&self, file: &SlurmOptions) -> SlurmOptions {
        let mut options = file.clone();
        let or = |cli: &Option<String>, file: &mut Option<String>| {
            if cli.is_some() {
                file.clone_from(cli);
            }
        };
        or(&self.partition, &mut options.partition);
        or(&self.account, &mut options.account);
        or(&self.qos, &mut options.qos);
        if let Some(n) = self.max_jobs {
            options.max_jobs = n;
        }
        if let Some(poll) = self.poll {
            options.poll = poll;
        }
        if self.array_limit.is_some() {
            options.array_limit = self.array_limit;
        }
        if let Some(arrays) = self.arrays {
            options.arrays = arrays;
        }
        if let Some(args) = &self.sbatch_args {
            options.sbatch_args.clone_from(args);
        }
        options
    }
}

/// An error in one of these keys: the item to point at and the message.
pub(super) type KeyError<'i> = (&'i Item, String);

/// Reads the `[executor]` table: only `slurm` may be in it.
pub(super) fn executor_table(
    table: &dyn TableLike,
) -> Result<SlurmOptions, (Option<&str>, Option<&Item>, String)> {
    let mut options = SlurmOptions::default();
    for (key, item) in table.iter() {
        if key != "slurm" {
            return Err((
                Some(key),
                None,
                format!("unknown executor `{key}` in `[executor]` (expected `[executor.slurm]`)"),
            ));
        }
        let slurm = item.as_table_like().ok_or((
            Some(key),
            Some(item),
            "`executor.slurm` must be a table: `[executor.slurm]`".to_string(),
        ))?;
        for (key, item) in slurm.iter() {
            slurm_key(&mut options, key, item).map_err(|(item, m)| (Some(key), Some(item), m))?;
        }
    }
    Ok(options)
}

fn slurm_key<'i>(
    options: &mut SlurmOptions,
    key: &str,
    item: &'i Item,
) -> Result<(), KeyError<'i>> {
    let string = || {
        item.as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .ok_or((item, format!("`{key}` must be a non-empty string")))
    };
    let positive = || {
        item.as_integer()
            .filter(|n| *n > 0)
            .ok_or((item, format!("`{key}` must be an integer > 0")))
    };
    match key {
        "partition" => options.partition = Some(string()?),
        "arrays" => {
            options.arrays = item
                .as_bool()
                .ok_or((item, "`arrays` must be true or false".to_string()))?
        }
        "account" => options.account = Some(string()?),
        "qos" => options.qos = Some(string()?),
        "max_jobs" => options.max_jobs = positive()? as usize,
        "array_limit" => options.array_limit = Some(positive()?.min(u32::MAX as i64) as u32),
        "poll" => {
            options.poll = super::parse::duration(item).ok_or((
                item,
                "`poll` must be a duration such as \"5s\" or \"500ms\", or a number of seconds > 0"
                    .to_string(),
            ))?
        }
        "sbatch_args" => {
            let expected = || {
                (
                    item,
                    "`sbatch_args` must be a list of strings, like `sbatch_args = [\"--constraint=a100\"]`"
                        .to_string(),
                )
            };
            let array = item.as_array().ok_or_else(expected)?;
            options.sbatch_args = array
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(expected))
                .collect::<Result<_, _>>()?;
        }
        other => {
            return Err((
                item,
                format!(
                "unknown key `{other}` in `[executor.slurm]` (expected partition, account, qos, \
                     max_jobs, poll, array_limit, arrays or sbatch_args)"
            ),
            ))
        }
    }
    Ok(())
}

/// Reads a stage's placement keys.
pub(super) fn placement(table: &dyn TableLike) -> Result<Placement, KeyError<'_>> {
    let mut placement = Placement::default();
    if let Some(item) = table.get("executor") {
        placement.executor = Some(match item.as_str() {
            Some("local") => ExecutorKind::Local,
            Some("slurm") => ExecutorKind::Slurm,
            _ => {
                return Err((
                    item,
                    "`executor` must be \"local\" or \"slurm\"".to_string(),
                ))
            }
        });
    }
    if let Some(item) = table.get("mem") {
        let text = item.as_str().map(str::trim).filter(|s| is_mem(s));
        placement.mem = Some(
            text.ok_or((
                item,
                "`mem` must be an amount of memory such as \"500M\", \"4G\" or \"1T\"".to_string(),
            ))?
            .to_string(),
        );
    }
    if let Some(item) = table.get("time") {
        let text = item.as_str().map(str::trim).filter(|s| is_time(s));
        placement.time = Some(
            text.ok_or((
                item,
                "`time` must be a Slurm time limit such as \"30\" (minutes), \"01:30:00\" or \"2-00:00:00\"".to_string(),
            ))?
            .to_string(),
        );
    }
    if let Some(item) = table.get("gpus") {
        let n = item.as_integer().filter(|n| (0..=1024).contains(n));
        placement.gpus =
            Some(n.ok_or((item, "`gpus` must be an integer from 0 to 1024".to_string()))? as u32);
    }
    if let Some(item) = table.get("retries") {
        let n = item.as_integer().filter(|n| (0..=100).contains(n));
        placement.retries = n.ok_or((
            item,
            "`retries` must be an integer from 0 to 100".to_string(),
        ))? as u32;
    }
    Ok(placement)
}

/// `4G`, `500M`, `1024` (megabytes), as `--mem` takes them.
fn is_mem(text: &str) -> bool {
    let digits = text.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty()
        && digits.len() + 1 >= text.len()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0)
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn is_time(text: &str) -> bool {
    let numbers = |part: &str, most: usize| {
        let fields: Vec<&str> = part.split(':').collect();
        fields.len() <= most
            && fields
                .iter()
                .all(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
    };
    match text.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(text, 3) && text != "0" && text != "00:00:00",
    }
}

#[cfg(test)]
mod tests {
    use super::{is_mem, is_time};

    #[test]
    fn memory_and_time_as_slurm_reads_them() {
        for ok in ["4G", "500M", "1024", "1t"] {
            assert!(is_mem(ok), "{ok}");
        }
        for bad in ["", "G", "4GB", "-1G", "0", "4 G"] {
            assert!(!is_mem(bad), "{bad}");
        }
        for ok in ["30", "01:30:00", "2-00:00:00", "1-12", "5:00"] {
            assert!(is_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "a-1", "0", "-1"] {
            assert!(!is_time(bad), "{bad}");
        }
    }
}
