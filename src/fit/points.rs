//! Which points of each run a fit reads: its final loss, or every held-out
//! evaluation on its loss curve (Choshen et al. 2024, "A Hitchhiker's Guide to
//! Scaling Law Estimation": intermediate checkpoints improve estimates once the
//! earliest part of training is dropped).
//!
//! A curve point is the run's model after `d` training units, so it enters the
//! table as a run with that D (and C = 6 N D). The early part is dropped by a
//! [`CurveRule`]. A run on a warmup-stable-decay schedule is a fully trained
//! model only at the end of its cooldown, so only its final point is kept; a
//! stable-phase run without a cooldown contributes none. A cosine run's
//! intermediate points are models whose rate has not decayed (biased up
//! against a run of that D); a constant-rate run's points are all at one rate,
//! so comparable with one another, and all biased the same way.

use std::path::Path;

use polars::prelude::*;

use super::table::TableError;
use crate::train::curve::EvalPoint;
use crate::train::metrics::RunMetrics;

/// `points = "final" | "curve"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PointSource {
    /// One point per run: its final (or evaluated) loss.
    Final,
    /// Every held-out evaluation of each run's loss curve that `CurveRule` keeps.
    Curve(CurveRule),
}

/// Which curve points are too early to enter a fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurveRule {
    /// Drop points with D below this fraction of the run's final D.
    pub skip_fraction: f64,
    /// Drop points with D below this many units (tokens or examples).
    pub min_d: f64,
}

/// Where a curve point comes from, to judge it with a [`CurveRule`].
#[derive(Debug, Clone, PartialEq)]
pub struct CurveOrigin {
    /// The run (train instance) the point belongs to.
    pub run: String,
    pub d: f64,
    /// D at the run's last evaluation.
    pub final_d: f64,
    /// The run's `schedule`, when it records one.
    pub schedule: Option<String>,
}

impl CurveOrigin {
    /// Why the point stays out of the fit, or `None` when it enters.
    pub fn excluded_by(&self, rule: &CurveRule) -> Option<String> {
        let last = self.d >= self.final_d;
        match self.schedule.as_deref() {
            Some("wsd-stable") => {
                return Some("a WSD stable-phase run: no point is the end of a cooldown".into())
            }
            Some(s) if s.starts_with("wsd") && !last => {
                return Some(
                    "a WSD run: only the end of its cooldown estimates a fully trained model"
                        .into(),
                )
            }
            Some(s) if s.starts_with("wsd") => return None,
            _ => {}
        }
        if self.d < rule.skip_fraction * self.final_d {
            return Some(format!(
                "early curve point: D {} < skip_fraction {} of the run's final D {}",
                self.d, rule.skip_fraction, self.final_d
            ));
        }
        if self.d < rule.min_d {
            return Some(format!(
                "early curve point: D {} < min_d {}",
                self.d, rule.min_d
            ));
        }
        None
    }
}

/// The id of a run's curve point at D = `d`.
pub fn point_id(run: &str, d: usize) -> String {
    format!("{run}@d={d}")
}

/// A run's held-out curve as canonical rows (`id`, `n`, `d`, `c`, `loss`,
/// `status`, `params`), one per evaluation, with where each comes from. `n_key`
/// names N among the metrics' fields (`n_params` unless mapped).
pub fn curve_frame(
    metrics: &RunMetrics,
    evals: &[EvalPoint],
    run: &str,
    n_key: &str,
    path: &Path,
) -> Result<(DataFrame, Vec<CurveOrigin>), TableError> {
    let n = metrics.to_object().get(n_key).and_then(|v| v.as_f64());
    let final_d = evals.iter().map(|e| e.d).max().unwrap_or(0) as f64;
    let k = evals.len();
    let ids: Vec<String> = evals.iter().map(|e| point_id(run, e.d)).collect();
    let d: Vec<Option<f64>> = evals.iter().map(|e| Some(e.d as f64)).collect();
    let c: Vec<Option<f64>> = evals
        .iter()
        .map(|e| n.map(|n| 6.0 * n * e.d as f64))
        .collect();
    let loss: Vec<Option<f64>> = evals.iter().map(|e| Some(e.loss)).collect();
    let params = (!metrics.params.is_null()).then(|| metrics.params.to_string());
    let frame = DataFrame::new(
        k,
        vec![
            Column::new("id".into(), ids),
            Column::new("n".into(), vec![n; k]),
            Column::new("d".into(), d),
            Column::new("c".into(), c),
            Column::new("loss".into(), loss),
            Column::new("status".into(), vec![metrics.status.clone(); k]),
            Column::new("params".into(), vec![params; k]),
        ],
    )
    .map_err(|source| TableError::Polars {
        path: path.to_path_buf(),
        source,
    })?;
    let origins = evals
        .iter()
        .map(|e| CurveOrigin {
            run: run.to_string(),
            d: e.d as f64,
            final_d,
            schedule: metrics.schedule.clone(),
        })
        .collect();
    Ok((frame, origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(d: f64, schedule: Option<&str>) -> CurveOrigin {
        CurveOrigin {
            run: "train[width=8]".into(),
            d,
            final_d: 1000.0,
            schedule: schedule.map(str::to_string),
        }
    }

    #[test]
    fn rules_drop_the_early_part_and_keep_only_cooldown_ends_of_wsd_runs() {
        let rule = CurveRule {
            skip_fraction: 0.25,
            min_d: 300.0,
        };
        assert!(origin(200.0, None)
            .excluded_by(&rule)
            .unwrap()
            .contains("skip_fraction"));
        assert!(origin(280.0, Some("cosine"))
            .excluded_by(&rule)
            .unwrap()
            .contains("min_d"));
        assert_eq!(origin(300.0, None).excluded_by(&rule), None);
        assert_eq!(origin(1000.0, None).excluded_by(&rule), None);
        assert!(origin(900.0, Some("wsd-cooldown"))
            .excluded_by(&rule)
            .is_some());
        assert_eq!(
            origin(1000.0, Some("wsd-cooldown")).excluded_by(&rule),
            None
        );
        assert_eq!(origin(1000.0, Some("wsd")).excluded_by(&rule), None);
        assert!(origin(1000.0, Some("wsd-stable"))
            .excluded_by(&rule)
            .is_some());
    }

    #[test]
    fn curve_rows_carry_the_runs_n_and_each_points_d() {
        let metrics: RunMetrics =
            serde_json::from_str(r#"{"n_params": 10, "status": "ok", "params": {"width": 2}}"#)
                .unwrap();
        let evals = [
            EvalPoint {
                step: 0,
                d: 32,
                loss: 2.0,
            },
            EvalPoint {
                step: 1,
                d: 64,
                loss: 1.5,
            },
        ];
        let (frame, origins) =
            curve_frame(&metrics, &evals, "t", "n_params", Path::new("x")).unwrap();
        let runs = super::super::table::runs(&frame).unwrap();
        assert_eq!(runs[1].id, "t@d=64");
        assert_eq!(runs[1].n, Some(10.0));
        assert_eq!(runs[1].c, Some(6.0 * 10.0 * 64.0));
        assert_eq!(runs[0].loss, Some(2.0));
        assert_eq!(origins[0].final_d, 64.0);
    }
}
