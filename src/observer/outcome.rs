//! What a finished run points the user at: where each report went and, for each
//! fit, its law on one line followed by its diagnostics (read back from
//! `fit.json` through [`crate::fit::fit_json`]).

use std::path::Path;

use crate::executor::Status;
use crate::fit::fit_json;
use crate::graph::Plan;
use crate::numfmt;
use crate::store::ResultsView;

use super::RunRecord;

/// Lines naming each report's files and each fit's law, for instances that
/// finished (executed or cached) in this run.
pub fn outcome_lines(plan: &Plan, record: &RunRecord, workspace: &Path) -> Vec<String> {
    let view = ResultsView::new(workspace, &plan.pipeline.name);
    let mut lines = Vec::new();
    for inst in &record.instances {
        if !matches!(inst.status, Status::Executed | Status::Cached) {
            continue;
        }
        let dir = view.instance_dir(&inst.id);
        match inst.kind.as_str() {
            "fit" => match fit_json::read(&dir) {
                Ok(fit) => {
                    lines.push(format!("law {}: {}", inst.id, law(&fit)));
                    // The fit's diagnostics under its law, so a doubtful law is
                    // never printed bare.
                    lines.extend(fit.diagnostics.iter().map(|f| {
                        format!("  {} {}: {}", f.severity.name(), f.code.name(), f.message)
                    }));
                }
                Err(e) => lines.push(format!("law {}: cannot read: {e}", inst.id)),
            },
            "report" => {
                let html = dir.join("report.html");
                if html.is_file() {
                    lines.push(format!("report: {}", html.display()));
                }
            }
            _ => {}
        }
    }
    lines
}

/// `L = E + A/N^alpha with A = 1.2e3, alpha = 0.35, E = 1.8 (E fixed)`.
fn law(fit: &fit_json::FitReport) -> String {
    let values: Vec<String> = fit
        .parameters
        .0
        .iter()
        .map(|(name, estimate)| format!("{name} = {}", numfmt::num(estimate.value)))
        .collect();
    let e = if fit.e_is_free() { "" } else { " (E fixed)" };
    format!(
        "{} with {}{e}, {} points",
        fit.formula,
        values.join(", "),
        fit.n_points
    )
}
