//! Processes the engine starts or finds left behind: process groups, ending them,
//! and whether a process is still alive.
//!
//! A `command` stage runs in its own process group, so one signal reaches
//! everything it started (`sleep 30 | cat`, `sh -c 'sleep 30 &'`), not only the
//! shell. Ending a group sends SIGTERM, gives it a grace period, then SIGKILL.
//!
//! A pid is only a number the kernel hands out again once its process is gone,
//! so a process recorded for later (a claim's holder, a stage's group leader)
//! is recorded with its start time ([`start_time`]); a live process with that
//! pid but another start time is somebody else, never mistaken for the holder
//! nor killed.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// How long a group may take to exit after SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(1);

/// Whether process `pid` exists and has not exited. A zombie (exited, not yet
/// reaped by its parent) counts as gone: it runs nothing and holds nothing.
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)` (comm may hold any byte).
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        // No procfs: ask the kernel (a zombie then counts as alive).
        Err(_) if !std::path::Path::new("/proc/self").exists() => {
            kill(Pid::from_raw(raw), None).is_ok()
        }
        Err(_) => false,
    }
}

/// When process `pid` started, in clock ticks after boot (`/proc/<pid>/stat`
/// field 22); `None` if it is gone (or a zombie) or there is no procfs.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After `(comm)`: field 3 (state) is the first, so field 22 is the 20th.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether `pid` is alive and is the process that started at `start` (when
/// the start time was recorded and can be read here).
pub fn is_running(pid: u32, start: Option<u64>) -> bool {
    if !alive(pid) {
        return false;
    }
    match (start, start_time(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Whether group `pgid` can still be the group whose leader started at
/// `leader_start`: false when a live process holds the number `pgid` with
/// another start time. The kernel keeps a pid allocated while a group of that
/// number has members, so while its leader's pid is unused, the members left in
/// the group are the leader's (unless a new leader of the number has itself
/// exited since, which these checks cannot see).
pub fn group_is_ours(pgid: u32, leader_start: Option<u64>) -> bool {
    match (leader_start, start_time(pgid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Whether process group `pgid` still has a running member. Zombies do not
/// count: in a container whose init does not reap, orphans stay zombies.
pub fn group_exists(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return !matches!(
            killpg(Pid::from_raw(raw), None),
            Err(nix::errno::Errno::ESRCH)
        );
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // After `(comm)`: state, ppid, pgrp.
            let Some(end) = stat.rfind(')') else {
                return false;
            };
            let mut fields = stat[end + 1..].split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
}

/// Sends `signal` to every process of group `pgid`. Groups 0 and 1 (the caller's
/// own and init's) are refused.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    match i32::try_from(pgid) {
        Ok(raw) if raw > 1 => killpg(Pid::from_raw(raw), signal).is_ok(),
        _ => false,
    }
}

/// Ends a group that nobody will reap here (its leader's parent is gone):
/// SIGTERM, up to `grace` for it to empty, then SIGKILL. A group whose number
/// now belongs to another process ([`group_is_ours`]) is left alone. Returns
/// whether any process was signalled.
pub fn end_orphaned_group(pgid: u32, leader_start: Option<u64>, grace: Duration) -> bool {
    if !group_is_ours(pgid, leader_start) || !signal_group(pgid, Signal::SIGTERM) {
        return false;
    }
    let deadline = Instant::now() + grace;
    while group_exists(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    signal_group(pgid, Signal::SIGKILL);
    true
}

/// This machine's name, to tell whether a recorded pid is one this host can check.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!alive(pid));
        assert!(!alive(0));
    }

    #[test]
    fn a_start_time_tells_a_process_from_a_later_one_with_its_pid() {
        let me = std::process::id();
        let start = start_time(me).expect("procfs");
        assert!(is_running(me, Some(start)));
        assert!(is_running(me, None), "no recorded start: the pid decides");
        assert!(
            !is_running(me, Some(start + 1)),
            "another start: another process"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(start_time(pid), None);
        assert!(!is_running(pid, None));
    }

    #[test]
    fn a_group_number_reused_by_another_leader_is_not_ended() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let start = start_time(pgid).unwrap();
        // Recorded with another start time: the number is somebody else's now.
        assert!(!end_orphaned_group(pgid, Some(start + 1), GRACE));
        assert!(group_exists(pgid), "a stranger's group was signalled");
        assert!(end_orphaned_group(pgid, Some(start), GRACE));
        child.wait().unwrap();
    }

    #[test]
    fn ending_a_group_stops_every_member() {
        use std::os::unix::process::CommandExt;
        // The shell starts a background sleep and waits on a second one.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        assert!(group_exists(pgid));
        assert!(signal_group(pgid, Signal::SIGTERM));
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_exists(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !group_exists(pgid),
            "a member of the group survived SIGTERM"
        );
        assert!(!signal_group(0, Signal::SIGTERM));
        assert!(!signal_group(1, Signal::SIGTERM));
    }
}
