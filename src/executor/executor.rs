//! The executor: runs a plan's instances on a bounded pool, in dependency order,
//! and commits each finished one to the store.
//!
//! Work runs on a rayon pool of `--jobs` threads; the calling thread only
//! schedules ([`Scheduler`] decides what starts next) and collects what finished.
//! Each instance executes under its fingerprint's claim ([`Claims`]), so no two
//! executions of one fingerprint overlap, and with its stage's `timeout`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::claim::{Claims, Taken};
use super::scheduler::Scheduler;
use super::{Decision, Event, Outcome};
use crate::graph::Plan;
use crate::stages::{InputRef, PrefixEntry, StageContext, StageError, ENV_RUN_PID, ENV_WORKSPACE};
use crate::store::{unix_now, Depth, Manifest, Pending, Store};

/// What happened to one instance in a run. In the run record it is written
/// `executed`, `cached`, `failed`, `skipped` or `not-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Executed,
    Cached,
    Failed,
    /// An input failed, so it could not run.
    Skipped,
    /// The run stopped (a failure without `--keep-going`, or Ctrl-C) first.
    NotRun,
}

/// One instance's result.
#[derive(Debug, Clone)]
pub struct InstanceResult {
    pub status: Status,
    pub duration: Duration,
    /// Error message of a failure, or which input's failure skipped it.
    pub error: Option<String>,
}

impl InstanceResult {
    fn new(status: Status, duration: Duration, error: Option<String>) -> InstanceResult {
        InstanceResult {
            status,
            duration,
            error,
        }
    }
}

/// Where events go.
type Report<'r> = &'r (dyn Fn(&Event) + Sync);

/// Runs a plan against a store.
pub struct Executor<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub jobs: usize,
    pub keep_going: bool,
    /// `--force`: everything re-executes, so a prefix chain continues only
    /// from what this run executed (its earlier members), not from the store.
    pub force: bool,
    pub cancel: &'a AtomicBool,
}

/// A finished instance, sent from its pool thread to the scheduling thread.
struct Done {
    index: usize,
    duration: Duration,
    outcome: Outcome,
}

/// The bookkeeping of one run.
struct RunState {
    /// Each instance's result, once it has one.
    results: Vec<Option<InstanceResult>>,
    /// Inputs (and the previous instance of a prefix chain) still to finish
    /// before each instance may start.
    waiting: Vec<usize>,
    scheduler: Scheduler,
    /// Set by a failure without `--keep-going` or by Ctrl-C: start nothing more.
    stopping: bool,
}

impl Executor<'_> {
    /// Runs every instance the decisions mark as `Run`, reporting events. Fails
    /// only if the pool of `jobs` threads cannot be started.
    pub fn run(
        &self,
        decisions: &[Decision],
        report: Report,
    ) -> std::io::Result<Vec<InstanceResult>> {
        let plan = self.plan;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs.max(1))
            .thread_name(|i| format!("scalepipe-stage-{i}"))
            .build()
            .map_err(|e| {
                std::io::Error::other(format!("cannot start {} stage threads: {e}", self.jobs))
            })?;
        let to_run = decisions.iter().filter(|d| d.runs()).count();
        report(&Event::RunStarted {
            total: plan.instances.len(),
            to_run,
        });
        let mut run = self.start(decisions, report);
        let claims = Claims::new(self.store.root());
        let claims = &claims;
        let (tx, rx) = mpsc::channel::<Done>();
        pool.in_place_scope(|scope| loop {
            run.stopping |= self.cancel.load(Ordering::Relaxed);
            while !run.stopping {
                let Some((index, threads)) = run.scheduler.start_next() else {
                    break;
                };
                report(&Event::StageStarted {
                    id: &plan.instances[index].id,
                    threads,
                });
                let tx = tx.clone();
                scope.spawn(move |_| {
                    let start = Instant::now();
                    let outcome = self.execute(index, threads, claims, report);
                    let _ = tx.send(Done {
                        index,
                        duration: start.elapsed(),
                        outcome,
                    });
                });
            }
            if run.scheduler.idle() {
                break;
            }
            // Wake now and then to notice Ctrl-C even while stages run.
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(done) => self.finished(&mut run, done, report),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        });
        report(&Event::RunFinished);
        Ok(run
            .results
            .into_iter()
            .map(|result| {
                result.unwrap_or(InstanceResult::new(Status::NotRun, Duration::ZERO, None))
            })
            .collect())
    }

    /// Marks the cached instances done and queues every instance whose inputs are.
    /// Cached instances are done from the start: their entries do not need their
    /// inputs.
    fn start(&self, decisions: &[Decision], report: Report) -> RunState {
        let plan = self.plan;
        let mut run = RunState {
            results: vec![None; plan.instances.len()],
            waiting: plan
                .instances
                .iter()
                .map(|i| {
                    i.inputs.len()
                        + usize::from(i.prefix.as_ref().is_some_and(|l| l.after.is_some()))
                })
                .collect(),
            scheduler: Scheduler::new(self.jobs),
            stopping: false,
        };
        for (i, decision) in decisions.iter().enumerate() {
            if !decision.runs() {
                run.results[i] = Some(InstanceResult::new(Status::Cached, Duration::ZERO, None));
                report(&Event::Cached {
                    id: &plan.instances[i].id,
                });
            }
        }
        for (i, result) in run.results.iter().enumerate() {
            if result.is_some() {
                for consumer in plan.consumers(i).chain(next_in_chain(plan, i)) {
                    run.waiting[consumer] -= 1;
                }
            }
        }
        for (i, inst) in plan.instances.iter().enumerate() {
            if run.results[i].is_none() && run.waiting[i] == 0 {
                run.scheduler.push_ready(i, inst.resources);
            }
        }
        run
    }

    /// Records an instance that ended: frees its resources, queues the consumers it
    /// was the last input of, or skips them after a failure.
    fn finished(&self, run: &mut RunState, done: Done, report: Report) {
        let plan = self.plan;
        let inst = &plan.instances[done.index];
        run.scheduler.finish(inst.resources);
        report(&Event::StageFinished {
            id: &inst.id,
            duration: done.duration,
            outcome: &done.outcome,
        });
        let (status, error) = match done.outcome {
            Outcome::Executed | Outcome::Reused => {
                for consumer in plan.consumers(done.index) {
                    run.waiting[consumer] -= 1;
                    if run.waiting[consumer] == 0 && run.results[consumer].is_none() {
                        run.scheduler
                            .push_ready(consumer, plan.instances[consumer].resources);
                    }
                }
                let status = if matches!(done.outcome, Outcome::Reused) {
                    Status::Cached
                } else {
                    Status::Executed
                };
                (status, None)
            }
            Outcome::Failed { message, .. } => {
                self.skip_dependents(done.index, run, report);
                run.stopping |= !self.keep_going;
                (Status::Failed, Some(message))
            }
            Outcome::Cancelled => {
                run.stopping = true;
                (Status::NotRun, Some("interrupted".into()))
            }
        };
        run.results[done.index] = Some(InstanceResult::new(status, done.duration, error));
        self.release_next(run, done.index);
    }

    /// Lets the next instance of `i`'s prefix chain start (once its inputs are
    /// done), whatever became of `i`: a failed or skipped instance leaves no
    /// checkpoint, and the next one starts from an earlier one or from scratch.
    fn release_next(&self, run: &mut RunState, i: usize) {
        if let Some(next) = next_in_chain(self.plan, i) {
            run.waiting[next] -= 1;
            if run.waiting[next] == 0 && run.results[next].is_none() {
                run.scheduler
                    .push_ready(next, self.plan.instances[next].resources);
            }
        }
    }

    /// Marks everything downstream of a failed instance as skipped.
    fn skip_dependents(&self, failed: usize, run: &mut RunState, report: Report) {
        let failed_id = &self.plan.instances[failed].id;
        let mut stack: Vec<usize> = self.plan.consumers(failed).collect();
        while let Some(i) = stack.pop() {
            if run.results[i].is_some() {
                continue;
            }
            run.results[i] = Some(InstanceResult::new(
                Status::Skipped,
                Duration::ZERO,
                Some(format!("input `{failed_id}` failed")),
            ));
            report(&Event::Skipped {
                id: &self.plan.instances[i].id,
                because: failed_id,
            });
            self.release_next(run, i);
            stack.extend(self.plan.consumers(i));
        }
    }

    /// Runs one instance into a fresh entry and commits it, holding its
    /// fingerprint's claim from before it starts until after the commit.
    fn execute(&self, index: usize, threads: usize, claims: &Claims, report: Report) -> Outcome {
        let inst = &self.plan.instances[index];
        let claim = match claims.take(&inst.fingerprint, || self.cancel.load(Ordering::Relaxed)) {
            Ok(Taken::Claimed(claim)) => claim,
            Ok(Taken::AfterWaiting(claim)) => {
                if self.store.contains(&inst.fingerprint) {
                    return Outcome::Reused;
                }
                claim
            }
            Ok(Taken::Stopped) => return Outcome::Cancelled,
            Err(e) => {
                return Outcome::Failed {
                    message: format!("cannot claim {}: {e}", inst.fingerprint),
                    log: claims.dir().to_path_buf(),
                }
            }
        };
        let claim = Mutex::new(claim);
        let record_group = |pgid: u32| {
            if let Ok(mut claim) = claim.lock() {
                let _ = claim.record_group(pgid);
            }
        };
        let started = unix_now();
        let clock = Instant::now();
        let pending = match self.store.begin(&inst.fingerprint) {
            Ok(pending) => pending,
            Err(e) => {
                return Outcome::Failed {
                    message: format!("cannot create a store entry: {e}"),
                    log: self.store.root().to_path_buf(),
                }
            }
        };
        let inputs = self.input_refs(index);
        let out_dir = pending.out_dir();
        let log = std::fs::File::create(pending.log_path()).ok();
        let progress = |pos: u64, len: u64, message: &str| {
            report(&Event::Progress {
                id: &inst.id,
                pos,
                len,
                message,
            })
        };
        let warn = |message: &str| {
            report(&Event::StageWarning {
                id: &inst.id,
                message,
            })
        };
        let params = self.plan.params(index);
        let ctx = StageContext::new(
            &inst.id,
            &out_dir,
            &inputs,
            &params,
            threads,
            self.cancel,
            &progress,
            log,
        )
        .with_timeout(self.plan.pipeline.stages[inst.stage_index].timeout)
        .with_env(self.stage_env())
        .with_group_hook(&record_group)
        .with_warnings(&warn)
        .with_pipeline_file(self.plan.pipeline.source.path())
        .with_prefix_entries(self.prefix_entries(index));
        let result =
            catch_unwind(AssertUnwindSafe(|| inst.job.run(&ctx))).unwrap_or_else(|panic| {
                Err(StageError::msg(format!(
                    "the stage panicked: {}",
                    panic_message(panic.as_ref())
                )))
            });
        // Inputs are committed entries other stages and runs read too: a stage
        // that wrote into one fails, and the entry is quarantined.
        let result = match (result, self.damaged_input(index)) {
            (Err(StageError::Cancelled), _) => Err(StageError::Cancelled),
            (_, Some(message)) => Err(StageError::msg(message)),
            (result, None) => result,
        };
        match result {
            Ok(()) => {
                drop(ctx);
                let manifest = Manifest::hash_outputs(&out_dir).map(|outputs| Manifest {
                    fingerprint: inst.fingerprint.clone(),
                    pipeline: self.plan.pipeline.name.clone(),
                    stage: inst.stage_name.to_string(),
                    id: inst.id.clone(),
                    key: inst.key.clone(),
                    started,
                    finished: unix_now(),
                    duration_s: clock.elapsed().as_secs_f64(),
                    threads,
                    scalepipe_version: env!("CARGO_PKG_VERSION").to_string(),
                    outputs,
                });
                match manifest {
                    Ok(manifest) => {
                        let outcome = self.commit(pending, &manifest);
                        if let (Outcome::Executed, Some(link)) = (&outcome, &inst.prefix) {
                            // Only a hint for later instances: losing it loses reuse.
                            let _ = self
                                .store
                                .index_prefix(&link.fingerprint, &inst.fingerprint);
                        }
                        outcome
                    }
                    Err(e) => Outcome::Failed {
                        message: format!("cannot read outputs: {e}"),
                        log: self.store.keep_failed(pending),
                    },
                }
            }
            Err(StageError::Cancelled)
                if ctx.timed_out().is_some() && !self.cancel.load(Ordering::Relaxed) =>
            {
                let timeout = ctx.timed_out().unwrap_or_default();
                let message = format!(
                    "timed out after {}",
                    crate::numfmt::duration(timeout.as_secs_f64())
                );
                ctx.log(&format!("error: {message}"));
                drop(ctx);
                let dir = self.store.keep_failed(pending);
                Outcome::Failed {
                    message,
                    log: dir.join("log.txt"),
                }
            }
            Err(StageError::Cancelled) => {
                drop(ctx);
                self.store.discard(pending);
                Outcome::Cancelled
            }
            Err(e) => {
                ctx.log(&format!("error: {e}"));
                drop(ctx);
                let dir = self.store.keep_failed(pending);
                Outcome::Failed {
                    message: e.to_string(),
                    log: dir.join("log.txt"),
                }
            }
        }
    }

    /// Variables exported to every process a stage starts: the workspace and this
    /// run's pid, so that `scalepipe run` inside a stage can refuse to wait for
    /// the lock this run holds.
    fn stage_env(&self) -> Vec<(String, String)> {
        let workspace = self.store.root().parent().unwrap_or(self.store.root());
        vec![
            (ENV_WORKSPACE.into(), workspace.display().to_string()),
            (ENV_RUN_PID.into(), std::process::id().to_string()),
        ]
    }

    /// What an instance is told about each of its inputs.
    fn input_refs(&self, index: usize) -> Vec<InputRef> {
        self.plan.instances[index]
            .inputs
            .iter()
            .map(|&input| {
                let up = &self.plan.instances[input];
                InputRef {
                    stage: up.stage_name.to_string(),
                    id: up.id.clone(),
                    kind: up.kind.name.to_string(),
                    params: self.plan.params(input),
                    dir: self.store.out_dir(&up.fingerprint),
                    fingerprint: up.fingerprint.clone(),
                }
            })
            .collect()
    }

    /// The committed entries sharing instance `index`'s prefix, each
    /// quick-checked like an input; a damaged one is left out (and left where
    /// it is: the run that reads it as an input quarantines it).
    fn prefix_entries(&self, index: usize) -> Vec<PrefixEntry> {
        let inst = &self.plan.instances[index];
        let Some(link) = &inst.prefix else {
            return Vec::new();
        };
        let mut earlier = std::collections::HashSet::new();
        let mut at = link.after;
        while let Some(i) = at {
            earlier.insert(self.plan.instances[i].fingerprint.as_str());
            at = self.plan.instances[i].prefix.as_ref().and_then(|l| l.after);
        }
        let mut entries = Vec::new();
        for fingerprint in self.store.prefix_members(&link.fingerprint) {
            if fingerprint == inst.fingerprint
                || (self.force && !earlier.contains(fingerprint.as_str()))
            {
                continue;
            }
            match self.store.check(&fingerprint, Depth::Quick) {
                Ok(manifest) => entries.push(PrefixEntry {
                    id: manifest.id,
                    dir: self.store.out_dir(&fingerprint),
                    fingerprint,
                }),
                Err(_) => continue,
            }
        }
        entries
    }

    /// Quick-checks (sizes, times, file list) every input entry of an instance
    /// after it ran; the first damaged one is quarantined and described.
    fn damaged_input(&self, index: usize) -> Option<String> {
        let inst = &self.plan.instances[index];
        for &input in &inst.inputs {
            let up = &self.plan.instances[input];
            if let Err(bad) = self.store.check(&up.fingerprint, Depth::Quick) {
                let moved = self.store.quarantine(&up.fingerprint, &bad.to_string());
                let whereto = moved.map_or_else(
                    |e| format!("could not be quarantined: {e}"),
                    |dir| format!("moved to {}", dir.display()),
                );
                return Some(format!(
                    "input `{}` changed while this stage ran: {} ({whereto}); stages must not write into their inputs",
                    up.id, bad.problem
                ));
            }
        }
        None
    }

    /// Moves a finished entry into the store under its manifest.
    fn commit(&self, pending: Pending, manifest: &Manifest) -> Outcome {
        match self.store.commit(pending, manifest) {
            Ok(()) => Outcome::Executed,
            Err(e) => Outcome::Failed {
                message: format!("cannot commit the store entry: {e}"),
                log: self.store.root().to_path_buf(),
            },
        }
    }
}

/// The instance after `i` in its prefix chain.
fn next_in_chain(plan: &Plan, i: usize) -> Option<usize> {
    plan.instances[i].prefix.as_ref().and_then(|link| link.next)
}

/// The message a panicking stage gave, if it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
