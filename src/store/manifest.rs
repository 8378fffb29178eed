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
    /// Modification time (ns since the epoch) when the entry was committed: a
    /// quick check re-hashes only files whose size or time changed since.
    /// Absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
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
    ///
    /// Outputs must be regular files and directories. A symbolic link is
    /// refused rather than followed or copied: its target is not part of the
    /// entry, so it could not be hashed, and publishing it would hand readers
    /// whatever it points at (`/etc/passwd`, another entry).
    pub fn hash_outputs(out_dir: &Path) -> std::io::Result<Vec<OutputFile>> {
        let mut outputs = Vec::new();
        for entry in WalkDir::new(out_dir).sort_by_file_name() {
            let entry = entry.map_err(std::io::Error::other)?;
            let kind = entry.file_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                let rel = entry.path().strip_prefix(out_dir).unwrap_or(entry.path());
                let what = if kind.is_symlink() {
                    "a symbolic link"
                } else {
                    "not a regular file"
                };
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "output `{}` is {what}: stages must write regular files into their output directory",
                        rel.display()
                    ),
                ));
            }
            let rel = output_name(out_dir, entry.path());
            let meta = entry.metadata().map_err(std::io::Error::other)?;
            outputs.push(OutputFile {
                path: rel,
                bytes: meta.len(),
                blake3: hash_file(entry.path())?,
                mtime_ns: mtime_ns(&meta),
            });
        }
        Ok(outputs)
    }

    pub fn read(path: &Path) -> std::io::Result<Manifest> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// A file's modification time in nanoseconds since the epoch, where known.
pub fn mtime_ns(meta: &std::fs::Metadata) -> Option<u64> {
    let since = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(since.as_nanos()).ok()
}

/// Seconds since the Unix epoch, as manifests and run records store times.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An output file's name in a manifest: its path under `out_dir`, with `/`.
pub(crate) fn output_name(out_dir: &Path, path: &Path) -> String {
    path.strip_prefix(out_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}
