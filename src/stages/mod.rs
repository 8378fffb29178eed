//! Stage kinds: the registry of built-in [`Kind`]s, the [`Job`] trait they share,
//! and the context a job runs in.
//!
//! Words: a *stage* is a `[stages.<name>]` table of a pipeline file
//! ([`crate::pipeline::StageDef`]); an *instance* is one sweep point of a stage
//! ([`crate::graph::Instance`]); a *job* is an instance's work, configured by its
//! kind from the instance's resolved parameters. Each kind lives in its own file
//! and owns a serde parameter struct that denies unknown fields, so a typo in a
//! pipeline file is an error rather than a silently ignored key. Kind files are
//! glue: they read parameters and call the library (`data`, `train`, `fit`,
//! `report`), which knows nothing of stages.

pub mod command;
mod context;
pub mod dataset;
pub mod design;
pub mod eval;
pub mod fit;
pub mod report;
pub mod simulate;
pub mod train;

pub use context::{GroupHook, InputRef, PrefixEntry, StageContext, ENV_RUN_PID, ENV_WORKSPACE};

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// What a stage needs from the scheduler while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Threads the stage keeps busy. The scheduler never runs stages whose threads
    /// add up to more than `--jobs`; a request above `--jobs` is clamped to it.
    pub threads: usize,
    /// Whether the stage needs the GPU (at most one GPU stage runs at a time).
    pub gpu: bool,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            threads: 1,
            gpu: false,
        }
    }
}

/// One instance's work, configured by its kind and ready to run.
pub trait Job: Send + Sync {
    /// Files the stage reads besides its inputs' outputs. Their content enters the
    /// fingerprint, so editing one re-runs the stage. Paths are absolute.
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Threads and devices the stage needs.
    fn resources(&self) -> Resources {
        Resources::default()
    }

    /// For work that, given a longer budget, continues what a shorter one did (a
    /// WSD run's stable phase): the parameters that decide the shared part,
    /// and the length. The engine runs instances of a stage with equal prefix
    /// parameters and inputs shortest first, and hands each the committed
    /// entries that share its prefix ([`StageContext::prefix_entries`]), from
    /// this run or any earlier one.
    fn prefix(&self) -> Option<Prefix> {
        None
    }

    /// Does the work, writing every output into `ctx.out_dir()`.
    fn run(&self, ctx: &StageContext) -> Result<(), StageError>;
}

/// What [`Job::prefix`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Prefix {
    /// The parameters that decide the shared part (the length's keys removed).
    pub params: toml::Table,
    /// Orders instances sharing a prefix: shorter ones run first.
    pub length: f64,
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The stage's own error, in words a user can act on.
    #[error("{0}")]
    Failed(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The run was interrupted (Ctrl-C) while the stage was running.
    #[error("interrupted")]
    Cancelled,
}

impl StageError {
    /// Shorthand for an error with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        StageError::Failed(message.into())
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        StageError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

impl From<crate::data::DataError> for StageError {
    fn from(err: crate::data::DataError) -> Self {
        match err {
            crate::data::DataError::Io { path, source } => StageError::Io { path, source },
            other => StageError::Failed(other.to_string()),
        }
    }
}

impl From<crate::json_file::JsonFileError> for StageError {
    fn from(err: crate::json_file::JsonFileError) -> Self {
        match err {
            crate::json_file::JsonFileError::Io { path, source } => StageError::Io { path, source },
            other => StageError::Failed(other.to_string()),
        }
    }
}

/// A parameter error found while configuring a stage. `key` is the path of the
/// offending parameter (`"width"`, `"split.train"`) when one is known, so the
/// caller can point at its line in the pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub key: Option<String>,
    pub message: String,
}

impl ParamError {
    pub fn new(message: impl Into<String>) -> Self {
        ParamError {
            key: None,
            message: message.into(),
        }
    }

    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError {
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

/// What a kind may look at while configuring a stage.
pub struct ConfigureContext<'a> {
    /// Directory of the pipeline file: relative paths in parameters resolve here.
    pub base_dir: &'a Path,
    /// Kinds of the stages this stage lists as inputs, in order.
    pub input_kinds: &'a [String],
}

impl ConfigureContext<'_> {
    /// Resolves a path written in a pipeline file against the pipeline's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

type ConfigureFn = fn(&toml::Table, &ConfigureContext) -> Result<Box<dyn Job>, ParamError>;

/// A built-in stage kind.
#[derive(Debug)]
pub struct Kind {
    /// The name written in pipeline files.
    pub name: &'static str,
    /// Bumped whenever the kind's outputs change for the same parameters, so old
    /// cache entries stop matching.
    pub version: u32,
    /// Whether the kind takes a `seed` parameter; if the stage does not set one, the
    /// pipeline's seed is filled in (and so enters the fingerprint).
    pub takes_seed: bool,
    /// Whether the stage runs once per instance of each input (`train` reads one
    /// dataset) rather than receiving all of them (`fit` gathers every run).
    /// Other kinds can ask for it per input with `foreach = ["stage"]`.
    pub maps_inputs: bool,
    /// Input stages of this kind lend their own inputs to this stage: `eval`
    /// lists a `train` stage and also receives the dataset that train read. The
    /// pipeline reader adds those inputs, so the DAG and fingerprints see them.
    pub inherits_inputs_of: Option<&'static str>,
    /// Whether the kind takes a `pipeline_file` parameter; if the stage does not
    /// set one, the file run is filled in (relative to the workspace), so a
    /// report that names it re-renders when the file moves.
    pub names_pipeline_file: bool,
    /// Parses and validates resolved parameters.
    pub configure: ConfigureFn,
}

/// Every built-in kind.
pub fn kinds() -> &'static [Kind] {
    static KINDS: &[Kind] = &[
        command::KIND,
        dataset::teacher::KIND,
        dataset::markov_text::KIND,
        dataset::csv::KIND,
        dataset::parquet::KIND,
        dataset::text::KIND,
        dataset::prefix::KIND,
        dataset::idx::KIND,
        train::KIND,
        eval::KIND,
        fit::KIND,
        report::KIND,
        simulate::KIND,
        design::KIND,
    ];
    KINDS
}

/// Looks a kind up by the name written in a pipeline file.
pub fn kind(name: &str) -> Option<&'static Kind> {
    kinds().iter().find(|k| k.name == name)
}

/// Deserializes a kind's parameter struct from resolved parameters, turning serde's
/// error into a [`ParamError`] that names the offending key.
pub fn parse_params<P: DeserializeOwned>(table: &toml::Table) -> Result<P, ParamError> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // serde reports an unknown field at the table holding it; name the field.
        let unknown = inner
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        let key = match (unknown, path.as_str()) {
            (Some(field), "." | "") => Some(field),
            // serde_path_to_error's path already ends with the unknown field.
            (Some(field), p) if p == field || p.ends_with(&format!(".{field}")) => {
                Some(p.to_string())
            }
            (Some(field), p) => Some(format!("{p}.{field}")),
            (None, "." | "") => None,
            (None, p) => Some(p.to_string()),
        };
        let message = inner.lines().next().unwrap_or_default().to_string();
        ParamError { key, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique() {
        let mut names: Vec<&str> = kinds().iter().map(|k| k.name).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a kind is registered twice");
    }
}
