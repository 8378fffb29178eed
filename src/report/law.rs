//! A fitted scaling law as the report evaluates it: predictions along curves
//! and the compute-optimal frontier, computed by the fit module's own [`Form`]
//! and [`Derived`] so the report draws exactly what the fit reported.

use crate::fit::bootstrap::percentile;
use crate::fit::derived::Derived;
use crate::fit::fit_json::FitReport;
use crate::fit::form::{Form, FormKind, Variable};

/// A form with its fitted parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Law {
    form: Form,
    theta: Vec<f64>,
}

impl Law {
    pub fn new(form: Form, theta: Vec<f64>) -> Self {
        Law { form, theta }
    }

    /// The law a fit reported; None if `fit.json` lacks a parameter its form needs.
    pub fn of(fit: &FitReport) -> Option<Law> {
        let (form, theta) = fit.fitted()?;
        Some(Law::new(form, theta))
    }

    /// The laws of the bootstrap replicates a fit kept for bands (none
    /// without a bootstrap).
    pub fn replicates(fit: &FitReport) -> Vec<Law> {
        let Some((form, _)) = fit.fitted() else {
            return Vec::new();
        };
        fit.band_log_parameters
            .iter()
            .filter(|t| t.len() == form.dim())
            .map(|t| Law::new(form, t.clone()))
            .collect()
    }

    pub fn form(&self) -> &Form {
        &self.form
    }

    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    pub fn kind(&self) -> FormKind {
        self.form.kind
    }

    /// Whether the law's loss depends on `variable`.
    pub fn uses(&self, variable: Variable) -> bool {
        self.form.variables().contains(&variable)
    }

    /// Predicted loss at `(n, d)` with `C = 6ND`.
    pub fn predict(&self, n: f64, d: f64) -> f64 {
        self.form.predict(&self.theta, n, d, 6.0 * n * d)
    }

    /// Predicted loss at compute `c` for a law in C alone (`power_c`).
    pub fn predict_c(&self, c: f64) -> f64 {
        self.form.predict(&self.theta, f64::NAN, f64::NAN, c)
    }

    /// The compute-optimal `(N, D, loss)` at compute `c` (chinchilla only).
    pub fn optimum(&self, c: f64) -> Option<(f64, f64, f64)> {
        let d = Derived::compute(&self.form, &self.theta, &[c]);
        let b = d.budgets.first()?;
        Some((b.n_opt?, b.d_opt?, b.loss))
    }

    /// The fitted E (fixed or free).
    pub fn e(&self) -> f64 {
        self.form
            .natural(&self.theta)
            .into_iter()
            .find(|(n, _)| *n == "E")
            .map(|(_, v)| v)
            .unwrap_or(f64::NAN)
    }
}

/// A band's lower and upper bounds, each a curve of `(x, y)`.
pub type Band = (Vec<(f64, f64)>, Vec<(f64, f64)>);

/// The 95% band (2.5th and 97.5th percentiles) of `value` over `laws` at
/// each x of `grid`, as two curves; None with fewer than 20 laws, too few for
/// those percentiles.
pub fn band(laws: &[Law], grid: &[f64], value: impl Fn(&Law, f64) -> Option<f64>) -> Option<Band> {
    if laws.len() < 20 {
        return None;
    }
    let (mut lo, mut hi) = (Vec::new(), Vec::new());
    for &x in grid {
        let mut ys: Vec<f64> = laws
            .iter()
            .filter_map(|l| value(l, x))
            .filter(|y| y.is_finite())
            .collect();
        if ys.len() < 20 {
            continue;
        }
        ys.sort_by(f64::total_cmp);
        lo.push((x, percentile(&ys, 0.025)));
        hi.push((x, percentile(&ys, 0.975)));
    }
    Some((lo, hi))
}

/// `count` points spaced evenly in log space over `[lo, hi]`.
pub fn log_space(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if count < 2 || !(lo > 0.0 && hi > lo) {
        return vec![lo];
    }
    let (a, b) = (lo.ln(), hi.ln());
    (0..count)
        .map(|i| (a + (b - a) * i as f64 / (count - 1) as f64).exp())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::form::Irreducible;

    #[test]
    fn optimum_lies_on_the_budget_and_beats_neighbours() {
        // Hoffmann et al.'s published fit in log parameters (a, b, e, alpha, beta).
        let theta = vec![406.4f64.ln(), 410.7f64.ln(), 1.69f64.ln(), 0.34, 0.28];
        let law = Law::new(Form::new(FormKind::Chinchilla, Irreducible::Free), theta);
        let c = 5.76e23;
        let (n, d, loss) = law.optimum(c).expect("chinchilla has an optimum");
        assert!((6.0 * n * d / c - 1.0).abs() < 1e-9);
        for f in [0.8, 1.25] {
            assert!(law.predict(n * f, d / f) > loss);
        }
        assert!((law.e() - 1.69).abs() < 1e-12);
        assert!(law.uses(Variable::D) && !law.uses(Variable::C));
    }

    #[test]
    fn log_space_hits_both_ends() {
        let v = log_space(10.0, 1000.0, 3);
        assert!((v[1] - 100.0).abs() < 1e-9 && (v[2] - 1000.0).abs() < 1e-9);
    }
}
