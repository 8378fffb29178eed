//! The report's figures, each built as a [`Chart`] from the gathered runs and
//! fits: loss against N, D and C with the fitted laws, IsoFLOP profiles,
//! training curves, and observed against predicted loss per fit.
//!
//! Ordered quantities (model size, data size) get sequential colours, so the
//! eye reads size from colour across figures; fitted curves take the colour of
//! the runs they describe.

use super::gather::{group_at_most, group_by, Gathered, RunRow};
use super::law::{band, log_space, Band, Law};
use super::plot::{
    categorical, sequential, Chart, Colour, Mark, Series, Shape, DARK, GREY, HIGHLIGHT,
};
use crate::fit::form::{FormKind, Variable};
use crate::fit::predictions::Prediction;
use crate::numfmt::sci;

/// Axis wording that depends on the data.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// The loss's unit (`MSE`, `nats/token`), when known.
    pub loss_unit: Option<String>,
    /// `held-out`, `final training`, or empty for runs read from a table.
    pub loss_kind: String,
    /// What D counts (`examples`, `tokens`).
    pub d_unit: String,
}

impl Labels {
    fn loss(&self) -> String {
        let kind = if self.loss_kind.is_empty() {
            "loss".to_string()
        } else {
            format!("{} loss", self.loss_kind)
        };
        format!("{kind}{}", self.unit())
    }
    /// ` (unit)`, or nothing when the unit is unknown.
    fn unit(&self) -> String {
        self.loss_unit
            .as_ref()
            .map(|u| format!(" ({u})"))
            .unwrap_or_default()
    }
    fn n(&self) -> String {
        "N (parameters)".to_string()
    }
    fn d(&self) -> String {
        format!("D (training {})", self.d_unit)
    }
    fn c(&self) -> String {
        "C (training FLOPs, 6ND)".to_string()
    }
}

/// A chart with the file name and words it appears under.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File stem under `figures/`.
    pub stem: String,
    pub caption: String,
    pub chart: Chart,
}

/// Every figure the data supports, in reading order.
pub fn figures(g: &Gathered, labels: &Labels) -> Vec<Figure> {
    let mut out = Vec::new();
    out.extend(loss_vs(g, labels, Variable::N));
    out.extend(loss_vs(g, labels, Variable::D));
    out.extend(loss_vs_c(g, labels));
    for fit in &g.fits {
        out.extend(isoflop(labels, fit));
    }
    out.extend(curves(g, labels));
    for fit in &g.fits {
        out.extend(curve_points(labels, fit));
    }
    for fit in &g.fits {
        out.extend(observed_vs_predicted(labels, fit));
    }
    for design in &g.designs {
        out.extend(design_rounds(g, design));
    }
    for f in &mut out {
        let off = f.chart.off_plot_lines();
        if !off.is_empty() {
            f.caption.push_str(&format!(
                " Outside the plotted range, so not drawn: {}.",
                off.join("; ")
            ));
        }
    }
    out.into_iter().filter(|f| f.chart.has_data()).collect()
}

/// Most series (colours) a figure shows before it bins runs by size.
const MAX_SERIES: usize = 8;

/// The sign a series label uses: `=` for exact groups, `≈` for bins.
fn equals_sign(binned: bool) -> &'static str {
    if binned {
        "≈"
    } else {
        "="
    }
}

/// Reads one quantity of a run.
type RunValue = fn(&RunRow) -> Option<f64>;

/// Whether a run finished with a loss a log axis can show.
fn plottable(r: &RunRow) -> bool {
    r.status == "ok" && r.loss.is_some_and(|l| l.is_finite() && l > 0.0)
}

/// The first law of a form among the fits.
fn law_of(g: &Gathered, kind: FormKind) -> Option<(String, Law)> {
    g.fits.iter().find_map(|f| {
        let law = Law::of(&f.doc)?;
        (law.kind() == kind).then(|| (f.id.clone(), law))
    })
}

/// Loss against N (series per D) or against D (series per N), with the
/// `chinchilla` fit along each series and the one-variable fit dashed.
fn loss_vs(g: &Gathered, labels: &Labels, x: Variable) -> Option<Figure> {
    let (get_x, get_group): (RunValue, RunValue) = match x {
        Variable::N => (|r| r.n, |r| r.d),
        _ => (|r| r.d, |r| r.n),
    };
    let runs: Vec<&RunRow> = g.runs.iter().filter(|r| plottable(r)).collect();
    let keyed: Vec<(usize, f64)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, get_group(r)?)))
        .collect();
    let (groups, binned) = group_at_most(&keyed, MAX_SERIES);
    // Every run shares one value of the other variable? Then one series.
    let xs: Vec<f64> = runs.iter().filter_map(|r| get_x(r)).collect();
    let distinct_x = group_by(&xs.iter().copied().enumerate().collect::<Vec<_>>()).len();
    if distinct_x < 2 {
        return None;
    }
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(0.0, f64::max),
    );
    let grid = log_space(lo / 1.3, hi * 1.3, 80);
    let chinchilla = law_of(g, FormKind::Chinchilla);
    let chinchilla_band = replicates_of(g, FormKind::Chinchilla);
    let (name, x_label, group_label, stem) = match x {
        Variable::N => ("N", labels.n(), labels.d(), "loss_vs_n"),
        _ => ("D", labels.d(), labels.n(), "loss_vs_d"),
    };
    let mut chart = Chart::new(&format!("Loss vs {name}"), &x_label, &labels.loss());
    chart.legend_title = Some(group_label);
    let ng = groups.len();
    // Runs some fit left out (`exclude_top_loss`) are rings, not dots.
    let excluded: Vec<&str> = g
        .fits
        .iter()
        .flat_map(|f| f.doc.excluded.iter().map(|e| e.id.as_str()))
        .collect();
    let is_excluded = |r: &RunRow| excluded.contains(&r.id.as_str());
    for (gi, (value, members)) in groups.iter().enumerate() {
        let colour = sequential(gi, ng);
        let point = |&i: &usize| Some((get_x(runs[i])?, runs[i].loss?));
        let pts: Vec<(f64, f64)> = members
            .iter()
            .filter(|&&i| !is_excluded(runs[i]))
            .filter_map(point)
            .collect();
        let left_out: Vec<(f64, f64)> = members
            .iter()
            .filter(|&&i| is_excluded(runs[i]))
            .filter_map(point)
            .collect();
        let other = if x == Variable::N { "D" } else { "N" };
        chart.series.push(Series::points(
            Some(format!("{other} {} {}", equals_sign(binned), sci(*value))),
            colour,
            Shape::Dot,
            pts,
        ));
        if !left_out.is_empty() {
            chart
                .series
                .push(Series::points(None, colour, Shape::Ring, left_out));
        }
        if let Some((_, law)) = &chinchilla {
            let at = |v: f64| {
                if x == Variable::N {
                    (v, *value)
                } else {
                    (*value, v)
                }
            };
            chart.series.extend(fitted_curve(
                None,
                colour,
                false,
                law,
                &chinchilla_band,
                &grid,
                |l, v| {
                    let (n, d) = at(v);
                    Some(l.predict(n, d))
                },
            ));
        }
    }
    if let Some((id, _)) = &chinchilla {
        chart.series.push(Series::line(
            Some(format!("{id} (chinchilla)")),
            DARK,
            false,
            Vec::new(),
        ));
    }
    let single = if x == Variable::N {
        FormKind::PowerN
    } else {
        FormKind::PowerD
    };
    let mut single_banded = false;
    for (k, fit) in g.fits.iter().enumerate() {
        let Some(law) = Law::of(&fit.doc) else {
            continue;
        };
        if law.kind() != single {
            continue;
        }
        // A single-variable fit covers one series (the fit refuses pooled
        // runs): draw it in that series' colour so the two read together.
        let series = fit_group(fit, x).and_then(|value| {
            groups
                .iter()
                .position(|(g, _)| (g - value).abs() <= 1e-9 * value.abs())
                .map(|gi| (gi, value))
        });
        let (colour, label) = match series {
            Some((gi, value)) => (
                sequential(gi, ng),
                // The stage name, not the instance id: the id repeats the
                // group's value, which the label shows once, and a long label
                // is cut at the figure's edge.
                format!(
                    "{} ({}, {} = {})",
                    fit.stage,
                    single.name(),
                    if x == Variable::N { "D" } else { "N" },
                    sci(value)
                ),
            ),
            None => (
                categorical(k + 1),
                format!("{} ({})", fit.id, single.name()),
            ),
        };
        let replicates = Law::replicates(&fit.doc);
        single_banded |= !replicates.is_empty();
        chart.series.extend(fitted_curve(
            Some(label),
            colour,
            true,
            &law,
            &replicates,
            &grid,
            |l, v| {
                Some(if x == Variable::N {
                    l.predict(v, f64::NAN)
                } else {
                    l.predict(f64::NAN, v)
                })
            },
        ));
    }
    if let Some(e) = g.reference_e {
        chart
            .series
            .push(Series::hline(Some(format!("true E = {}", sci(e))), GREY, e));
    }
    Some(Figure {
        stem: stem.to_string(),
        caption: format!(
            "{} against {name} (log-log); colour is the other variable{}. Solid lines are the chinchilla fit at each series' value{}, dashed lines single-variable fits (one per series, in its colour){}{}.",
            labels.loss(),
            if excluded.is_empty() { "" } else { "; rings are runs a fit excluded" },
            if chinchilla.is_some() && !chinchilla_band.is_empty() {
                " (thin lines: its 95% bootstrap band)"
            } else {
                ""
            },
            if single_banded {
                ", each with thin dashes bounding its 95% bootstrap band"
            } else {
                ""
            },
            if g.reference_e.is_some() { ", grey dashes the data's irreducible loss" } else { "" }
        ),
        chart,
    })
}

/// The bootstrap replicates of the first fit of a form (what [`law_of`] draws).
fn replicates_of(g: &Gathered, kind: FormKind) -> Vec<Law> {
    g.fits
        .iter()
        .find(|f| Law::of(&f.doc).is_some_and(|l| l.kind() == kind))
        .map(|f| Law::replicates(&f.doc))
        .unwrap_or_default()
}

/// A band's two bounds as thin unlabelled lines in the curve's colour and
/// style (dashed around a dashed curve).
fn band_lines(colour: Colour, dashed: bool, band: Option<Band>) -> Vec<Series> {
    let Some((lo, hi)) = band else {
        return Vec::new();
    };
    [lo, hi]
        .into_iter()
        .map(|pts| {
            let mut line = Series::line(None, colour, dashed, pts);
            line.mark = Mark::Line { dashed, width: 1 };
            line
        })
        .collect()
}

/// A fitted curve along `grid` (`value` of `law` at each x) and, with enough
/// bootstrap `replicates`, the thin lines of its 95% band in the same colour:
/// every fitted curve of every figure is drawn here, so all get their bands
/// the same way.
fn fitted_curve(
    label: Option<String>,
    colour: Colour,
    dashed: bool,
    law: &Law,
    replicates: &[Law],
    grid: &[f64],
    value: impl Fn(&Law, f64) -> Option<f64>,
) -> Vec<Series> {
    let points = grid
        .iter()
        .filter_map(|&x| Some((x, value(law, x)?)))
        .collect();
    let mut out = vec![Series::line(label, colour, dashed, points)];
    out.extend(band_lines(colour, dashed, band(replicates, grid, value)));
    out
}

/// The one value of the variable a single-variable fit does not model (D
/// for a fit against N) shared by every run it fitted, if they share one.
fn fit_group(fit: &super::gather::FitInput, x: Variable) -> Option<f64> {
    let mut values: Vec<f64> = fit
        .predictions
        .iter()
        .filter(|p| p.role == "fit")
        .filter_map(|p| if x == Variable::N { p.d } else { p.n })
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup_by(|a, b| (*a - *b).abs() <= 1e-9 * b.abs());
    (values.len() == 1).then(|| values[0])
}

/// Loss against compute: the runs, the lowest loss reached within each
/// compute, the fitted compute-optimal frontier, the budgets' optima and E.
fn loss_vs_c(g: &Gathered, labels: &Labels) -> Option<Figure> {
    let runs: Vec<&RunRow> = g
        .runs
        .iter()
        .filter(|r| plottable(r) && r.c.is_some_and(|c| c > 0.0))
        .collect();
    if runs.len() < 2 {
        return None;
    }
    let mut chart = Chart::new("Loss vs compute", &labels.c(), &labels.loss());
    chart.legend_title = Some("N (parameters)".into());
    let keyed: Vec<(usize, f64)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.n?)))
        .collect();
    let (groups, binned) = group_at_most(&keyed, MAX_SERIES);
    for (gi, (n, members)) in groups.iter().enumerate() {
        let pts = members
            .iter()
            .filter_map(|&i| Some((runs[i].c?, runs[i].loss?)))
            .collect();
        chart.series.push(Series::points(
            Some(format!("N {} {}", equals_sign(binned), sci(*n))),
            sequential(gi, groups.len()),
            Shape::Dot,
            pts,
        ));
    }
    // Empirical frontier: the lowest loss any run reached with at most C.
    let mut by_c: Vec<(f64, f64)> = runs.iter().filter_map(|r| Some((r.c?, r.loss?))).collect();
    by_c.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = f64::INFINITY;
    let mut envelope = Vec::new();
    for (c, l) in by_c {
        if l < best {
            if best.is_finite() {
                envelope.push((c, best));
            }
            best = l;
            envelope.push((c, l));
        }
    }
    chart.series.push(Series::line(
        Some("lowest loss at <= C".into()),
        GREY,
        false,
        envelope,
    ));
    let cs: Vec<f64> = runs.iter().filter_map(|r| r.c).collect();
    let (lo, hi) = (
        cs.iter().copied().fold(f64::INFINITY, f64::min),
        cs.iter().copied().fold(0.0, f64::max),
    );
    let mut fitted_e = None;
    let (mut banded, mut power_c_banded) = (false, false);
    for (k, fit) in g.fits.iter().enumerate() {
        let Some(law) = Law::of(&fit.doc) else {
            continue;
        };
        let budgets: Vec<f64> = fit.doc.derived.budgets.iter().map(|b| b.c).collect();
        let top = budgets.iter().copied().fold(hi * 2.0, f64::max);
        let grid = log_space(lo / 2.0, top, 100);
        match law.kind() {
            FormKind::Chinchilla => {
                let replicates = Law::replicates(&fit.doc);
                banded |= !replicates.is_empty();
                chart.series.extend(fitted_curve(
                    Some(format!("compute-optimal frontier ({})", fit.id)),
                    DARK,
                    false,
                    &law,
                    &replicates,
                    &grid,
                    |l, c| l.optimum(c).map(|(_, _, l)| l),
                ));
            }
            FormKind::PowerC => {
                let replicates = Law::replicates(&fit.doc);
                power_c_banded |= !replicates.is_empty();
                chart.series.extend(fitted_curve(
                    Some(format!("{} (power_c)", fit.id)),
                    categorical(k + 1),
                    true,
                    &law,
                    &replicates,
                    &grid,
                    |l, c| Some(l.predict_c(c)),
                ));
            }
            _ => continue,
        }
        if !budgets.is_empty() {
            let pts = fit
                .doc
                .derived
                .budgets
                .iter()
                .map(|b| (b.c, b.loss.value))
                .collect();
            chart.series.push(Series::points(
                Some(format!("optimum at budgets ({})", fit.id)),
                HIGHLIGHT,
                Shape::Triangle,
                pts,
            ));
        }
        if fit.doc.e_is_free() && fitted_e.is_none() {
            fitted_e = Some((fit.id.clone(), law.e()));
        }
    }
    if let Some((id, e)) = fitted_e.filter(|(_, e)| *e > 0.0) {
        chart.series.push(Series::hline(
            Some(format!("fitted E = {} ({id})", sci(e))),
            DARK,
            e,
        ));
    }
    if let Some(e) = g.reference_e {
        chart
            .series
            .push(Series::hline(Some(format!("true E = {}", sci(e))), GREY, e));
    }
    Some(Figure {
        stem: "loss_vs_c".into(),
        caption: format!(
            "Loss against training compute. The solid dark line is the fitted compute-optimal frontier (the best N and D = C/6N at each C){}, triangles the optima at the requested budgets, dashes the fitted irreducible loss E it approaches{}.",
            if banded { ", the thin dark lines its 95% bootstrap band" } else { "" },
            if power_c_banded {
                "; a dashed power_c curve has thin dashes of its colour bounding its 95% bootstrap band"
            } else {
                ""
            }
        ),
        chart,
    })
}

/// IsoFLOP profiles of one fit: its runs grouped into the fit's compute
/// bands, loss against N in each, with the fitted law along the band and the
/// parabola's minimum.
fn isoflop(labels: &Labels, fit: &super::gather::FitInput) -> Option<Figure> {
    let iso = fit.doc.isoflop.as_ref()?;
    if iso.bands.is_empty() {
        return None;
    }
    let centres: Vec<f64> = iso.bands.iter().map(|b| b.c.log10()).collect();
    let min_gap = centres
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(f64::INFINITY, f64::min);
    let tolerance = if min_gap.is_finite() {
        min_gap / 2.0
    } else {
        0.25
    };
    let runs: Vec<&Prediction> = fit
        .predictions
        .iter()
        .filter(|p| p.role == "fit" && p.n.is_some() && p.c.is_some() && p.loss.is_some())
        .collect();
    let law = Law::of(&fit.doc);
    let mut chart = Chart::new(
        &format!("IsoFLOP profiles ({})", fit.id),
        &labels.n(),
        &labels.loss(),
    );
    chart.legend_title = Some("compute band".into());
    let nb = iso.bands.len();
    let mut minima = Vec::new();
    for (bi, band) in iso.bands.iter().enumerate() {
        let colour = sequential(bi, nb);
        let members: Vec<&&Prediction> = runs
            .iter()
            .filter(|p| {
                let lc = p.c.unwrap_or(f64::NAN).log10();
                let nearest = centres
                    .iter()
                    .enumerate()
                    .min_by(|a, b| (a.1 - lc).abs().total_cmp(&(b.1 - lc).abs()))
                    .map(|(i, _)| i);
                nearest == Some(bi) && (centres[bi] - lc).abs() <= tolerance
            })
            .collect();
        if members.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = members
            .iter()
            .filter_map(|p| Some((p.n?, p.loss?)))
            .collect();
        let (nlo, nhi) = pts.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
        chart.series.push(Series::points(
            Some(format!(
                "C = {}{}",
                sci(band.c),
                if band.used { "" } else { " (unused)" }
            )),
            colour,
            Shape::Dot,
            pts,
        ));
        if let Some(law) = &law {
            let curve = log_space(nlo / 1.5, nhi * 1.5, 60)
                .into_iter()
                .map(|n| (n, law.predict(n, band.c / (6.0 * n))))
                .collect();
            chart.series.push(Series::line(None, colour, false, curve));
        }
        if let (Some(n), Some(l)) = (band.n_opt, band.loss_min) {
            minima.push((n, l));
        }
    }
    if law.is_some() {
        chart.series.push(Series::line(
            Some("fitted law at the band's C".into()),
            DARK,
            false,
            Vec::new(),
        ));
    }
    if !minima.is_empty() {
        chart.series.push(Series::points(
            Some("parabola minimum".into()),
            HIGHLIGHT,
            Shape::Triangle,
            minima,
        ));
    }
    Some(Figure {
        stem: format!("isoflop_{}", slug(&fit.id)),
        caption: format!(
            "IsoFLOP profiles of {}: runs grouped by compute, loss against N within each band. Triangles mark each band's parabola minimum (Hoffmann et al.'s Approach 2); lines are the parametric fit at the band's compute.",
            fit.id
        ),
        chart,
    })
}

/// Training loss curves of every run, coloured by model size.
fn curves(g: &Gathered, labels: &Labels) -> Option<Figure> {
    if g.curves.is_empty() {
        return None;
    }
    let keyed: Vec<(usize, f64)> = g.curves.iter().enumerate().map(|(i, c)| (i, c.n)).collect();
    let (groups, binned) = group_at_most(&keyed, MAX_SERIES);
    let mut chart = Chart::new(
        "Training loss curves",
        "training step",
        &format!("training loss{}", labels.unit()),
    );
    chart.legend_title = Some("N (parameters)".into());
    // D is the line's style: solid for the smallest data size, dashed for the
    // next, alternating, and thicker as D grows, so two runs of one size but
    // different D never look alike.
    let d_values = {
        let mut ds: Vec<f64> = g
            .curves
            .iter()
            .map(|c| c.d)
            .filter(|d| d.is_finite())
            .collect();
        ds.sort_by(f64::total_cmp);
        ds.dedup();
        ds
    };
    let d_style = |d: f64| {
        let rank = d_values.iter().position(|v| *v == d).unwrap_or(0);
        (rank % 2 == 1, 1 + (rank as u32).min(3))
    };
    for (gi, (n, members)) in groups.iter().enumerate() {
        let colour = sequential(gi, groups.len());
        for (k, &i) in members.iter().enumerate() {
            let label = (k == 0).then(|| format!("N {} {}", equals_sign(binned), sci(*n)));
            let (dashed, width) = d_style(g.curves[i].d);
            let mut line = Series::line(label, colour, dashed, smooth(&g.curves[i].points, 60));
            line.mark = Mark::Line { dashed, width };
            chart.series.push(line);
        }
    }
    if d_values.len() > 1 {
        for &d in &d_values {
            let (dashed, width) = d_style(d);
            let mut key = Series::line(Some(format!("D = {}", sci(d))), GREY, dashed, Vec::new());
            key.mark = Mark::Line { dashed, width };
            chart.series.push(key);
        }
    }
    Some(Figure {
        stem: "loss_curves".into(),
        caption: format!(
            "Training loss of every run against step (log-log; steps counted from 1), averaged in log-spaced windows; colour is model size{}. Runs with more data train for more steps.",
            if d_values.len() > 1 {
                ", line style the data size D (solid and dashed alternate, thicker for larger D)"
            } else {
                ""
            }
        ),
        chart,
    })
}

/// Averages a noisy curve within `bins` log-spaced windows of `step + 1`.
pub fn smooth(points: &[(f64, f64)], bins: usize) -> Vec<(f64, f64)> {
    let bins = bins.max(1);
    let finite: Vec<(f64, f64)> = points
        .iter()
        .map(|&(s, l)| (s + 1.0, l))
        .filter(|p| p.0 > 0.0 && p.1.is_finite() && p.1 > 0.0)
        .collect();
    let Some(last) = finite.last().map(|p| p.0) else {
        return Vec::new();
    };
    let width = last.ln() / bins as f64;
    let mut out: Vec<(f64, f64)> = Vec::new();
    let (mut current, mut steps, mut losses, mut count) = (None, 0.0, 0.0, 0usize);
    for (s, l) in finite {
        // The last step would open a window of its own; it joins the last one.
        let bin = if width > 0.0 {
            ((s.ln() / width) as usize).min(bins - 1)
        } else {
            0
        };
        if current != Some(bin) && count > 0 {
            out.push((steps / count as f64, losses / count as f64));
            (steps, losses, count) = (0.0, 0.0, 0);
        }
        current = Some(bin);
        steps += s;
        losses += l;
        count += 1;
    }
    if count > 0 {
        out.push((steps / count as f64, losses / count as f64));
    }
    out
}

/// A fit on loss curves: every held-out point of every run against D, one
/// colour per N; dots entered the fit, crosses were left out (early, or not
/// the end of a WSD cooldown).
fn curve_points(labels: &Labels, fit: &super::gather::FitInput) -> Option<Figure> {
    let report = fit.doc.curve.as_ref()?;
    let mut chart = Chart::new(
        &format!("Curve points ({})", fit.id),
        &labels.d(),
        &format!("held-out loss{}", labels.unit()),
    );
    chart.legend_title = Some("N".into());
    let mut ns: Vec<f64> = fit.predictions.iter().filter_map(|p| p.n).collect();
    ns.sort_by(f64::total_cmp);
    ns.dedup();
    for (k, n) in ns.iter().enumerate() {
        let of = |in_fit: bool| -> Vec<(f64, f64)> {
            fit.predictions
                .iter()
                .filter(|p| p.n == Some(*n) && (p.role == "fit") == in_fit)
                .filter_map(|p| Some((p.d?, p.loss?)))
                .collect()
        };
        chart.series.push(Series::points(
            Some(format!("N = {}", sci(*n))),
            categorical(k),
            Shape::Dot,
            of(true),
        ));
        chart.series.push(Series::points(
            None,
            categorical(k),
            Shape::Cross,
            of(false),
        ));
    }
    Some(Figure {
        stem: format!("curve_points_{}", slug(&fit.id)),
        caption: format!(
            "Every held-out evaluation of the runs behind {}: dots are the {} points that entered the fit, crosses the {} left out (early in their run, or not the end of a WSD cooldown).",
            fit.id, report.points, report.dropped
        ),
        chart,
    })
}

/// Observed against predicted loss for one fit, the extrapolation hold-out
/// highlighted with the prediction made without it.
fn observed_vs_predicted(labels: &Labels, fit: &super::gather::FitInput) -> Option<Figure> {
    let mut chart = Chart::new(
        &format!(
            "Observed vs predicted ({}, {})",
            fit.id,
            fit.doc.form.name()
        ),
        &format!("observed {}", labels.loss()),
        &format!("predicted loss{}", labels.unit()),
    );
    chart.square = true;
    chart.legend_title = Some("runs".into());
    chart.series.push(Series {
        label: Some("perfect prediction".into()),
        colour: GREY,
        mark: super::plot::Mark::Diagonal,
        points: Vec::new(),
    });
    let pick = |f: &dyn Fn(&Prediction) -> bool, y: &dyn Fn(&Prediction) -> Option<f64>| {
        fit.predictions
            .iter()
            .filter(|p| f(p))
            .filter_map(|p| Some((p.loss?, y(p)?)))
            .collect::<Vec<_>>()
    };
    let fitted = pick(&|p| p.role == "fit" && !p.held_out, &|p| p.predicted);
    let held = pick(&|p| p.held_out, &|p| p.holdout_predicted);
    let excluded = pick(&|p| p.role != "fit", &|p| p.predicted);
    chart.series.push(Series::points(
        Some("fitted (full fit)".into()),
        categorical(0),
        Shape::Dot,
        fitted,
    ));
    if !held.is_empty() {
        chart.series.push(Series::points(
            Some("held out (fit on smaller runs)".into()),
            HIGHLIGHT,
            Shape::Triangle,
            held,
        ));
    }
    if !excluded.is_empty() {
        chart.series.push(Series::points(
            Some("excluded from the fit".into()),
            GREY,
            Shape::Cross,
            excluded,
        ));
    }
    Some(Figure {
        stem: format!("observed_vs_predicted_{}", slug(&fit.id)),
        caption: format!(
            "Observed loss against the {} fit's prediction for every run. Red triangles are the extrapolation check: the largest runs, predicted by a fit that did not see them.",
            fit.id
        ),
        chart,
    })
}

/// A file-name-safe form of an instance id (`fit[d=1]` -> `fit_d_1`).
pub fn slug(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.trim_matches('_').to_string()
}

/// A design's N* interval after each round against the FLOPs spent on runs,
/// the interval it expects after its proposal (dashed) and, for simulated
/// runs, the true N*.
fn design_rounds(g: &Gathered, design: &super::gather::DesignInput) -> Option<Figure> {
    let d = &design.doc;
    if d.history.is_empty() {
        return None;
    }
    let mut chart = Chart::new(
        &format!(
            "N* at {} FLOPs, round by round ({})",
            sci(d.budget),
            design.id
        ),
        "FLOPs spent on runs",
        "compute-optimal N* (parameters)",
    );
    chart.legend_title = Some("round".into());
    let n = d.history.len() + 1;
    let mut bar = |label: String, colour, dashed: bool, x: f64, e: &crate::fit::Estimate| {
        if let (Some(lo), Some(hi)) = (e.lo, e.hi) {
            chart.series.push(Series::points(
                Some(label),
                colour,
                Shape::Dot,
                vec![(x, e.value)],
            ));
            chart.series.push(Series::points(
                None,
                colour,
                Shape::Cross,
                vec![(x, lo), (x, hi)],
            ));
            chart
                .series
                .push(Series::line(None, colour, dashed, vec![(x, lo), (x, hi)]));
        }
    };
    for (i, round) in d.history.iter().enumerate() {
        bar(
            format!("{} ({} runs)", round.round, round.runs),
            sequential(i, n),
            false,
            round.flops,
            &round.targets.n_opt,
        );
    }
    let last = d.history.last().map_or(0.0, |r| r.flops);
    if !d.runs.is_empty() {
        bar(
            format!("{} expected", d.round),
            sequential(n - 1, n),
            true,
            last + d.spent,
            &d.expected.n_opt,
        );
    }
    if let Some(law) = &g.true_law {
        chart.series.push(Series::hline(
            Some("true N*".into()),
            GREY,
            law.optimum(d.budget).0,
        ));
    }
    Some(Figure {
        stem: format!("design_rounds_{}", slug(&design.id)),
        caption: "Dots: the fit's N* after each round of runs; bars: its 95% bootstrap interval. The dashed bar is the interval the design expects once its proposed runs are in; grey dashes mark the true N* of simulated runs.".into(),
        chart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_averages_within_log_windows() {
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|s| (s as f64, 1.0 + (s % 2) as f64))
            .collect();
        let out = smooth(&pts, 20);
        assert!(out.len() <= 21 && out.len() > 5, "{}", out.len());
        // Late windows hold many steps: the alternating 1, 2 averages to 1.5.
        let (_, l) = out[out.len() - 1];
        assert!((l - 1.5).abs() < 0.01, "{l}");
        assert_eq!(out[0], (1.0, 1.0));
    }

    /// Thin band lines (width 1) in `colour` among a chart's series.
    fn band_lines_in(chart: &Chart, colour: Colour) -> usize {
        chart
            .series
            .iter()
            .filter(|s| {
                s.colour == colour
                    && s.label.is_none()
                    && matches!(s.mark, Mark::Line { width: 1, .. })
                    && !s.points.is_empty()
            })
            .count()
    }

    /// A bootstrapped fit of `form` to runs at one D along N (power_n and
    /// power_c) with a little deterministic noise.
    fn bootstrapped(
        kind: FormKind,
        runs: &[crate::fit::Observation],
    ) -> super::super::gather::FitInput {
        use crate::fit::bootstrap::BootstrapSettings;
        use crate::fit::{Analysis, Form, Hooks, Irreducible};
        let mut a = Analysis::new(Form::new(kind, Irreducible::Fixed(0.5)));
        a.bootstrap = Some(BootstrapSettings {
            replicates: 40,
            random_starts: 1,
            seed: 0,
        });
        let ids: Vec<String> = (0..runs.len()).map(|i| format!("run{i}")).collect();
        let doc = a.run(&ids, runs, &Hooks::NONE).expect("fits");
        assert_eq!(doc.band_log_parameters.len(), 40);
        super::super::gather::FitInput {
            stage: "fit".into(),
            id: format!("fit_{}", kind.name()),
            doc,
            predictions: Vec::new(),
        }
    }

    #[test]
    fn single_variable_and_compute_fits_get_bootstrap_bands() {
        use super::super::gather::{Compute, RunSource};
        let d = 1e5;
        let runs: Vec<crate::fit::Observation> = (0..8)
            .map(|i| {
                let n = 100.0 * 2f64.powi(i);
                let wobble = 1.0 + 0.01 * if i % 2 == 0 { 1.0 } else { -1.0 };
                crate::fit::Observation {
                    n,
                    d,
                    c: 6.0 * n * d,
                    loss: (0.5 + 20.0 / n.powf(0.5)) * wobble,
                }
            })
            .collect();
        let rows = runs
            .iter()
            .enumerate()
            .map(|(i, r)| RunRow {
                id: format!("run{i}"),
                train_id: None,
                n: Some(r.n),
                d: Some(r.d),
                c: Some(r.c),
                loss: Some(r.loss),
                train_loss: None,
                status: "ok".into(),
                time_s: None,
                params: serde_json::Value::Null,
            })
            .collect();
        let g = Gathered {
            inputs: Vec::new(),
            runs: rows,
            run_source: RunSource::Eval,
            curves: Vec::new(),
            fits: vec![
                bootstrapped(FormKind::PowerN, &runs),
                bootstrapped(FormKind::PowerC, &runs),
            ],
            designs: Vec::new(),
            true_law: None,
            reference_e: None,
            task: None,
            d_unit: None,
            compute: Compute::default(),
        };
        let labels = Labels {
            loss_unit: None,
            loss_kind: String::new(),
            d_unit: "examples".into(),
        };
        let figs = figures(&g, &labels);
        let find = |stem: &str| -> usize {
            figs.iter()
                .position(|f| f.stem == stem)
                .unwrap_or_else(|| panic!("no figure {stem}"))
        };
        // The power_n fit's runs have no predictions here, so its colour is
        // the fit's own (categorical 1); its curve is dashed, its band thin.
        let n_chart = &figs[find("loss_vs_n")].chart;
        assert_eq!(band_lines_in(n_chart, categorical(1)), 2);
        let c_fig = &figs[find("loss_vs_c")];
        assert_eq!(band_lines_in(&c_fig.chart, categorical(2)), 2);
        assert!(c_fig.caption.contains("power_c curve has thin dashes"));
        // Each band brackets its fitted curve (to within 1%) where it covers it.
        let curve = n_chart
            .series
            .iter()
            .find(|s| s.label.as_deref() == Some("fit_power_n (power_n)"))
            .expect("the power_n curve");
        let bands: Vec<&Series> = n_chart
            .series
            .iter()
            .filter(|s| s.colour == categorical(1) && s.label.is_none())
            .collect();
        for (x, y) in &curve.points {
            let at = |s: &Series| s.points.iter().find(|p| p.0 == *x).map(|p| p.1);
            if let (Some(lo), Some(hi)) = (at(bands[0]), at(bands[1])) {
                assert!(
                    lo <= hi && lo <= *y * 1.01 && *y <= hi * 1.01,
                    "{lo} {y} {hi}"
                );
            }
        }
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("fit[d=1000,width=64]"), "fit_d_1000_width_64");
        assert_eq!(slug("fit"), "fit");
    }
}
