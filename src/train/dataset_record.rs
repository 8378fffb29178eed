//! `dataset.json` in a train output: which dataset instance the model was
//! trained on, with that dataset's metadata, so `eval` can check it was handed
//! the same dataset and a report can name the task.
//!
//! It names the dataset by id and fingerprint, never by path, so the same
//! pipeline gives the same bytes in any workspace.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::DatasetMeta;
use crate::json_file::{self, JsonFileError};

/// The file name, in a train output directory.
pub const FILE: &str = "dataset.json";

/// The dataset a train instance used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// Stage name of the dataset in the pipeline file.
    pub stage: String,
    pub id: String,
    pub kind: String,
    pub fingerprint: String,
    pub meta: DatasetMeta,
}

/// Reads `dataset.json` from a train output directory.
pub fn read(dir: &Path) -> Result<DatasetRecord, JsonFileError> {
    json_file::read(&dir.join(FILE), FILE)
}

/// Writes `dataset.json` into a train output directory.
pub fn write(dir: &Path, record: &DatasetRecord) -> Result<(), JsonFileError> {
    json_file::write(&dir.join(FILE), FILE, record)
}
