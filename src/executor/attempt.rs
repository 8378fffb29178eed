//! One execution of one instance into the store: claim its fingerprint, run
//! its job into a pending entry, check its inputs, commit with the atomic
//! rename. The local executor and a Slurm worker (`scalepipe worker SPEC`)
//! both execute through this, so an entry is made the same way wherever it ran.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::claim::{Claims, Taken};
use super::{Event, Outcome};
use crate::stages::{
    InputRef, Job, PrefixEntry, StageContext, StageError, ENV_RUN_PID, ENV_WORKSPACE,
};
use crate::store::{unix_now, CacheKey, Depth, Manifest, Store};

/// Where events go.
pub(super) type Report<'r> = &'r (dyn Fn(&Event) + Sync);

/// Everything one execution needs, whether the plan is at hand (a local run)
/// or only the instance's job spec (a worker).
pub struct Attempt<'a> {
    pub id: &'a str,
    pub stage: &'a str,
    pub pipeline: &'a str,
    /// The pipeline file the run started from (the report names it).
    pub pipeline_file: &'a Path,
    pub fingerprint: &'a str,
    pub key: &'a CacheKey,
    pub job: &'a dyn Job,
    /// Resolved parameters.
    pub params: &'a toml::Table,
    pub inputs: &'a [InputRef],
    pub threads: usize,
    pub timeout: Option<Duration>,
    /// The fingerprint of the instance's prefix (`Job::prefix`), under which
    /// its committed entry is indexed for longer runs to continue from.
    pub prefix: Option<&'a str>,
    /// Committed entries sharing that prefix, checked (`StageContext::prefix_entries`).
    pub prefix_entries: &'a [PrefixEntry],
}

impl Attempt<'_> {
    /// Runs the instance into a fresh entry and commits it, holding its
    /// fingerprint's claim from before it starts until after the commit.
    pub fn execute(
        &self,
        store: &Store,
        claims: &Claims,
        cancel: &AtomicBool,
        report: Report,
    ) -> Outcome {
        let claim = match claims.take(self.fingerprint, || cancel.load(Ordering::Relaxed)) {
            Ok(Taken::Claimed(claim)) => claim,
            Ok(Taken::AfterWaiting(claim)) => {
                if store.contains(self.fingerprint) {
                    return Outcome::Reused;
                }
                claim
            }
            Ok(Taken::Stopped) => return Outcome::Cancelled,
            Err(e) => {
                return Outcome::Failed {
                    message: format!("cannot claim {}: {e}", self.fingerprint),
                    log: claims.dir().to_path_buf(),
                }
            }
        };
        let claim = Mutex::new(claim);
        let record_group = |pgid: u32| match claim.lock() {
            Ok(mut claim) => claim.record_group(pgid),
            Err(_) => Err(std::io::Error::other("the claim's lock is poisoned")),
        };
        let started = unix_now();
        let clock = Instant::now();
        let pending = match store.begin(self.fingerprint) {
            Ok(pending) => pending,
            Err(e) => {
                return Outcome::Failed {
                    message: format!("cannot create a store entry: {e}"),
                    log: store.root().to_path_buf(),
                }
            }
        };
        let out_dir = pending.out_dir();
        let log = std::fs::File::create(pending.log_path()).ok();
        let id = self.id;
        let progress = |pos: u64, len: u64, message: &str| {
            report(&Event::Progress {
                id,
                pos,
                len,
                message,
                elapsed: None,
            })
        };
        let warn = |message: &str| report(&Event::StageWarning { id, message });
        let ctx = StageContext::new(
            id,
            &out_dir,
            self.inputs,
            self.params,
            self.threads,
            cancel,
            &progress,
            log,
        )
        .with_timeout(self.timeout)
        .with_env(stage_env(store))
        .with_group_hook(&record_group)
        .with_warnings(&warn)
        .with_pipeline_file(self.pipeline_file)
        .with_prefix_entries(self.prefix_entries.to_vec());
        let result =
            catch_unwind(AssertUnwindSafe(|| self.job.run(&ctx))).unwrap_or_else(|panic| {
                Err(StageError::msg(format!(
                    "the stage panicked: {}",
                    panic_message(panic.as_ref())
                )))
            });
        // Inputs are committed entries other stages and runs read too: a stage
        // that wrote into one fails, and the entry is quarantined.
        let result = match (result, self.damaged_input(store)) {
            (Err(StageError::Cancelled), _) => Err(StageError::Cancelled),
            (_, Some(message)) => Err(StageError::msg(message)),
            (result, None) => result,
        };
        match result {
            Ok(()) => {
                drop(ctx);
                let manifest = Manifest::hash_outputs(&out_dir).map(|outputs| Manifest {
                    fingerprint: self.fingerprint.to_string(),
                    pipeline: self.pipeline.to_string(),
                    stage: self.stage.to_string(),
                    id: self.id.to_string(),
                    key: self.key.clone(),
                    started,
                    finished: unix_now(),
                    duration_s: clock.elapsed().as_secs_f64(),
                    threads: self.threads,
                    scalepipe_version: env!("CARGO_PKG_VERSION").to_string(),
                    outputs,
                });
                match manifest {
                    Ok(manifest) => match store.commit(pending, &manifest) {
                        Ok(()) => {
                            if let Some(prefix) = self.prefix {
                                // Only a hint for later instances: losing it loses reuse.
                                let _ = store.index_prefix(prefix, self.fingerprint);
                            }
                            Outcome::Executed
                        }
                        Err(e) => Outcome::Failed {
                            message: format!("cannot commit the store entry: {e}"),
                            log: store.failed_dir(self.fingerprint).join("log.txt"),
                        },
                    },
                    Err(e) => Outcome::Failed {
                        message: format!("cannot read outputs: {e}"),
                        log: store.keep_failed(pending),
                    },
                }
            }
            Err(StageError::Cancelled)
                if ctx.timed_out().is_some() && !cancel.load(Ordering::Relaxed) =>
            {
                let timeout = ctx.timed_out().unwrap_or_default();
                let message = format!(
                    "timed out after {}",
                    crate::numfmt::duration(timeout.as_secs_f64())
                );
                ctx.log(&format!("error: {message}"));
                drop(ctx);
                let dir = store.keep_failed(pending);
                Outcome::Failed {
                    message,
                    log: dir.join("log.txt"),
                }
            }
            Err(StageError::Cancelled) => {
                drop(ctx);
                store.discard(pending);
                Outcome::Cancelled
            }
            Err(e) => {
                ctx.log(&format!("error: {e}"));
                drop(ctx);
                let dir = store.keep_failed(pending);
                Outcome::Failed {
                    message: e.to_string(),
                    log: dir.join("log.txt"),
                }
            }
        }
    }

    /// Quick-checks (sizes, times, file list) every input entry after the
    /// stage ran; the first damaged one is quarantined and described.
    fn damaged_input(&self, store: &Store) -> Option<String> {
        for input in self.inputs {
            if let Err(bad) = store.check(&input.fingerprint, Depth::Quick) {
                let moved = store.quarantine(&input.fingerprint, &bad.to_string());
                let whereto = moved.map_or_else(
                    |e| format!("could not be quarantined: {e}"),
                    |dir| format!("moved to {}", dir.display()),
                );
                return Some(format!(
                    "input `{}` changed while this stage ran: {} ({whereto}); stages must not write into their inputs",
                    input.id, bad.problem
                ));
            }
        }
        None
    }
}

/// Variables exported to every process a stage starts: the workspace and this
/// process's pid, so that `scalepipe run` inside a stage can refuse to wait for
/// the lock the run holds.
fn stage_env(store: &Store) -> Vec<(String, String)> {
    let workspace = store.root().parent().unwrap_or(store.root());
    vec![
        (ENV_WORKSPACE.into(), workspace.display().to_string()),
        (ENV_RUN_PID.into(), std::process::id().to_string()),
    ]
}

/// The message a panicking stage gave, if it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
