//! The scheduler: runs ready instances in parallel within a thread budget.
//!
//! Each instance declares the threads it keeps busy; the scheduler starts a ready
//! instance only while the running ones' threads stay within `--jobs`, so a
//! training stage with its own rayon pool does not oversubscribe the cores. Work
//! runs on a rayon pool of `--jobs` threads; the calling thread only schedules.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Decision, Event, Outcome};
use crate::graph::Plan;
use crate::stages::{InputRef, StageContext, StageError};
use crate::store::{unix_now, Manifest, Store};

/// What happened to one instance in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Executed,
    Cached,
    Failed,
    /// An input failed, so it could not run.
    Skipped,
    /// The run stopped (a failure without `--keep-going`, or Ctrl-C) first.
    NotRun,
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Executed => "executed",
            Status::Cached => "cached",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::NotRun => "not-run",
        }
    }
}

/// One instance's result.
#[derive(Debug, Clone)]
pub struct InstanceResult {
    pub status: Status,
    pub duration: Duration,
    /// Error message of a failure, or which input's failure skipped it.
    pub error: Option<String>,
}

/// Runs a plan against a store.
pub struct Executor<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub jobs: usize,
    pub keep_going: bool,
    pub cancel: &'a AtomicBool,
}

struct Done {
    index: usize,
    duration: Duration,
    outcome: Outcome,
}

impl Executor<'_> {
    /// Runs every instance the decisions mark as `Run`, reporting events.
    pub fn run(
        &self,
        decisions: &[Decision],
        report: &(dyn Fn(&Event) + Sync),
    ) -> Vec<InstanceResult> {
        let plan = self.plan;
        let n = plan.instances.len();
        let jobs = self.jobs.max(1);
        let mut results: Vec<Option<InstanceResult>> = vec![None; n];
        let to_run = decisions.iter().filter(|d| d.runs()).count();
        report(&Event::RunStarted { total: n, to_run });

        // Inputs still to finish before each instance may start. Cached instances
        // are done from the start: their entries do not need their inputs.
        let mut waiting: Vec<usize> = plan.instances.iter().map(|i| i.inputs.len()).collect();
        let mut ready = ReadyQueue::default();
        for (i, decision) in decisions.iter().enumerate() {
            if !decision.runs() {
                results[i] = Some(InstanceResult {
                    status: Status::Cached,
                    duration: Duration::ZERO,
                    error: None,
                });
                report(&Event::Cached {
                    id: &plan.instances[i].id,
                });
            }
        }
        for (i, result) in results.iter().enumerate() {
            if result.is_some() {
                for c in plan.consumers(i) {
                    waiting[c] -= 1;
                }
            }
        }
        let class = |i: usize| {
            let r = plan.instances[i].resources;
            (r.threads.clamp(1, jobs), r.gpu)
        };
        for i in 0..n {
            if results[i].is_none() && waiting[i] == 0 {
                ready.push(i, class(i));
            }
        }

        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .thread_name(|i| format!("scalepipe-stage-{i}"))
            .build()
            .expect("thread pool starts");
        let (tx, rx) = mpsc::channel::<Done>();
        let mut threads_in_use = 0;
        let mut gpu_in_use = false;
        let mut running = 0;
        let mut stopping = false;

        pool.in_place_scope(|scope| loop {
            if self.cancel.load(Ordering::Relaxed) {
                stopping = true;
            }
            if !stopping {
                loop {
                    // The longest-waiting ready instance whose threads and GPU fit.
                    let fits = |(t, gpu): (usize, bool)| {
                        threads_in_use + t <= jobs && !(gpu && gpu_in_use)
                    };
                    let Some(i) = ready.pop_first(fits) else {
                        break;
                    };
                    let r = plan.instances[i].resources;
                    let threads = r.threads.clamp(1, jobs);
                    threads_in_use += threads;
                    gpu_in_use |= r.gpu;
                    running += 1;
                    let tx = tx.clone();
                    report(&Event::StageStarted {
                        id: &plan.instances[i].id,
                        threads,
                    });
                    scope.spawn(move |_| {
                        let start = Instant::now();
                        let outcome = self.execute(i, threads, report);
                        let _ = tx.send(Done {
                            index: i,
                            duration: start.elapsed(),
                            outcome,
                        });
                    });
                }
            }
            if running == 0 {
                break;
            }
            // Wake now and then to notice Ctrl-C even while stages run.
            let done = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(done) => done,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            running -= 1;
            let r = plan.instances[done.index].resources;
            threads_in_use -= r.threads.clamp(1, jobs);
            if r.gpu {
                gpu_in_use = false;
            }
            let inst = &plan.instances[done.index];
            report(&Event::StageFinished {
                id: &inst.id,
                duration: done.duration,
                outcome: &done.outcome,
            });
            match &done.outcome {
                Outcome::Executed => {
                    results[done.index] = Some(InstanceResult {
                        status: Status::Executed,
                        duration: done.duration,
                        error: None,
                    });
                    for c in plan.consumers(done.index) {
                        waiting[c] -= 1;
                        if waiting[c] == 0 && results[c].is_none() {
                            ready.push(c, class(c));
                        }
                    }
                }
                Outcome::Failed { message, .. } => {
                    results[done.index] = Some(InstanceResult {
                        status: Status::Failed,
                        duration: done.duration,
                        error: Some(message.clone()),
                    });
                    self.skip_dependents(done.index, &mut results, report);
                    if !self.keep_going {
                        stopping = true;
                    }
                }
                Outcome::Cancelled => {
                    results[done.index] = Some(InstanceResult {
                        status: Status::NotRun,
                        duration: done.duration,
                        error: Some("interrupted".into()),
                    });
                    stopping = true;
                }
            }
        });
        report(&Event::RunFinished);
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or(InstanceResult {
                    status: Status::NotRun,
                    duration: Duration::ZERO,
                    error: None,
                })
            })
            .collect()
    }

    /// Marks everything downstream of a failed instance as skipped.
    fn skip_dependents(
        &self,
        failed: usize,
        results: &mut [Option<InstanceResult>],
        report: &(dyn Fn(&Event) + Sync),
    ) {
        let failed_id = &self.plan.instances[failed].id;
        let mut stack: Vec<usize> = self.plan.consumers(failed).collect();
        while let Some(i) = stack.pop() {
            if results[i].is_some() {
                continue;
            }
            results[i] = Some(InstanceResult {
                status: Status::Skipped,
                duration: Duration::ZERO,
                error: Some(format!("input `{failed_id}` failed")),
            });
            report(&Event::Skipped {
                id: &self.plan.instances[i].id,
                because: failed_id,
            });
            stack.extend(self.plan.consumers(i));
        }
    }

    /// Runs one instance into a fresh entry and commits it.
    fn execute(&self, i: usize, threads: usize, report: &(dyn Fn(&Event) + Sync)) -> Outcome {
        let inst = &self.plan.instances[i];
        let started = unix_now();
        let clock = Instant::now();
        let pending = match self.store.begin(&inst.fingerprint) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Failed {
                    message: format!("cannot create a store entry: {e}"),
                    log: self.store.root().to_path_buf(),
                }
            }
        };
        let inputs: Vec<InputRef> = inst
            .inputs
            .iter()
            .map(|&j| {
                let up = &self.plan.instances[j];
                InputRef {
                    stage: up.stage_name.to_string(),
                    id: up.id.clone(),
                    kind: up.kind.name.to_string(),
                    params: self.plan.params(j),
                    dir: self.store.out_dir(&up.fingerprint),
                    fingerprint: up.fingerprint.clone(),
                }
            })
            .collect();
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
        let params = self.plan.params(i);
        let ctx = StageContext::new(
            &inst.id,
            &out_dir,
            &inputs,
            &params,
            threads,
            self.cancel,
            &progress,
            log,
        );
        let result = catch_unwind(AssertUnwindSafe(|| inst.job.run(&ctx)));
        let result = match result {
            Ok(r) => r,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(StageError::msg(format!("the stage panicked: {text}")))
            }
        };
        match result {
            Ok(()) => {
                drop(ctx);
                let outputs = match Manifest::hash_outputs(&out_dir) {
                    Ok(o) => o,
                    Err(e) => {
                        return Outcome::Failed {
                            message: format!("cannot read outputs: {e}"),
                            log: self.store.keep_failed(pending),
                        }
                    }
                };
                let manifest = Manifest {
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
                };
                match self.store.commit(pending, &manifest) {
                    Ok(()) => Outcome::Executed,
                    Err(e) => Outcome::Failed {
                        message: format!("cannot commit the store entry: {e}"),
                        log: self.store.root().to_path_buf(),
                    },
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
}

/// What an instance asks the scheduler for: threads (clamped to `--jobs`), GPU.
type ResourceClass = (usize, bool);

/// Instances whose inputs are done, in the order they became ready, grouped by
/// the resources they ask for.
///
/// The scheduler starts the first ready instance that fits the free threads.
/// Scanning one queue for it cost O(ready) per start, O(n²) over a wide sweep
/// (and a full scan after every finished stage while the pool is busy). All
/// instances of a class fit or none does, so the first fitting instance is the
/// earliest front among the fitting classes, and there are few classes.
#[derive(Default)]
struct ReadyQueue {
    /// Each class and its instances with their arrival numbers.
    classes: Vec<(ResourceClass, VecDeque<(u64, usize)>)>,
    arrivals: u64,
}

impl ReadyQueue {
    fn push(&mut self, i: usize, class: ResourceClass) {
        let n = self.arrivals;
        self.arrivals += 1;
        match self.classes.iter_mut().find(|(c, _)| *c == class) {
            Some((_, queue)) => queue.push_back((n, i)),
            None => self.classes.push((class, VecDeque::from([(n, i)]))),
        }
    }

    /// Removes and returns the earliest-arrived instance whose class fits.
    fn pop_first(&mut self, fits: impl Fn(ResourceClass) -> bool) -> Option<usize> {
        let (_, queue) = self
            .classes
            .iter_mut()
            .filter(|(class, queue)| !queue.is_empty() && fits(*class))
            .min_by_key(|(_, queue)| queue.front().map(|(n, _)| *n))?;
        queue.pop_front().map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::ReadyQueue;

    /// Same choices as scanning one FIFO for the first instance that fits.
    #[test]
    fn ready_queue_pops_the_earliest_instance_that_fits() {
        let mut q = ReadyQueue::default();
        q.push(0, (2, false));
        q.push(1, (1, false));
        q.push(2, (1, true));
        q.push(3, (2, false));
        q.push(4, (1, false));
        // Everything fits: arrival order.
        assert_eq!(q.pop_first(|_| true), Some(0));
        // One free thread, GPU busy: skips the two-thread and GPU instances.
        assert_eq!(q.pop_first(|(t, gpu)| t <= 1 && !gpu), Some(1));
        assert_eq!(q.pop_first(|(t, gpu)| t <= 1 && !gpu), Some(4));
        assert_eq!(q.pop_first(|(t, gpu)| t <= 1 && !gpu), None);
        assert_eq!(q.pop_first(|_| true), Some(2));
        q.push(5, (1, false));
        assert_eq!(q.pop_first(|_| true), Some(3));
        assert_eq!(q.pop_first(|_| true), Some(5));
        assert_eq!(q.pop_first(|_| true), None);
    }
}
