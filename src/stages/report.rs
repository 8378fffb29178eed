//! `report`: plots and a Markdown/HTML summary of the runs and fits it lists as
//! inputs. Writes `report.md`, `report.html` (self-contained, figures inlined)
//! and `figures/<name>.svg` + `.png`.
//!
//! Like every stage it is cached by fingerprint: it re-renders when a run or fit
//! it reads changes, and only then. See [`crate::report`] for what it shows.
//!
//! ```toml
//! [stages.report]
//! kind = "report"
//! inputs = ["fit", "eval", "train"]   # fits, runs, and train for loss curves
//! title = "quickstart"                # the heading; use the pipeline's name
//! command = "scalepipe run pipelines/quickstart.toml"
//! reference_e = 0.25                  # optional: the true E, if the inputs don't declare it
//! loss_unit = "MSE"                   # optional: when the inputs don't say
//! d_unit = "tokens"                   # optional: what D counts, likewise
//! ```

use std::path::Path;

use serde::Deserialize;

use super::{ConfigureContext, Job, Kind, ParamError, StageContext, StageError};
use crate::data::Task;
use crate::kinds_doc::ParamDoc;
use crate::report::figures::{self, Labels};
use crate::report::gather::{InputInfo, RunSource};
use crate::report::plot::PlotError;
use crate::report::{document, gather, html, markdown, plot, GatherError, Header};

pub const KIND: Kind = Kind {
    name: "report",
    // 2: a Diagnostics section opens the report (every fit's findings), the
    //    allocation table says how far each budget lies beyond the runs, and
    //    figures keep far-off asymptotes off the axes, draw bootstrap bands,
    //    mark excluded runs and style training curves by D; without `command`,
    //    Reproduce names the pipeline file the run started from.
    // 3: a per-group fit is labelled by its stage name and group value.
    // 4: fitted power_n/power_d/power_c curves get bootstrap bands; Reproduce
    //    names the pipeline file run, which enters the parameters
    //    (`pipeline_file`), so moving the file re-renders the report.
    version: 4,
    takes_seed: false,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: true,
    configure,
};

/// Parameters of a `report` stage.
/// The reference of `report`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new(
        "title",
        "string",
        "\"Scaling-law report\"",
        "Heading of the report.",
    ),
    ParamDoc::new(
        "command",
        "string",
        "scalepipe run <the pipeline file run>",
        "The command shown under Reproduce.",
    ),
    ParamDoc::new(
        "pipeline_file",
        "string",
        "the file run, relative to the workspace",
        "The pipeline file `scalepipe run` is shown with under Reproduce when `command` is not set; the engine fills it in, so moving the file re-renders the report.",
    ),
    ParamDoc::new(
        "reference_e",
        "number",
        "the inputs' irreducible loss",
        "The true irreducible loss drawn beside the fits.",
    ),
    ParamDoc::new(
        "loss_unit",
        "string",
        "from the task",
        "The loss's unit on axes (e.g. \"nats/token\", \"MSE\").",
    ),
    ParamDoc::new(
        "d_unit",
        "string",
        "from the runs",
        "What D counts (\"tokens\", \"examples\").",
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    /// Heading of the report (the pipeline's name is a good choice).
    #[serde(default)]
    title: Option<String>,
    /// The command that reproduces the results.
    #[serde(default)]
    command: Option<String>,
    /// The file run, as the engine fills it in (relative to the workspace).
    #[serde(default)]
    pipeline_file: Option<String>,
    /// The true irreducible loss, overriding what the inputs declare.
    #[serde(default)]
    reference_e: Option<f64>,
    /// The loss's unit for axis labels, overriding the one read from the task.
    #[serde(default)]
    loss_unit: Option<String>,
    /// What D counts (`tokens`, `examples`), overriding the runs' `d_unit`.
    #[serde(default)]
    d_unit: Option<String>,
}

/// A configured report stage.
#[derive(Debug)]
struct ReportJob {
    title: String,
    /// The command shown under Reproduce.
    command: String,
    reference_e: Option<f64>,
    loss_unit: Option<String>,
    d_unit: Option<String>,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: ReportParams = super::parse_params(params)?;
    if cx.input_kinds.is_empty() {
        return Err(ParamError::new(
            "a report needs inputs: list the fit stages and the eval (or train) stage in `inputs`",
        ));
    }
    if let Some(e) = p.reference_e {
        if !(e.is_finite() && e >= 0.0) {
            return Err(ParamError::at("reference_e", "expected a number >= 0"));
        }
    }
    if p.title.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(ParamError::at("title", "expected a non-empty title"));
    }
    Ok(Box::new(ReportJob {
        title: p.title.unwrap_or_else(|| "Scaling-law report".into()),
        // Without either (a job configured outside a plan), a placeholder.
        command: p.command.unwrap_or_else(|| {
            format!(
                "scalepipe run {}",
                p.pipeline_file.as_deref().unwrap_or("<pipeline file>")
            )
        }),
        reference_e: p.reference_e,
        loss_unit: p.loss_unit,
        d_unit: p.d_unit,
    }))
}

impl Job for ReportJob {
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let inputs = ctx
            .inputs()
            .iter()
            .map(|i| InputInfo {
                stage: i.stage.clone(),
                id: i.id.clone(),
                kind: i.kind.clone(),
                fingerprint: i.fingerprint.clone(),
                dir: i.dir.clone(),
            })
            .collect();
        // Polled inside the long parts (reading inputs, drawing each series,
        // building each section): a report of a million runs takes seconds.
        let stop = || ctx.cancelled();
        let mut g = gather(inputs, &stop).map_err(|e| match e {
            GatherError::Interrupted(_) => StageError::Cancelled,
            e => StageError::msg(e.to_string()),
        })?;
        let reference_source = match (self.reference_e, g.reference_e) {
            (Some(_), _) => "given by the report's `reference_e`",
            (None, Some(_)) => "declared by the dataset",
            (None, None) => "",
        };
        if self.reference_e.is_some() {
            g.reference_e = self.reference_e;
        }
        let labels = Labels {
            loss_unit: self.loss_unit.clone().or_else(|| unit(&g)),
            loss_kind: match g.run_source {
                RunSource::Eval => "held-out".into(),
                RunSource::Train => "final training".into(),
                RunSource::FitTable => String::new(),
            },
            d_unit: self
                .d_unit
                .clone()
                .or_else(|| g.d_unit.clone())
                .unwrap_or_else(|| "examples".into()),
        };

        let out = ctx.out_dir();
        let fig_dir = out.join("figures");
        std::fs::create_dir_all(&fig_dir).map_err(|e| StageError::io(&fig_dir, e))?;
        let figures = figures::figures(&g, &labels);
        let mut rendered = Vec::new();
        for (i, fig) in figures.into_iter().enumerate() {
            if ctx.cancelled() {
                return Err(StageError::Cancelled);
            }
            ctx.progress(i as u64, rendered.len() as u64 + 1, "figures");
            let svg = plot::write(&fig.chart, &fig_dir, &fig.stem, &stop).map_err(|e| match e {
                PlotError::Interrupted(_) => StageError::Cancelled,
                e => StageError::msg(format!("cannot draw {}: {e}", fig.stem)),
            })?;
            rendered.push((fig, svg));
        }
        ctx.log(&format!(
            "{} runs, {} fits, {} figures",
            g.runs.len(),
            g.fits.len(),
            rendered.len()
        ));

        let header = Header {
            title: self.title.clone(),
            command: self.command.clone(),
            fingerprint: inputs_fingerprint(ctx),
            reference_e: g.reference_e,
            reference_source,
        };
        let doc =
            document::build(&g, &header, &rendered, &stop).map_err(|_| StageError::Cancelled)?;
        write(&out.join("report.md"), &markdown::render(&doc))?;
        if ctx.cancelled() {
            return Err(StageError::Cancelled);
        }
        write(&out.join("report.html"), &html::render(&doc))?;
        Ok(())
    }
}

/// The loss's unit from the task the runs trained on.
fn unit(g: &gather::Gathered) -> Option<String> {
    let unit = match g.task {
        Some(Task::Regression) => "MSE",
        Some(Task::Classification) | Some(Task::TextClassification) => "cross-entropy, nats",
        Some(Task::LanguageModel) => "nats/token",
        None if g.d_unit.as_deref() == Some("tokens") => "nats/token",
        None => return None,
    };
    Some(unit.into())
}

/// blake3 of the sorted `id fingerprint` lines of every input: the identity of
/// everything the report shows (each fingerprint covers its own upstream).
fn inputs_fingerprint(ctx: &StageContext) -> String {
    let mut lines: Vec<String> = ctx
        .inputs()
        .iter()
        .map(|i| format!("{}\t{}\n", i.id, i.fingerprint))
        .collect();
    lines.sort();
    blake3::hash(lines.concat().as_bytes()).to_hex().to_string()
}

fn write(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| StageError::io(path, e))
}
