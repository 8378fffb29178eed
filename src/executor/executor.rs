//! The executor: runs a plan's instances on a bounded pool, in dependency order,
//! and commits each finished one to the store.
//!
//! Work runs on a rayon pool of `--jobs` threads; the calling thread only
//! schedules ([`Scheduler`] decides what starts next) and collects what finished.
//! Each instance executes under its fingerprint's claim ([`Claims`]), so no two
//! executions of one fingerprint overlap, and with its stage's `timeout`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::attempt::{Attempt, Report};
use super::claim::Claims;
use super::scheduler::Scheduler;
use super::{Decision, Event, Outcome};
use crate::graph::Plan;
use crate::pipeline::{ExecutorKind, SlurmOptions};
use crate::stages::{InputRef, PrefixEntry};
use crate::store::{Depth, Store};

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
    /// Slurm job ids it ran as (`123`, or `123_4` for an array task), one per
    /// submission: resubmissions after Slurm killed it add one each.
    pub jobs: Vec<String>,
}

impl InstanceResult {
    fn new(status: Status, duration: Duration, error: Option<String>) -> InstanceResult {
        InstanceResult {
            status,
            duration,
            error,
            jobs: Vec::new(),
        }
    }
}

impl RunState {
    /// Every instance's result; those without one did not run.
    pub(super) fn into_results(self) -> Vec<InstanceResult> {
        self.results
            .into_iter()
            .map(|result| {
                result.unwrap_or(InstanceResult::new(Status::NotRun, Duration::ZERO, None))
            })
            .collect()
    }
}

/// Runs a plan against a store.
pub struct Executor<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    /// Threads of the local pool (in a Slurm run, for `executor = "local"` stages).
    pub jobs: usize,
    pub keep_going: bool,
    /// `--force`: everything re-executes, so a prefix chain continues only
    /// from what this run executed (its earlier members), not from the store.
    pub force: bool,
    pub cancel: &'a AtomicBool,
    /// Where instances run: here, or as Slurm jobs (`slurm` says how).
    pub executor: ExecutorKind,
    pub slurm: &'a SlurmOptions,
}

/// A finished instance, sent from its pool thread to the scheduling thread.
pub(super) struct Done {
    pub(super) index: usize,
    pub(super) duration: Duration,
    pub(super) outcome: Outcome,
    /// The Slurm jobs it ran as.
    pub(super) jobs: Vec<String>,
}

/// The bookkeeping of one run.
pub(super) struct RunState {
    /// Each instance's result, once it has one.
    pub(super) results: Vec<Option<InstanceResult>>,
    /// Inputs (and the previous instance of a prefix chain) still to finish
    /// before each instance may start.
    waiting: Vec<usize>,
    pub(super) scheduler: Scheduler,
    /// Set by a failure without `--keep-going` or by Ctrl-C: start nothing more.
    pub(super) stopping: bool,
}

impl Executor<'_> {
    /// Runs every instance the decisions mark as `Run`, reporting events. Fails
    /// only if the pool of `jobs` threads cannot be started.
    pub fn run(
        &self,
        decisions: &[Decision],
        report: Report,
    ) -> std::io::Result<Vec<InstanceResult>> {
        if self.executor == ExecutorKind::Slurm {
            return super::slurm::run(self, decisions, report);
        }
        let plan = self.plan;
        let pool = self.pool()?;
        let to_run = decisions.iter().filter(|d| d.runs()).count();
        report(&Event::RunStarted {
            total: plan.instances.len(),
            to_run,
        });
        let mut run = self.start(decisions, Scheduler::new(self.jobs), report);
        let claims = Claims::new(self.store.root());
        let claims = &claims;
        let (tx, rx) = mpsc::channel::<Done>();
        pool.in_place_scope(|scope| loop {
            run.stopping |= self.cancel.load(Ordering::Relaxed);
            while !run.stopping {
                let Some((index, threads)) = run.scheduler.start_next() else {
                    break;
                };
                self.spawn_local(scope, &tx, index, threads, claims, report);
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
        Ok(run.into_results())
    }

    /// The rayon pool of `--jobs` threads stages run on.
    pub(super) fn pool(&self) -> std::io::Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs.max(1))
            .thread_name(|i| format!("scalepipe-stage-{i}"))
            .build()
            .map_err(|e| {
                std::io::Error::other(format!("cannot start {} stage threads: {e}", self.jobs))
            })
    }

    /// Marks the cached instances done and queues every instance whose inputs are.
    /// Cached instances are done from the start: their entries do not need their
    /// inputs.
    pub(super) fn start(
        &self,
        decisions: &[Decision],
        scheduler: Scheduler,
        report: Report,
    ) -> RunState {
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
            scheduler,
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
    pub(super) fn finished(&self, run: &mut RunState, done: Done, report: Report) {
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
        let mut result = InstanceResult::new(status, done.duration, error);
        result.jobs = done.jobs;
        run.results[done.index] = Some(result);
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

    /// Starts one instance on a pool thread of `scope`; its [`Done`] comes back
    /// through `tx`. The local executor and a Slurm run's `executor = "local"`
    /// stages both start instances this way.
    pub(super) fn spawn_local<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        tx: &mpsc::Sender<Done>,
        index: usize,
        threads: usize,
        claims: &'s Claims,
        report: Report<'s>,
    ) {
        report(&Event::StageStarted {
            id: &self.plan.instances[index].id,
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
                jobs: Vec::new(),
            });
        });
    }

    /// Runs one instance into a fresh entry and commits it (see [`Attempt`]).
    pub(super) fn execute(
        &self,
        index: usize,
        threads: usize,
        claims: &Claims,
        report: Report,
    ) -> Outcome {
        let inst = &self.plan.instances[index];
        let inputs = self.input_refs(index);
        let params = self.plan.params(index);
        Attempt {
            id: &inst.id,
            stage: &inst.stage_name,
            pipeline: &self.plan.pipeline.name,
            pipeline_file: self.plan.pipeline.source.path(),
            fingerprint: &inst.fingerprint,
            key: &inst.key,
            job: inst.job.as_ref(),
            params: &params,
            inputs: &inputs,
            threads,
            timeout: self.plan.pipeline.stages[inst.stage_index].timeout,
            prefix: inst.prefix.as_ref().map(|link| link.fingerprint.as_str()),
            prefix_entries: &self.prefix_entries(index),
        }
        .execute(self.store, claims, self.cancel, report)
    }

    /// What an instance is told about each of its inputs.
    pub(super) fn input_refs(&self, index: usize) -> Vec<InputRef> {
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
    pub(super) fn prefix_entries(&self, index: usize) -> Vec<PrefixEntry> {
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
}

/// The instance after `i` in its prefix chain.
fn next_in_chain(plan: &Plan, i: usize) -> Option<usize> {
    plan.instances[i].prefix.as_ref().and_then(|link| link.next)
}
