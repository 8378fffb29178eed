//! `fit`: fits a scaling law to the runs of its inputs (or to a table file) and
//! writes `fit.json`, `predictions.parquet` and `summary.md`.
//!
//! Runs come from every input that holds a `metrics.json` (train, eval: one run
//! each) or a `source.parquet` (dataset.csv / dataset.parquet: one run per row),
//! and from `table = "file.csv"` (or `.parquet`), whose content enters the
//! fingerprint. Column names are mapped with `n`, `d`, `c`, `loss` (`d_from_c =
//! true` derives D = C / 6N). See [`crate::fit`] for the method.
//!
//! ```toml
//! [stages.fit]
//! kind = "fit"
//! table = "../../shared/reference/chinchilla_svg_extracted.csv"
//! n = "Model Size"
//! c = "Training FLOP"
//! d_from_c = true
//! form = "chinchilla"
//! exclude_top_loss = 5
//! bootstrap = 4000
//! budgets = [5.76e23]
//! holdout = { top_n = 10 }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use polars::prelude::DataFrame;
use serde::Deserialize;

use super::{ConfigureContext, Job, Kind, ParamError, Resources, StageContext, StageError};
use crate::data;
use crate::fit::analysis::{Analysis, Hooks};
use crate::fit::bootstrap::BootstrapSettings;
use crate::fit::fit_json::CurveReport;
use crate::fit::form::{Form, FormKind, Irreducible, Variable};
use crate::fit::grid::Grid;
use crate::fit::holdout::Holdout;
use crate::fit::isoflop::{Grouping, IsoflopSettings};
use crate::fit::objective::Observation;
use crate::fit::optimize::Settings;
use crate::fit::points::{self, CurveOrigin, CurveRule, PointSource};
use crate::fit::replicates::{self, ReplicateMode};
use crate::fit::summary::summary;
use crate::fit::table::{self, ColumnMap, Excluded};
use crate::fit::{diagnostics, fit_json, predictions};
use crate::kinds_doc::ParamDoc;
use crate::train::{curve, metrics};

pub const KIND: Kind = Kind {
    name: "fit",
    // 2: `summary.md` formats numbers with the report's rules.
    // 3: `fit.json` gains `diagnostics`, each budget's `decades_beyond_runs`
    //    and up to 100 bootstrap replicates' log parameters (for bands);
    //    `summary.md` opens with the diagnostics; power_n/power_d refuse runs
    //    pooled over several D/N.
    // 4: seed replicates are grouped (`replicates`); `fit.json` gains
    //    `prediction_intervals` (with a bootstrap and budgets or a hold-out),
    //    `replicates` and `curve`; a hold-out with a bootstrap bootstraps the
    //    hold-out fit too.
    version: 4,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// Parameters of a `fit` stage as written in the pipeline file.
/// The reference of `fit`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("form", "\"chinchilla\" | \"power_n\" | \"power_d\" | \"power_c\"", "\"chinchilla\"", "The law: L = E + A/N^alpha + B/D^beta, or one power law in N, D or compute C."),
    ParamDoc::new("e", "number | \"irreducible\"", "fitted", "Irreducible loss E: fitted when absent, fixed to a number (0: a pure power law), or the inputs' declared irreducible loss."),
    ParamDoc::new("points", "\"final\" | \"curve\"", "\"final\"", "Each run's final loss, or every held-out point of its loss curve (train stages with `eval_every` as inputs; WSD runs: the end of the cooldown only)."),
    ParamDoc::new("skip_fraction", "number", "0.1 (with points = \"curve\")", "Drop curve points whose D is below this fraction of their run's final D."),
    ParamDoc::new("min_d", "number", "0 (with points = \"curve\")", "Drop curve points whose D (tokens or examples) is below this."),
    ParamDoc::new("replicates", "\"mean\" | \"all\"", "\"mean\"", "Runs that differ only in their seed (`seeds = K` upstream): one point per (N, D) at their mean loss, or every run. The bootstrap resamples seeds within each drawn (N, D) either way."),
    ParamDoc::new("table", "string", "none", "A CSV or Parquet file of runs to fit instead of the inputs."),
    ParamDoc::new("id", "string", "\"id\" when present", "The column naming each run."),
    ParamDoc::new("n", "string", "\"n\" (table), \"n_params\" (runs)", "The column of N."),
    ParamDoc::new("d", "string", "\"d\"", "The column of D."),
    ParamDoc::new("c", "string", "\"c\" (table), \"flops\" (runs)", "The column of compute C."),
    ParamDoc::new("loss", "string", "\"loss\"", "The column of the loss."),
    ParamDoc::new("status", "string", "\"status\" when present", "A column whose rows other than \"ok\" are excluded."),
    ParamDoc::new("d_from_c", "bool", "false", "Derive D as C / (6N), for tables that record compute but not D."),
    ParamDoc::new("exclude_top_loss", "integer", "0", "Leave out this many runs with the highest loss (e.g. unconverged small models)."),
    ParamDoc::new("huber_delta", "number", "0.001", "Huber threshold on the log-loss residual."),
    ParamDoc::new("grid", "table of lists", "the form's grid", "Starting values per parameter, e.g. `{ alpha = [0.3, 0.5] }`."),
    ParamDoc::new("max_iters", "integer", "1000", "L-BFGS iterations per start."),
    ParamDoc::new("bootstrap", "integer", "0", "Bootstrap replicates for intervals (0: none)."),
    ParamDoc::new("bootstrap_starts", "integer", "4", "Random grid starts per replicate, besides the full-data optimum."),
    ParamDoc::new("budgets", "list of numbers", "[]", "Compute budgets (FLOPs) at which to report compute-optimal N and D."),
    ParamDoc::new("holdout", "table {top_n, by, n_above, d_above, c_above}", "none", "Runs held out of the fit to measure extrapolation error."),
    ParamDoc::new("isoflop", "bool | table {width, gap, min_runs}", "none", "IsoFLOP profiles: runs grouped by compute."),
    ParamDoc::new("threads", "integer", "all cores", "Threads for the multistart and bootstrap."),
    ParamDoc::new("seed", "integer", "the pipeline's seed", "Seeds the bootstrap."),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FitParams {
    /// `power_n`, `power_d`, `chinchilla` (default) or `power_c`.
    #[serde(default = "default_form")]
    form: FormKind,
    /// Irreducible loss: absent (fitted), a number (fixed; 0 = pure power law) or
    /// `"irreducible"` (the inputs' `irreducible_loss`).
    #[serde(default)]
    e: Option<toml::Value>,
    #[serde(default)]
    points: PointsParam,
    skip_fraction: Option<f64>,
    min_d: Option<f64>,
    #[serde(default)]
    replicates: ReplicateMode,
    /// A CSV or Parquet file of runs.
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    c: Option<String>,
    #[serde(default)]
    loss: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    d_from_c: bool,
    #[serde(default)]
    exclude_top_loss: usize,
    #[serde(default = "default_delta")]
    huber_delta: f64,
    /// Replacement starting values per parameter (`grid = { alpha = [0.3] }`).
    #[serde(default)]
    grid: BTreeMap<String, Vec<f64>>,
    #[serde(default = "default_max_iters")]
    max_iters: u64,
    /// Bootstrap replicates (0 = none).
    #[serde(default)]
    bootstrap: usize,
    /// Random grid starts per replicate, besides the full-data optimum.
    #[serde(default = "default_bootstrap_starts")]
    bootstrap_starts: usize,
    #[serde(default)]
    budgets: Vec<f64>,
    #[serde(default)]
    holdout: Option<HoldoutParams>,
    /// `true` or `{ width = 0.1 }` / `{ gap = 0.05 }` (decades of C), `min_runs`.
    #[serde(default)]
    isoflop: Option<toml::Value>,
    /// Threads for the multistart and bootstrap (default: all cores).
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    seed: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PointsParam {
    #[default]
    Final,
    Curve,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldoutParams {
    top_n: Option<usize>,
    by: Option<Variable>,
    n_above: Option<f64>,
    d_above: Option<f64>,
    c_above: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IsoflopParams {
    width: Option<f64>,
    gap: Option<f64>,
    min_runs: Option<usize>,
}

fn default_form() -> FormKind {
    FormKind::Chinchilla
}
fn default_delta() -> f64 {
    1e-3
}
fn default_max_iters() -> u64 {
    1000
}
fn default_bootstrap_starts() -> usize {
    4
}

/// How the irreducible loss `E` is decided.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ESetting {
    Free,
    Fixed(f64),
    /// From the inputs' `irreducible_loss`, at run time.
    FromInputs,
}

/// A configured fit stage.
#[derive(Debug)]
pub struct FitJob {
    kind: FormKind,
    e: ESetting,
    table: Option<PathBuf>,
    points: PointSource,
    columns: ColumnMap,
    exclude_top_loss: usize,
    analysis: Analysis,
    threads: usize,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: FitParams = super::parse_params(params)?;
    let e = match &p.e {
        None => ESetting::Free,
        Some(toml::Value::Float(v)) if v.is_finite() && *v >= 0.0 => ESetting::Fixed(*v),
        Some(toml::Value::Integer(v)) if *v >= 0 => ESetting::Fixed(*v as f64),
        Some(toml::Value::String(s)) if s == "irreducible" => {
            if cx.input_kinds.is_empty() {
                return Err(ParamError::at(
                    "e",
                    "`e = \"irreducible\"` takes E from the inputs' irreducible_loss, but the stage has no inputs",
                ));
            }
            ESetting::FromInputs
        }
        Some(_) => {
            return Err(ParamError::at(
                "e",
                "expected a number >= 0 (E fixed; 0 = pure power law) or \"irreducible\"",
            ))
        }
    };
    if !(p.huber_delta.is_finite() && p.huber_delta > 0.0) {
        return Err(ParamError::at("huber_delta", "expected a positive number"));
    }
    if p.max_iters == 0 {
        return Err(ParamError::at("max_iters", "expected an integer >= 1"));
    }
    if p.threads == Some(0) {
        return Err(ParamError::at("threads", "expected an integer >= 1"));
    }
    // The grid is checked against the free form; with E fixed the `e` axis is
    // simply absent, which the check below reports.
    let irreducible_for_check = match e {
        ESetting::Free => Irreducible::Free,
        ESetting::Fixed(v) => Irreducible::Fixed(v),
        ESetting::FromInputs => Irreducible::Fixed(1.0),
    };
    let form = Form::new(p.form, irreducible_for_check);
    let grid = Grid::with_overrides(&form, &p.grid).map_err(|err| {
        let key = match &err {
            crate::fit::grid::GridError::UnknownParameter { name, .. }
            | crate::fit::grid::GridError::EmptyAxis { name } => format!("grid.{name}"),
        };
        ParamError::at(key, err.to_string())
    })?;
    for (i, b) in p.budgets.iter().enumerate() {
        if !(b.is_finite() && *b > 0.0) {
            return Err(ParamError::at(
                format!("budgets[{i}]"),
                "expected a positive compute budget in FLOPs",
            ));
        }
    }
    if !p.budgets.is_empty() && !matches!(p.form, FormKind::Chinchilla | FormKind::PowerC) {
        return Err(ParamError::at(
            "budgets",
            "budgets need a form that involves compute (`chinchilla` or `power_c`)",
        ));
    }
    if p.d_from_c && p.d.is_some() {
        return Err(ParamError::at(
            "d_from_c",
            "give either a `d` column or `d_from_c = true`, not both",
        ));
    }
    let holdout = p
        .holdout
        .as_ref()
        .map(|h| holdout_rule(h, p.form))
        .transpose()?;
    let isoflop = p.isoflop.as_ref().map(isoflop_settings).transpose()?;
    if isoflop.is_some() && p.form != FormKind::Chinchilla {
        return Err(ParamError::at(
            "isoflop",
            "IsoFLOP profiles need runs with N and D (form = \"chinchilla\")",
        ));
    }
    let points = point_source(&p)?;
    if p.table.is_some() && points != PointSource::Final {
        return Err(ParamError::at(
            "points",
            "points = \"curve\" reads train stages' loss curves, not a `table`",
        ));
    }
    let table = match &p.table {
        None => None,
        Some(path) => {
            let resolved = cx.resolve(path);
            let ext = resolved
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("csv") | Some("parquet")) {
                return Err(ParamError::at("table", "expected a .csv or .parquet file"));
            }
            if !resolved.is_file() {
                return Err(ParamError::at(
                    "table",
                    format!("file not found: {}", resolved.display()),
                ));
            }
            Some(resolved)
        }
    };
    if table.is_none() && cx.input_kinds.is_empty() {
        return Err(ParamError::new(
            "a fit needs runs: list train/eval/dataset.csv stages in `inputs`, or set `table = \"runs.csv\"`",
        ));
    }
    let analysis = Analysis {
        form,
        delta: p.huber_delta,
        grid,
        optimizer: Settings {
            max_iters: p.max_iters,
            ..Settings::default()
        },
        budgets: p.budgets.clone(),
        bootstrap: (p.bootstrap > 0).then_some(BootstrapSettings {
            replicates: p.bootstrap,
            random_starts: p.bootstrap_starts,
            seed: p.seed,
        }),
        holdout,
        isoflop,
        replicates: p.replicates,
    };
    Ok(Box::new(FitJob {
        kind: p.form,
        e,
        table,
        points,
        columns: ColumnMap {
            id: p.id,
            n: p.n,
            d: p.d,
            c: p.c,
            loss: p.loss,
            status: p.status,
            d_from_c: p.d_from_c,
        },
        exclude_top_loss: p.exclude_top_loss,
        analysis,
        threads: p.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
    }))
}

fn point_source(p: &FitParams) -> Result<PointSource, ParamError> {
    if p.points == PointsParam::Final {
        for (key, set) in [
            ("skip_fraction", p.skip_fraction.is_some()),
            ("min_d", p.min_d.is_some()),
        ] {
            if set {
                return Err(ParamError::at(
                    key,
                    format!("`{key}` drops early curve points: it needs points = \"curve\""),
                ));
            }
        }
        return Ok(PointSource::Final);
    }
    let skip_fraction = p.skip_fraction.unwrap_or(0.1);
    if !(0.0..1.0).contains(&skip_fraction) {
        return Err(ParamError::at(
            "skip_fraction",
            "expected a number in [0, 1)",
        ));
    }
    let min_d = p.min_d.unwrap_or(0.0);
    if !(min_d.is_finite() && min_d >= 0.0) {
        return Err(ParamError::at("min_d", "expected a number >= 0"));
    }
    Ok(PointSource::Curve(CurveRule {
        skip_fraction,
        min_d,
    }))
}

fn holdout_rule(h: &HoldoutParams, form: FormKind) -> Result<Holdout, ParamError> {
    let chosen = [
        h.top_n.is_some(),
        h.n_above.is_some(),
        h.d_above.is_some(),
        h.c_above.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if chosen != 1 {
        return Err(ParamError::at(
            "holdout",
            "expected exactly one of `top_n`, `n_above`, `d_above`, `c_above`",
        ));
    }
    if h.by.is_some() && h.top_n.is_none() {
        return Err(ParamError::at("holdout.by", "`by` goes with `top_n`"));
    }
    if let Some(k) = h.top_n {
        if k == 0 {
            return Err(ParamError::at("holdout.top_n", "expected an integer >= 1"));
        }
        let by = h.by.unwrap_or(match form {
            FormKind::PowerN | FormKind::Chinchilla => Variable::N,
            FormKind::PowerD => Variable::D,
            FormKind::PowerC => Variable::C,
        });
        return Ok(Holdout::TopN { k, by });
    }
    let (variable, threshold, key) = match (h.n_above, h.d_above, h.c_above) {
        (Some(x), _, _) => (Variable::N, x, "holdout.n_above"),
        (_, Some(x), _) => (Variable::D, x, "holdout.d_above"),
        (_, _, Some(x)) => (Variable::C, x, "holdout.c_above"),
        _ => unreachable!("exactly one selector is set"),
    };
    if !threshold.is_finite() {
        return Err(ParamError::at(key, "expected a finite number"));
    }
    Ok(Holdout::Above {
        variable,
        threshold,
    })
}

fn isoflop_settings(v: &toml::Value) -> Result<IsoflopSettings, ParamError> {
    let default = IsoflopSettings {
        grouping: Grouping::Width(0.1),
        min_runs: 3,
    };
    match v {
        toml::Value::Boolean(true) => Ok(default),
        toml::Value::Table(t) => {
            let p: IsoflopParams = super::parse_params(t).map_err(|mut e| {
                e.key = Some(match e.key {
                    Some(k) => format!("isoflop.{k}"),
                    None => "isoflop".into(),
                });
                e
            })?;
            let grouping = match (p.width, p.gap) {
                (Some(_), Some(_)) => {
                    return Err(ParamError::at("isoflop", "give `width` or `gap`, not both"))
                }
                (Some(w), None) if w.is_finite() && w > 0.0 => Grouping::Width(w),
                (None, Some(g)) if g.is_finite() && g >= 0.0 => Grouping::Gap(g),
                (None, None) => default.grouping,
                (Some(_), None) => {
                    return Err(ParamError::at(
                        "isoflop.width",
                        "expected a positive number of decades",
                    ))
                }
                (None, Some(_)) => {
                    return Err(ParamError::at(
                        "isoflop.gap",
                        "expected a number of decades >= 0",
                    ))
                }
            };
            let min_runs = p.min_runs.unwrap_or(3);
            if min_runs < 3 {
                return Err(ParamError::at(
                    "isoflop.min_runs",
                    "a parabola needs at least 3 runs",
                ));
            }
            Ok(IsoflopSettings { grouping, min_runs })
        }
        _ => Err(ParamError::at(
            "isoflop",
            "expected `true` or a table such as `{ width = 0.1 }` or `{ gap = 0.05 }`",
        )),
    }
}

impl Job for FitJob {
    fn files(&self) -> Vec<PathBuf> {
        self.table.iter().cloned().collect()
    }

    fn resources(&self) -> Resources {
        Resources {
            threads: self.threads,
            gpu: false,
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let err = |e: &dyn std::fmt::Display| StageError::msg(e.to_string());
        let (frame, origins) = self.gather(ctx)?;
        let runs = table::runs(&frame).map_err(|e| err(&e))?;
        if runs.is_empty() {
            return Err(StageError::msg("no runs to fit: the inputs hold no rows"));
        }
        // Inputs that disagree on E are an error only when E is taken from
        // them; otherwise there is simply no reference to compare with.
        let declared = declared_irreducible(ctx);
        let reference = declared.as_ref().ok().copied().flatten();
        let irreducible = match self.e {
            ESetting::Free => Irreducible::Free,
            ESetting::Fixed(v) => Irreducible::Fixed(v),
            ESetting::FromInputs => Irreducible::Fixed(declared?.ok_or_else(|| {
                StageError::msg(
                    "e = \"irreducible\", but no input's metrics.json or meta.json has an irreducible_loss",
                )
            })?),
        };
        let form = Form::new(self.kind, irreducible);
        let mut needs = form.variables();
        if self.kind == FormKind::Chinchilla && self.analysis.isoflop.is_some() {
            needs.push(Variable::C);
        }
        let mut selection = table::select(&runs, &needs, self.exclude_top_loss);
        if let PointSource::Curve(rule) = &self.points {
            selection.exclude_where(|i| origins[i].as_ref().and_then(|o| o.excluded_by(rule)));
        }
        let excluded: Vec<Excluded> = selection
            .excluded
            .iter()
            .map(|(i, reason)| Excluded {
                id: runs[*i].id.clone(),
                reason: reason.clone(),
            })
            .collect();
        for e in &excluded {
            ctx.log(&format!("excluded {}: {}", e.id, e.reason));
        }
        if selection.included.len() < form.dim() {
            let reasons: Vec<String> = excluded
                .iter()
                .take(5)
                .map(|e| format!("{}: {}", e.id, e.reason))
                .collect();
            return Err(StageError::msg(format!(
                "{} of {} runs are usable, but the {} form has {} free parameters{}{}",
                selection.included.len(),
                runs.len(),
                form.kind.name(),
                form.dim(),
                if reasons.is_empty() {
                    ""
                } else {
                    "; excluded: "
                },
                reasons.join("; ")
            )));
        }
        let ids: Vec<String> = selection
            .included
            .iter()
            .map(|&i| runs[i].id.clone())
            .collect();
        let observations: Vec<Observation> = selection
            .included
            .iter()
            .map(|&i| runs[i].observation())
            .collect();

        let analysis = Analysis {
            form,
            ..self.analysis.clone()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads().max(1))
            .build()
            .map_err(|e| StageError::msg(format!("cannot start fit threads: {e}")))?;
        let progress = |phase: &str, done: u64, total: u64| ctx.progress(done, total, phase);
        let cancelled = || ctx.cancelled();
        let hooks = Hooks {
            progress: &progress,
            cancelled: &cancelled,
        };
        let groups = replicates::group(&runs, &selection.included);
        let mut report = pool
            .install(|| analysis.run_grouped(&ids, &observations, &groups, &hooks))
            .map_err(|e| match e {
                crate::fit::AnalysisError::Cancelled => StageError::Cancelled,
                other => StageError::msg(other.to_string()),
            })?;
        report.excluded = excluded;
        if let PointSource::Curve(rule) = &self.points {
            report.curve = Some(curve_report(rule, &origins, &selection));
        }
        if let Some(truth) = reference {
            report
                .diagnostics
                .extend(diagnostics::e_below_reference(&report, truth));
        }
        let codes: Vec<String> = report
            .diagnostics
            .iter()
            .map(|f| format!("{} {}", f.severity.name(), f.code.name()))
            .collect();
        ctx.log(&format!(
            "objective {:e} from {} starts ({} within 1e-6), converged: {}; diagnostics: {}",
            report.objective,
            report.optimizer.starts,
            report.optimizer.starts_within_1e_6,
            report.optimizer.converged,
            if codes.is_empty() {
                "none".to_string()
            } else {
                codes.join(", ")
            }
        ));
        for finding in &report.diagnostics {
            ctx.log(&finding.line());
        }

        let out = ctx.out_dir();
        fit_json::write(out, &report)?;
        predictions::write(out, &form, &report, &runs, &selection)
            .map_err(|e| StageError::msg(e.to_string()))?;
        let summary_path = out.join("summary.md");
        std::fs::write(&summary_path, summary(&report))
            .map_err(|e| StageError::io(&summary_path, e))
    }
}

impl FitJob {
    /// Gathers every source of runs into one canonical frame, with where each
    /// curve point comes from (`None` for whole runs).
    fn gather(&self, ctx: &StageContext) -> Result<Gathered, StageError> {
        let err = |e: table::TableError| StageError::msg(e.to_string());
        let mut frames = Vec::new();
        if let PointSource::Curve(_) = self.points {
            return self.gather_curves(ctx);
        }
        if let Some(path) = &self.table {
            let raw = table::read_file(path).map_err(err)?;
            let prefix = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            frames.push(table::canonical(&raw, &self.columns, path, &prefix).map_err(err)?);
        }
        let metrics_map = table::metrics_map(&self.columns);
        for input in ctx.inputs() {
            let source = input.dir.join("source.parquet");
            if metrics::exists(&input.dir) {
                let path = input.dir.join(metrics::FILE);
                let run = metrics::read(&input.dir)?;
                let raw = table::metrics_frame(&run, &path, &input.id).map_err(err)?;
                frames.push(table::canonical(&raw, &metrics_map, &path, &input.id).map_err(err)?);
            } else if source.is_file() {
                let raw = table::read_file(&source).map_err(err)?;
                frames
                    .push(table::canonical(&raw, &self.columns, &source, &input.id).map_err(err)?);
            } else if !data::meta_path(&input.dir).is_file() {
                return Err(StageError::msg(format!(
                    "input {} ({}) has neither metrics.json nor source.parquet: the fit reads runs from train/eval stages or table datasets",
                    input.id, input.kind
                )));
            }
        }
        let frame = table::stack(frames)
            .map_err(|e| StageError::msg(format!("cannot gather runs: {e}")))?;
        let origins = vec![None; frame.height()];
        Ok((frame, origins))
    }

    /// `points = "curve"`: every held-out point of each train input's loss
    /// curve. Eval inputs are passed over (their train stage holds the curve).
    fn gather_curves(&self, ctx: &StageContext) -> Result<Gathered, StageError> {
        let err = |e: &dyn std::fmt::Display| StageError::msg(e.to_string());
        let n_key = table::metrics_map(&self.columns)
            .n
            .unwrap_or_else(|| "n_params".into());
        let (mut frames, mut origins) = (Vec::new(), Vec::new());
        for input in ctx.inputs() {
            let path = input.dir.join(curve::FILE);
            if !path.is_file() {
                continue;
            }
            let run = metrics::read(&input.dir)?;
            let evals = curve::read_evals(&path).map_err(|e| err(&e))?;
            if evals.is_empty() {
                return Err(StageError::msg(format!(
                    "points = \"curve\": {} has no held-out points in its {}; set `eval_every` on its train stage",
                    input.id,
                    curve::FILE
                )));
            }
            let (frame, from) =
                points::curve_frame(&run, &evals, &input.id, &n_key, &path).map_err(|e| err(&e))?;
            frames.push(frame);
            origins.extend(from.into_iter().map(Some));
        }
        if frames.is_empty() {
            return Err(StageError::msg(
                "points = \"curve\" reads the loss curves of train stages: list a train stage (with `eval_every`) in `inputs`",
            ));
        }
        let frame = table::stack(frames).map_err(|e| err(&format!("cannot gather runs: {e}")))?;
        Ok((frame, origins))
    }
}

/// How many curve points of how many runs entered the fit.
fn curve_report(
    rule: &CurveRule,
    origins: &[Option<CurveOrigin>],
    selection: &table::Selection,
) -> CurveReport {
    let runs: std::collections::BTreeSet<&str> = selection
        .included
        .iter()
        .filter_map(|&i| origins[i].as_ref().map(|o| o.run.as_str()))
        .collect();
    CurveReport {
        skip_fraction: rule.skip_fraction,
        min_d: rule.min_d,
        runs: runs.len(),
        points: selection.included.len(),
        dropped: selection.excluded.len(),
    }
}

/// The canonical frame and, per row, where a curve point comes from.
type Gathered = (DataFrame, Vec<Option<CurveOrigin>>);

/// The irreducible loss every input that declares one agrees on (a run's
/// `metrics.json` or a dataset's `meta.json`); None when none declares one.
fn declared_irreducible(ctx: &StageContext) -> Result<Option<f64>, StageError> {
    let mut found: Vec<(String, f64)> = Vec::new();
    for input in ctx.inputs() {
        let declared = if metrics::exists(&input.dir) {
            metrics::read(&input.dir)?.irreducible_loss
        } else if data::meta_path(&input.dir).is_file() {
            data::read_meta(&input.dir)?.irreducible_loss
        } else {
            None
        };
        if let Some(v) = declared {
            found.push((input.id.clone(), v));
        }
    }
    let Some((_, first)) = found.first().cloned() else {
        return Ok(None);
    };
    if let Some((id, other)) = found
        .iter()
        .find(|(_, v)| (v - first).abs() > 1e-9 * first.abs().max(1e-12))
    {
        return Err(StageError::msg(format!(
            "inputs disagree on the irreducible loss ({} has {other}, {} has {first}); fix `e` to a number",
            id, found[0].0
        )));
    }
    if !(first.is_finite() && first >= 0.0) {
        return Err(StageError::msg(format!(
            "irreducible_loss {first} is not a finite number >= 0"
        )));
    }
    Ok(Some(first))
}
