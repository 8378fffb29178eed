//! Scaling-law forms: which power-law terms make up the predicted loss, and how the
//! optimiser's flat parameter vector maps onto them.
//!
//! Every form is written the way Hoffmann et al. (2022) and Besiroglu et al. (2024)
//! fit it: in log space, `ln L = LSE(a_1 - alpha_1 ln X_1, ..., e)` with `A = e^a`,
//! `E = e^e`. Optimising the logs keeps the coefficients positive without bounds and
//! makes the objective far better conditioned than fitting `A` directly.
//!
//! The parameter vector is laid out as `[log-coefficients..., e (if free),
//! exponents...]`, which for `chinchilla` is Besiroglu et al.'s `(a, b, e, alpha,
//! beta)`, so grids and published values can be compared position by position.

use serde::{Deserialize, Serialize};

/// The functional forms the fit stage knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormKind {
    /// `L = E + A / N^alpha`.
    PowerN,
    /// `L = E + B / D^beta`.
    PowerD,
    /// `L = E + A / N^alpha + B / D^beta` (Hoffmann et al.'s Approach 3).
    Chinchilla,
    /// `L = E + K / C^gamma`.
    PowerC,
}

impl FormKind {
    pub fn name(self) -> &'static str {
        match self {
            FormKind::PowerN => "power_n",
            FormKind::PowerD => "power_d",
            FormKind::Chinchilla => "chinchilla",
            FormKind::PowerC => "power_c",
        }
    }

    /// The power-law terms of the form, in parameter-vector order.
    pub fn terms(self) -> &'static [Term] {
        const N: Term = Term {
            variable: Variable::N,
            log_coef: "a",
            coef: "A",
            exponent: "alpha",
        };
        const D: Term = Term {
            variable: Variable::D,
            log_coef: "b",
            coef: "B",
            exponent: "beta",
        };
        const C: Term = Term {
            variable: Variable::C,
            log_coef: "k",
            coef: "K",
            exponent: "gamma",
        };
        match self {
            FormKind::PowerN => &[N],
            FormKind::PowerD => &[D],
            FormKind::Chinchilla => &[N, D],
            FormKind::PowerC => &[C],
        }
    }
}

/// A quantity a run is measured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variable {
    /// Parameters.
    N,
    /// Training tokens (or examples).
    D,
    /// Training compute in FLOPs.
    C,
}

impl Variable {
    pub fn name(self) -> &'static str {
        match self {
            Variable::N => "n",
            Variable::D => "d",
            Variable::C => "c",
        }
    }

    /// This variable's value for a run measured by `(n, d, c)`.
    pub fn of(self, n: f64, d: f64, c: f64) -> f64 {
        match self {
            Variable::N => n,
            Variable::D => d,
            Variable::C => c,
        }
    }
}

/// One `coef / X^exponent` term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub variable: Variable,
    /// Name of the log-coefficient in the parameter vector (`a` for `A = e^a`).
    pub log_coef: &'static str,
    /// Name of the coefficient as reported (`A`).
    pub coef: &'static str,
    /// Name of the exponent (`alpha`).
    pub exponent: &'static str,
}

/// How the irreducible loss `E` enters the fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Irreducible {
    /// `e = ln E` is fitted.
    Free,
    /// `E` is known (for instance a dataset's entropy rate); `E = 0` makes the form
    /// a pure power law, which drops the constant term altogether.
    Fixed(f64),
}

/// A form with its treatment of `E`: everything needed to map parameters to losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Form {
    pub kind: FormKind,
    pub irreducible: Irreducible,
}

/// The constant term of the log-sum-exp, as the objective sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConstTerm {
    /// `e` is the parameter at this index.
    Free(usize),
    /// `e` is fixed at this value (`ln E` of a known `E > 0`).
    Fixed(f64),
    /// `E = 0`: no constant term.
    Absent,
}

impl Form {
    pub fn new(kind: FormKind, irreducible: Irreducible) -> Self {
        Form { kind, irreducible }
    }

    pub fn terms(&self) -> &'static [Term] {
        self.kind.terms()
    }

    /// Length of the parameter vector.
    pub fn dim(&self) -> usize {
        let t = self.terms().len();
        match self.irreducible {
            Irreducible::Free => 2 * t + 1,
            Irreducible::Fixed(_) => 2 * t,
        }
    }

    /// Index of term `k`'s log-coefficient.
    pub fn coef_index(&self, k: usize) -> usize {
        k
    }

    /// Index of term `k`'s exponent.
    pub fn exponent_index(&self, k: usize) -> usize {
        let t = self.terms().len();
        match self.irreducible {
            Irreducible::Free => t + 1 + k,
            Irreducible::Fixed(_) => t + k,
        }
    }

    pub fn const_term(&self) -> ConstTerm {
        match self.irreducible {
            Irreducible::Free => ConstTerm::Free(self.terms().len()),
            Irreducible::Fixed(e) if e > 0.0 => ConstTerm::Fixed(e.ln()),
            Irreducible::Fixed(_) => ConstTerm::Absent,
        }
    }

    /// Names of the parameter-vector entries, in order (`a`, `b`, `e`, `alpha`, `beta`).
    pub fn param_names(&self) -> Vec<&'static str> {
        let mut names = vec![""; self.dim()];
        for (k, term) in self.terms().iter().enumerate() {
            names[self.coef_index(k)] = term.log_coef;
            names[self.exponent_index(k)] = term.exponent;
        }
        if let ConstTerm::Free(i) = self.const_term() {
            names[i] = "e";
        }
        names
    }

    /// Variables a run must have (finite and positive) to enter this fit.
    pub fn variables(&self) -> Vec<Variable> {
        self.terms().iter().map(|t| t.variable).collect()
    }

    /// Predicted loss for a run with the given `(n, d, c)`.
    pub fn predict(&self, theta: &[f64], n: f64, d: f64, c: f64) -> f64 {
        let mut z = [0.0f64; 3];
        let mut len = 0;
        for (k, term) in self.terms().iter().enumerate() {
            let x = term.variable.of(n, d, c).ln();
            z[len] = theta[self.coef_index(k)] - theta[self.exponent_index(k)] * x;
            len += 1;
        }
        match self.const_term() {
            ConstTerm::Free(i) => {
                z[len] = theta[i];
                len += 1;
            }
            ConstTerm::Fixed(e) => {
                z[len] = e;
                len += 1;
            }
            ConstTerm::Absent => {}
        }
        let m = z[..len].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z[..len].iter().map(|zi| (zi - m).exp()).sum();
        (m + s.ln()).exp()
    }

    /// The fitted numbers as reported: coefficients and `E` in natural units,
    /// exponents as they are. `E` appears even when fixed, so readers see it.
    pub fn natural(&self, theta: &[f64]) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        for (k, term) in self.terms().iter().enumerate() {
            out.push((term.coef, theta[self.coef_index(k)].exp()));
        }
        out.push((
            "E",
            match self.irreducible {
                Irreducible::Free => theta[self.terms().len()].exp(),
                Irreducible::Fixed(e) => e,
            },
        ));
        for (k, term) in self.terms().iter().enumerate() {
            out.push((term.exponent, theta[self.exponent_index(k)]));
        }
        out
    }

    /// The default grid of starting points for one parameter: Besiroglu et al.'s
    /// values, which span the plausible range of log-coefficients (e^0 to e^25),
    /// exponents (0 to 2) and `e` (E from 0.37 to 2.7 nats).
    pub fn default_axis(name: &str) -> Vec<f64> {
        match name {
            "e" => vec![-1.0, -0.5, 0.0, 0.5, 1.0],
            "alpha" | "beta" | "gamma" => vec![0.0, 0.5, 1.0, 1.5, 2.0],
            _ => vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinchilla_layout_matches_besiroglu() {
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        assert_eq!(form.param_names(), ["a", "b", "e", "alpha", "beta"]);
        let fixed = Form::new(FormKind::PowerN, Irreducible::Fixed(0.0));
        assert_eq!(fixed.param_names(), ["a", "alpha"]);
        assert_eq!(fixed.const_term(), ConstTerm::Absent);
    }

    #[test]
    fn predict_is_the_sum_of_terms() {
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        let (a, b, e, alpha, beta) = (6.0f64, 7.0f64, 0.5f64, 0.34, 0.28);
        let (n, d) = (1e9f64, 2e10f64);
        let theta = [a, b, e, alpha, beta];
        let want = e.exp() + a.exp() / n.powf(alpha) + b.exp() / d.powf(beta);
        let got = form.predict(&theta, n, d, 6.0 * n * d);
        assert!((got - want).abs() < 1e-12 * want, "{got} vs {want}");

        let pure = Form::new(FormKind::PowerC, Irreducible::Fixed(0.0));
        let got = pure.predict(&[3.0, 0.05], 0.0, 0.0, 1e20);
        let want = 3.0f64.exp() * 1e20f64.powf(-0.05);
        assert!((got - want).abs() < 1e-12 * want);
    }
}
