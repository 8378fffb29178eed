//! The Slurm executor: a run's ready instances go to Slurm as jobs, each
//! running `scalepipe worker SPEC`, and come back as committed store entries.
//!
//! - [`submitter`]: the run loop. Instances of one stage that are ready in the
//!   same scheduling pass go as one job array, the others as single jobs;
//!   `executor = "local"` stages run on the submitting machine's pool.
//! - [`spec`]: the job spec the submitter writes for each instance under
//!   `.scalepipe/slurm/<run>/<batch>/`, and the status file its worker leaves.
//! - [`progress`]: the progress file a worker keeps beside its spec, which the
//!   submitter reads on each poll and shows as a local run's progress.
//! - [`worker`]: `scalepipe worker SPEC`.
//! - [`commands`]: `sbatch`, one `squeue` per poll for all jobs of the run,
//!   `scontrol show job` for why a job left the queue without a status file,
//!   `scancel`. No accounting (`sacct`, slurmdbd) is needed.

pub mod commands;
pub mod progress;
pub mod spec;
mod submitter;
pub mod worker;

pub(super) use submitter::run;
