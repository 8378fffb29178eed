//! Events: the only interface between running a plan and showing it.

use std::path::PathBuf;
use std::time::Duration;

/// How an executed instance ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Finished and committed to the store.
    Executed,
    /// Failed; the message and where its log was kept.
    Failed { message: String, log: PathBuf },
    /// Stopped by Ctrl-C.
    Cancelled,
    /// Not executed: while this run waited for the fingerprint's claim, its
    /// holder (another run, or an instance of this one with the same
    /// fingerprint) committed the entry.
    Reused,
}

/// Something that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// The run begins: instances in all, and how many will execute.
    RunStarted { total: usize, to_run: usize },
    /// An instance was found in the store.
    Cached { id: &'a str },
    /// An instance started on `threads` threads.
    StageStarted { id: &'a str, threads: usize },
    /// Instances of a stage were submitted to Slurm as one job (an array when
    /// `count` > 1).
    Submitted {
        stage: &'a str,
        job: &'a str,
        count: usize,
    },
    /// The Slurm jobs of the run in flight changed: waiting in the queue, running.
    Queue { queued: usize, running: usize },
    /// Progress of a running instance.
    Progress {
        id: &'a str,
        pos: u64,
        len: u64,
        message: &'a str,
        /// How long the instance had run when it reported this, where the
        /// reporter knows better than an observer's clock (a Slurm worker's
        /// progress reaches the submitter up to a poll late, and its start is
        /// seen late too); `None`: the observer's own clock is right.
        elapsed: Option<Duration>,
    },
    /// A running instance warns about something that does not stop it.
    StageWarning { id: &'a str, message: &'a str },
    /// An instance ended.
    StageFinished {
        id: &'a str,
        duration: Duration,
        outcome: &'a Outcome,
    },
    /// An instance will not run because an input failed.
    Skipped { id: &'a str, because: &'a str },
    /// Something the user must know that did not stop the run, such as a
    /// damaged store entry that was quarantined and will be re-computed.
    Warning { message: &'a str },
    /// The run ended.
    RunFinished,
}
