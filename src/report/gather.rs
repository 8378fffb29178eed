//! Reading a report's inputs: fits (`fit.json`, `predictions.parquet`), runs
//! (eval or train `metrics.json`) and training curves (train `loss_curve.csv`).
//!
//! A report lists the stages it shows as inputs, typically the fits plus the
//! `eval` and `train` stages (`inputs = ["fit_n", "fit", "eval", "train"]`); being
//! unswept, it receives every instance of each. Each input is recognised by the
//! files it holds, not by its stage name. The runs table comes from eval
//! instances when there are any (held-out loss), else from train instances
//! (final training loss), else from the first fit's `predictions.parquet` (a fit
//! of a table file, which has no runs upstream).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::data::Task;
use crate::design::design_json::{self, DesignReport};
use crate::fit::fit_json::{self, FitReport};
use crate::fit::predictions::{self, Prediction};
use crate::fit::table::TableError;
use crate::fit::truth::KnownLaw;
use crate::json_file::JsonFileError;
use crate::train::curve::{self, CurveError};
use crate::train::{dataset_record, metrics};

/// Why the inputs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(transparent)]
    Json(#[from] JsonFileError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Curve(#[from] CurveError),
    #[error(transparent)]
    Dataset(#[from] crate::data::DataError),
    #[error(transparent)]
    Interrupted(#[from] super::Interrupted),
    #[error("the report has nothing to show: its inputs hold no fit.json and no metrics.json (list the fit and eval/train stages in `inputs`)")]
    Nothing,
}

/// One upstream instance: what the provenance table shows, and where its
/// outputs are.
#[derive(Debug, Clone, PartialEq)]
pub struct InputInfo {
    pub stage: String,
    pub id: String,
    pub kind: String,
    pub fingerprint: String,
    /// Directory holding the instance's outputs.
    pub dir: PathBuf,
}

/// Where the runs table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSource {
    Eval,
    Train,
    FitTable,
}

/// One training run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    /// The train instance behind an eval row (or the row itself for train rows).
    pub train_id: Option<String>,
    pub n: Option<f64>,
    pub d: Option<f64>,
    pub c: Option<f64>,
    pub loss: Option<f64>,
    pub train_loss: Option<f64>,
    pub status: String,
    /// Training wall time in seconds.
    pub time_s: Option<f64>,
    pub params: serde_json::Value,
}

/// A training loss curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub train_id: String,
    pub n: f64,
    pub d: f64,
    /// `(step, loss)`, steps counted from 0.
    pub points: Vec<(f64, f64)>,
}

/// A fit instance.
#[derive(Debug, Clone, PartialEq)]
pub struct FitInput {
    pub stage: String,
    pub id: String,
    pub doc: FitReport,
    pub predictions: Vec<Prediction>,
}

/// A design instance.
#[derive(Debug, Clone, PartialEq)]
pub struct DesignInput {
    pub stage: String,
    pub id: String,
    pub doc: DesignReport,
}

/// The training compute behind the train runs a report lists.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Compute {
    pub runs: usize,
    /// Runs with a WSD schedule (which may share their stable phases).
    pub wsd_runs: usize,
    /// Exact FLOPs of the updates the runs executed.
    pub executed: f64,
    /// Exact FLOPs of all their updates: what training each from scratch
    /// costs, as a cosine grid of the same runs does.
    pub from_scratch: f64,
    /// Seconds the runs spent training.
    pub wall_time_s: f64,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    pub inputs: Vec<InputInfo>,
    pub runs: Vec<RunRow>,
    pub run_source: RunSource,
    pub curves: Vec<Curve>,
    pub fits: Vec<FitInput>,
    pub designs: Vec<DesignInput>,
    /// The law simulated runs were drawn from (`simulate`), when they all agree.
    pub true_law: Option<KnownLaw>,
    /// The irreducible loss the runs' data sets declare (all agreeing), if any.
    pub reference_e: Option<f64>,
    /// The training task, from a train instance's `dataset.json`.
    pub task: Option<Task>,
    /// What D counts (`examples`, `tokens`), from `metrics.json`.
    pub d_unit: Option<String>,
    /// Summed over the train instances listed (records that say what they executed).
    pub compute: Compute,
}

/// Reads every input, polling `stop` before each.
pub fn gather(inputs: Vec<InputInfo>, stop: super::Stop) -> Result<Gathered, GatherError> {
    let mut evals = Vec::new();
    let mut trains = Vec::new();
    let mut curves = Vec::new();
    let mut fits = Vec::new();
    let mut designs = Vec::new();
    let mut laws: Vec<Option<KnownLaw>> = Vec::new();
    let mut irreducible = Vec::new();
    let mut task = None;
    let mut d_unit = None;
    let mut compute = Compute::default();

    for input in &inputs {
        if stop() {
            return Err(super::Interrupted.into());
        }
        let dir = &input.dir;
        if dir.join(fit_json::FILE).is_file() {
            let doc = fit_json::read(dir)?;
            let predictions = if dir.join(predictions::FILE).is_file() {
                predictions::read(dir)?
            } else {
                Vec::new()
            };
            fits.push(FitInput {
                stage: input.stage.clone(),
                id: input.id.clone(),
                doc,
                predictions,
            });
        } else if design_json::exists(dir) {
            designs.push(DesignInput {
                stage: input.stage.clone(),
                id: input.id.clone(),
                doc: design_json::read(dir)?,
            });
        } else if metrics::exists(dir) {
            let m = metrics::read(dir)?;
            laws.push(
                m.other
                    .get("law")
                    .and_then(|l| serde_json::from_value(l.clone()).ok()),
            );
            if let Some(e) = m.irreducible_loss {
                irreducible.push(e);
            }
            if d_unit.is_none() {
                d_unit = m.d_unit.clone();
            }
            let is_eval = m.is_eval() || input.kind == "eval";
            let row = run_row(&input.id, &m, is_eval);
            if is_eval {
                evals.push(row);
            } else {
                let curve_path = dir.join(curve::FILE);
                if curve_path.is_file() {
                    curves.push(Curve {
                        train_id: input.id.clone(),
                        n: row.n.unwrap_or(f64::NAN),
                        d: row.d.unwrap_or(f64::NAN),
                        points: curve::read_points(&curve_path)?,
                    });
                }
                if let (Some(executed), Some(all)) = (m.flops_executed(), m.flops_exact()) {
                    compute.runs += 1;
                    compute.wsd_runs += usize::from(m.is_wsd());
                    compute.executed += executed;
                    compute.from_scratch += all;
                    compute.wall_time_s += m.wall_time_s.unwrap_or(0.0);
                }
                if task.is_none() && dir.join(dataset_record::FILE).is_file() {
                    task = Some(dataset_record::read(dir)?.meta.task);
                }
                trains.push(row);
            }
        } else if let Ok(meta) = crate::data::read_meta(dir) {
            // A dataset listed directly: it can say what E is and what the task is.
            if let Some(e) = meta.irreducible_loss {
                irreducible.push(e);
            }
            task.get_or_insert(meta.task);
        }
    }

    let (runs, run_source) = if !evals.is_empty() {
        (evals, RunSource::Eval)
    } else if !trains.is_empty() {
        (trains, RunSource::Train)
    } else if let Some(fit) = fits.first() {
        (runs_from_predictions(&fit.predictions), RunSource::FitTable)
    } else {
        return Err(GatherError::Nothing);
    };
    Ok(Gathered {
        inputs,
        runs,
        run_source,
        curves,
        fits,
        designs,
        true_law: match laws.split_first() {
            Some((Some(first), rest)) if rest.iter().all(|l| l.as_ref() == Some(first)) => {
                Some(*first)
            }
            _ => None,
        },
        reference_e: agreed(&irreducible),
        task,
        d_unit,
        compute,
    })
}

fn run_row(id: &str, m: &metrics::RunMetrics, is_eval: bool) -> RunRow {
    RunRow {
        id: id.to_string(),
        train_id: if is_eval {
            m.train_id.clone()
        } else {
            Some(id.to_string())
        },
        n: m.n_params,
        d: m.d,
        c: m.flops,
        loss: m.loss,
        train_loss: if is_eval { m.train_loss } else { m.loss },
        status: m.status.clone().unwrap_or_else(|| "ok".into()),
        time_s: m.wall_time_s,
        params: m.params.clone(),
    }
}

fn runs_from_predictions(predictions: &[Prediction]) -> Vec<RunRow> {
    predictions
        .iter()
        .map(|p| RunRow {
            id: p.id.clone(),
            train_id: None,
            n: p.n,
            d: p.d,
            c: p.c,
            loss: p.loss,
            train_loss: None,
            status: p.status.clone().unwrap_or_else(|| "ok".into()),
            time_s: None,
            params: serde_json::Value::Null,
        })
        .collect()
}

/// The common value of the declared irreducible losses, if they agree.
fn agreed(values: &[f64]) -> Option<f64> {
    let first = *values.first()?;
    values
        .iter()
        .all(|v| (v - first).abs() <= 1e-9 * first.abs().max(1e-12))
        .then_some(first)
}

/// Runs grouped by a value that should be shared (D for loss-vs-N, N for
/// loss-vs-D): values within 2% of each other fall in one group. Groups are
/// returned sorted by value with their members' indices.
pub fn group_by(values: &[(usize, f64)]) -> Vec<(f64, Vec<usize>)> {
    let mut sorted: Vec<(usize, f64)> = values
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
        .collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut groups: Vec<(f64, Vec<usize>)> = Vec::new();
    let mut sums: Vec<f64> = Vec::new();
    for (i, v) in sorted {
        match groups.last_mut() {
            Some((first, members)) if v <= *first * 1.02 => {
                members.push(i);
                *sums.last_mut().expect("one sum per group") += v.ln();
            }
            _ => {
                groups.push((v, vec![i]));
                sums.push(v.ln());
            }
        }
    }
    // Label each group by the geometric mean of its members.
    groups
        .into_iter()
        .zip(sums)
        .map(|((_, members), s)| ((s / members.len() as f64).exp(), members))
        .collect()
}

/// Like [`group_by`], but when there are more than `max` groups the values are
/// binned instead into `max` bins of equal width in log space (empty bins
/// dropped), so a plot of runs at scattered sizes keeps a readable number of
/// series. The flag says whether binning happened (labels then say `≈`).
pub fn group_at_most(values: &[(usize, f64)], max: usize) -> (Vec<(f64, Vec<usize>)>, bool) {
    let groups = group_by(values);
    if groups.len() <= max || max == 0 {
        return (groups, false);
    }
    let (lo, hi) = (groups[0].0.ln(), groups[groups.len() - 1].0.ln());
    let mut bins: Vec<Vec<usize>> = vec![Vec::new(); max];
    let mut logs: Vec<f64> = vec![0.0; max];
    for &(i, v) in values.iter().filter(|(_, v)| v.is_finite() && *v > 0.0) {
        let t = (v.ln() - lo) / (hi - lo);
        let k = ((t * max as f64) as usize).min(max - 1);
        bins[k].push(i);
        logs[k] += v.ln();
    }
    let binned = bins
        .into_iter()
        .zip(logs)
        .filter(|(members, _)| !members.is_empty())
        .map(|(members, s)| ((s / members.len() as f64).exp(), members))
        .collect();
    (binned, true)
}

/// Per-train-id lookup of rows.
pub fn by_train_id(runs: &[RunRow]) -> BTreeMap<&str, &RunRow> {
    runs.iter()
        .filter_map(|r| r.train_id.as_deref().map(|t| (t, r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_merge_close_values_only() {
        let g = group_by(&[(0, 1000.0), (1, 1010.0), (2, 2000.0), (3, f64::NAN)]);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].1, vec![0, 1]);
        assert!((g[0].0 - (1000.0f64 * 1010.0).sqrt()).abs() < 1e-6);
        assert_eq!(g[1].1, vec![2]);
    }

    #[test]
    fn many_groups_are_binned_in_log_space() {
        let values: Vec<(usize, f64)> =
            (0..100).map(|i| (i, 10f64.powf(i as f64 / 33.0))).collect();
        let (few, binned) = group_at_most(&values[..3], 8);
        assert!(!binned && few.len() == 3);
        let (bins, binned) = group_at_most(&values, 4);
        assert!(binned);
        assert_eq!(bins.len(), 4);
        assert_eq!(bins.iter().map(|b| b.1.len()).sum::<usize>(), 100);
        assert!(bins.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn irreducible_losses_must_agree() {
        assert_eq!(agreed(&[0.25, 0.25]), Some(0.25));
        assert_eq!(agreed(&[0.25, 0.3]), None);
        assert_eq!(agreed(&[]), None);
    }
}
