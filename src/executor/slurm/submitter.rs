//! The run loop of a Slurm run: submits ready instances, polls the queue, and
//! turns each job's end into the same [`Done`] a local run produces, so
//! dependents, `--keep-going`, events and the run record work as locally.
//!
//! Per pass: the ready instances (at most `max_jobs` in flight) are grouped by
//! stage and resources; a group of several is one job array, a single instance
//! one job. Per poll: one `squeue` for every job of the run. A job that left
//! the queue ended: its worker's status file says how; without one, Slurm
//! ended it, and `scontrol show job` says why (resubmitted while the stage's
//! `retries` allow and the reason is one Slurm caused: time limit, preemption,
//! node failure). A running job's progress comes from the progress file its
//! worker keeps beside its spec, read on the same poll. Ctrl-C cancels every job of the run with one `scancel` and
//! waits until they left the queue.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::commands::{self, Queued};
use super::progress::{self, WorkerProgress};
use super::spec::{self, JobSpec, WorkerOutcome};
use crate::executor::attempt::Report;
use crate::executor::claim::Claims;
use crate::executor::executor::{Done, RunState};
use crate::executor::scheduler::Scheduler;
use crate::executor::{Decision, Event, Executor, InstanceResult, Outcome};
use crate::pipeline::ExecutorKind;

/// How long a cancelled run waits for its jobs to leave the queue.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// One instance's job in flight.
struct Task {
    index: usize,
    /// `123` for a single job, `123_4` for an array task.
    job: String,
    /// The job (or array) id `squeue` and `scancel` take.
    parent: String,
    spec: PathBuf,
    /// Slurm's output file of the job.
    output: PathBuf,
    running: bool,
    started: Instant,
    /// The worker's progress last shown.
    progress: Option<WorkerProgress>,
}

/// The submitting side of a Slurm run.
struct Submitter<'e, 'a> {
    exec: &'e Executor<'a>,
    /// `.scalepipe/slurm/<run>/`: one directory per submission.
    dir: PathBuf,
    /// This binary, which the jobs run as `worker`.
    exe: PathBuf,
    batches: usize,
    tasks: Vec<Task>,
    /// Every job and array id submitted, for `scancel`.
    submitted: Vec<String>,
    /// Job ids each instance ran as so far (more than one after resubmissions).
    jobs: HashMap<usize, Vec<String>>,
    /// Queued and running counts last reported.
    shown: (usize, usize),
}

/// Runs `decisions` through Slurm (see the module documentation).
pub(in crate::executor) fn run(
    exec: &Executor,
    decisions: &[Decision],
    report: Report,
) -> std::io::Result<Vec<InstanceResult>> {
    let plan = exec.plan;
    let pool = exec.pool()?;
    let exe = std::env::current_exe()
        .map_err(|e| std::io::Error::other(format!("cannot find the scalepipe binary: {e}")))?;
    let run_name = format!(
        "{}-{}-{}",
        plan.pipeline.name,
        crate::store::unix_now() as u64,
        std::process::id()
    );
    let mut submitter = Submitter {
        exec,
        dir: exec.store.root().join("slurm").join(run_name),
        exe,
        batches: 0,
        tasks: Vec::new(),
        submitted: Vec::new(),
        jobs: HashMap::new(),
        shown: (0, 0),
    };
    report(&Event::RunStarted {
        total: plan.instances.len(),
        to_run: decisions.iter().filter(|d| d.runs()).count(),
    });
    let scheduler = Scheduler::per_instance(exec.slurm.max_jobs.max(1));
    let mut run = exec.start(decisions, scheduler, report);
    let claims = Claims::new(exec.store.root());
    let claims = &claims;
    let (tx, rx) = mpsc::channel::<Done>();
    let poll = exec.slurm.poll;
    let mut next_poll = Instant::now() + poll;
    let mut cancelled = false;
    pool.in_place_scope(|scope| loop {
        let interrupted = exec.cancel.load(Ordering::Relaxed);
        run.stopping |= interrupted;
        if interrupted && !cancelled {
            cancelled = true;
            submitter.cancel_all(&mut run, report);
        }
        let mut ready = Vec::new();
        while !run.stopping {
            let Some((index, _)) = run.scheduler.start_next() else {
                break;
            };
            let inst = &plan.instances[index];
            let placement = &plan.pipeline.stages[inst.stage_index].placement;
            if placement.executor == Some(ExecutorKind::Local) {
                let threads = inst.resources.threads.clamp(1, exec.jobs.max(1));
                exec.spawn_local(scope, &tx, index, threads, claims, report);
            } else {
                ready.push(index);
            }
        }
        if !ready.is_empty() {
            submitter.submit_ready(&ready, &mut run, report);
            submitter.show_queue(report);
        }
        if run.scheduler.idle() {
            break;
        }
        let wait = next_poll
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(done) => exec.finished(&mut run, done, report),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_poll {
            submitter.poll(&mut run, report);
            next_poll = Instant::now() + poll;
        }
    });
    report(&Event::RunFinished);
    Ok(run.into_results())
}

impl Submitter<'_, '_> {
    /// Submits ready instances: grouped by stage and resources, in the order
    /// they became ready; a group of several as one array.
    fn submit_ready(&mut self, ready: &[usize], run: &mut RunState, report: Report) {
        let plan = self.exec.plan;
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<(usize, usize, bool), usize> = HashMap::new();
        for &index in ready {
            if !self.exec.slurm.arrays {
                groups.push(vec![index]);
                continue;
            }
            let inst = &plan.instances[index];
            let class = (inst.stage_index, inst.resources.threads, inst.resources.gpu);
            let g = *group_of.entry(class).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(index);
        }
        for group in groups {
            self.submit(&group, run, report);
        }
    }

    /// Writes the specs and script of one submission and calls `sbatch`. A
    /// submission that fails fails its instances.
    fn submit(&mut self, group: &[usize], run: &mut RunState, report: Report) {
        let batch = self.dir.join(self.batches.to_string());
        self.batches += 1;
        match self.sbatch(&batch, group) {
            Ok(id) => {
                let plan = self.exec.plan;
                let array = group.len() > 1;
                for (task, &index) in group.iter().enumerate() {
                    let (job, output) = if array {
                        (
                            format!("{id}_{task}"),
                            batch.join(format!("slurm-{id}_{task}.out")),
                        )
                    } else {
                        (id.clone(), batch.join(format!("slurm-{id}.out")))
                    };
                    self.jobs.entry(index).or_default().push(job.clone());
                    self.tasks.push(Task {
                        index,
                        job,
                        parent: id.clone(),
                        spec: batch.join(format!("{task}.json")),
                        output,
                        running: false,
                        started: Instant::now(),
                        progress: None,
                    });
                }
                self.submitted.push(id.clone());
                let stage = &plan.instances[group[0]].stage_name;
                report(&Event::Submitted {
                    stage,
                    job: &id,
                    count: group.len(),
                });
            }
            Err(message) => {
                for &index in group {
                    self.finish(
                        run,
                        report,
                        index,
                        Duration::ZERO,
                        Outcome::Failed {
                            message: message.clone(),
                            log: batch.clone(),
                        },
                    );
                }
            }
        }
    }

    /// The batch directory's specs and script, then `sbatch`: the job id.
    fn sbatch(&self, batch: &Path, group: &[usize]) -> Result<String, String> {
        let exec = self.exec;
        let plan = exec.plan;
        std::fs::create_dir_all(batch)
            .map_err(|e| format!("cannot create {}: {e}", batch.display()))?;
        for (task, &index) in group.iter().enumerate() {
            let path = batch.join(format!("{task}.json"));
            spec::write_spec(&path, &self.spec(index)).map_err(|e| e.to_string())?;
        }
        let script = batch.join("job.sh");
        let text = format!(
            "#!/bin/sh\n# scalepipe: runs one instance of this submission (array task or task 0).\nexec {} worker {}/\"${{SLURM_ARRAY_TASK_ID:-0}}.json\"\n",
            shell_quote(&self.exe.display().to_string()),
            shell_quote(&batch.display().to_string()),
        );
        std::fs::write(&script, text)
            .and_then(|()| {
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;

        let inst = &plan.instances[group[0]];
        let stage = &plan.pipeline.stages[inst.stage_index];
        let options = exec.slurm;
        let workspace = exec.store.root().parent().unwrap_or(exec.store.root());
        let mut args = vec![
            format!("--job-name={}.{}", plan.pipeline.name, stage.name),
            format!("--chdir={}", workspace.display()),
            format!("--cpus-per-task={}", inst.resources.threads.max(1)),
        ];
        if group.len() > 1 {
            let mut array = format!("--array=0-{}", group.len() - 1);
            if let Some(limit) = options.array_limit {
                array.push_str(&format!("%{limit}"));
            }
            args.push(array);
            args.push(format!("--output={}/slurm-%A_%a.out", batch.display()));
        } else {
            args.push(format!("--output={}/slurm-%j.out", batch.display()));
        }
        if let Some(mem) = &stage.placement.mem {
            args.push(format!("--mem={mem}"));
        }
        if let Some(time) = &stage.placement.time {
            args.push(format!("--time={time}"));
        }
        let gpus = stage
            .placement
            .gpus
            .unwrap_or(u32::from(inst.resources.gpu));
        if gpus > 0 {
            args.push(format!("--gres=gpu:{gpus}"));
        }
        for (flag, value) in [
            ("partition", &options.partition),
            ("account", &options.account),
            ("qos", &options.qos),
        ] {
            if let Some(value) = value {
                args.push(format!("--{flag}={value}"));
            }
        }
        args.extend(options.sbatch_args.iter().cloned());
        commands::sbatch(&args, &script).map_err(|e| format!("cannot submit to Slurm: {e}"))
    }

    /// The fully resolved job spec of an instance.
    fn spec(&self, index: usize) -> JobSpec {
        let plan = self.exec.plan;
        let inst = &plan.instances[index];
        let stage = &plan.pipeline.stages[inst.stage_index];
        let store = self.exec.store;
        JobSpec {
            workspace: store.root().parent().unwrap_or(store.root()).to_path_buf(),
            pipeline: plan.pipeline.name.clone(),
            pipeline_file: std::path::absolute(plan.pipeline.source.path())
                .unwrap_or_else(|_| plan.pipeline.source.path().to_path_buf()),
            base_dir: std::path::absolute(&plan.pipeline.base_dir)
                .unwrap_or_else(|_| plan.pipeline.base_dir.clone()),
            stage: stage.name.clone(),
            id: inst.id.clone(),
            kind: inst.kind.name.to_string(),
            key: inst.key.clone(),
            fingerprint: inst.fingerprint.clone(),
            params: plan.params(index),
            input_kinds: stage
                .inputs
                .iter()
                .map(|(name, _)| {
                    plan.pipeline
                        .stage(name)
                        .map_or_else(String::new, |s| s.kind.name.to_string())
                })
                .collect(),
            inputs: self.exec.input_refs(index),
            threads: inst.resources.threads.max(1),
            timeout_s: stage.timeout.map(|t| t.as_secs_f64()),
            prefix: inst.prefix.as_ref().map(|link| link.fingerprint.clone()),
            prefix_entries: self.exec.prefix_entries(index),
        }
    }

    /// The Slurm job ids in flight, each array once (its tasks share it).
    fn parents(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.tasks
            .iter()
            .filter(|t| seen.insert(t.parent.as_str()))
            .map(|t| t.parent.clone())
            .collect()
    }

    /// One `squeue` for every job in flight; each job that left the queue (or
    /// whose worker already wrote its status) ends.
    fn poll(&mut self, run: &mut RunState, report: Report) {
        if self.tasks.is_empty() {
            return;
        }
        let parents = self.parents();
        let queue = match commands::squeue(&parents) {
            Ok(queue) => queue,
            Err(e) => {
                // The controller may be busy: try again at the next poll.
                let message = format!("cannot read the Slurm queue: {e}");
                report(&Event::Warning { message: &message });
                return;
            }
        };
        let plan = self.exec.plan;
        let mut still = Vec::with_capacity(self.tasks.len());
        for mut task in std::mem::take(&mut self.tasks) {
            let status = spec::read_status(&spec::status_path(&task.spec));
            match (queue.get(&task.job), &status) {
                // Still queued, or its worker is signalled and Slurm not done with it.
                (Some(state), None)
                | (
                    Some(state),
                    Some(spec::WorkerStatus {
                        outcome: WorkerOutcome::Signalled,
                        ..
                    }),
                ) => {
                    // A worker that wrote progress runs, whatever the queue
                    // said a moment before.
                    let progress = progress::read_progress(&progress::progress_path(&task.spec));
                    if (*state == Queued::Running || progress.is_some()) && !task.running {
                        task.running = true;
                        task.started = Instant::now();
                        let inst = &plan.instances[task.index];
                        report(&Event::StageStarted {
                            id: &inst.id,
                            threads: inst.resources.threads.max(1),
                        });
                    }
                    if let Some(progress) = progress {
                        let id = &plan.instances[task.index].id;
                        show_progress(&mut task, id, progress, report);
                    }
                    still.push(task);
                }
                _ => self.ended(task, status, run, report, &mut still),
            }
        }
        self.tasks = still;
        self.show_queue(report);
    }

    /// A job that ended: its outcome from its status file, the store, or Slurm.
    fn ended(
        &mut self,
        mut task: Task,
        status: Option<spec::WorkerStatus>,
        run: &mut RunState,
        report: Report,
        still: &mut Vec<Task>,
    ) {
        let plan = self.exec.plan;
        let inst = &plan.instances[task.index];
        // The progress its worker wrote since the last poll (its end, as a
        // local run shows it).
        if task.running {
            if let Some(progress) = progress::read_progress(&progress::progress_path(&task.spec)) {
                show_progress(&mut task, &inst.id, progress, report);
            }
        }
        let elapsed = task.started.elapsed();
        let outcome = match status {
            Some(status) => {
                let duration = Duration::from_secs_f64(status.duration_s.max(0.0));
                let outcome = match status.outcome {
                    WorkerOutcome::Executed => Some(Outcome::Executed),
                    WorkerOutcome::Reused => Some(Outcome::Reused),
                    WorkerOutcome::Failed => Some(Outcome::Failed {
                        message: status.message.unwrap_or_else(|| "the worker failed".into()),
                        log: status.log.unwrap_or_else(|| task.output.clone()),
                    }),
                    WorkerOutcome::Signalled => None,
                };
                if let Some(outcome) = outcome {
                    self.finish(run, report, task.index, duration, outcome);
                    return;
                }
                None
            }
            // Committed, but the worker died before its status file.
            None if self.exec.store.contains(&inst.fingerprint) => Some(Outcome::Executed),
            None => None,
        };
        if let Some(outcome) = outcome {
            self.finish(run, report, task.index, elapsed, outcome);
            return;
        }
        // Slurm ended it: ask why.
        let message = match commands::show_job(&task.job) {
            Ok(Some(end)) => {
                let stage = &plan.pipeline.stages[inst.stage_index];
                let tries = self.jobs.get(&task.index).map_or(1, Vec::len);
                if end.retriable() && (tries as u32) <= stage.placement.retries && !run.stopping {
                    let message = format!(
                        "{}: Slurm job {} {}; resubmitting (retry {tries} of {})",
                        inst.id,
                        task.job,
                        end.describe(),
                        stage.placement.retries
                    );
                    report(&Event::Warning { message: &message });
                    // `poll` took the tasks in flight out of `self.tasks`, so
                    // the resubmitted one is the only task there.
                    self.submit(&[task.index], run, report);
                    still.append(&mut self.tasks);
                    return;
                }
                format!("Slurm job {} {}", task.job, end.describe())
            }
            Ok(None) => format!(
                "Slurm job {} left the queue without the worker's status file, and Slurm no \
                 longer knows it (it ended more than MinJobAge ago); see its output",
                task.job
            ),
            Err(e) => format!(
                "Slurm job {} left the queue without the worker's status file; {e}",
                task.job
            ),
        };
        self.finish(
            run,
            report,
            task.index,
            elapsed,
            Outcome::Failed {
                message,
                log: task.output,
            },
        );
    }

    /// Hands an instance's end to the executor, with the jobs it ran as.
    fn finish(
        &mut self,
        run: &mut RunState,
        report: Report,
        index: usize,
        duration: Duration,
        outcome: Outcome,
    ) {
        let jobs = self.jobs.get(&index).cloned().unwrap_or_default();
        self.exec.finished(
            run,
            Done {
                index,
                duration,
                outcome,
                jobs,
            },
            report,
        );
    }

    /// Reports the queued and running counts when they changed.
    fn show_queue(&mut self, report: Report) {
        let running = self.tasks.iter().filter(|t| t.running).count();
        let counts = (self.tasks.len() - running, running);
        if counts != self.shown {
            self.shown = counts;
            report(&Event::Queue {
                queued: counts.0,
                running: counts.1,
            });
        }
    }

    /// Ctrl-C: one `scancel` for every job of the run, then waits until none
    /// is in the queue; their instances did not run.
    fn cancel_all(&mut self, run: &mut RunState, report: Report) {
        if self.tasks.is_empty() {
            return;
        }
        let parents = self.parents();
        if let Err(e) = commands::scancel(&parents) {
            let message = format!("cannot cancel the run's Slurm jobs: {e}");
            report(&Event::Warning { message: &message });
        }
        let deadline = Instant::now() + CANCEL_WAIT;
        while Instant::now() < deadline {
            match commands::squeue(&parents) {
                Ok(queue) if !self.tasks.iter().any(|t| queue.contains_key(&t.job)) => break,
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        for task in std::mem::take(&mut self.tasks) {
            let elapsed = task.started.elapsed();
            self.finish(run, report, task.index, elapsed, Outcome::Cancelled);
        }
        self.show_queue(report);
    }
}

/// Emits the progress a running task's worker wrote since the last poll, as
/// the [`Event::Progress`] a local run's stage emits.
fn show_progress(task: &mut Task, id: &str, now: WorkerProgress, report: Report) {
    if task.progress.as_ref() == Some(&now) {
        return;
    }
    report(&Event::Progress {
        id,
        pos: now.pos,
        len: now.len,
        message: &now.message,
        elapsed: Some(Duration::from_secs_f64(now.elapsed_s.max(0.0))),
    });
    task.progress = Some(now);
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
