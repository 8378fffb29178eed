//! The report stage end to end: a tiny real pipeline (teacher data -> train ->
//! eval -> two fits -> report) through the binary, checking the files, that the
//! plots are well-formed, that the text carries the fitted numbers, and that
//! the report is cached and re-rendered exactly when its inputs change.

use super::harness::{ids, Workspace};

/// Two data sizes x three widths of tiny MLPs; seconds in all.
fn pipeline(widths: &str) -> String {
    format!(
        r#"
[pipeline]
name = "tiny"
seed = 3

[stages.data]
kind = "dataset.teacher"
noise_std = 0.3
input_dim = 4
teacher_width = 8
split = {{ val = 300, test = 300 }}
[stages.data.sweep]
n = [400, 1600]

[stages.train]
kind = "train"
inputs = ["data"]
model = "mlp"
depth = 1
epochs = 1
batch_size = 16
lr = 1e-2
[stages.train.sweep]
width = {widths}

[stages.eval]
kind = "eval"
inputs = ["train"]

[stages.fit_n]
kind = "fit"
inputs = ["data", "eval"]
foreach = ["data"]
form = "power_n"
grid = {{ a = [0.0, 2.0], e = [-2.0, -1.0], alpha = [0.3, 1.0] }}

[stages.fit]
kind = "fit"
inputs = ["eval"]
form = "chinchilla"
e = "irreducible"
bootstrap = 8
budgets = [1e8]
holdout = {{ top_n = 2 }}
grid = {{ a = [0.0, 2.0], b = [0.0, 4.0], alpha = [0.3, 1.0], beta = [0.3, 1.0] }}

[stages.report]
kind = "report"
inputs = ["fit_n", "fit", "eval", "train"]
title = "tiny report"
command = "scalepipe run p.toml"
"#
    )
}

/// Whether `text` is one well-formed XML document with an `<svg>` root.
fn assert_svg(text: &str, what: &str) {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut depth = 0i64;
    let mut root = None;
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) => {
                if depth == 0 {
                    root = Some(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                }
                depth += 1;
                elements += 1;
            }
            Ok(quick_xml::events::Event::Empty(_)) => elements += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "{what}: not well-formed XML at {}: {e}",
                reader.buffer_position()
            ),
        }
        assert!(depth >= 0, "{what}: unbalanced end tag");
    }
    assert_eq!(depth, 0, "{what}: unclosed elements");
    assert_eq!(root.as_deref(), Some("svg"), "{what}: root is not <svg>");
    assert!(
        elements > 20,
        "{what}: only {elements} elements, nothing drawn?"
    );
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The part of `text` from `heading` to the next `next` (or the end).
fn section<'a>(text: &'a str, heading: &str, next: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in\n{text}"))
        + heading.len();
    let rest = &text[start..];
    &rest[..rest.find(next).unwrap_or(rest.len())]
}

/// The `n` cells after `key` in `text`: each the text between `open` and the
/// next `close`, in turn.
fn row_after(text: &str, key: &str, open: &str, close: &str, n: usize) -> Vec<String> {
    let start = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in\n{text}"))
        + key.len();
    let mut rest = &text[start..];
    let mut cells = Vec::new();
    for _ in 0..n {
        let body = rest
            .strip_prefix(open)
            .unwrap_or_else(|| panic!("after {key:?}: expected {open:?} at {rest:.80?}"));
        let end = body
            .find(close)
            .unwrap_or_else(|| panic!("after {key:?}: no {close:?}"));
        cells.push(body[..end].trim().to_string());
        rest = &body[end + close.len()..];
    }
    cells
}

/// A report cell shows `value`: parsed back, it is within half a unit of its
/// last digit, four significant digits in plain notation and three in
/// scientific notation (written independently of the report's formatter).
fn assert_shows(cell: &str, value: f64, what: &str) {
    let shown: f64 = cell
        .parse()
        .unwrap_or_else(|e| panic!("{what}: cell {cell:?} is not a number: {e}"));
    let digits = if cell.contains('e') { 3 } else { 4 };
    let magnitude = if value == 0.0 {
        0
    } else {
        value.abs().log10().floor() as i32
    };
    let half_unit = 0.5 * 10f64.powi(magnitude + 1 - digits) * (1.0 + 1e-9);
    assert!(
        (shown - value).abs() <= half_unit,
        "{what}: cell {cell:?} does not show {value} to {digits} significant digits"
    );
}

/// Every file under `rel` with its bytes, sorted by path.
fn files_under(ws: &Workspace, rel: &str) -> Vec<(String, Vec<u8>)> {
    let root = ws.join(rel);
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(&root)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let path = e.path().strip_prefix(&root).unwrap().display().to_string();
            (path, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn tiny_pipeline_reports_fits_and_rerenders_only_when_inputs_change() {
    let ws = Workspace::new();
    ws.write("p.toml", &pipeline("[4, 8, 16]"));
    let first = ws.run(&["run", "p.toml", "--json"]).success().json();
    let executed = ids(&first, "executed");
    // Two data sizes, three widths: 6 runs, each evaluated; one chinchilla
    // fit, one power_n fit per data size, the report.
    assert_eq!(executed.len(), 2 + 6 + 6 + 4, "{executed:?}");
    assert!(
        executed.contains(&"fit_n[n=400]".to_string()),
        "{executed:?}"
    );
    assert!(executed.contains(&"report".to_string()));

    let dir = "results/tiny/report";
    for stem in [
        "loss_vs_n",
        "loss_vs_d",
        "loss_vs_c",
        "loss_curves",
        "observed_vs_predicted_fit",
        "observed_vs_predicted_fit_n_n_400",
        "observed_vs_predicted_fit_n_n_1600",
    ] {
        let svg = ws.read(&format!("{dir}/figures/{stem}.svg"));
        assert_svg(&svg, stem);
        let png = std::fs::read(ws.join(&format!("{dir}/figures/{stem}.png"))).unwrap();
        assert_eq!(png_size(&png), (900, 560), "{stem}.png");
    }
    // Axis labels carry units.
    let loss_vs_n = ws.read(&format!("{dir}/figures/loss_vs_n.svg"));
    assert!(loss_vs_n.contains("N (parameters)"), "x label");
    assert!(loss_vs_n.contains("held-out loss (MSE)"), "y label");

    let html = ws.read(&format!("{dir}/report.html"));
    let md = ws.read(&format!("{dir}/report.md"));
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // Self-contained: figures inline, nothing fetched.
    assert!(html.matches("<svg").count() >= 6, "figures are inlined");
    assert!(!html.contains("src=\"http") && !html.contains("<img"));
    assert!(html.contains("<h1>tiny report</h1>"));

    // The fitted parameters as the fit wrote them appear in both renderings:
    // each cell, parsed back, is the fit's number to the precision shown (four
    // significant digits, three in scientific notation), and so is the
    // bootstrap interval where there is one.
    // Diagnostics open the report, before any figure, with a line per fit.
    let diagnostics = section(&md, "## Diagnostics\n", "\n## ");
    for fit in ["fit", "fit_n[n=400]", "fit_n[n=1600]"] {
        assert!(
            diagnostics.contains(&format!("`{fit}`: ")),
            "{fit}: {diagnostics}"
        );
    }
    assert!(md.find("## Diagnostics").unwrap() < md.find("## Figures").unwrap());
    for fit in ["fit", "fit_n[n=400]", "fit_n[n=1600]"] {
        let doc: serde_json::Value =
            serde_json::from_str(&ws.read(&format!("results/tiny/{fit}/fit.json"))).unwrap();
        let params = doc["parameters"].as_object().expect("parameters");
        assert!(params.contains_key("alpha"));
        // Each fit's own section (both fits have an `A` and an `alpha`).
        let form = doc["form"].as_str().expect("form");
        let html_section = section(
            &html,
            &format!("<h2>Fit <code>{fit}</code> ({form})</h2>"),
            "<h2>",
        );
        let md_section = section(&md, &format!("## Fit `{fit}` ({form})\n"), "\n## ");
        for (name, est) in params {
            let what = format!("{fit}: {name}");
            let value = est["value"].as_f64().unwrap();
            let html_cells = row_after(
                html_section,
                &format!("<td>{name}</td>"),
                "<td>",
                "</td>",
                2,
            );
            let md_cells = row_after(md_section, &format!("| {name} |"), " ", " |", 2);
            for cells in [&html_cells, &md_cells] {
                assert_shows(&cells[0], value, &what);
                match (est["lo"].as_f64(), est["hi"].as_f64()) {
                    (Some(lo), Some(hi)) => {
                        let (l, h) = cells[1]
                            .strip_prefix('[')
                            .and_then(|c| c.strip_suffix(']'))
                            .and_then(|c| c.split_once(", "))
                            .unwrap_or_else(|| panic!("{what}: interval cell {:?}", cells[1]));
                        assert_shows(l, lo, &format!("{what} lo"));
                        assert_shows(h, hi, &format!("{what} hi"));
                    }
                    _ => assert_eq!(cells[1], "n/a", "{what}"),
                }
            }
        }
    }
    // Bootstrap intervals, the budget's optimum and the hold-out are reported.
    assert!(md.contains("95% interval (8 bootstrap replicates)"));
    assert!(md.contains("| 1e8 |"), "budget row");
    assert!(md.contains("### Extrapolation check"));
    // Every run appears in the runs table with its time.
    for w in [4, 8, 16] {
        for n in [400, 1600] {
            assert!(
                md.contains(&format!("| `eval[n={n},width={w}]` |")),
                "run {n} {w}"
            );
        }
    }
    assert!(md.contains("scalepipe run p.toml") && md.contains("scalepipe plan p.toml"));

    // Nothing changed: nothing runs (every instance is reported and recorded
    // as cached), and the report's files are byte-identical to a copy taken
    // before the second run.
    let before = files_under(&ws, dir);
    assert!(before.len() >= 2 + 2 * 6, "{before:?}");
    let again = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(ids(&again, "executed"), Vec::<String>::new());
    let mut all = executed.clone();
    all.sort();
    assert_eq!(ids(&again, "cached"), all);
    let record: serde_json::Value =
        serde_json::from_str(&ws.read("results/tiny/run.json")).unwrap();
    let instances = record["instances"].as_array().unwrap();
    assert_eq!(instances.len(), all.len());
    for inst in instances {
        assert_eq!(inst["status"], "cached", "{inst}");
    }
    assert!(files_under(&ws, dir) == before, "the cached report changed");

    // One width changed: its two runs, both fits and the report; nothing else.
    ws.write("p.toml", &pipeline("[4, 8, 12]"));
    let changed = ws.run(&["run", "p.toml", "--json"]).success().json();
    let mut want: Vec<String> = [
        "train[n=400,width=12]",
        "train[n=1600,width=12]",
        "eval[n=400,width=12]",
        "eval[n=1600,width=12]",
        "fit",
        "fit_n[n=400]",
        "fit_n[n=1600]",
        "report",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(ids(&changed, "executed"), want);
    let md = ws.read(&format!("{dir}/report.md"));
    assert!(md.contains("`eval[n=400,width=12]`") && !md.contains("width=16"));
}

#[test]
fn report_rejects_unknown_parameters_and_needs_inputs() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"r\"\n\n[stages.report]\nkind = \"report\"\ntitel = \"x\"\n",
    );
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("titel"), "{}", out.stderr);

    ws.write(
        "p.toml",
        "[pipeline]\nname = \"r\"\n\n[stages.report]\nkind = \"report\"\n",
    );
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("a report needs inputs"),
        "{}",
        out.stderr
    );
}

/// Without `command`, Reproduce names the pipeline file run, relative to the
/// workspace. The path is one of the report's parameters: moving the file
/// re-renders the report (and nothing else), which then names the new path.
#[test]
fn reproduce_names_the_pipeline_file_run_and_follows_a_move() {
    let ws = Workspace::new();
    let text = r#"
[pipeline]
name = "moved"
seed = 1
[stages.sim]
kind = "simulate"
[stages.sim.sweep]
n = [1e7, 1e8, 1e9]
d = [1e9, 1e10]
[stages.fit]
kind = "fit"
inputs = ["sim"]
form = "chinchilla"
[stages.report]
kind = "report"
inputs = ["fit", "sim"]
"#;
    ws.write("studies/a.toml", text);
    let first = ws
        .run(&["run", "studies/a.toml", "--workspace", ".", "--json"])
        .success()
        .json();
    assert!(ids(&first, "executed").contains(&"report".to_string()));
    let md = ws.read("results/moved/report/report.md");
    assert!(md.contains("scalepipe run studies/a.toml"), "{md}");
    assert!(md.contains("scalepipe plan studies/a.toml"), "{md}");

    std::fs::rename(ws.join("studies/a.toml"), ws.join("b.toml")).unwrap();
    let second = ws.run(&["run", "b.toml", "--json"]).success().json();
    assert_eq!(ids(&second, "executed"), ["report"]);
    let md = ws.read("results/moved/report/report.md");
    assert!(md.contains("scalepipe run b.toml"), "{md}");
    assert!(!md.contains("studies/a.toml"), "{md}");
}
