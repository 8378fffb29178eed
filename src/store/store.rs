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

    /// Names under `cache/`, read with one directory listing.
    ///
    /// Deciding a plan checks every instance; one listing replaces a `stat` of
    /// each manifest for the instances that are not in the store. A listed
    /// name is not trusted to be complete: a directory can be created there by
    /// hand or left without its manifest, so `decide` checks the manifest of
    /// each listed name it would use ([`Store::contains`]).
    pub fn listed(&self) -> HashSet<String> {
        let Ok(dir) = fs::read_dir(self.cache_dir()) else {
            return HashSet::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Every name under `cache/`, complete entries or not, sorted.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let dir = match fs::read_dir(self.cache_dir()) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in dir {
            if let Some(name) = entry?.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
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
        if let Err(e) = fs::create_dir_all(dir.join("out")) {
            let _ = fs::remove_dir_all(&dir);
            return Err(super::durable::at(&dir, e));
        }
        Ok(Pending {
            fingerprint: fingerprint.to_string(),
            dir,
        })
    }

    /// Publishes a finished entry: writes its manifest, flushes the outputs and
    /// the manifest to disk, renames the directory into the cache in one atomic
    /// step, and flushes the cache directory so the rename is on disk too. After
    /// a crash an entry is either absent or holds the bytes its manifest
    /// hashed (a name lost inside it fails the check before it is read). Logs
    /// beside `out/` are not flushed: nothing reads them as an entry.
    ///
    /// Nothing is written through a link a stage left: the entry and its
    /// `out/` must be directories themselves, and `manifest.json` is created
    /// new (whatever the stage put at that name is removed first), so a link
    /// planted there never sends the manifest outside the store.
    ///
    /// When it fails (a full disk), the attempt is kept under `failed/` like a
    /// failed stage's (logs, not outputs), so `tmp/` holds nothing of it.
    pub fn commit(&self, pending: Pending, manifest: &Manifest) -> io::Result<()> {
        let committed = self.try_commit(&pending, manifest);
        if committed.is_err() && fs::symlink_metadata(&pending.dir).is_ok() {
            self.keep_failed(pending);
        }
        committed
    }

    fn try_commit(&self, pending: &Pending, manifest: &Manifest) -> io::Result<()> {
        super::manifest::real_dir(&pending.dir, "the entry directory")?;
        super::manifest::real_dir(&pending.out_dir(), "the output directory")?;
        let json = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
        let path = pending.dir.join("manifest.json");
        let written = (|| {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut file = File::options().write(true).create_new(true).open(&path)?;
            io::Write::write_all(&mut file, &json)?;
            file.sync_all()
        })();
        written.map_err(|e| super::durable::at(&path, e))?;
        super::durable::sync_files(&pending.out_dir())?;
        let target = self.entry_dir(&pending.fingerprint);
        if self.contains(&pending.fingerprint) {
            // A complete entry with the same fingerprint (another process's, or
            // this one's from an earlier attempt): same key, same outputs.
            fs::remove_dir_all(&pending.dir)?;
            return Ok(());
        }
        if fs::symlink_metadata(&target).is_ok() {
            // Something without a manifest squats on the name: never a valid
            // entry, so it is kept aside rather than trusted or merged.
            self.quarantine(
                &pending.fingerprint,
                "no manifest.json when an entry was committed",
            )?;
        }
        if let Err(e) = fs::rename(&pending.dir, &target) {
            // Another process (a worker on another host) committed the same
            // fingerprint between the check above and the rename: its entry
            // stands, this copy is discarded.
            if self.contains(&pending.fingerprint) {
                fs::remove_dir_all(&pending.dir)?;
                return Ok(());
            }
            return Err(super::durable::at(&target, e));
        }
        super::durable::sync_dir(&self.cache_dir())
            .map_err(|e| super::durable::at(&self.cache_dir(), e))
    }

    /// Keeps a failed attempt's logs under `failed/`, replacing an older one.
    /// Its partial outputs are dropped: they are never read again (`failed/`
    /// is not an entry), and when a full disk is why the attempt failed, a copy
    /// of them would keep the disk full for the re-run.
    ///
    /// An entry directory the stage replaced by a link is only unlinked:
    /// nothing the link points at is deleted or moved.
    pub fn keep_failed(&self, pending: Pending) -> PathBuf {
        let target = self.failed_dir(&pending.fingerprint);
        let _ = fs::remove_dir_all(&target);
        if super::manifest::real_dir(&pending.dir, "the entry directory").is_err() {
            let _ = fs::remove_file(&pending.dir);
            return target;
        }
        let _ = fs::create_dir_all(self.root.join("failed"));
        // `remove_dir_all` removes a link itself, never what it points at.
        let _ = fs::remove_dir_all(pending.out_dir());
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

    /// Removes a committed entry (or whatever sits on its name). It is renamed
    /// out of the cache first, so a reader never sees a half-deleted entry.
    pub fn remove(&self, fingerprint: &str) -> io::Result<()> {
        let doomed = self.tmp_dir().join(format!("{fingerprint}.gc"));
        fs::create_dir_all(self.tmp_dir())?;
        fs::rename(self.entry_dir(fingerprint), &doomed)?;
        if doomed.is_dir() {
            fs::remove_dir_all(doomed)
        } else {
            fs::remove_file(doomed)
        }
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
