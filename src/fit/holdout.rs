//! The extrapolation check: fit on the smaller runs, predict the larger ones, and
//! report the error in loss.
//!
//! A scaling law is used to predict runs bigger than any it was fitted on, so the
//! honest test of one is exactly that. `holdout = { top_n = k }` holds out the `k`
//! largest runs (by N for `power_n` and `chinchilla`, D for `power_d`, C for
//! `power_c`, or the variable named by `by`); `holdout = { n_above = x }` (or
//! `d_above`, `c_above`) holds out every run above a threshold.

use serde::{Deserialize, Serialize};

use super::form::{Form, Variable};
use super::objective::Observation;

/// Which runs to hold out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Holdout {
    /// The `k` runs largest in `by` (ties go to the later run in table order).
    TopN { k: usize, by: Variable },
    /// Every run whose `variable` exceeds `threshold`.
    Above { variable: Variable, threshold: f64 },
}

impl Holdout {
    /// Splits run indices into `(fit, held_out)`, each in table order.
    pub fn split(&self, runs: &[Observation]) -> (Vec<usize>, Vec<usize>) {
        let held: Vec<bool> = match *self {
            Holdout::TopN { k, by } => {
                let mut order: Vec<usize> = (0..runs.len()).collect();
                order.sort_by(|&a, &b| runs[b].get(by).total_cmp(&runs[a].get(by)).then(b.cmp(&a)));
                let mut held = vec![false; runs.len()];
                for &i in order.iter().take(k) {
                    held[i] = true;
                }
                held
            }
            Holdout::Above {
                variable,
                threshold,
            } => runs.iter().map(|r| r.get(variable) > threshold).collect(),
        };
        let fit = (0..runs.len()).filter(|&i| !held[i]).collect();
        let out = (0..runs.len()).filter(|&i| held[i]).collect();
        (fit, out)
    }

    /// The rule in the words of the pipeline file.
    pub fn describe(&self) -> String {
        match *self {
            Holdout::TopN { k, by } => format!("top_n = {k}, by = \"{}\"", by.name()),
            Holdout::Above {
                variable,
                threshold,
            } => format!("{}_above = {threshold:e}", variable.name()),
        }
    }
}

/// One held-out run's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutRun {
    pub id: String,
    pub n: f64,
    pub d: f64,
    pub c: f64,
    pub observed: f64,
    pub predicted: f64,
    /// `predicted - observed`.
    pub error: f64,
    /// `|error| / observed`.
    pub rel_error: f64,
}

/// Prediction errors on the held-out runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    pub mean_abs_error: f64,
    pub max_abs_error: f64,
    pub mean_rel_error: f64,
    pub max_rel_error: f64,
    pub runs: Vec<HeldOutRun>,
}

/// Predicts each held-out run with `theta` and summarises the errors.
pub fn errors(form: &Form, theta: &[f64], held: &[(String, Observation)]) -> Errors {
    let runs: Vec<HeldOutRun> = held
        .iter()
        .map(|(id, r)| {
            let predicted = form.predict(theta, r.n, r.d, r.c);
            let error = predicted - r.loss;
            HeldOutRun {
                id: id.clone(),
                n: r.n,
                d: r.d,
                c: r.c,
                observed: r.loss,
                predicted,
                error,
                rel_error: error.abs() / r.loss,
            }
        })
        .collect();
    let count = runs.len().max(1) as f64;
    Errors {
        mean_abs_error: runs.iter().map(|r| r.error.abs()).sum::<f64>() / count,
        max_abs_error: runs.iter().map(|r| r.error.abs()).fold(0.0, f64::max),
        mean_rel_error: runs.iter().map(|r| r.rel_error).sum::<f64>() / count,
        max_rel_error: runs.iter().map(|r| r.rel_error).fold(0.0, f64::max),
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(n: f64) -> Observation {
        Observation {
            n,
            d: 1.0,
            c: 6.0 * n,
            loss: 2.0,
        }
    }

    #[test]
    fn top_n_holds_out_the_largest_and_keeps_order() {
        let runs: Vec<Observation> = [5.0, 1.0, 9.0, 3.0, 9.0].map(obs).to_vec();
        let (fit, out) = Holdout::TopN {
            k: 2,
            by: Variable::N,
        }
        .split(&runs);
        assert_eq!(fit, vec![0, 1, 3]);
        assert_eq!(out, vec![2, 4]);
        let (fit, out) = Holdout::Above {
            variable: Variable::N,
            threshold: 4.0,
        }
        .split(&runs);
        assert_eq!(fit, vec![1, 3]);
        assert_eq!(out, vec![0, 2, 4]);
    }
}
