//! The sweep fragment a design writes (`proposal.toml`): the proposed runs as a
//! zip sweep of their stage keys (`n` and `d` for `simulate`, the candidate
//! keys of a `train` stage such as `width` and `examples`) and `round`, ready for a stage's `sweep_file` (the
//! format `crate::pipeline` reads: a table of lists and an optional
//! `sweep_mode`).

use std::fmt::Write;
use std::path::Path;

use super::candidates::ROUND_KEY;
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
    // The keys every run sets (all runs of one design set the same ones).
    let keys: Vec<&String> = report
        .runs
        .first()
        .map(|r| r.params.keys().collect())
        .unwrap_or_default();
    for key in keys {
        let values: Vec<String> = report
            .runs
            .iter()
            .map(|r| r.params.get(key).map_or("nan".into(), value))
            .collect();
        let _ = writeln!(out, "{key} = [{}]", values.join(", "));
    }
    let rounds: Vec<String> = report
        .runs
        .iter()
        .map(|_| report.round.to_string())
        .collect();
    let _ = writeln!(out, "{ROUND_KEY} = [{}]", rounds.join(", "));
    out
}

/// A parameter value as TOML: integers as integers, floats in exponent form
/// (`1e7`, `3.5e8`; candidates are matched to runs by value, and floats read
/// back exactly as written).
fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(x) if x.is_f64() => {
            format!("{:e}", x.as_f64().unwrap_or(f64::NAN))
        }
        other => other.to_string(),
    }
}

/// Writes the fragment into a design output directory.
pub fn write(dir: &Path, report: &DesignReport) -> std::io::Result<()> {
    std::fs::write(dir.join(FILE), render(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{ProposedRun, Targets};
    use crate::fit::Estimate;

    #[test]
    fn the_fragment_is_a_zip_sweep_of_the_proposed_runs() {
        let e = Estimate {
            value: 1.0,
            median: None,
            lo: None,
            hi: None,
        };
        let t = Targets { n_opt: e, loss: e };
        let run = |n: f64, d: f64| ProposedRun {
            params: [("n".to_string(), n.into()), ("d".to_string(), d.into())].into(),
            n,
            d,
            flops: 6.0 * n * d,
            gain_n_opt: 0.1,
            gain_loss: 0.1,
            disagreement: 0.01,
        };
        let report = DesignReport {
            round: 3,
            budget: 1e21,
            spend: 1e20,
            spent: 0.0,
            k: 2,
            cost: String::new(),
            method: String::new(),
            ranking: String::new(),
            noise_sd: 0.01,
            ensemble: 100,
            candidates: 4,
            now: t,
            expected: t,
            runs: vec![run(1e9, 2e9), run(3.5e7, 1e11)],
            history: Vec::new(),
            fragment: FILE.into(),
        };
        let table: toml::Table = render(&report).parse().unwrap();
        assert_eq!(table["sweep_mode"].as_str(), Some("zip"));
        let floats = |key: &str| -> Vec<f64> {
            table[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_float().unwrap())
                .collect()
        };
        assert_eq!(floats("n"), [1e9, 3.5e7]);
        assert_eq!(floats("d"), [2e9, 1e11]);
        assert_eq!(table["round"].as_array().unwrap().len(), 2);
        assert_eq!(table["round"][0].as_integer(), Some(3));

        // A train stage's keys, integers kept integers.
        let mut train = report.clone();
        for (run, (w, e)) in train.runs.iter_mut().zip([(16, 4096), (32, 256)]) {
            run.params = [
                ("width".to_string(), w.into()),
                ("examples".to_string(), e.into()),
            ]
            .into();
        }
        let table: toml::Table = render(&train).parse().unwrap();
        assert!(!table.contains_key("n"));
        assert_eq!(table["width"].as_array().unwrap()[1].as_integer(), Some(32));
        assert_eq!(
            table["examples"].as_array().unwrap()[0].as_integer(),
            Some(4096)
        );
    }
}
