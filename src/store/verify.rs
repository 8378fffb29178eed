//! Checking committed entries against their manifests, so the store never
//! serves bytes other than the ones it committed.
//!
//! Two depths: [`Depth::Quick`] checks the manifest, the set of files, their
//! sizes, and re-hashes only files whose modification time, status-change time
//! or inode moved since commit (a run does this for every entry it hands to a
//! stage or publishes, and after a stage ran, for every input it was given);
//! [`Depth::Full`] re-hashes every file (`scalepipe verify`, `run --verify`).
//!
//! The ctime closes the quick check's blind spot: a same-size rewrite with its
//! modification time set back keeps size and mtime, but the kernel moves the
//! ctime on every write and every `utime`, and nothing sets it back. Moves that
//! keep the content (a hard link to the file, `chmod`, a copied workspace) also
//! move it; they cost a re-hash, never a false alarm.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use walkdir::WalkDir;

use super::manifest::{ctime_ns, mtime_ns, output_name};
use super::{Manifest, Store};
use crate::digest::hash_file;

/// How thoroughly to check an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Manifest, file list and sizes; contents only where the time changed.
    Quick,
    /// Every file's content hash as well.
    Full,
}

/// What is wrong with an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no manifest.json (an incomplete or foreign directory)")]
    NoManifest,
    #[error("manifest.json is unreadable: {0}")]
    BadManifest(String),
    #[error("manifest.json is for entry {0}")]
    WrongFingerprint(String),
    #[error("`{0}` is missing")]
    Missing(String),
    #[error("`{path}` has {found} bytes, the manifest says {expected}")]
    Size {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error("`{0}` does not have the content the manifest hashed")]
    Content(String),
    #[error("`{0}` is not in the manifest")]
    Extra(String),
    #[error("`{0}` is not a regular file")]
    NotRegular(String),
    #[error("`out/` is not a directory (a symbolic link or a file)")]
    OutNotDirectory,
}

/// An entry that failed its check.
#[derive(Debug, Clone)]
pub struct BadEntry {
    pub fingerprint: String,
    /// The instance id the manifest names, when it could be read.
    pub id: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "entry {} ({id}): {}", self.fingerprint, self.problem),
            None => write!(f, "entry {}: {}", self.fingerprint, self.problem),
        }
    }
}

impl Store {
    /// Checks a committed entry against its manifest and returns the manifest.
    pub fn check(&self, fingerprint: &str, depth: Depth) -> Result<Manifest, BadEntry> {
        let bad = |id: Option<&str>, problem| BadEntry {
            fingerprint: fingerprint.to_string(),
            id: id.map(str::to_string),
            problem,
        };
        let manifest_path = self.entry_dir(fingerprint).join("manifest.json");
        let manifest = match fs::read(&manifest_path) {
            Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes)
                .map_err(|e| bad(None, Problem::BadManifest(e.to_string())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(None, Problem::NoManifest))
            }
            Err(e) => return Err(bad(None, Problem::BadManifest(e.to_string()))),
        };
        let id = Some(manifest.id.as_str());
        if manifest.fingerprint != fingerprint {
            return Err(bad(
                id,
                Problem::WrongFingerprint(manifest.fingerprint.clone()),
            ));
        }
        check_outputs(&self.out_dir(fingerprint), &manifest, depth).map_err(|p| bad(id, p))?;
        Ok(manifest)
    }
}

/// Compares the files under `out_dir` with the manifest's list.
fn check_outputs(out_dir: &Path, manifest: &Manifest, depth: Depth) -> Result<(), Problem> {
    let listed: HashMap<&str, usize> = manifest
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| (o.path.as_str(), i))
        .collect();
    match fs::symlink_metadata(out_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(Problem::OutNotDirectory),
        Err(_) => return Err(Problem::Missing("out/".into())),
    }
    let mut seen = 0;
    for entry in WalkDir::new(out_dir)
        .follow_root_links(false)
        .min_depth(1)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| match e.path() {
            Some(p) => Problem::Missing(p.display().to_string()),
            None => Problem::Missing("out/".into()),
        })?;
        let rel = output_name(out_dir, entry.path());
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(Problem::NotRegular(rel));
        }
        let Some(&i) = listed.get(rel.as_str()) else {
            return Err(Problem::Extra(rel));
        };
        seen += 1;
        let expected = &manifest.outputs[i];
        let meta = entry
            .metadata()
            .map_err(|_| Problem::Missing(rel.clone()))?;
        if meta.len() != expected.bytes {
            return Err(Problem::Size {
                path: rel,
                expected: expected.bytes,
                found: meta.len(),
            });
        }
        let moved = |recorded: Option<u64>, now: Option<u64>| recorded.is_some() && recorded != now;
        let touched = expected.mtime_ns.is_none()
            || mtime_ns(&meta) != expected.mtime_ns
            || moved(expected.ctime_ns, ctime_ns(&meta))
            || moved(expected.ino, Some(meta.ino()));
        if depth == Depth::Full || touched {
            let hash = hash_file(entry.path()).map_err(|_| Problem::Missing(rel.clone()))?;
            if hash != expected.blake3 {
                return Err(Problem::Content(rel));
            }
        }
    }
    if seen != manifest.outputs.len() {
        let present: std::collections::HashSet<String> = WalkDir::new(out_dir)
            .into_iter()
            .filter_map(Result::ok)
            .map(|e| {
                e.path()
                    .strip_prefix(out_dir)
                    .unwrap_or(e.path())
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect();
        let missing = manifest
            .outputs
            .iter()
            .find(|o| !present.contains(&o.path))
            .map_or_else(|| "out/".to_string(), |o| o.path.clone());
        return Err(Problem::Missing(missing));
    }
    Ok(())
}
