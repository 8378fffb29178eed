//! The human summary of a fit (`summary.md`): first the diagnostics (what a
//! reader must know before trusting the numbers), then one paragraph of what
//! was fitted to what, the parameters with their intervals, the compute-optimal
//! allocation (with how far each budget lies beyond the runs), how well the
//! law extrapolated (and how many held-out runs fell inside their prediction
//! intervals), and where curve points and seed replicates came from.

use std::fmt::Write;

use super::diagnostics::{decades_text, Finding};
use super::fit_json::{BudgetReport, Estimate, FitReport};
use crate::numfmt::num;

fn est(e: &Estimate) -> String {
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => format!("{} [95% CI {}, {}]", num(e.value), num(lo), num(hi)),
        _ => num(e.value),
    }
}

/// The diagnostics block: one bullet per finding, or a line saying there are none.
pub fn diagnostics(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "Diagnostics: none (converged, parameters within bounds, identifiable, budgets within a decade of the runs).\n".to_string();
    }
    let mut s = format!("Diagnostics ({}):\n\n", findings.len());
    for f in findings {
        let _ = writeln!(s, "- **{}**", f.line());
    }
    s
}

/// `" (3.1 decades beyond the largest run)"`, when the budget lies beyond.
fn beyond(b: &BudgetReport) -> String {
    match b.decades_beyond_runs {
        Some(d) if d > 0.0 => format!(" ({} beyond the largest run)", decades_text(d)),
        _ => String::new(),
    }
}

/// Renders the summary (Markdown, ending with a newline): the diagnostics,
/// a blank line, then the paragraph.
pub fn summary(r: &FitReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "Fitted `{}` ({}) to {} runs{} by minimising the Huber loss (delta = {}) of the \
         error in log loss with L-BFGS from {} starts; the best optimum has objective {} \
         ({}, {} starts within 1e-6 of it). ",
        r.formula,
        r.form.name(),
        r.n_points,
        if r.excluded.is_empty() {
            String::new()
        } else {
            format!(" ({} excluded)", r.excluded.len())
        },
        num(r.huber_delta),
        r.optimizer.starts,
        num(r.objective),
        if r.optimizer.converged {
            "converged"
        } else {
            "NOT converged"
        },
        r.optimizer.starts_within_1e_6,
    );
    let params: Vec<String> = r
        .parameters
        .0
        .iter()
        .map(|(n, e)| format!("{n} = {}", est(e)))
        .collect();
    let _ = write!(s, "Parameters: {}", params.join(", "));
    if let Some(b) = &r.bootstrap {
        let _ = write!(s, " (intervals from {} bootstrap refits)", b.replicates);
    }
    s.push_str(". ");
    if let (Some(a), Some(b)) = (&r.derived.a, &r.derived.b) {
        let _ = write!(
            s,
            "Compute-optimal allocation: N_opt ∝ C^{}, D_opt ∝ C^{}. ",
            est(a),
            est(b)
        );
    }
    for budget in &r.derived.budgets {
        match (&budget.n_opt, &budget.d_opt, &budget.tokens_per_param) {
            (Some(n), Some(d), Some(t)) => {
                let _ = write!(
                    s,
                    "At C = {} FLOPs{}: N_opt = {}, D_opt = {} ({} tokens per parameter), \
                     predicted loss {}. ",
                    num(budget.c),
                    beyond(budget),
                    est(n),
                    est(d),
                    est(t),
                    est(&budget.loss)
                );
            }
            _ => {
                let _ = write!(
                    s,
                    "At C = {} FLOPs{} the predicted loss is {}. ",
                    num(budget.c),
                    beyond(budget),
                    est(&budget.loss)
                );
            }
        }
    }
    if let Some(h) = &r.holdout {
        let _ = write!(
            s,
            "Extrapolation check ({}): fitted on {} runs, the law predicts the {} held-out \
             runs with mean absolute error {} in loss (mean {}%, max {}% relative). ",
            h.rule,
            h.n_fit,
            h.n_held_out,
            num(h.errors.mean_abs_error),
            num(100.0 * h.errors.mean_rel_error),
            num(100.0 * h.errors.max_rel_error),
        );
    }
    let held: Vec<_> = r
        .prediction_intervals
        .iter()
        .filter_map(|p| Some((p.observed?, p.lo, p.hi)))
        .collect();
    if !held.is_empty() {
        let inside = held.iter().filter(|(o, lo, hi)| lo <= o && o <= hi).count();
        let _ = write!(
            s,
            "95% prediction intervals for a new run hold {inside} of the {} held-out runs. ",
            held.len()
        );
    }
    if let Some(c) = &r.curve {
        let _ = write!(
            s,
            "Points: {} held-out points of {} runs' loss curves ({} earlier ones left out). ",
            c.points, c.runs, c.dropped
        );
    }
    if let Some(rep) = &r.replicates {
        let _ = write!(
            s,
            "Seed replicates: {} groups of up to {} seeds ({}), seed noise sd(ln loss) = {}. ",
            rep.groups,
            rep.max_seeds,
            rep.mode,
            num(rep.log_seed_std)
        );
    }
    if let Some(iso) = &r.isoflop {
        let used = iso.bands.iter().filter(|b| b.used).count();
        match iso.a {
            Some(a) => {
                let _ = write!(
                    s,
                    "IsoFLOP profiles (Approach 2, {used} of {} bands usable) give N_opt ∝ C^{}.",
                    iso.bands.len(),
                    num(a)
                );
            }
            None => {
                let _ = write!(
                    s,
                    "IsoFLOP profiles (Approach 2): only {used} of {} bands usable, too few for an exponent.",
                    iso.bands.len()
                );
            }
        }
    }
    let mut out = diagnostics(&r.diagnostics);
    out.push('\n');
    out.push_str(s.trim_end());
    out.push('\n');
    out
}
