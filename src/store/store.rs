//! The store: committed entries, entries being written, and the workspace lock.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Manifest;

/// The `.scalepipe/` directory of a workspace.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An entry being written: a private temporary directory until [`Store::commit`].
#[derive(Debug)]
pub struct Pending {
    pub fingerprint: String,
    pub dir: PathBuf,
}

impl Pending {
    /// Where the stage writes its outputs.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Where the stage's log goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log.txt")
    }
}

/// Holds the workspace lock until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

static PENDING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// The store of a workspace. Nothing is created until something is written.
    pub fn new(workspace: &Path) -> Store {
        Store {
            root: workspace.join(".scalepipe"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Directory of a committed entry.
    pub fn entry_dir(&self, fingerprint: &str) -> PathBuf {
        self.cache_dir().join(fingerprint)
    }

    /// Outputs of a committed entry.
    pub fn out_dir(&self, fingerprint: &str) -> PathBuf {
        self.entry_dir(fingerprint).join("out")
    }

    /// Where the last failed attempt of an instance is kept.
    pub fn failed_dir(&self, fingerprint: &str) -> PathBuf {
        self.root.join("failed").join(fingerprint)
    }

    /// Whether a complete entry exists. An entry is complete exactly when its
    /// manifest is present, because the manifest is written before the rename that
    /// publishes the entry.
    pub fn contains(&self, fingerprint: &str) -> bool {
        self.entry_dir(fingerprint).join("manifest.json").is_file()
    }

    /// Fingerprints of the committed entries, read with one directory listing.
    ///
    /// Deciding a plan checks every instance; one listing replaces a `stat` of
    /// each manifest (a fifth of a no-op run of 10,000 instances). A directory
    /// under `cache/` is always complete: entries get there only by the rename
    /// in [`Store::commit`], after their manifest is written, and leave by the
    /// rename in [`Store::remove`] before anything in them is deleted.
    pub fn listed(&self) -> HashSet<String> {
        let Ok(dir) = fs::read_dir(self.cache_dir()) else {
            return HashSet::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    pub fn manifest(&self, fingerprint: &str) -> io::Result<Manifest> {
        Manifest::read(&self.entry_dir(fingerprint).join("manifest.json"))
    }

    /// Takes the workspace lock, calling `on_wait` once if another process holds it.
    pub fn lock(&self, on_wait: impl FnOnce()) -> io::Result<StoreLock> {
        fs::create_dir_all(&self.root)?;
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock()?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        // Entries left half-written by a killed run are garbage now.
        let _ = fs::remove_dir_all(self.tmp_dir());
        fs::create_dir_all(self.cache_dir())?;
        fs::create_dir_all(self.tmp_dir())?;
        Ok(StoreLock { _file: file })
    }

    /// Starts a new entry in a fresh temporary directory.
    pub fn begin(&self, fingerprint: &str) -> io::Result<Pending> {
        let n = PENDING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .tmp_dir()
            .join(format!("{fingerprint}.{}.{n}", std::process::id()));
        fs::create_dir_all(dir.join("out"))?;
        Ok(Pending {
            fingerprint: fingerprint.to_string(),
            dir,
        })
    }

    /// Publishes a finished entry: writes its manifest, then renames the directory
    /// into the cache in one atomic step.
    pub fn commit(&self, pending: Pending, manifest: &Manifest) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
        fs::write(pending.dir.join("manifest.json"), json)?;
        let target = self.entry_dir(&pending.fingerprint);
        if target.exists() {
            // An incomplete directory with this name cannot exist (renames are
            // atomic), so this is a complete entry with the same fingerprint.
            fs::remove_dir_all(&pending.dir)?;
            return Ok(());
        }
        fs::rename(&pending.dir, &target)
    }

    /// Keeps a failed attempt (its log) under `failed/`, replacing an older one.
    pub fn keep_failed(&self, pending: Pending) -> PathBuf {
        let target = self.failed_dir(&pending.fingerprint);
        let _ = fs::remove_dir_all(&target);
        let _ = fs::create_dir_all(self.root.join("failed"));
        if fs::rename(&pending.dir, &target).is_err() {
            let _ = fs::remove_dir_all(&pending.dir);
        }
        target
    }

    /// Throws away an attempt.
    pub fn discard(&self, pending: Pending) {
        let _ = fs::remove_dir_all(&pending.dir);
    }

    /// Fingerprints of every committed entry.
    pub fn entries(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let dir = match fs::read_dir(self.cache_dir()) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in dir {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                if self.contains(name) {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a committed entry. It is renamed out of the cache first, so a
    /// reader never sees a half-deleted entry as complete.
    pub fn remove(&self, fingerprint: &str) -> io::Result<()> {
        let doomed = self.tmp_dir().join(format!("{fingerprint}.gc"));
        fs::create_dir_all(self.tmp_dir())?;
        fs::rename(self.entry_dir(fingerprint), &doomed)?;
        fs::remove_dir_all(doomed)
    }

    /// Bytes used by an entry.
    pub fn size_of(&self, fingerprint: &str) -> u64 {
        walkdir::WalkDir::new(self.entry_dir(fingerprint))
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}
