//! The sweep fragment a design writes (`proposal.toml`): the proposed runs as a
//! zip sweep of `n`, `d` and `round`, ready for a stage's `sweep_file` (the
//! format `crate::pipeline` reads: a table of lists and an optional
//! `sweep_mode`).

use std::fmt::Write;
use std::path::Path;

use super::design_json::DesignReport;

/// The file name, in a design output directory.
pub const FILE: &str = "proposal.toml";

/// The fragment's text.
pub fn render(report: &DesignReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Round {} proposed by scalepipe's design stage: {} runs, {:e} FLOPs of a {:e} spend,\n\
         # chosen to narrow N* and the loss at a budget of {:e} FLOPs.\n\
         # Accept it: copy this file next to the pipeline and add its name to the\n\
         # simulating (or training) stage's `sweep_file` list.",
        report.round,
        report.runs.len(),
        report.spent,
        report.spend,
        report.budget
    );
    out.push_str("sweep_mode = \"zip\"\n");
    let list = |values: Vec<String>| values.join(", ");
    let _ = writeln!(
        out,
        "n = [{}]",
        list(report.runs.iter().map(|r| number(r.n)).collect())
    );
    let _ = writeln!(
        out,
        "d = [{}]",
        list(report.runs.iter().map(|r| number(r.d)).collect())
    );
    let _ = writeln!(
        out,
        "round = [{}]",
        list(
            report
                .runs
                .iter()
                .map(|_| report.round.to_string())
                .collect()
        )
    );
    out
}

/// A number as a TOML float in exponent form (`1e7`, `3.5e8`): candidates are
/// matched to runs by value, and floats read back exactly as written.
fn number(v: f64) -> String {
    format!("{v:e}")
}

/// Writes the fragment into a design output directory.
pub fn write(dir: &Path, report: &DesignReport) -> std::io::Result<()> {
    std::fs::write(dir.join(FILE), render(report))
}
