//! Reading and writing the JSON files stages exchange (`metrics.json`,
//! `dataset.json`, `fit.json`), with the path in every error.
//!
//! Each format has one typed owner module that calls these; this module only
//! knows JSON and files. Files are pretty-printed and end with a newline, so they
//! diff well and the same value always gives the same bytes.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a JSON file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid {what}: {source}", path.display())]
    Json {
        path: PathBuf,
        /// The format expected (`metrics.json`, ...).
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads `path` as a `what` (named in errors).
pub fn read<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, JsonFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| JsonFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| JsonFileError::Json {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// Writes `value` to `path`, pretty-printed with a final newline.
pub fn write<T: Serialize>(
    path: &Path,
    what: &'static str,
    value: &T,
) -> Result<(), JsonFileError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| JsonFileError::Json {
        path: path.to_path_buf(),
        what,
        source,
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| JsonFileError::Io {
        path: path.to_path_buf(),
        source,
    })
}
