//! The manifest written into every committed store entry.

use std::path::Path;

use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

use super::CacheKey;
use crate::digest::hash_file;

/// One output file of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the entry's `out/` directory, with `/` separators.
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

/// What an entry holds and how it was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub fingerprint: String,
    pub pipeline: String,
    pub stage: String,
    pub id: String,
    pub key: CacheKey,
    /// Unix time in seconds.
    pub started: f64,
    pub finished: f64,
    pub duration_s: f64,
    pub threads: usize,
    pub scalepipe_version: String,
    pub outputs: Vec<OutputFile>,
}

impl Manifest {
    /// Lists and hashes every file under `out_dir`, sorted by path.
    pub fn hash_outputs(out_dir: &Path) -> std::io::Result<Vec<OutputFile>> {
        let mut outputs = Vec::new();
        for entry in WalkDir::new(out_dir).sort_by_file_name() {
            let entry = entry.map_err(std::io::Error::other)?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(out_dir)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .replace('\\', "/");
            outputs.push(OutputFile {
                path: rel,
                bytes: entry.metadata().map_err(std::io::Error::other)?.len(),
                blake3: hash_file(entry.path())?,
            });
        }
        Ok(outputs)
    }

    pub fn read(path: &Path) -> std::io::Result<Manifest> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Seconds since the Unix epoch, as manifests and run records store times.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
