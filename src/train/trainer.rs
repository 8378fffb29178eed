//! The training loop, top to bottom in one place (as nanoGPT's `train.py`): data,
//! model, optimiser, schedule, loop with logging and divergence check, checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adamw::{AdamW, AdamWConfig};
use super::batches::{Sampler, Source};
use super::checkpoint::StableState;
use super::curve::{self, CurvePoint, EvalPoint};
use super::device::DeviceJob;
use super::evaluate;
use super::model::{Model, ModelSpec};
use super::params::Params;
use super::schedule::ScheduleChoice;
use super::{checkpoint, flops, Backend, TrainError};

/// How much training to do; a sweep holds one of these fixed while N varies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    Steps(usize),
    /// Passes over the training split (fractions allowed).
    Epochs(f64),
    /// Training tokens (token streams) or examples (tables), i.e. D.
    Units(u64),
}

/// Everything the loop needs besides data and model.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub spec: ModelSpec,
    pub batch_size: usize,
    pub budget: Budget,
    pub lr: f64,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Warmup steps; `None`: 5% of the steps.
    pub warmup_steps: Option<usize>,
    pub schedule: ScheduleChoice,
    pub adamw: AdamWConfig,
    pub seed: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// The loss (or the gradient norm) stopped being finite.
    Diverged,
}

/// What a run produced, besides the files it wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub status: Status,
    /// Step (0-based) whose loss or gradient was not finite.
    pub diverged_at_step: Option<usize>,
    pub steps_planned: usize,
    /// Updates applied.
    pub steps: usize,
    /// Training units seen (tokens or examples): D.
    pub d: usize,
    pub n_params: usize,
    pub n_params_non_embedding: usize,
    /// Exact matrix-product FLOPs of the steps taken.
    pub flops_exact: f64,
    /// Steps taken over from another run's stable-phase checkpoint rather than
    /// executed here (0 when the run started from scratch).
    pub steps_resumed: usize,
    /// The directory of the checkpoint resumed from.
    pub resumed_from: Option<PathBuf>,
    /// The first cooldown step of a WSD run (where its stable checkpoint is).
    pub stable_end: Option<usize>,
    /// Mean training loss over the last (up to) 20 steps.
    pub final_loss: f64,
    pub initial_loss: f64,
    pub curve: Vec<CurvePoint>,
    /// Held-out evaluations made during training (with [`HeldOut`]).
    pub evals: Vec<EvalPoint>,
    /// Seconds spent in the loop (not in loading data or writing files).
    pub wall_time_s: f64,
}

impl TrainReport {
    /// Updates executed by this run itself.
    pub fn steps_executed(&self) -> usize {
        self.steps - self.steps_resumed
    }

    /// Exact FLOPs of the updates executed by this run itself.
    pub fn flops_executed(&self) -> f64 {
        if self.steps == 0 {
            return 0.0;
        }
        self.flops_exact * self.steps_executed() as f64 / self.steps as f64
    }
}

/// Callbacks into the caller: progress `(step, total, message)` and cancellation.
pub struct Hooks<'a> {
    pub progress: &'a (dyn Fn(u64, u64, &str) + Sync),
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

/// Held-out evaluation during training: after every `every` steps and after
/// the last, the model is scored on `source` (fits on loss curves read these
/// points). Deterministic: the same batches in the same order each time.
pub struct HeldOut<'a> {
    pub source: &'a Source,
    pub every: usize,
    pub batch_size: usize,
    /// Token streams: most units scored per evaluation.
    pub max_units: Option<usize>,
}

/// [`train`] as a [`DeviceJob`], for [`super::device::run_on`].
pub struct Training<'a> {
    pub cfg: &'a TrainConfig,
    pub source: &'a Source,
    pub out_dir: &'a Path,
    pub hooks: &'a Hooks<'a>,
    /// Outputs of runs that share this one's stable phase ([`train_resuming`]).
    pub resume_from: &'a [PathBuf],
    pub held_out: Option<HeldOut<'a>>,
}

impl DeviceJob for Training<'_> {
    type Output = TrainReport;
    fn run<D: Backend>(self, dev: D) -> Result<TrainReport, TrainError> {
        train_resuming(
            dev,
            self.cfg,
            self.source,
            self.out_dir,
            self.hooks,
            self.held_out.as_ref(),
            self.resume_from,
        )
    }
}

/// Number of updates a budget amounts to.
pub fn planned_steps(budget: Budget, source: &Source, batch_size: usize) -> usize {
    let per_batch = source.units_per_batch(batch_size) as f64;
    let steps = match budget {
        Budget::Steps(s) => s as f64,
        Budget::Epochs(e) => (e * source.units_per_epoch() as f64 / per_batch).ceil(),
        Budget::Units(u) => (u as f64 / per_batch).ceil(),
    };
    (steps as usize).max(1)
}

/// Trains a model on `source` and writes `loss_curve.csv`, `model.safetensors`
/// and `model.json` into `out_dir`.
pub fn train<D: Backend>(
    dev: D,
    cfg: &TrainConfig,
    source: &Source,
    out_dir: &Path,
    hooks: &Hooks,
    held_out: Option<&HeldOut>,
) -> Result<TrainReport, TrainError> {
    train_resuming(dev, cfg, source, out_dir, hooks, held_out, &[])
}

/// The stable-phase checkpoint among `candidates` (output directories of runs
/// that share this run's stable phase: same data, model, seed and optimiser,
/// any length) that saves the most steps: the latest taken at or before
/// `stable_end`. Directories without one are passed over.
pub fn pick_resume(
    candidates: &[PathBuf],
    stable_end: usize,
) -> Result<Option<(PathBuf, StableState)>, TrainError> {
    let mut best: Option<(PathBuf, StableState)> = None;
    for dir in candidates {
        if let Some(state) = checkpoint::read_stable_state(dir)? {
            let better = best.as_ref().is_none_or(|(_, b)| state.step > b.step);
            if state.step <= stable_end && better {
                best = Some((dir.clone(), state));
            }
        }
    }
    Ok(best)
}

/// [`train`], which for a WSD schedule also writes the stable-phase checkpoint
/// at its cooldown start ([`checkpoint::save_stable`]) and continues, instead
/// of starting over, from the best of `resume_from`'s ([`pick_resume`]). The
/// result is bitwise the same either way.
pub fn train_resuming<D: Backend>(
    dev: D,
    cfg: &TrainConfig,
    source: &Source,
    out_dir: &Path,
    hooks: &Hooks,
    held_out: Option<&HeldOut>,
    resume_from: &[PathBuf],
) -> Result<TrainReport, TrainError> {
    // Schedule: a WSD run's stable phase ends where its cooldown starts.
    let steps = planned_steps(cfg.budget, source, cfg.batch_size);
    let schedule = cfg.schedule.schedule(
        cfg.lr,
        cfg.lr * cfg.min_lr_ratio,
        cfg.warmup_steps.unwrap_or(steps.div_ceil(20)),
        steps,
    );
    let stable_end = schedule.stable_end();
    let resume = match stable_end {
        Some(end) => pick_resume(resume_from, end)?,
        None => None,
    };

    // Data: a seeded stream of batches, independent of the init stream.
    let mut data_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    data_rng.set_stream(1);

    // Model and optimiser: parameters drawn on the host from the seed, then
    // moved to `dev`; or both, and the data position, from a checkpoint.
    if D::ALLOCATION_CACHE {
        dev.enable_cache();
    }
    let (mut sampler, model, mut params, mut opt, start, mut curve, mut evals, mut d) =
        match &resume {
            None => {
                let sampler = Sampler::new(source, cfg.batch_size, data_rng);
                let mut init_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                let mut params = Params::new(dev.clone());
                let model = Model::build(&cfg.spec, &mut params, &mut init_rng);
                let opt = AdamW::new(cfg.adamw, &params);
                (
                    sampler,
                    model,
                    params,
                    opt,
                    0,
                    Vec::with_capacity(steps),
                    Vec::new(),
                    0,
                )
            }
            Some((dir, _)) => {
                let stable = checkpoint::load_stable(dir, &cfg.spec, dev.clone())?;
                let state = stable.state;
                let sampler = Sampler::resume(source, cfg.batch_size, data_rng, state.sampler);
                let opt = AdamW::restore(cfg.adamw, &stable.params, &stable.adamw).map_err(
                    |message| TrainError::Checkpoint {
                        path: dir.join(checkpoint::STABLE_WEIGHTS_FILE),
                        message,
                    },
                )?;
                let mut curve = curve::read(dir).map_err(curve_error)?;
                curve.truncate(state.step);
                if curve.len() != state.step {
                    return Err(TrainError::Checkpoint {
                        path: dir.join(curve::FILE),
                        message: format!("the curve ends before step {}", state.step),
                    });
                }
                curve.reserve(steps - state.step);
                // Held-out evaluations made before the checkpoint (the source ran
                // with the same `eval_every`: it is part of the shared prefix).
                let mut evals = curve::read_evals(&dir.join(curve::FILE)).map_err(curve_error)?;
                evals.retain(|e| e.step < state.step);
                (
                    sampler,
                    stable.model,
                    stable.params,
                    opt,
                    state.step,
                    curve,
                    evals,
                    state.d,
                )
            }
        };

    // Loop.
    let seq = match source {
        Source::Stream { seq, .. } => *seq,
        Source::Table { .. } => 1,
    };
    let step_flops = flops::step_flops(&cfg.spec, cfg.batch_size, seq);
    let mut status = Status::Ok;
    let mut diverged_at_step = None;
    let mut steps_done = start;
    let report_every = (steps / 200).max(1);
    let clock = Instant::now();
    for step in start..steps {
        if (hooks.cancelled)() {
            return Err(TrainError::Cancelled);
        }
        if Some(step) == stable_end {
            let adamw = opt.to_host(&params);
            let state = StableState {
                step,
                d,
                adam_t: adamw.t,
                sampler: sampler.state(),
            };
            checkpoint::save_stable(out_dir, &params, &adamw, &state)?;
        }
        let lr = schedule.lr(step);
        let batch = sampler.next_batch();

        let (loss, _) = model.loss(&params, &batch, params.tape());
        let loss_value = loss.as_vec()[0];
        let mut grads = loss.backward();
        // A non-finite loss or gradient stops the run before the update, so the
        // checkpoint holds the last finite parameters.
        let applied = loss_value.is_finite()
            && opt
                .step(&mut params, &mut grads, lr)
                .map_err(TrainError::Device)?
                .is_some();
        drop(grads);
        curve.push(CurvePoint {
            step,
            loss: loss_value,
            lr,
        });
        if !applied {
            status = Status::Diverged;
            diverged_at_step = Some(step);
            (hooks.progress)(
                (step + 1) as u64,
                steps as u64,
                &format!("diverged at step {step} (loss {loss_value})"),
            );
            break;
        }
        steps_done += 1;
        d += batch.units();
        if let Some(h) = held_out.filter(|h| (step + 1) % h.every == 0 || step + 1 == steps) {
            let e = evaluate::evaluate(&model, &params, h.source, h.batch_size, h.max_units);
            evals.push(EvalPoint {
                step,
                d,
                loss: e.loss,
            });
        }

        // Logging.
        if step % report_every == 0 || step + 1 == steps {
            (hooks.progress)(
                (step + 1) as u64,
                steps as u64,
                &format!("loss {loss_value:.4}, D {d}"),
            );
        }
    }
    let wall_time_s = clock.elapsed().as_secs_f64();

    // Checkpoint and loss curve.
    checkpoint::save(out_dir, &cfg.spec, &params)?;
    curve::write(out_dir, &curve, &evals).map_err(curve_error)?;

    let finite: Vec<f64> = curve
        .iter()
        .filter(|p| p.loss.is_finite())
        .map(|p| p.loss as f64)
        .collect();
    let tail = &finite[finite.len().saturating_sub(20)..];
    Ok(TrainReport {
        status,
        diverged_at_step,
        steps_planned: steps,
        steps: steps_done,
        d,
        n_params: params.count(),
        n_params_non_embedding: params.count_non_embedding(),
        flops_exact: step_flops * steps_done as f64,
        steps_resumed: start,
        resumed_from: resume.map(|(dir, _)| dir),
        stable_end,
        final_loss: if tail.is_empty() {
            f64::NAN
        } else {
            tail.iter().sum::<f64>() / tail.len() as f64
        },
        initial_loss: finite.first().copied().unwrap_or(f64::NAN),
        curve,
        evals,
        wall_time_s,
    })
}

fn curve_error(e: curve::CurveError) -> TrainError {
    match e {
        curve::CurveError::Io { path, source } => TrainError::Io { path, source },
        other => TrainError::Data(other.to_string()),
    }
}
