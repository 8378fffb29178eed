//! A design's proposal in plain words, for `scalepipe suggest`: which runs,
//! why each, and the intervals before and (expected) after them.

use std::fmt::Write;

use super::design_json::{DesignReport, Targets};
use crate::fit::Estimate;
use crate::numfmt::{num, sci};

/// `[lo, hi]` and how many times wider hi is than lo.
fn interval(e: &Estimate) -> String {
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => format!("[{}, {}] (hi/lo {})", sci(lo), sci(hi), num(hi / lo)),
        _ => "(no interval)".into(),
    }
}

fn targets(t: &Targets) -> String {
    format!(
        "N* = {} in {}; loss {} in {}",
        sci(t.n_opt.value),
        interval(&t.n_opt),
        num(t.loss.value),
        interval(&t.loss)
    )
}

/// The proposal of design instance `id`. `proposal` is where its fragment is
/// (the results view); accepting it copies it to `copy_to` and lists it in
/// `sweep_file` as `entry` (relative to the pipeline file).
pub fn describe(
    report: &DesignReport,
    id: &str,
    proposal: &str,
    copy_to: &str,
    entry: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{id}: round {} of a study aiming at the compute-optimal model for {} FLOPs.",
        report.round,
        sci(report.budget)
    );
    let _ = writeln!(out, "Now:      {}", targets(&report.now));
    if report.runs.is_empty() {
        let _ = writeln!(
            out,
            "No candidate run fits the spend of {} FLOPs (or every candidate has run): raise `spend` or give other sizes.",
            sci(report.spend)
        );
    } else {
        let _ = writeln!(
            out,
            "Proposed: {} run{} costing {} of the {} FLOPs allowed (FLOPs {}; ranked by {}):",
            report.runs.len(),
            if report.runs.len() == 1 { "" } else { "s" },
            sci(report.spent),
            sci(report.spend),
            report.cost,
            report.ranking
        );
        for (i, run) in report.runs.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {}N = {}, D = {} ({} FLOPs): the bootstrap fits disagree on its loss by {} (sd of log loss); \
                 observing it is worth {} nats about N* and {} about the loss{}.",
                i + 1,
                stage_keys(&run.params),
                sci(run.n),
                sci(run.d),
                sci(run.flops),
                crate::numfmt::percent(run.disagreement),
                num(run.gain_n_opt),
                num(run.gain_loss),
                if i > 0 { " given the runs above" } else { "" }
            );
        }
        let _ = writeln!(out, "Expected: {}", targets(&report.expected));
        let _ = writeln!(
            out,
            "          (the linear-Gaussian expectation, with a noise of {} on log loss; the fit after the runs says how far they narrowed it)",
            crate::numfmt::percent(report.noise_sd)
        );
    }
    if report.history.len() > 1 {
        let _ = writeln!(out, "Rounds so far:");
        for round in &report.history {
            let _ = writeln!(
                out,
                "  round {}: {} runs, {} FLOPs: N* in {}",
                round.round,
                round.runs,
                sci(round.flops),
                interval(&round.targets.n_opt)
            );
        }
    }
    if !report.runs.is_empty() {
        let _ = writeln!(
            out,
            "To accept: cp {proposal} {copy_to}\n           and add \"{entry}\" to the `sweep_file` list of the stage that runs them; then run the pipeline again (only the new runs execute)."
        );
    }
    let _ = writeln!(out, "Method: {}.", report.method);
    out
}

/// A train stage's candidate keys before N and D (`width = 16, examples = 4096:
/// `); nothing for `n`/`d` runs, whose N and D say it all.
fn stage_keys(params: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    if params.is_empty() || params.keys().all(|k| k == "n" || k == "d") {
        return String::new();
    }
    format!("{}: ", super::candidates::words(params))
}
