//! Numbers derived from fitted parameters: compute-optimal allocation under
//! `C = 6ND` for the `chinchilla` form, and predicted loss at compute budgets for
//! `chinchilla` and `power_c`.
//!
//! Minimising `E + A/N^alpha + B/D^beta` subject to `6ND = C` gives (Hoffmann et
//! al. 2022, Appendix D.2) `N_opt = G (C/6)^a`, `D_opt = G^-1 (C/6)^b` with
//! `G = (alpha A / (beta B))^(1/(alpha+beta))`, `a = beta/(alpha+beta)`,
//! `b = alpha/(alpha+beta)`. Every derived number is also a named scalar, so the
//! bootstrap can put an interval on each.

use serde::Serialize;

use super::form::{Form, FormKind};

/// Derived quantities at one compute budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    /// Compute in FLOPs.
    pub c: f64,
    /// Compute-optimal parameters (chinchilla only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_opt: Option<f64>,
    /// Compute-optimal tokens (chinchilla only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_opt: Option<f64>,
    /// `D_opt / N_opt` (chinchilla only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_param: Option<f64>,
    /// Predicted loss at the optimum (chinchilla) or at `C` (power_c).
    pub loss: f64,
}

/// Everything derived from one parameter vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derived {
    /// Exponent of `N_opt ∝ C^a` (chinchilla only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<f64>,
    /// Exponent of `D_opt ∝ C^b` (chinchilla only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<f64>,
    pub budgets: Vec<Budget>,
}

impl Derived {
    /// Computes the derived quantities of `form` at `theta`. Forms without a
    /// compute relation (`power_n`, `power_d`) derive nothing.
    pub fn compute(form: &Form, theta: &[f64], budgets: &[f64]) -> Derived {
        let natural = form.natural(theta);
        let get = |name: &str| {
            natural
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or(f64::NAN)
        };
        match form.kind {
            FormKind::Chinchilla => {
                let (big_a, big_b, alpha, beta) = (get("A"), get("B"), get("alpha"), get("beta"));
                let a = beta / (alpha + beta);
                let b = alpha / (alpha + beta);
                let g = (alpha * big_a / (beta * big_b)).powf(1.0 / (alpha + beta));
                let budgets = budgets
                    .iter()
                    .map(|&c| {
                        let n_opt = g * (c / 6.0).powf(a);
                        let d_opt = (c / 6.0) / n_opt;
                        Budget {
                            c,
                            n_opt: Some(n_opt),
                            d_opt: Some(d_opt),
                            tokens_per_param: Some(d_opt / n_opt),
                            loss: form.predict(theta, n_opt, d_opt, c),
                        }
                    })
                    .collect();
                Derived {
                    a: Some(a),
                    b: Some(b),
                    budgets,
                }
            }
            FormKind::PowerC => Derived {
                a: None,
                b: None,
                budgets: budgets
                    .iter()
                    .map(|&c| Budget {
                        c,
                        n_opt: None,
                        d_opt: None,
                        tokens_per_param: None,
                        loss: form.predict(theta, f64::NAN, f64::NAN, c),
                    })
                    .collect(),
            },
            FormKind::PowerN | FormKind::PowerD => Derived {
                a: None,
                b: None,
                budgets: Vec::new(),
            },
        }
    }

    /// The derived numbers as `(name, value)`, in a fixed order; the names key
    /// the bootstrap intervals (`n_opt@1e+21`).
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        if let Some(a) = self.a {
            out.push(("a".to_string(), a));
        }
        if let Some(b) = self.b {
            out.push(("b".to_string(), b));
        }
        for budget in &self.budgets {
            let key = budget_key(budget.c);
            for (name, v) in [
                ("n_opt", budget.n_opt),
                ("d_opt", budget.d_opt),
                ("tokens_per_param", budget.tokens_per_param),
                ("loss", Some(budget.loss)),
            ] {
                if let Some(v) = v {
                    out.push((format!("{name}@{key}"), v));
                }
            }
        }
        out
    }
}

/// How a budget appears in names: `1e+21`, `5.76e+23`.
pub fn budget_key(c: f64) -> String {
    format!("{c:e}").replace('e', "e+").replace("e+-", "e-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::form::Irreducible;

    /// The closed form must be the constrained minimum: nudging N either way
    /// along C = 6ND can only raise the predicted loss.
    #[test]
    fn optimum_is_a_minimum_along_the_compute_constraint() {
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        let theta = [406.4f64.ln(), 410.7f64.ln(), 1.69f64.ln(), 0.34, 0.28];
        let c = 5.76e23;
        let d = Derived::compute(&form, &theta, &[c]);
        let budget = &d.budgets[0];
        let (n, dd) = (budget.n_opt.unwrap(), budget.d_opt.unwrap());
        assert!((6.0 * n * dd / c - 1.0).abs() < 1e-12);
        for f in [0.9, 0.99, 1.01, 1.1] {
            let n2 = n * f;
            let l2 = form.predict(&theta, n2, c / (6.0 * n2), c);
            assert!(l2 > budget.loss, "factor {f}: {l2} <= {}", budget.loss);
        }
        assert!((d.a.unwrap() - 0.28 / 0.62).abs() < 1e-15);
        assert!((d.a.unwrap() + d.b.unwrap() - 1.0).abs() < 1e-15);
        let names: Vec<String> = d.scalars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "a",
                "b",
                "n_opt@5.76e+23",
                "d_opt@5.76e+23",
                "tokens_per_param@5.76e+23",
                "loss@5.76e+23"
            ]
        );
    }
}
