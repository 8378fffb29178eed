//! The report's content as a small document model ([`Doc`]): headings,
//! paragraphs, tables, figures and code. It is built once from the gathered
//! inputs and rendered twice, as Markdown ([`super::markdown`]) and as
//! self-contained HTML ([`super::html`]), so the two never disagree.
//!
//! Paragraph and cell text may hold `code spans` in backticks; each renderer
//! turns them into its own markup.

use super::figures::Figure;
use super::gather::{Compute, DesignInput, FitInput, Gathered, RunSource};
use crate::fit::diagnostics::{decades_text, e_below_reference, Code, MAX_EXTRAPOLATION_DECADES};
use crate::fit::fit_json::{Estimate, FitReport, HoldoutReport};
use crate::fit::isoflop::Isoflop;
use crate::fit::truth::KnownLaw;
use crate::numfmt::{duration, num, percent, sci, sig};

/// A block of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(u8, String),
    Para(String),
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A figure: file stem under `figures/`, caption, and the SVG to inline.
    Figure {
        stem: String,
        title: String,
        caption: String,
        svg: String,
    },
    Code(String),
}

/// A rendered-agnostic report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Doc {
    fn h(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }
    fn p(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(text.into()));
    }
    fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows,
        });
    }
}

/// What the report says about itself: its title, how to reproduce it, and the
/// fingerprint that identifies its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub title: String,
    pub command: String,
    /// blake3 of the input instances' ids and fingerprints.
    pub fingerprint: String,
    /// The E the data is known to have (parameter or the inputs' declaration).
    pub reference_e: Option<f64>,
    /// Where `reference_e` came from, in words.
    pub reference_source: &'static str,
}

/// A value with its interval as `v [lo, hi]`.
fn with_ci(e: &Estimate, fmt: fn(f64) -> String) -> String {
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => format!("{} [{}, {}]", fmt(e.value), fmt(lo), fmt(hi)),
        _ => fmt(e.value),
    }
}

fn sig4(v: f64) -> String {
    num(v)
}

fn opt(v: Option<f64>, fmt: fn(f64) -> String) -> String {
    v.map(fmt).unwrap_or_else(|| "n/a".into())
}

/// Builds the document, polling `stop` per fit and design section and every
/// few thousand rows of the runs table.
pub fn build(
    g: &Gathered,
    header: &Header,
    figures: &[(Figure, String)],
    stop: super::Stop,
) -> Result<Doc, super::Interrupted> {
    let check = || {
        if stop() {
            Err(super::Interrupted)
        } else {
            Ok(())
        }
    };
    let mut doc = Doc {
        title: header.title.clone(),
        blocks: Vec::new(),
    };
    let ok = g.runs.iter().filter(|r| r.status == "ok").count();
    doc.p(format!(
        "Report fingerprint `{}`: the blake3 of the ids and fingerprints of its {} input instances (listed under Provenance). The engine fingerprints every instance from its kind, parameters, inputs and files, so this changes exactly when any run or fit behind the report does.",
        &header.fingerprint[..16.min(header.fingerprint.len())],
        g.inputs.len()
    ));
    doc.p(format!(
        "{} runs ({} ok) from {}; {} fit{}: {}.",
        g.runs.len(),
        ok,
        match g.run_source {
            RunSource::Eval => "the eval stage (held-out loss)",
            RunSource::Train => "the train stage (final training loss)",
            RunSource::FitTable => "the fit's table",
        },
        g.fits.len(),
        if g.fits.len() == 1 { "" } else { "s" },
        if g.fits.is_empty() {
            "none".to_string()
        } else {
            g.fits
                .iter()
                .map(|f| format!("`{}` ({})", f.id, f.doc.form.name()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));

    doc.h(2, "Diagnostics");
    doc.p("What to know before trusting each fit's numbers: the optimiser's convergence, parameters at their bounds, parameters the data cannot pin down, and extrapolation beyond the runs.");
    doc.blocks.push(Block::List(diagnostics(g, header)));

    let findings = findings(g, header);
    if !findings.is_empty() {
        doc.h(2, "Summary");
        doc.blocks.push(Block::List(findings));
    }

    doc.h(2, "Runs");
    let rows = g
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| -> Result<Vec<String>, super::Interrupted> {
            if i % 4096 == 0 {
                check()?;
            }
            Ok(vec![
                format!("`{}`", r.id),
                opt(r.n, sci),
                opt(r.d, sci),
                opt(r.c, sci),
                opt(r.loss, sig4),
                opt(r.train_loss, sig4),
                r.status.clone(),
                opt(r.time_s, duration),
            ])
        })
        .collect::<Result<_, _>>()?;
    doc.table(
        &[
            "run",
            "N",
            "D",
            "C (FLOPs)",
            "loss",
            "train loss",
            "status",
            "time",
        ],
        rows,
    );

    if g.compute.wsd_runs > 0 {
        training_compute(&mut doc, &g.compute);
    }

    for fit in &g.fits {
        check()?;
        fit_section(&mut doc, fit, header);
    }
    for design in &g.designs {
        check()?;
        design_section(&mut doc, design, g.true_law.as_ref());
    }

    if !figures.is_empty() {
        doc.h(2, "Figures");
        for (fig, svg) in figures {
            doc.blocks.push(Block::Figure {
                stem: fig.stem.clone(),
                title: fig.chart.title.clone(),
                caption: fig.caption.clone(),
                svg: svg.clone(),
            });
        }
    }

    doc.h(2, "Provenance");
    doc.table(
        &["stage", "instance", "kind", "fingerprint"],
        g.inputs
            .iter()
            .map(|i| {
                vec![
                    i.stage.clone(),
                    format!("`{}`", i.id),
                    i.kind.clone(),
                    format!("`{}`", &i.fingerprint[..16.min(i.fingerprint.len())]),
                ]
            })
            .collect(),
    );

    doc.h(2, "Reproduce");
    doc.p("Run the pipeline again: cached instances are reused, so this only recomputes what changed. `plan` says what would run and why without running it.");
    let plan = if header.command.contains(" -- run ") {
        header.command.replacen(" -- run ", " -- plan ", 1)
    } else {
        header
            .command
            .replacen("scalepipe run ", "scalepipe plan ", 1)
    };
    let mut code = header.command.clone();
    if plan != header.command {
        code.push('\n');
        code.push_str(&plan);
    }
    doc.blocks.push(Block::Code(code));
    Ok(doc)
}

/// What the train runs cost, against the same runs each trained from scratch
/// (a cosine grid of the same points): WSD runs of several lengths share their
/// stable phase.
fn training_compute(doc: &mut Doc, c: &Compute) {
    doc.h(2, "Training compute");
    let share = if c.from_scratch > 0.0 {
        c.executed / c.from_scratch
    } else {
        f64::NAN
    };
    doc.p(format!(
        "The {} train runs ({} with a WSD schedule) executed {} FLOPs, against {} FLOPs to train each from scratch as a cosine grid of the same points does: {:.1}% of it ({:.2}x less). Exact matrix-product FLOPs of the updates executed; runs continued from a cached stable-phase checkpoint count only the steps they ran. Training time of the executed steps: {}.",
        c.runs,
        c.wsd_runs,
        sci(c.executed),
        sci(c.from_scratch),
        100.0 * share,
        1.0 / share,
        duration(c.wall_time_s),
    ));
}

/// Each fit's diagnostics from `fit.json`, plus the comparison with the
/// report's reference E when the fit could not make it; a fit without findings
/// says so, so a reader never mistakes silence for a missing check.
fn diagnostics(g: &Gathered, header: &Header) -> Vec<String> {
    let mut out = Vec::new();
    for fit in &g.fits {
        let mut found = fit.doc.diagnostics.clone();
        let has_reference_check = found.iter().any(|f| f.code == Code::EBelowReference);
        if let (Some(truth), false) = (header.reference_e, has_reference_check) {
            found.extend(e_below_reference(&fit.doc, truth));
        }
        if found.is_empty() {
            out.push(format!("`{}`: no findings.", fit.id));
        }
        for f in &found {
            out.push(format!(
                "`{}`: {} ({}): {} Fix: {}",
                fit.id,
                f.severity.name().to_uppercase(),
                f.code.name(),
                f.message,
                f.fix
            ));
        }
    }
    if out.is_empty() {
        out.push("No fits.".into());
    }
    out
}

/// The headline numbers, one line each.
fn findings(g: &Gathered, header: &Header) -> Vec<String> {
    let mut out = Vec::new();
    for fit in &g.fits {
        let params: Vec<String> = fit
            .doc
            .parameters
            .0
            .iter()
            .map(|(name, e)| format!("{name} = {}", num(e.value)))
            .collect();
        out.push(format!(
            "`{}`: `{}` with {} ({} runs).",
            fit.id,
            fit.doc.formula,
            params.join(", "),
            fit.doc.n_points
        ));
        if let (Some(truth), true) = (header.reference_e, fit.doc.e_is_free()) {
            if let Some(e) = fit.doc.parameters.get("E") {
                out.push(format!(
                    "`{}`: fitted E = {} against the true {} ({}): off by {}{}.",
                    fit.id,
                    with_ci(e, sig4),
                    sig(truth, 4),
                    header.reference_source,
                    percent((e.value - truth).abs() / truth),
                    match e.covers(truth) {
                        Some(true) => ", inside the interval",
                        Some(false) => ", outside the interval",
                        None => "",
                    }
                ));
            }
        }
        for b in &fit.doc.derived.budgets {
            if let (Some(n), Some(d)) = (&b.n_opt, &b.d_opt) {
                out.push(format!(
                    "`{}`: at C = {} FLOPs the compute-optimal model has N = {} parameters trained on D = {}, reaching loss {}.",
                    fit.id,
                    sci(b.c),
                    with_ci(n, sci),
                    with_ci(d, sci),
                    with_ci(&b.loss, sig4)
                ));
            }
        }
        if let Some(h) = &fit.doc.holdout {
            out.push(format!(
                "`{}`: fitted without its {} largest runs, it predicts them with mean error {} (max {}).",
                fit.id,
                h.n_held_out,
                percent(h.errors.mean_rel_error),
                percent(h.errors.max_rel_error)
            ));
        }
    }
    out
}

/// `[lo, hi]` of an estimate.
fn bounds(e: &Estimate, fmt: fn(f64) -> String) -> String {
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => format!("[{}, {}]", fmt(lo), fmt(hi)),
        _ => "-".into(),
    }
}

fn ratio(e: &Estimate) -> String {
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => num(hi / lo),
        _ => "-".into(),
    }
}

/// A design: the intervals round by round, what it proposes next and why.
fn design_section(doc: &mut Doc, design: &DesignInput, truth: Option<&KnownLaw>) {
    let d = &design.doc;
    doc.h(2, format!("Design `{}` (round {})", design.id, d.round));
    doc.p(format!(
        "How the 95% bootstrap intervals of the compute-optimal N* and of the loss at {} FLOPs narrowed round by round, and the {} run{} proposed for round {} within a spend of {} FLOPs. The latest round is the fit's own result; earlier rounds are the runs up to them refitted with the fit's bootstrap settings.",
        sci(d.budget),
        d.runs.len(),
        if d.runs.len() == 1 { "" } else { "s" },
        d.round,
        sci(d.spend)
    ));
    let mut rows: Vec<Vec<String>> = d
        .history
        .iter()
        .map(|r| {
            vec![
                r.round.to_string(),
                r.runs.to_string(),
                sci(r.flops),
                sci(r.targets.n_opt.value),
                bounds(&r.targets.n_opt, sci),
                ratio(&r.targets.n_opt),
                bounds(&r.targets.loss, sig4),
                r.source.clone(),
            ]
        })
        .collect();
    if !d.runs.is_empty() {
        let (runs, flops) = d.history.last().map_or((0, 0.0), |r| (r.runs, r.flops));
        rows.push(vec![
            format!("{} (expected)", d.round),
            (runs + d.runs.len()).to_string(),
            sci(flops + d.spent),
            sci(d.expected.n_opt.value),
            bounds(&d.expected.n_opt, sci),
            ratio(&d.expected.n_opt),
            bounds(&d.expected.loss, sig4),
            "design".into(),
        ]);
    }
    doc.table(
        &[
            "round",
            "runs",
            "FLOPs",
            "N*",
            "N* 95% interval",
            "hi/lo",
            "loss 95% interval",
            "from",
        ],
        rows,
    );
    if let Some(law) = truth {
        let (n_opt, loss) = law.optimum(d.budget);
        let inside = |e: &Estimate, x: f64| match e.covers(x) {
            Some(true) => "inside",
            Some(false) => "outside",
            None => "without",
        };
        doc.p(format!(
            "The runs are simulated: the true N* is {} and the true loss {} (from the law they were drawn from), {} and {} the latest intervals.",
            sci(n_opt),
            sig4(loss),
            inside(&d.now.n_opt, n_opt),
            inside(&d.now.loss, loss)
        ));
    }
    if !d.runs.is_empty() {
        // A train stage's candidates lead with their own keys (`width = 16,
        // examples = 4096`) and are costed exactly; `n`/`d` runs need no such
        // column, and their table reads as before.
        let stage_keys = d
            .runs
            .iter()
            .any(|r| r.params.keys().any(|k| k != "n" && k != "d"));
        let mut header = vec![
            "proposed N",
            "D",
            "FLOPs",
            "nats about N*",
            "nats about loss",
            "disagreement (sd of log loss)",
        ];
        if stage_keys {
            header.insert(0, "proposed run");
            header[1] = "N";
            header[3] = "FLOPs (exact)";
        }
        let rows = d
            .runs
            .iter()
            .map(|r| {
                let mut row = vec![
                    sci(r.n),
                    sci(r.d),
                    sci(r.flops),
                    sig(r.gain_n_opt, 3),
                    sig(r.gain_loss, 3),
                    percent(r.disagreement),
                ];
                if stage_keys {
                    row.insert(0, crate::design::candidates::words(&r.params));
                }
                row
            })
            .collect();
        doc.table(&header, rows);
        doc.p(format!(
            "Accept the proposal by including its `{}` with `sweep_file`; `scalepipe suggest` prints it in words. Method: {}.",
            d.fragment, d.method
        ));
    }
}

/// One fit: how it was made, its parameters, and each analysis it carries.
fn fit_section(doc: &mut Doc, fit: &FitInput, header: &Header) {
    let d = &fit.doc;
    doc.h(2, format!("Fit `{}` ({})", fit.id, d.form.name()));
    if let Some(c) = &d.curve {
        doc.p(format!(
            "Points: {} curve points of {} runs (held-out evaluations during training); {} earlier points left out (D below {} of the run's final D{}, or before the end of a WSD cooldown). The curve-points figure shows every point against D: those in the fit as dots, the others as crosses.",
            c.points,
            c.runs,
            c.dropped,
            percent(c.skip_fraction),
            if c.min_d > 0.0 { format!(" or below {}", sci(c.min_d)) } else { String::new() },
        ));
    }
    parameters(doc, d, header);
    seed_spread(doc, d);
    allocation(doc, d);
    prediction_intervals(doc, d);
    if let Some(h) = &d.holdout {
        extrapolation(doc, h);
    }
    if let Some(iso) = &d.isoflop {
        isoflop(doc, iso);
    }
    excluded(doc, d);
}

/// The optimiser's outcome, the parameter table and, against a known E, how
/// far the fitted E is from the truth.
fn parameters(doc: &mut Doc, d: &FitReport, header: &Header) {
    doc.p(format!(
        "`{}` fitted to {} {}; {}. Optimiser: {} starts, {} within 1e-6 of the best, {}.",
        d.formula,
        d.n_points,
        if d.curve.is_some() {
            "curve points"
        } else {
            "runs"
        },
        match d.e.as_f64() {
            Some(e) => format!("E fixed at {}", sig(e, 4)),
            None => "E fitted".into(),
        },
        d.optimizer.starts,
        d.optimizer.starts_within_1e_6,
        if d.optimizer.converged {
            "converged"
        } else {
            "NOT converged"
        }
    ));
    let intervals = d
        .bootstrap
        .as_ref()
        .map(|b| format!("95% interval ({} bootstrap replicates)", b.replicates))
        .unwrap_or_else(|| "interval (no bootstrap requested)".into());
    let rows = d
        .parameters
        .0
        .iter()
        .map(|(name, e)| {
            let interval = match (e.lo, e.hi) {
                (Some(lo), Some(hi)) => format!("[{}, {}]", num(lo), num(hi)),
                _ => "n/a".into(),
            };
            vec![name.clone(), num(e.value), interval]
        })
        .collect();
    doc.table(&["parameter", "value", intervals.as_str()], rows);

    if let (Some(truth), Some(e)) = (header.reference_e, d.parameters.get("E")) {
        if d.e_is_free() {
            doc.p(format!(
                "Irreducible loss: the true E is {} ({}); the fit finds {}, an error of {} ({}){}.",
                sig(truth, 4),
                header.reference_source,
                with_ci(e, sig4),
                sig(e.value - truth, 3),
                percent((e.value - truth).abs() / truth),
                match e.covers(truth) {
                    Some(true) => "; the truth lies inside the interval",
                    Some(false) => "; the truth lies outside the interval",
                    None => "",
                }
            ));
        }
    }
}

/// Compute-optimal N and D per budget.
fn allocation(doc: &mut Doc, d: &FitReport) {
    if d.derived.budgets.is_empty() {
        return;
    }
    doc.h(3, "Compute-optimal allocation");
    if let (Some(a), Some(b)) = (&d.derived.a, &d.derived.b) {
        doc.p(format!(
            "N_opt grows as C^{} and D_opt as C^{}.",
            with_ci(a, sig4),
            with_ci(b, sig4)
        ));
    }
    let rows = d
        .derived
        .budgets
        .iter()
        .map(|b| {
            vec![
                sci(b.c),
                match b.decades_beyond_runs {
                    Some(d) if d > MAX_EXTRAPOLATION_DECADES => {
                        format!("{} (extrapolated)", decades_text(d))
                    }
                    Some(d) => decades_text(d),
                    None => "n/a".into(),
                },
                b.n_opt
                    .as_ref()
                    .map(|e| with_ci(e, sci))
                    .unwrap_or("n/a".into()),
                b.d_opt
                    .as_ref()
                    .map(|e| with_ci(e, sci))
                    .unwrap_or("n/a".into()),
                b.tokens_per_param
                    .as_ref()
                    .map(|e| sig(e.value, 3))
                    .unwrap_or("n/a".into()),
                with_ci(&b.loss, sig4),
            ]
        })
        .collect();
    doc.table(
        &[
            "C (FLOPs)",
            "beyond the largest run",
            "N_opt",
            "D_opt",
            "D/N",
            "predicted loss",
        ],
        rows,
    );
}

/// How well a law fitted without the largest runs predicted them.
fn extrapolation(doc: &mut Doc, h: &HoldoutReport) {
    doc.h(3, "Extrapolation check");
    doc.p(format!(
        "Held out {} ({} runs), fitted on the other {}: mean absolute error {} ({}), max {} ({}).",
        h.rule,
        h.n_held_out,
        h.n_fit,
        sig(h.errors.mean_abs_error, 3),
        percent(h.errors.mean_rel_error),
        sig(h.errors.max_abs_error, 3),
        percent(h.errors.max_rel_error)
    ));
    let rows = h
        .errors
        .runs
        .iter()
        .map(|r| {
            vec![
                format!("`{}`", r.id),
                sci(r.n),
                sci(r.d),
                sig(r.observed, 4),
                sig(r.predicted, 4),
                percent(r.rel_error),
            ]
        })
        .collect();
    doc.table(
        &["held-out run", "N", "D", "observed", "predicted", "error"],
        rows,
    );
}

/// Approach 2: the IsoFLOP bands and the exponent across them.
fn isoflop(doc: &mut Doc, iso: &Isoflop) {
    doc.h(3, "IsoFLOP profiles");
    if let (Some(a), Some(k)) = (iso.a, iso.k) {
        doc.p(format!(
            "Across bands, N_opt = {} C^{} (Approach 2), to compare with the parametric exponent above.",
            sci(k),
            sig(a, 3)
        ));
    }
    let rows = iso
        .bands
        .iter()
        .map(|b| {
            vec![
                sci(b.c),
                b.runs.to_string(),
                opt(b.n_opt, sci),
                opt(b.d_opt, sci),
                opt(b.loss_min, sig4),
                if b.used {
                    "yes".into()
                } else {
                    format!("no: {}", b.note.clone().unwrap_or_default())
                },
            ]
        })
        .collect();
    doc.table(
        &["band C", "runs", "N_opt", "D_opt", "min loss", "used"],
        rows,
    );
}

/// Seed replicates: how they entered the fit and each (N, D)'s spread.
fn seed_spread(doc: &mut Doc, d: &FitReport) {
    let Some(r) = &d.replicates else {
        return;
    };
    doc.h(3, "Seed spread");
    doc.p(format!(
        "{} groups of runs that differ only in their seed (up to {} seeds each) entered the fit as {}; the bootstrap resamples the seeds inside each drawn group. Seed noise: the standard deviation of ln(loss) within a group is {} (a factor of {} on the loss).",
        r.groups,
        r.max_seeds,
        if r.mode == "all" { "every run" } else { "their mean loss" },
        sig(r.log_seed_std, 3),
        sig(r.log_seed_std.exp(), 4),
    ));
    let rows = r
        .spread
        .iter()
        .map(|g| {
            vec![
                sci(g.n),
                sci(g.d),
                g.seeds.to_string(),
                sig(g.mean, 4),
                sig(g.std, 3),
                format!("[{}, {}]", sig(g.min, 4), sig(g.max, 4)),
            ]
        })
        .collect();
    doc.table(&["N", "D", "seeds", "mean loss", "std", "range"], rows);
}

/// 95% prediction intervals: where the loss of one new run would fall.
fn prediction_intervals(doc: &mut Doc, d: &FitReport) {
    if d.prediction_intervals.is_empty() {
        return;
    }
    doc.h(3, "Prediction intervals");
    doc.p("Where the loss of one new run (a new seed) would fall with 95% probability: the bootstrap's spread of the fitted law (for held-out runs, of the fit that did not see them) plus the seed noise. Wider than the parameter intervals, which bound only the fitted curve.");
    let rows = d
        .prediction_intervals
        .iter()
        .map(|p| {
            vec![
                format!("`{}`", p.what),
                sci(p.n),
                sci(p.d),
                sig(p.predicted, 4),
                format!("[{}, {}]", sig(p.lo, 4), sig(p.hi, 4)),
                match p.observed {
                    Some(o) if p.lo <= o && o <= p.hi => format!("{} (inside)", sig(o, 4)),
                    Some(o) => format!("{} (OUTSIDE)", sig(o, 4)),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    doc.table(
        &[
            "prediction",
            "N",
            "D",
            "predicted",
            "95% prediction interval",
            "observed",
        ],
        rows,
    );
}

/// Most excluded runs the report lists one by one.
const MAX_EXCLUDED_LISTED: usize = 20;

/// Runs left out of the fit, and why.
fn excluded(doc: &mut Doc, d: &FitReport) {
    doc.h(3, "Excluded runs");
    if d.excluded.is_empty() {
        doc.p("None: every run entered the fit.");
    } else {
        // A curve fit can leave out hundreds of early points: the first
        // ones show the reasons, fit.json lists them all.
        let mut lines: Vec<String> = d
            .excluded
            .iter()
            .take(MAX_EXCLUDED_LISTED)
            .map(|e| format!("`{}`: {}", e.id, e.reason))
            .collect();
        if d.excluded.len() > MAX_EXCLUDED_LISTED {
            lines.push(format!(
                "and {} more (fit.json lists every one)",
                d.excluded.len() - MAX_EXCLUDED_LISTED
            ));
        }
        doc.blocks.push(Block::List(lines));
    }
}
