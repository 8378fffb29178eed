//! Per-fingerprint claims: `.scalepipe/claims/<fp>` says which process is
//! executing that fingerprint, so no two executions of one fingerprint overlap.
//!
//! A claim is a file created with `create_new` (only one creator wins) holding
//! the holder's pid, host and the process groups it started:
//!
//! ```text
//! pid 4242
//! host node-7
//! pgid 4250
//! ```
//!
//! A run takes the claim before it executes an instance and removes it when the
//! instance ends. A claim whose holder is gone (its pid is not alive on this
//! host) is stale: its process groups are ended (a SIGKILLed engine cannot end
//! them itself) and it is taken over. Runs on one workspace also hold the
//! workspace lock, so claims contend between instances of one run that share a
//! fingerprint, and between a run and the leftovers of a killed one; they are
//! also what executors without that lock (workers on a shared filesystem) need.
//! A claim from another host is never taken over, as its pid cannot be checked here.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::process;

/// How often a run waiting for a claim looks again.
const POLL: Duration = Duration::from_millis(20);

/// Age after which a claim file that does not parse is taken over.
const UNREADABLE_AFTER: Duration = Duration::from_secs(10);

/// Numbers the scratch files of claims being created.
static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// The claims directory of a store.
#[derive(Debug, Clone)]
pub struct Claims {
    dir: PathBuf,
    host: String,
}

/// What a claim file says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Process groups the holder started for this fingerprint.
    pub groups: Vec<u32>,
}

impl Holder {
    /// Reads a claim file's text; `None` if it is not one (e.g. still being written).
    pub fn parse(text: &str) -> Option<Holder> {
        let mut holder = Holder::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("pid", v)) => holder.pid = v.trim().parse().ok()?,
                Some(("host", v)) => holder.host = v.trim().to_string(),
                Some(("pgid", v)) => holder.groups.push(v.trim().parse().ok()?),
                _ => {}
            }
        }
        (holder.pid != 0 && !holder.host.is_empty()).then_some(holder)
    }
}

/// A claim this process holds; removed when dropped.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    file: File,
}

impl Claim {
    /// Records a process group started for this fingerprint, so that a later run
    /// can end it if this process dies first.
    pub fn record_group(&mut self, pgid: u32) -> io::Result<()> {
        writeln!(self.file, "pgid {pgid}")?;
        self.file.sync_data()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// How taking a claim went.
#[derive(Debug)]
pub enum Taken {
    /// Claimed at once (no one held it, or its holder was gone).
    Claimed(Claim),
    /// Claimed after a live holder released it: the caller should look whether
    /// the holder committed the entry meanwhile.
    AfterWaiting(Claim),
    /// `stop` said to give up while waiting.
    Stopped,
}

impl Claims {
    pub fn new(store_root: &Path) -> Claims {
        Claims {
            dir: store_root.join("claims"),
            host: process::hostname(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, fingerprint: &str) -> PathBuf {
        self.dir.join(fingerprint)
    }

    /// Whether a holder can no longer act: it ran on this host and its pid is gone.
    fn is_stale(&self, holder: &Holder) -> bool {
        holder.host == self.host && !process::alive(holder.pid)
    }

    /// Takes the claim on `fingerprint`, waiting while a live process holds it
    /// (polling `stop`), and taking over a stale one.
    pub fn take(&self, fingerprint: &str, stop: impl Fn() -> bool) -> io::Result<Taken> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path(fingerprint);
        let mut waited = false;
        loop {
            if self.create(&path)? {
                let file = File::options().append(true).open(&path)?;
                let claim = Claim { path, file };
                return Ok(if waited {
                    Taken::AfterWaiting(claim)
                } else {
                    Taken::Claimed(claim)
                });
            }
            if let Some(holder) = self.stale_holder(&path) {
                self.take_over(fingerprint, &holder);
                continue;
            }
            if stop() {
                return Ok(Taken::Stopped);
            }
            waited = true;
            std::thread::sleep(POLL);
        }
    }

    /// Creates the claim file at `path` with its text in one step: the text goes
    /// to a private file first, which is then hard-linked to `path` (fails if
    /// `path` exists). A claim is never visible half-written, even if this
    /// process is killed in between. Returns whether the claim was created.
    fn create(&self, path: &Path) -> io::Result<bool> {
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let scratch = self.dir.join(format!(".new.{}.{n}", std::process::id()));
        let mut file = File::create(&scratch)?;
        writeln!(file, "pid {}\nhost {}", std::process::id(), self.host)?;
        file.sync_data()?;
        drop(file);
        let linked = fs::hard_link(&scratch, path);
        let _ = fs::remove_file(&scratch);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The holder of the claim at `path` if it is stale. A claim that does not
    /// parse (damaged; claims are never visible half-written) counts as stale
    /// once it is older than [`UNREADABLE_AFTER`].
    fn stale_holder(&self, path: &Path) -> Option<Holder> {
        let text = fs::read_to_string(path).ok()?;
        match Holder::parse(&text) {
            Some(holder) => self.is_stale(&holder).then_some(holder),
            None => {
                let age = fs::metadata(path).ok()?.modified().ok()?.elapsed().ok()?;
                (age > UNREADABLE_AFTER).then(Holder::default)
            }
        }
    }

    /// Ends a stale holder's process groups and removes its claim. The claim is
    /// renamed away first, so of two processes taking it over one removes it.
    fn take_over(&self, fingerprint: &str, holder: &Holder) {
        for &pgid in &holder.groups {
            process::end_orphaned_group(pgid, process::GRACE);
        }
        let doomed = self
            .dir
            .join(format!("{fingerprint}.stale.{}", std::process::id()));
        if fs::rename(self.path(fingerprint), &doomed).is_ok() {
            let _ = fs::remove_file(doomed);
        }
    }

    /// Ends the process groups of every stale claim and removes those claims:
    /// what a SIGKILLed run left running. Returns the stale holders found.
    pub fn reap_stale(&self) -> Vec<Holder> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut reaped = Vec::new();
        for entry in dir.filter_map(Result::ok) {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.contains(".stale.") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(pid) = name
                .strip_prefix(".new.")
                .and_then(|rest| rest.split('.').next())
            {
                // Scratch text of a claim its creator did not finish.
                if pid.parse().is_ok_and(|pid| !process::alive(pid)) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            if let Some(holder) = self.stale_holder(&entry.path()) {
                self.take_over(&name, &holder);
                reaped.push(holder);
            }
        }
        reaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_file_round_trips_its_holder() {
        let text = "pid 42\nhost h\npgid 43\npgid 44\n";
        let holder = Holder::parse(text).unwrap();
        assert_eq!(holder.pid, 42);
        assert_eq!(holder.host, "h");
        assert_eq!(holder.groups, vec![43, 44]);
        assert_eq!(Holder::parse("pid 42\n"), None, "no host: not complete");
        assert_eq!(Holder::parse(""), None);
    }

    #[test]
    fn a_held_claim_blocks_until_dropped_and_a_dead_holders_claim_is_taken_over() {
        let root = tempfile::tempdir().unwrap();
        let claims = Claims::new(root.path());
        let Taken::Claimed(first) = claims.take("fp", || false).unwrap() else {
            panic!("an unclaimed fingerprint is claimed at once");
        };
        // This process holds it: a second taker waits, and gives up when told.
        assert!(matches!(
            claims.take("fp", || true).unwrap(),
            Taken::Stopped
        ));
        drop(first);
        assert!(
            !claims.dir().join("fp").exists(),
            "dropping removes the claim"
        );

        // A claim by a process that has exited is stale.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(
            claims.dir().join("fp"),
            format!("pid {dead}\nhost {}\n", process::hostname()),
        )
        .unwrap();
        assert!(matches!(
            claims.take("fp", || true).unwrap(),
            Taken::Claimed(_)
        ));
        // A scratch file of a killed creator is cleaned up; claims are only
        // ever visible complete.
        fs::write(claims.dir().join(format!(".new.{dead}.0")), "pid").unwrap();
        assert!(claims.reap_stale().is_empty());
        assert!(!claims.dir().join(format!(".new.{dead}.0")).exists());
        // A damaged (unparseable) claim is taken over once it is old.
        let damaged = claims.dir().join("fp3");
        fs::write(&damaged, "").unwrap();
        assert!(matches!(
            claims.take("fp3", || true).unwrap(),
            Taken::Stopped
        ));
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&damaged)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let taken = claims.take("fp3", || true).unwrap();
        assert!(matches!(taken, Taken::Claimed(_)), "{taken:?}");
        // One from another host is not (its pid means nothing here).
        fs::write(
            claims.dir().join("fp2"),
            format!("pid {dead}\nhost elsewhere\n"),
        )
        .unwrap();
        assert!(claims.reap_stale().is_empty());
        assert!(matches!(
            claims.take("fp2", || true).unwrap(),
            Taken::Stopped
        ));
    }
}
