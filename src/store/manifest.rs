//! The manifest written into every committed store entry.

use std::os::unix::fs::MetadataExt;
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
    /// Status-change time (ns) and inode number when the entry was committed.
    /// A same-size rewrite whose modification time was set back (`touch -d`,
    /// `utime`) still moves the ctime, which no call can set, and a file
    /// replaced by another has another inode: either makes the quick check
    /// re-hash the file. Absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
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
        real_dir(out_dir, "the output directory")?;
        let mut outputs = Vec::new();
        for entry in WalkDir::new(out_dir)
            .follow_root_links(false)
            .sort_by_file_name()
        {
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
                ctime_ns: ctime_ns(&meta),
                ino: Some(meta.ino()),
            });
        }
        Ok(outputs)
    }

    pub fn read(path: &Path) -> std::io::Result<Manifest> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Fails unless `path` is a directory itself, not a symbolic link to one: a
/// stage may replace its own output directory (or its entry's) with a link,
/// and the engine must not hash, write or delete through it what lies
/// outside the store.
pub(crate) fn real_dir(path: &Path, what: &str) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display())))?;
    if meta.is_dir() {
        return Ok(());
    }
    let found = if meta.file_type().is_symlink() {
        "a symbolic link"
    } else {
        "not a directory"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{what} {} is {found}: a stage must not replace it (the engine writes only inside the store)",
            path.display()
        ),
    ))
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

/// A file's status-change time in nanoseconds since the epoch.
pub fn ctime_ns(meta: &std::fs::Metadata) -> Option<u64> {
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u64::try_from(meta.ctime_nsec()).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
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
