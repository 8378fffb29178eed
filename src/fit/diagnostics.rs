//! Fit diagnostics: what a reader must know before trusting a fit's numbers.
//!
//! An optimiser always returns *some* optimum. On separable data it happily
//! returns `alpha = 18` and `E = 1e-68`; with two data sizes it returns a `B`
//! whose bootstrap interval spans ninety decades; at a budget three decades past
//! the largest run it returns an allocation nobody measured. Each such case is a
//! [`Finding`] here: a typed code, a severity, the parameters concerned, what it
//! means in plain words and what to do about it. The findings are computed from
//! the runs and the finished [`FitReport`] without I/O, stored in `fit.json`
//! (`diagnostics`) and shown first in `summary.md` and the report.
//!
//! The thresholds are deliberately coarse (they flag fits no careful reader
//! would publish, not borderline ones) and are constants below, so a reader of
//! a finding can look up exactly what triggered it.

use serde::{Deserialize, Serialize};

use super::fit_json::FitReport;
use super::form::{Form, Irreducible, Variable};
use super::objective::Observation;
use crate::numfmt::{num, sci, sig};

/// An exponent above this makes the power law a near-step: the loss falls
/// from "the coefficient dominates" to "E alone" within a factor of a few in
/// N or D, which no smooth scaling behaviour looks like.
pub const MAX_EXPONENT: f64 = 2.0;
/// An exponent below this makes its term a constant over any realistic range.
pub const MIN_EXPONENT: f64 = 0.01;
/// A free E below this fraction of the smallest observed loss is at its bound
/// (E >= 0): the fit put all of the loss into the power-law terms.
pub const E_ZERO_FRACTION: f64 = 1e-3;
/// A coefficient (or E) whose bootstrap interval has hi / lo above this is not
/// pinned down by the data.
pub const MAX_COEF_RATIO: f64 = 100.0;
/// An exponent whose bootstrap interval is wider than this (the width of the
/// whole range exponents in published scaling laws take) is not pinned down.
pub const MAX_EXPONENT_WIDTH: f64 = 1.0;
/// Budgets further than this (decades of compute) beyond the largest run are
/// flagged as extrapolations.
pub const MAX_EXTRAPOLATION_DECADES: f64 = 1.0;
/// A fitted E below this fraction of the data's known E is "far below" it.
pub const E_BELOW_REFERENCE_FRACTION: f64 = 0.5;
/// Distinct values an axis needs to identify a coefficient, an exponent and
/// whatever else shares the constant (E or the other term).
pub const MIN_DISTINCT_VALUES: usize = 3;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The numbers may be right, but a reader should know this.
    Warning,
    /// The numbers concerned are not supported by the data.
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// What was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The best start did not end at a stationary point.
    NotConverged,
    /// A free E at (or within a tiny tolerance of) its bound 0.
    EAtZero,
    /// An exponent above [`MAX_EXPONENT`].
    ExponentTooLarge,
    /// An exponent below [`MIN_EXPONENT`].
    ExponentAtZero,
    /// Fewer than [`MIN_DISTINCT_VALUES`] distinct values on an axis the form needs.
    TooFewValues,
    /// A bootstrap interval spanning orders of magnitude (or a wide exponent range).
    WideInterval,
    /// A budget more than [`MAX_EXTRAPOLATION_DECADES`] beyond the largest run.
    Extrapolation,
    /// A free E far below the data's known irreducible loss.
    EBelowReference,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::NotConverged => "not_converged",
            Code::EAtZero => "e_at_zero",
            Code::ExponentTooLarge => "exponent_too_large",
            Code::ExponentAtZero => "exponent_at_zero",
            Code::TooFewValues => "too_few_values",
            Code::WideInterval => "wide_interval",
            Code::Extrapolation => "extrapolation",
            Code::EBelowReference => "e_below_reference",
        }
    }
}

/// One diagnostic finding about a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// The parameters (or derived numbers) concerned, as `fit.json` names them.
    #[serde(default)]
    pub parameters: Vec<String>,
    /// What it means, in plain words.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    fn new(
        code: Code,
        severity: Severity,
        parameters: &[&str],
        message: String,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            code,
            severity,
            parameters: parameters.iter().map(|p| p.to_string()).collect(),
            message,
            fix: fix.into(),
        }
    }

    /// One line: `error (not_converged): message Fix: fix`.
    pub fn line(&self) -> String {
        format!(
            "{} ({}): {} Fix: {}",
            self.severity.name(),
            self.code.name(),
            self.message,
            self.fix
        )
    }
}

/// The compute of a run: its `C` when known, else `6 N D`.
pub fn compute_of(run: &Observation) -> Option<f64> {
    if run.c.is_finite() && run.c > 0.0 {
        return Some(run.c);
    }
    let c = 6.0 * run.n * run.d;
    (c.is_finite() && c > 0.0).then_some(c)
}

/// The largest compute among the runs, if any run has one.
pub fn largest_compute(runs: &[Observation]) -> Option<f64> {
    runs.iter().filter_map(compute_of).reduce(f64::max)
}

/// Decades of compute from the largest run to `c` (negative inside the runs).
pub fn decades_beyond(c: f64, largest: f64) -> f64 {
    (c / largest).log10()
}

/// The distinct values of `variable` among the runs (relative tolerance 1e-9).
pub fn distinct_values(runs: &[Observation], variable: Variable) -> Vec<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .map(|r| r.get(variable))
        .filter(|v| v.is_finite())
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup_by(|a, b| (*a - *b).abs() <= 1e-9 * b.abs().max(f64::MIN_POSITIVE));
    values
}

/// Every finding about the fit `report` of `form` to `runs`. `reference_e` is
/// the data's known irreducible loss, when the inputs declare one.
pub fn diagnose(
    form: &Form,
    runs: &[Observation],
    report: &FitReport,
    reference_e: Option<f64>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if !report.optimizer.converged {
        out.push(Finding::new(
            Code::NotConverged,
            Severity::Error,
            &[],
            format!(
                "the best of {} starts did not converge ({}; gradient norm {}), so the reported optimum may not be one.",
                report.optimizer.starts,
                report.optimizer.termination,
                sci(report.optimizer.grad_norm)
            ),
            "raise `max_iters`, widen `grid`, or fit a simpler form (fewer free parameters, or E fixed).",
        ));
    }
    let free_e = form.irreducible == Irreducible::Free;
    if free_e {
        out.extend(e_at_zero(report, runs));
    }
    out.extend(exponents(form, report));
    out.extend(too_few_values(form, runs));
    out.extend(wide_intervals(form, report));
    if let Some(truth) = reference_e {
        out.extend(e_below_reference(report, truth));
    }
    out.extend(extrapolation(report, runs));
    out
}

fn e_at_zero(report: &FitReport, runs: &[Observation]) -> Option<Finding> {
    let e = report.parameters.get("E")?.value;
    let min_loss = runs.iter().map(|r| r.loss).fold(f64::INFINITY, f64::min);
    (min_loss.is_finite() && e < E_ZERO_FRACTION * min_loss).then(|| {
        Finding::new(
            Code::EAtZero,
            Severity::Error,
            &["E"],
            format!(
                "the fitted irreducible loss E = {} is at its bound 0 (below {} of the smallest observed loss, {}): the fit explains all of the loss by the power-law terms, which happens when the data show no floor (too few runs, or separable data whose loss keeps falling).",
                num(e),
                sig(E_ZERO_FRACTION, 1),
                num(min_loss)
            ),
            "fix E (`e = 0` for a pure power law, a known value, or `e = \"irreducible\"`), or add runs that reach the loss floor.",
        )
    })
}

fn exponents(form: &Form, report: &FitReport) -> Vec<Finding> {
    let mut out = Vec::new();
    for term in form.terms() {
        let Some(x) = report.parameters.get(term.exponent).map(|e| e.value) else {
            continue;
        };
        let var = term.variable.name().to_uppercase();
        if x > MAX_EXPONENT {
            out.push(Finding::new(
                Code::ExponentTooLarge,
                Severity::Error,
                &[term.exponent, term.coef],
                format!(
                    "{} = {} is above {}: the law {}/{var}^{} degenerates toward a step (the term drops from dominant to negligible within a factor of a few in {var}), which is how a fit describes data that jump rather than scale, e.g. separable data driven to zero loss.",
                    term.exponent,
                    num(x),
                    sig(MAX_EXPONENT, 2),
                    term.coef,
                    term.exponent
                ),
                format!(
                    "check that the loss still falls smoothly with {var} (add intermediate sizes, drop runs at zero loss){}.",
                    or_fix_e(form)
                ),
            ));
        } else if x < MIN_EXPONENT {
            out.push(Finding::new(
                Code::ExponentAtZero,
                Severity::Warning,
                &[term.exponent, term.coef],
                format!(
                    "{} = {} is at its lower bound: the term {}/{var}^{} is a constant over the data, so the loss does not depend on {var} here.",
                    term.exponent,
                    num(x),
                    term.coef,
                    term.exponent
                ),
                format!("widen the range of {var} in the runs, or fit a form without this term."),
            ));
        }
    }
    out
}

fn too_few_values(form: &Form, runs: &[Observation]) -> Vec<Finding> {
    let mut out = Vec::new();
    for term in form.terms() {
        let values = distinct_values(runs, term.variable);
        if values.len() >= MIN_DISTINCT_VALUES {
            continue;
        }
        let var = term.variable.name().to_uppercase();
        let shown: Vec<String> = values.iter().map(|v| sci(*v)).collect();
        // With E free (or another term sharing the constant), two values give
        // fewer equations than unknowns; with E fixed they give exactly as many,
        // so the term is determined but nothing checks that it is a power law.
        let free_e = form.irreducible == Irreducible::Free;
        let (severity, why) = if free_e || form.terms().len() > 1 {
            (
                Severity::Error,
                format!(
                    "a power law in {var} has a coefficient and an exponent on top of the constant it shares, so it needs at least {MIN_DISTINCT_VALUES} distinct values of {var} to be identified"
                ),
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "with E fixed, {} values determine {} and {} exactly, but leave nothing to check that the loss follows a power law in {var}",
                    values.len(),
                    term.coef,
                    term.exponent
                ),
            )
        };
        out.push(Finding::new(
            Code::TooFewValues,
            severity,
            &[term.coef, term.exponent],
            format!(
                "{} and {} cannot be pinned down: the runs have only {} distinct value{} of {var} ({}); {why}.",
                term.coef,
                term.exponent,
                values.len(),
                if values.len() == 1 { "" } else { "s" },
                shown.join(", ")
            ),
            format!(
                "add runs at {MIN_DISTINCT_VALUES} or more values of {var} (spread over at least a decade){}, or fit a simpler form without the {var} term.",
                or_fix_e(form)
            ),
        ));
    }
    out
}

fn wide_intervals(form: &Form, report: &FitReport) -> Vec<Finding> {
    let mut out = Vec::new();
    let exponent_names: Vec<&str> = form.terms().iter().map(|t| t.exponent).collect();
    for (name, est) in &report.parameters.0 {
        let (Some(lo), Some(hi)) = (est.lo, est.hi) else {
            continue;
        };
        let is_exponent = exponent_names.contains(&name.as_str());
        let wide = if is_exponent {
            hi - lo > MAX_EXPONENT_WIDTH
        } else {
            !(lo > 0.0 && hi / lo <= MAX_COEF_RATIO)
        };
        if !wide {
            continue;
        }
        let what = if is_exponent {
            format!(
                "is wider than {} (the whole range published exponents take)",
                sig(MAX_EXPONENT_WIDTH, 2)
            )
        } else if lo > 0.0 {
            format!("spans {} decades", sig((hi / lo).log10(), 2))
        } else {
            "reaches 0".to_string()
        };
        out.push(Finding::new(
            Code::WideInterval,
            Severity::Warning,
            &[name.as_str()],
            format!(
                "the 95% bootstrap interval of {name}, [{}, {}], {what}: resampling the runs moves {name} that much, so its value is not determined by the data.",
                num(lo),
                num(hi)
            ),
            if name == "E" {
                "add runs closer to the loss floor (larger N and D), or fix E to a known value; until then, do not quote E.".to_string()
            } else {
                format!(
                    "add runs along the axis {name} describes{}, or fit a simpler form; until then, do not quote {name}.",
                    or_fix_e(form)
                )
            },
        ));
    }
    out
}

/// `", fix E"` where E is free (fixing it is then one remedy), else nothing.
fn or_fix_e(form: &Form) -> &'static str {
    match form.irreducible {
        Irreducible::Free => ", fix E",
        Irreducible::Fixed(_) => "",
    }
}

/// A free E far below the data's known irreducible loss, if so.
pub fn e_below_reference(report: &FitReport, truth: f64) -> Option<Finding> {
    let known = truth.is_finite() && truth > 0.0;
    if !(report.e_is_free() && known) {
        return None;
    }
    let e = report.parameters.get("E")?.value;
    (e < E_BELOW_REFERENCE_FRACTION * truth).then(|| {
        Finding::new(
            Code::EBelowReference,
            Severity::Warning,
            &["E"],
            format!(
                "the fitted E = {} is far below the data's known irreducible loss {} (under {} of it): no model can reach a loss below E, so the fit's other numbers compensate for a wrong floor.",
                num(e),
                num(truth),
                sig(E_BELOW_REFERENCE_FRACTION, 2)
            ),
            "fix E to the known value (`e = \"irreducible\"`), or add runs closer to the floor.",
        )
    })
}

fn extrapolation(report: &FitReport, runs: &[Observation]) -> Vec<Finding> {
    let Some(largest) = largest_compute(runs) else {
        return Vec::new();
    };
    report
        .derived
        .budgets
        .iter()
        .filter_map(|b| {
            let decades = decades_beyond(b.c, largest);
            (decades > MAX_EXTRAPOLATION_DECADES).then(|| {
                Finding::new(
                    Code::Extrapolation,
                    Severity::Warning,
                    &["budgets"],
                    format!(
                        "the budget C = {} FLOPs is {} beyond the largest run ({} FLOPs): its N_opt, D_opt and loss extrapolate the law that far.",
                        sci(b.c),
                        decades_text(decades),
                        sci(largest)
                    ),
                    "treat these numbers as a hypothesis: add larger runs, or check the law with a holdout (`holdout = { top_n = ... }`).",
                )
            })
        })
        .collect()
}

/// `"3.1 decades beyond the largest run"`, or `"within the runs"`.
pub fn decades_text(decades: f64) -> String {
    if decades <= 0.0 {
        "within the runs".to_string()
    } else {
        format!("{} decades", sig(decades, 2))
    }
}

/// The distinct values of the variables a single-variable form does NOT model
/// (D for `power_n`, N for `power_d`), when there is more than one: such runs
/// form separate series, and one curve through all of them runs between them.
pub fn pooled_groups(form: &Form, runs: &[Observation]) -> Option<(Variable, Vec<f64>)> {
    let other = match form.kind {
        super::FormKind::PowerN => Variable::D,
        super::FormKind::PowerD => Variable::N,
        _ => return None,
    };
    let values = distinct_values(runs, other);
    (values.len() > 1).then_some((other, values))
}

/// The worst severity among findings, if any.
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(n: f64, d: f64) -> Observation {
        Observation {
            n,
            d,
            c: f64::NAN,
            loss: 1.0,
        }
    }

    #[test]
    fn distinct_values_merge_rounding_noise() {
        let runs = [
            obs(10.0, 5.0),
            obs(10.0 * (1.0 + 1e-12), 5.0),
            obs(20.0, 6.0),
        ];
        assert_eq!(distinct_values(&runs, Variable::N), vec![10.0, 20.0]);
        assert_eq!(largest_compute(&runs), Some(6.0 * 20.0 * 6.0));
    }

    #[test]
    fn decades_read_as_words() {
        assert_eq!(decades_text(3.06), "3.1 decades");
        assert_eq!(decades_text(-0.5), "within the runs");
        assert!((decades_beyond(1e12, 1e9) - 3.0).abs() < 1e-12);
    }
}
