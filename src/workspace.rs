//! A workspace: the directory holding `.scalepipe/` and `results/`, and the
//! operations on it that the CLI exposes (plan, run, status, gc, verify).
//!
//! A run reads: pipeline file -> [`Pipeline`] -> [`Plan`] -> decisions -> lock ->
//! [`Executor`] -> store entries, results view, pipeline state, run record.
//! Everything up to the decisions is read-only, so an invalid pipeline never
//! touches the store or the results.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::error::Error;
use crate::executor::{decide, Claims, Decision, Event, Executor, InstanceResult, Status};
use crate::graph::Plan;
use crate::observer::{InstanceRecord, RunRecord};
use crate::pipeline::{ExecutorKind, Pipeline, SlurmOverrides};
use crate::stages::{ENV_RUN_PID, ENV_WORKSPACE};
use crate::store::{
    durable, unix_now, BadEntry, Depth, Listing, PipelineState, ResultsView, StateEntry, Store,
    StoredKey,
};

/// Options of `scalepipe run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Thread budget shared by running stages.
    pub jobs: usize,
    pub keep_going: bool,
    pub force: bool,
    /// Re-hash every cached entry the run uses, not only quick-check it.
    pub verify: bool,
    /// Where instances run (`--executor`).
    pub executor: ExecutorKind,
    /// `[executor.slurm]` options given on the command line.
    pub slurm: SlurmOverrides,
}

/// A finished run: the record written to `run.json`, plus where it went.
#[derive(Debug)]
pub struct RunReport {
    pub record: RunRecord,
    pub record_path: PathBuf,
}

impl RunReport {
    /// Ids of the instances with a status.
    pub fn ids(&self, status: Status) -> Vec<&str> {
        self.record
            .instances
            .iter()
            .filter(|i| i.status == status)
            .map(|i| i.id.as_str())
            .collect()
    }
}

/// What the store holds, for `scalepipe status`.
#[derive(Debug)]
pub struct StoreStatus {
    /// The store's directory, `.scalepipe/`.
    pub root: PathBuf,
    /// Each pipeline's latest run, as its saved state remembers it.
    pub pipelines: Vec<PipelineStatus>,
    /// Entries in the store.
    pub entries: usize,
    /// Their size on disk.
    pub bytes: u64,
    /// Entries no pipeline's latest run references (what `gc` would remove).
    pub unreferenced: usize,
}

/// One pipeline's latest run in [`StoreStatus`].
#[derive(Debug)]
pub struct PipelineStatus {
    pub name: String,
    /// The pipeline file it ran from.
    pub file: String,
    /// Instances of that run.
    pub instances: usize,
    /// How many of their entries the store still holds.
    pub in_store: usize,
}

/// What `gc` removed or would remove.
#[derive(Debug)]
pub struct GcReport {
    pub removed: Vec<String>,
    pub bytes: u64,
    pub kept: usize,
}

/// What `verify` found.
#[derive(Debug)]
pub struct VerifyReport {
    /// Entries checked.
    pub checked: usize,
    /// Entries that failed, and where each was moved with `--repair`.
    pub bad: Vec<(BadEntry, Option<PathBuf>)>,
}

/// A workspace directory.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    store: Store,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Workspace {
        // Stages run in their own directories, so every path handed to them
        // must be absolute.
        let root: PathBuf = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let store = Store::new(&root);
        Workspace { root, store }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads, validates and expands a pipeline file. Read-only.
    pub fn load(&self, file: &Path) -> Result<Plan, Error> {
        let pipeline = Pipeline::load(file)
            .map_err(Error::Pipeline)?
            .in_workspace(&self.root);
        Plan::build(pipeline).map_err(Error::Pipeline)
    }

    /// What a run would do with each instance. Read-only.
    pub fn plan(&self, plan: &Plan, force: bool) -> Result<Vec<Decision>, Error> {
        let state = self.state_of(plan)?;
        Ok(decide(plan, &self.store, &state, force))
    }

    /// The pipeline's saved state, refused when it is unreadable or belongs to
    /// another pipeline file with the same `[pipeline] name` (the two would
    /// share, prune and garbage-collect each other's results).
    fn state_of(&self, plan: &Plan) -> Result<PipelineState, Error> {
        let state = PipelineState::load(self.store.root(), &plan.pipeline.name)
            .map_err(|e| Error::Refused(format!("unreadable pipeline state {e}")))?;
        if !state.file.is_empty() {
            let ours = pipeline_file(plan);
            let theirs = Path::new(&state.file);
            let same = std::fs::canonicalize(theirs)
                .ok()
                .zip(std::fs::canonicalize(&ours).ok())
                .is_some_and(|(a, b)| a == b);
            // A state whose file is gone was moved or renamed: this file takes it over.
            if !same && theirs.is_file() {
                return Err(Error::Refused(format!(
                    "pipeline name `{}` is already used in this workspace by {} (state {}); \
                     give {} another `[pipeline] name`",
                    plan.pipeline.name,
                    theirs.display(),
                    PipelineState::path(self.store.root(), &plan.pipeline.name).display(),
                    ours.display()
                )));
            }
        }
        Ok(state)
    }

    /// Decides under the lock, checking every cached entry the run will read
    /// (inputs of instances that run, entries to publish; all of them with
    /// `verify`). A bad entry is quarantined and its instance runs again, which
    /// may make its own inputs needed: repeated until nothing new is bad.
    fn decide_checked(
        &self,
        plan: &Plan,
        state: &PipelineState,
        listing: &Listing,
        options: &RunOptions,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Decision>, Error> {
        let depth = if options.verify {
            Depth::Full
        } else {
            Depth::Quick
        };
        let mut checked = vec![false; plan.instances.len()];
        let mut damaged: Vec<(String, String)> = Vec::new();
        loop {
            let mut decisions = decide(plan, &self.store, state, options.force);
            let mut needed = vec![options.verify; plan.instances.len()];
            for (i, inst) in plan.instances.iter().enumerate() {
                if decisions[i].runs() {
                    for &input in &inst.inputs {
                        needed[input] = true;
                    }
                } else if !(state
                    .instances
                    .get(&inst.id)
                    .is_some_and(|e| e.fingerprint == inst.fingerprint)
                    && listing.has(&inst.id))
                {
                    needed[i] = true;
                }
            }
            let mut found_bad = false;
            for (i, inst) in plan.instances.iter().enumerate() {
                if !needed[i] || checked[i] || decisions[i].runs() {
                    continue;
                }
                checked[i] = true;
                if let Err(bad) = self.store.check(&inst.fingerprint, depth) {
                    let moved = self.store.quarantine(&inst.fingerprint, &bad.to_string());
                    let moved = moved.map_err(|e| {
                        Error::io(format!("cannot quarantine store entry of {}", inst.id), e)
                    })?;
                    warnings.push(format!(
                        "{bad}; moved to {} and re-computed",
                        moved.display()
                    ));
                    damaged.push((inst.fingerprint.clone(), bad.problem.to_string()));
                    found_bad = true;
                }
            }
            if !found_bad {
                for (decision, inst) in decisions.iter_mut().zip(&plan.instances) {
                    if let Some((_, problem)) =
                        damaged.iter().find(|(fp, _)| *fp == inst.fingerprint)
                    {
                        *decision = Decision::Run {
                            reason: Cow::Owned(format!("store entry damaged: {problem}")),
                        };
                    }
                }
                return Ok(decisions);
            }
        }
    }

    /// Runs a pipeline: executes what is not cached, then writes the results view,
    /// the pipeline state and the run record.
    pub fn run(
        &self,
        plan: &Plan,
        options: &RunOptions,
        cancel: &AtomicBool,
        report: &(dyn Fn(&Event) + Sync),
        on_wait: impl FnOnce(),
    ) -> Result<RunReport, Error> {
        let started = unix_now();
        let clock = Instant::now();
        self.refuse_nested_run()?;
        // Before the lock, whose taking deletes `tmp/`: end what a killed run's
        // stages left running there.
        Claims::new(self.store.root()).reap_stale();
        let _lock = self
            .store
            .lock(on_wait)
            .map_err(|e| Error::io(format!("cannot lock {}", self.store.root().display()), e))?;
        // Decide under the lock: another run may have just filled the store.
        let mut state = self.state_of(plan)?;
        let view = ResultsView::new(&self.root, &plan.pipeline.name);
        let listing = view.list();
        let mut warnings = Vec::new();
        let decisions = self.decide_checked(plan, &state, &listing, options, &mut warnings)?;
        for message in &warnings {
            report(&Event::Warning { message });
        }
        let slurm = options.slurm.apply(&plan.pipeline.slurm);
        let executor = Executor {
            plan,
            store: &self.store,
            jobs: options.jobs,
            keep_going: options.keep_going,
            force: options.force,
            cancel,
            executor: options.executor,
            slurm: &slurm,
        };
        let results = executor
            .run(&decisions, report)
            .map_err(|e| Error::io("cannot run the pipeline", e))?;

        self.publish(plan, &results, &state, &view, &listing)?;
        self.save_state(plan, &results, &mut state)?;

        let record = RunRecord {
            pipeline: plan.pipeline.name.clone(),
            file: plan.pipeline.source.path().display().to_string(),
            seed: plan.pipeline.seed,
            warnings,
            scalepipe_version: env!("CARGO_PKG_VERSION").to_string(),
            started,
            duration_s: clock.elapsed().as_secs_f64(),
            jobs: options.jobs,
            interrupted: cancel.load(std::sync::atomic::Ordering::Relaxed),
            executor: match options.executor {
                ExecutorKind::Local => None,
                ExecutorKind::Slurm => Some("slurm".to_string()),
            },
            instances: plan
                .instances
                .iter()
                .zip(&results)
                .zip(&decisions)
                .map(|((inst, result), decision)| InstanceRecord {
                    id: inst.id.clone(),
                    stage: inst.stage_name.to_string(),
                    kind: inst.kind.name.to_string(),
                    fingerprint: inst.fingerprint.clone(),
                    status: result.status,
                    reason: decision.reason().to_string(),
                    duration_s: result.duration.as_secs_f64(),
                    error: result.error.clone(),
                    slurm_jobs: result.jobs.clone(),
                })
                .collect(),
        };
        let record_path = view.dir().join("run.json");
        std::fs::create_dir_all(view.dir())
            .map_err(|e| durable::at(view.dir(), e))
            .and_then(|_| {
                durable::write_atomic(
                    &record_path,
                    &serde_json::to_vec(&record).map_err(std::io::Error::other)?,
                )
            })
            .map_err(|e| Error::io("cannot write the run record", e))?;
        Ok(RunReport {
            record,
            record_path,
        })
    }

    /// Fails when called from a stage of a run that holds this workspace's lock
    /// (it would wait for its own parent forever).
    fn refuse_nested_run(&self) -> Result<(), Error> {
        let (Some(workspace), Some(pid)) = (
            std::env::var_os(ENV_WORKSPACE),
            std::env::var(ENV_RUN_PID)
                .ok()
                .and_then(|p| p.parse::<u32>().ok()),
        ) else {
            return Ok(());
        };
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if same(Path::new(&workspace), &self.root) && crate::process::alive(pid) {
            return Err(Error::Usage(format!(
                "cannot run a pipeline on workspace {} from inside one of its stages: \
                 the run that started the stage (pid {pid}) holds the workspace lock until \
                 the stage ends; use another --workspace",
                self.root.display()
            )));
        }
        Ok(())
    }

    /// Updates the pipeline state after a run and saves it if it changed. The state
    /// keeps the latest complete version of every instance, so a failed instance
    /// still remembers what it was when it last succeeded.
    fn save_state(
        &self,
        plan: &Plan,
        results: &[InstanceResult],
        state: &mut PipelineState,
    ) -> Result<(), Error> {
        let current: HashSet<&str> = plan.instances.iter().map(|i| i.id.as_str()).collect();
        let before = state.instances.len();
        state
            .instances
            .retain(|id, _| current.contains(id.as_str()));
        let mut changed = state.instances.len() != before;
        for (inst, result) in plan.instances.iter().zip(results) {
            let unchanged = state
                .instances
                .get(&inst.id)
                .is_some_and(|entry| entry.fingerprint == inst.fingerprint);
            if matches!(result.status, Status::Executed | Status::Cached) && !unchanged {
                changed = true;
                state.instances.insert(
                    inst.id.clone(),
                    StateEntry {
                        fingerprint: inst.fingerprint.clone(),
                        key: StoredKey::new(&inst.key),
                    },
                );
            }
        }
        // A no-op run leaves the state as it was: skip rewriting it.
        let file = pipeline_file(plan).display().to_string();
        if changed || state.file != file || state.pipeline != plan.pipeline.name {
            state.pipeline = plan.pipeline.name.clone();
            state.file = file;
            state
                .save(self.store.root())
                .map_err(|e| Error::io("cannot save the pipeline state", e))?;
        }
        Ok(())
    }

    /// Copies committed outputs into `results/<pipeline>/`, skipping instances
    /// whose view is already current.
    fn publish(
        &self,
        plan: &Plan,
        results: &[InstanceResult],
        state: &PipelineState,
        view: &ResultsView,
        listing: &Listing,
    ) -> Result<(), Error> {
        let mut published = false;
        for (inst, result) in plan.instances.iter().zip(results) {
            let current = match result.status {
                Status::Executed => false,
                Status::Cached => {
                    state
                        .instances
                        .get(&inst.id)
                        .is_some_and(|entry| entry.fingerprint == inst.fingerprint)
                        && listing.has(&inst.id)
                }
                _ => continue,
            };
            if !current {
                view.publish(&inst.id, &self.store.out_dir(&inst.fingerprint))
                    .map_err(|e| Error::io(format!("cannot publish results of {}", inst.id), e))?;
                published = true;
            }
        }
        if published {
            view.sync()
                .map_err(|e| Error::io(format!("cannot flush {}", view.dir().display()), e))?;
        }
        let ids: Vec<&str> = plan.instances.iter().map(|i| i.id.as_str()).collect();
        view.prune(listing, &ids)
            .map_err(|e| Error::io("cannot prune old results", e))
    }

    /// What the store holds, per pipeline and in all. Read-only.
    pub fn status(&self) -> Result<StoreStatus, Error> {
        let entries = self
            .store
            .entries()
            .map_err(|e| Error::io("cannot list the store", e))?;
        let states = PipelineState::load_all(self.store.root())
            .map_err(|e| Error::Refused(format!("unreadable pipeline state {e}")))?;
        let referenced: HashSet<&str> = states
            .iter()
            .flat_map(|state| {
                state
                    .instances
                    .values()
                    .map(|entry| entry.fingerprint.as_str())
            })
            .collect();
        let pipelines = states
            .iter()
            .map(|state| PipelineStatus {
                name: state.pipeline.clone(),
                file: state.file.clone(),
                instances: state.instances.len(),
                in_store: state
                    .instances
                    .values()
                    .filter(|entry| self.store.contains(&entry.fingerprint))
                    .count(),
            })
            .collect();
        Ok(StoreStatus {
            root: self.store.root().to_path_buf(),
            pipelines,
            entries: entries.len(),
            bytes: entries.iter().map(|fp| self.store.size_of(fp)).sum(),
            unreferenced: entries
                .iter()
                .filter(|fp| !referenced.contains(fp.as_str()))
                .count(),
        })
    }

    /// Removes store entries that no pipeline's latest run references, and
    /// anything under `cache/` that is not a complete entry. Refuses (changing
    /// nothing) when a pipeline state cannot be read: without it, every entry
    /// of that pipeline would look unreferenced. Takes the workspace lock even
    /// for a dry run, so what it lists is not changing underneath it.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport, Error> {
        let _lock = self
            .store
            .lock(|| {
                eprintln!("waiting for another scalepipe process to release the workspace lock")
            })
            .map_err(|e| Error::io("cannot lock the store", e))?;
        let states = PipelineState::load_all(self.store.root()).map_err(|e| {
            Error::Refused(format!(
                "gc refused: unreadable pipeline state {e} (gc would delete that pipeline's entries)"
            ))
        })?;
        let referenced: HashSet<String> = states
            .into_iter()
            .flat_map(|state| state.instances.into_values().map(|entry| entry.fingerprint))
            .collect();
        let names = self
            .store
            .names()
            .map_err(|e| Error::io("cannot list the store", e))?;
        let mut removed = Vec::new();
        let mut bytes = 0;
        let mut kept = 0;
        for fp in names {
            if referenced.contains(&fp) && self.store.contains(&fp) {
                kept += 1;
                continue;
            }
            bytes += self.store.size_of(&fp);
            if !dry_run {
                self.store
                    .remove(&fp)
                    .map_err(|e| Error::io(format!("cannot remove entry {fp}"), e))?;
            }
            removed.push(fp);
        }
        if !dry_run {
            let _ = std::fs::remove_dir_all(self.store.root().join("failed"));
            // Job specs, status files and Slurm output of finished Slurm runs.
            let _ = std::fs::remove_dir_all(self.store.root().join("slurm"));
            self.store
                .prune_prefixes()
                .map_err(|e| Error::io("cannot prune the prefix index", e))?;
        }
        Ok(GcReport {
            removed,
            bytes,
            kept,
        })
    }

    /// Re-hashes store entries against their manifests: every name under
    /// `cache/`, or only the entries of one pipeline's latest run. With
    /// `repair`, bad entries are quarantined (the next run re-computes them).
    pub fn verify(&self, pipeline: Option<&str>, repair: bool) -> Result<VerifyReport, Error> {
        let _lock = self
            .store
            .lock(|| {
                eprintln!("waiting for another scalepipe process to release the workspace lock")
            })
            .map_err(|e| Error::io("cannot lock the store", e))?;
        let names: Vec<String> = match pipeline {
            None => self
                .store
                .names()
                .map_err(|e| Error::io("cannot list the store", e))?,
            Some(name) => {
                let path = PipelineState::path(self.store.root(), name);
                if !path.is_file() {
                    return Err(Error::Usage(format!(
                        "no pipeline `{name}` has run in this workspace ({} does not exist)",
                        path.display()
                    )));
                }
                let state = PipelineState::load(self.store.root(), name)
                    .map_err(|e| Error::Refused(format!("unreadable pipeline state {e}")))?;
                // Entries gc already removed are not bad, only gone.
                let mut fps: Vec<String> = state
                    .instances
                    .into_values()
                    .map(|entry| entry.fingerprint)
                    .filter(|fp| std::fs::symlink_metadata(self.store.entry_dir(fp)).is_ok())
                    .collect();
                fps.sort();
                fps.dedup();
                fps
            }
        };
        let mut bad = Vec::new();
        for fp in &names {
            if let Err(entry) = self.store.check(fp, Depth::Full) {
                let moved = if repair && std::fs::symlink_metadata(self.store.entry_dir(fp)).is_ok()
                {
                    Some(
                        self.store
                            .quarantine(fp, &entry.to_string())
                            .map_err(|e| Error::io(format!("cannot quarantine entry {fp}"), e))?,
                    )
                } else {
                    None
                };
                bad.push((entry, moved));
            }
        }
        Ok(VerifyReport {
            checked: names.len(),
            bad,
        })
    }
}

/// The pipeline file as an absolute path, as the pipeline state records it.
fn pipeline_file(plan: &Plan) -> PathBuf {
    let path = plan.pipeline.source.path();
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
