//! Per-fingerprint claims: `.scalepipe/claims/<fp>` says which process is
//! executing that fingerprint, so no two executions of one fingerprint overlap.
//!
//! A claim is a file created with `create_new` (only one creator wins) holding
//! the holder's pid, host and the process groups it started, each pid with its
//! process's start time (`/proc/<pid>/stat` field 22), so a pid the kernel has
//! handed to another process since is not mistaken for them:
//!
//! ```text
//! pid 4242 81234567
//! host node-7
//! pgid 4250 81234590
//! ```
//!
//! A run takes the claim before it executes an instance and removes it when the
//! instance ends. A claim whose holder is gone is stale: its process groups are
//! ended (a SIGKILLed engine cannot end them itself) and it is taken over.
//! Runs on one workspace also hold the workspace lock, so claims contend
//! between instances of one run that share a fingerprint, and between a run and
//! the leftovers of a killed one; they are also what executors without that
//! lock (Slurm workers on a shared filesystem) need.
//!
//! Whether a holder is gone: on this host, its pid is not running with the
//! recorded start time. On another host the pid cannot be checked, so a holder
//! keeps a heartbeat instead: while it holds claims, one thread of the process
//! sets their modification time to the file system's "now" every
//! [`HEARTBEAT`]; a claim from another host whose modification time is more
//! than [`FOREIGN_STALE_AFTER`] old (measured on the file system's clock, not
//! this host's) is taken over, without ending its process groups, which live
//! on that host.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime};

use nix::sys::stat::futimens;
use nix::sys::time::TimeSpec;

use crate::process;

/// How often a run waiting for a claim looks again.
const POLL: Duration = Duration::from_millis(20);

/// Age after which a claim file that does not parse is taken over.
const UNREADABLE_AFTER: Duration = Duration::from_secs(10);

/// How often a holder refreshes the modification time of the claims it holds.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// Age of its last heartbeat after which a claim from another host is taken
/// over: twelve missed heartbeats, far beyond a busy file server's delays.
pub const FOREIGN_STALE_AFTER: Duration = Duration::from_secs(60);

/// Numbers the scratch files of claims being created.
static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// The claims this process holds, by number, whose heartbeat one thread keeps.
static BEATING: Mutex<BTreeMap<u64, File>> = Mutex::new(BTreeMap::new());
static HEARTBEAT_THREAD: Once = Once::new();

/// Sets a file's modification time to the file system's "now" (`UTIME_NOW`:
/// on a network file system the server's clock, the one every host reads).
fn touch(file: &File) -> io::Result<()> {
    futimens(file, &TimeSpec::UTIME_OMIT, &TimeSpec::UTIME_NOW).map_err(io::Error::from)
}

/// Adds a claim to the heartbeat (starting its thread once per process).
fn beat(n: u64, file: File) {
    if let Ok(mut beating) = BEATING.lock() {
        beating.insert(n, file);
    }
    HEARTBEAT_THREAD.call_once(|| {
        let started = std::thread::Builder::new()
            .name("claim-heartbeat".into())
            .spawn(|| loop {
                std::thread::sleep(HEARTBEAT);
                if let Ok(beating) = BEATING.lock() {
                    for file in beating.values() {
                        let _ = touch(file);
                    }
                }
            });
        // Without the thread, claims age: hosts that share the store may take
        // them over after a minute, and their commits race (one entry wins).
        drop(started);
    });
}

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
    /// The holder's start time, when recorded (see [`process::start_time`]).
    pub start: Option<u64>,
    pub host: String,
    /// Process groups the holder started for this fingerprint.
    pub groups: Vec<Group>,
}

/// A process group a holder started: its id (its leader's pid) and its
/// leader's start time, when recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub pgid: u32,
    pub start: Option<u64>,
}

impl Holder {
    /// Reads a claim file's text; `None` if it is not one (e.g. still being written).
    pub fn parse(text: &str) -> Option<Holder> {
        // `<pid>` or `<pid> <start time>`.
        fn pid_start(value: &str) -> Option<(u32, Option<u64>)> {
            let mut parts = value.split_whitespace();
            let pid = parts.next()?.parse().ok()?;
            let start = match parts.next() {
                Some(start) => Some(start.parse().ok()?),
                None => None,
            };
            Some((pid, start))
        }
        let mut holder = Holder::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("pid", v)) => (holder.pid, holder.start) = pid_start(v)?,
                Some(("host", v)) => holder.host = v.trim().to_string(),
                Some(("pgid", v)) => {
                    let (pgid, start) = pid_start(v)?;
                    holder.groups.push(Group { pgid, start });
                }
                _ => {}
            }
        }
        (holder.pid != 0 && !holder.host.is_empty()).then_some(holder)
    }
}

/// `<pid>` followed by its start time when it can be read.
fn pid_text(pid: u32) -> String {
    match process::start_time(pid) {
        Some(start) => format!("{pid} {start}"),
        None => pid.to_string(),
    }
}

/// A claim this process holds; removed when dropped.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    file: File,
    /// Its number in the heartbeat.
    beat: u64,
}

impl Claim {
    /// Records a process group started for this fingerprint (with its leader's
    /// start time), durably, so that a later run can end it if this process
    /// dies first.
    pub fn record_group(&mut self, pgid: u32) -> io::Result<()> {
        writeln!(self.file, "pgid {}", pid_text(pgid))?;
        self.file.sync_data()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut beating) = BEATING.lock() {
            beating.remove(&self.beat);
        }
        // Only if the name still holds this claim: a claim another host took
        // over (this process looked gone to it) is the new holder's.
        let ours = match (self.file.metadata(), fs::metadata(&self.path)) {
            (Ok(mine), Ok(there)) => mine.ino() == there.ino() && mine.dev() == there.dev(),
            _ => false,
        };
        if ours {
            let _ = fs::remove_file(&self.path);
        }
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

    /// Whether a holder can no longer act: on this host, its process is not
    /// running (or its pid is another process's now); on another host, its
    /// claim at `path` missed its heartbeats for [`FOREIGN_STALE_AFTER`].
    fn is_stale(&self, holder: &Holder, path: &Path) -> bool {
        if holder.host == self.host {
            !process::is_running(holder.pid, holder.start)
        } else {
            self.age(path).is_some_and(|age| age > FOREIGN_STALE_AFTER)
        }
    }

    /// How long ago a file was last modified, on the file system's clock
    /// (another host's heartbeat is stamped with it), else on this host's.
    fn age(&self, path: &Path) -> Option<Duration> {
        let modified = fs::metadata(path).ok()?.modified().ok()?;
        let now = self.fs_now().unwrap_or_else(SystemTime::now);
        Some(now.duration_since(modified).unwrap_or_default())
    }

    /// The file system's "now": the modification time of a scratch file
    /// touched for the purpose.
    fn fs_now(&self) -> Option<SystemTime> {
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!(".clock.{}.{n}.{}", std::process::id(), self.host));
        let file = File::create(&path).ok();
        let now = file
            .as_ref()
            .and_then(|f| touch(f).ok().and_then(|()| f.metadata().ok()))
            .and_then(|m| m.modified().ok());
        let _ = fs::remove_file(&path);
        now
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
                let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
                if let Ok(clone) = file.try_clone() {
                    beat(n, clone);
                }
                let claim = Claim {
                    path,
                    file,
                    beat: n,
                };
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
        let scratch = self
            .dir
            .join(format!(".new.{}.{n}.{}", std::process::id(), self.host));
        let mut file = File::create(&scratch)?;
        writeln!(
            file,
            "pid {}\nhost {}",
            pid_text(std::process::id()),
            self.host
        )?;
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
            Some(holder) => self.is_stale(&holder, path).then_some(holder),
            None => {
                let age = fs::metadata(path).ok()?.modified().ok()?.elapsed().ok()?;
                (age > UNREADABLE_AFTER).then(Holder::default)
            }
        }
    }

    /// Ends a stale holder's process groups (on this host; another host's are
    /// out of reach) and removes its claim. The claim is renamed away first, so
    /// of two processes taking it over one removes it.
    fn take_over(&self, fingerprint: &str, holder: &Holder) {
        if holder.host == self.host {
            for group in &holder.groups {
                process::end_orphaned_group(group.pgid, group.start, process::GRACE);
            }
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
            if let Some(rest) = name
                .strip_prefix(".new.")
                .or_else(|| name.strip_prefix(".clock."))
            {
                // Scratch of a creator that did not finish: `<pid>.<n>.<host>`
                // (`<pid>.<n>` before hosts were named), removable when its
                // pid is gone on this host.
                let mut parts = rest.splitn(3, '.');
                let (pid, host) = (parts.next(), parts.nth(1));
                let here = host.is_none_or(|host| host == self.host);
                if here
                    && pid
                        .and_then(|p| p.parse().ok())
                        .is_some_and(|p| !process::alive(p))
                {
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
        let text = "pid 42 1000\nhost h\npgid 43 1001\npgid 44\n";
        let holder = Holder::parse(text).unwrap();
        assert_eq!((holder.pid, holder.start), (42, Some(1000)));
        assert_eq!(holder.host, "h");
        assert_eq!(
            holder.groups,
            vec![
                Group {
                    pgid: 43,
                    start: Some(1001)
                },
                Group {
                    pgid: 44,
                    start: None
                }
            ]
        );
        assert_eq!(Holder::parse("pid 42 x\nhost h\n"), None);
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
        // One from another host is not while its heartbeat is fresh (its pid
        // means nothing here)...
        let foreign = claims.dir().join("fp2");
        fs::write(&foreign, format!("pid {dead}\nhost elsewhere\n")).unwrap();
        assert!(claims.reap_stale().is_empty());
        assert!(matches!(
            claims.take("fp2", || true).unwrap(),
            Taken::Stopped
        ));
        // ...but is once its heartbeat is older than the limit.
        let late = SystemTime::now() - FOREIGN_STALE_AFTER - Duration::from_secs(5);
        File::options()
            .write(true)
            .open(&foreign)
            .unwrap()
            .set_modified(late)
            .unwrap();
        let taken = claims.take("fp2", || true).unwrap();
        assert!(matches!(taken, Taken::Claimed(_)), "{taken:?}");
    }

    #[test]
    fn a_live_pid_with_another_start_time_is_not_the_holder() {
        let root = tempfile::tempdir().unwrap();
        let claims = Claims::new(root.path());
        fs::create_dir_all(claims.dir()).unwrap();
        let me = std::process::id();
        let start = process::start_time(me).unwrap();
        let host = process::hostname();
        // This process, recorded with its own start time: a live holder.
        fs::write(
            claims.dir().join("a"),
            format!("pid {me} {start}\nhost {host}\n"),
        )
        .unwrap();
        assert!(matches!(claims.take("a", || true).unwrap(), Taken::Stopped));
        // The same pid with another start time: a holder that is gone.
        fs::write(
            claims.dir().join("b"),
            format!("pid {me} {}\nhost {host}\n", start + 1),
        )
        .unwrap();
        assert!(matches!(
            claims.take("b", || true).unwrap(),
            Taken::Claimed(_)
        ));
    }

    #[test]
    fn a_held_claim_gets_a_heartbeat_and_a_taken_over_one_is_not_removed_by_its_old_holder() {
        let root = tempfile::tempdir().unwrap();
        let claims = Claims::new(root.path());
        let Taken::Claimed(claim) = claims.take("fp", || false).unwrap() else {
            panic!("claimed at once");
        };
        let path = claims.dir().join("fp");
        let old = SystemTime::now() - Duration::from_secs(600);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::thread::sleep(HEARTBEAT + Duration::from_secs(1));
        let age = claims.age(&path).unwrap();
        assert!(
            age < HEARTBEAT + Duration::from_secs(1),
            "no heartbeat: {age:?}"
        );
        // Another host took it over and holds it now.
        fs::remove_file(&path).unwrap();
        fs::write(&path, "pid 1\nhost elsewhere\n").unwrap();
        drop(claim);
        assert!(
            path.exists(),
            "the old holder removed the new holder's claim"
        );
    }
}
