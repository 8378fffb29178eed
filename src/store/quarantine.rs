//! Moving bad entries out of the cache, kept for inspection rather than deleted.
//!
//! `.scalepipe/quarantine/<fp>.<unix seconds>.<pid>.<n>/` holds the entry as it was
//! found plus `reason.txt`. Once moved, the fingerprint is no longer in the
//! cache, so the next decision runs the instance again.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{unix_now, Store};

static QUARANTINE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Where quarantined entries go.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root().join("quarantine")
    }

    /// Moves a committed entry (complete or not) out of the cache, with the
    /// reason written beside it. Returns where it went.
    pub fn quarantine(&self, fingerprint: &str, reason: &str) -> io::Result<PathBuf> {
        let dir = self.quarantine_dir();
        fs::create_dir_all(&dir)?;
        // Unique across processes too: two runs in one second may each
        // quarantine an entry with the same fingerprint.
        let target = dir.join(format!(
            "{fingerprint}.{}.{}.{}",
            unix_now() as u64,
            std::process::id(),
            QUARANTINE_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let source = self.entry_dir(fingerprint);
        if source.is_dir() {
            fs::rename(&source, &target)?;
        } else {
            // A file or link squatting on the entry's name.
            fs::create_dir_all(&target)?;
            fs::rename(&source, target.join("entry"))?;
        }
        let _ = fs::write(target.join("reason.txt"), format!("{reason}\n"));
        let _ = super::durable::sync_dir(&dir);
        let _ = super::durable::sync_dir(source.parent().expect("entries have a parent"));
        Ok(target)
    }
}
