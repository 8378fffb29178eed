//! Held-out evaluation: mean loss (MSE, or cross-entropy in nats) over every
//! example of a split, and accuracy where the targets are classes.

use dfdx::prelude::*;

use super::batches::{eval_batches, Source, Targets};
use super::device::DeviceJob;
use super::layers::correct;
use super::model::Model;
use super::params::Params;
use super::{checkpoint, Backend, TrainError};

/// Result of evaluating a model on one split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss per unit (example or predicted token).
    pub loss: f64,
    /// Fraction of correct arg-max predictions, for class targets.
    pub accuracy: Option<f64>,
    /// Examples or tokens evaluated.
    pub units: usize,
}

/// What a long evaluation reports to and asks of its caller.
pub struct EvalHooks<'a> {
    /// Called after each batch with `(units done, units in all)`.
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
    /// Polled before each batch: true stops with [`TrainError::Cancelled`].
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

/// Loading a checkpoint and evaluating it, as a [`DeviceJob`] for
/// [`super::device::run_on`].
pub struct Evaluating<'a> {
    /// A train output directory (`model.safetensors`, `model.json`).
    pub model_dir: &'a std::path::Path,
    pub source: &'a Source,
    pub batch_size: usize,
    pub max_units: Option<usize>,
    pub hooks: EvalHooks<'a>,
}

impl DeviceJob for Evaluating<'_> {
    type Output = Evaluation;
    fn run<D: Backend>(self, dev: D) -> Result<Evaluation, TrainError> {
        if D::ALLOCATION_CACHE {
            dev.enable_cache();
        }
        let (_, model, params) = checkpoint::load(self.model_dir, dev)?;
        evaluate_until(
            &model,
            &params,
            self.source,
            self.batch_size,
            self.max_units,
            &self.hooks,
        )
    }
}

/// Evaluates `model` on all of `source` (streams: at most `max_units` tokens) in
/// batches of `batch_size`, without a tape. Batch means are weighted by batch
/// size and summed in order in f64, so the result is deterministic.
pub fn evaluate<D: Backend>(
    model: &Model,
    params: &Params<D>,
    source: &Source,
    batch_size: usize,
    max_units: Option<usize>,
) -> Evaluation {
    let hooks = EvalHooks {
        progress: &|_, _| {},
        cancelled: &|| false,
    };
    match evaluate_until(model, params, source, batch_size, max_units, &hooks) {
        Ok(evaluation) => evaluation,
        Err(_) => unreachable!("evaluation without a stop condition is never cancelled"),
    }
}

/// [`evaluate`], reporting progress after each batch and polling for
/// cancellation before each, so that a long evaluation shows how far it is and
/// stops promptly on Ctrl-C or a stage timeout.
pub fn evaluate_until<D: Backend>(
    model: &Model,
    params: &Params<D>,
    source: &Source,
    batch_size: usize,
    max_units: Option<usize>,
    hooks: &EvalHooks,
) -> Result<Evaluation, TrainError> {
    let mut loss_sum = 0.0f64;
    let mut hits = 0usize;
    let mut units = 0usize;
    let mut classes = false;
    let batches = eval_batches(source, batch_size, max_units);
    let total: usize = batches.iter().map(|b| b.units()).sum();
    for batch in batches {
        if (hooks.cancelled)() {
            return Err(TrainError::Cancelled);
        }
        let (loss, out) = model.loss(params, &batch, NoneTape);
        let n = batch.units();
        loss_sum += loss.as_vec()[0] as f64 * n as f64;
        units += n;
        if let Targets::Classes(y) = &batch.targets {
            classes = true;
            let width = out.shape().1;
            hits += correct(&out.as_vec(), width, y);
        }
        (hooks.progress)(units as u64, total as u64);
    }
    let units_f = units.max(1) as f64;
    Ok(Evaluation {
        loss: loss_sum / units_f,
        accuracy: classes.then(|| hits as f64 / units_f),
        units,
    })
}
