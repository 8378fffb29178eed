//! Log-log charts as data ([`Chart`]) and their rendering with plotters into SVG
//! and PNG.
//!
//! Figures describe what to draw (series of points or lines, with colours and
//! labels); this file decides how: both axes logarithmic with ticks chosen here
//! (plotters' own log ticks vanish on ranges narrower than a decade, which loss
//! axes usually are), `1e6`-style tick labels, and the legend in its own panel to
//! the right of the plot so it never covers data. Text is drawn with DejaVu Sans
//! embedded in the binary (the `dejavu` crate, registered with plotters'
//! `ab_glyph` backend), so rendering needs no system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use crate::numfmt::sci;

/// Pixel size of every figure.
pub const SIZE: (u32, u32) = (900, 560);

/// An sRGB colour.
pub type Colour = RGBColor;

/// Categorical colours (Tableau 10), for series without an order.
const CATEGORICAL: [Colour; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Anchors of the viridis colour map (dark purple to yellow), for ordered
/// series such as model sizes. The last anchor is darkened from viridis' pale
/// yellow so the largest size stays visible on white.
const SEQUENTIAL: [(f64, f64, f64); 5] = [
    (68.0, 1.0, 84.0),
    (59.0, 82.0, 139.0),
    (33.0, 145.0, 140.0),
    (94.0, 201.0, 98.0),
    (200.0, 180.0, 20.0),
];

pub const GREY: Colour = RGBColor(150, 150, 150);
pub const DARK: Colour = RGBColor(40, 40, 40);
pub const HIGHLIGHT: Colour = RGBColor(214, 39, 40);

/// The `i`-th categorical colour.
/// How far (a factor) asymptotes and curves may stretch the y axis beyond the
/// measured points.
pub const MAX_STRETCH: f64 = 10.0;

pub fn categorical(i: usize) -> Colour {
    CATEGORICAL[i % CATEGORICAL.len()]
}

/// Colour of item `i` of `n` ordered items (smallest first).
pub fn sequential(i: usize, n: usize) -> Colour {
    let t = if n <= 1 {
        0.5
    } else {
        i as f64 / (n - 1) as f64
    };
    let pos = t * (SEQUENTIAL.len() - 1) as f64;
    let k = (pos.floor() as usize).min(SEQUENTIAL.len() - 2);
    let f = pos - k as f64;
    let (a, b) = (SEQUENTIAL[k], SEQUENTIAL[k + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Marker shapes for point series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Dot,
    Ring,
    Triangle,
    Cross,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    Points {
        shape: Shape,
        size: u32,
    },
    Line {
        dashed: bool,
        width: u32,
    },
    /// A horizontal line across the whole x range at the series' one y value.
    HLine {
        dashed: bool,
    },
    /// The diagonal y = x across the chart (observed vs predicted).
    Diagonal,
}

/// One thing drawn on a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry; unlabelled series do not appear in the legend.
    pub label: Option<String>,
    pub colour: Colour,
    pub mark: Mark,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn points(
        label: Option<String>,
        colour: Colour,
        shape: Shape,
        pts: Vec<(f64, f64)>,
    ) -> Self {
        Series {
            label,
            colour,
            mark: Mark::Points { shape, size: 5 },
            points: pts,
        }
    }

    pub fn line(label: Option<String>, colour: Colour, dashed: bool, pts: Vec<(f64, f64)>) -> Self {
        Series {
            label,
            colour,
            mark: Mark::Line { dashed, width: 2 },
            points: pts,
        }
    }

    pub fn hline(label: Option<String>, colour: Colour, y: f64) -> Self {
        Series {
            label,
            colour,
            mark: Mark::HLine { dashed: true },
            points: vec![(f64::NAN, y)],
        }
    }
}

/// A log-log chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Heading of the legend panel (`D (examples)`).
    pub legend_title: Option<String>,
    pub series: Vec<Series>,
    /// Whether both axes share one range (observed vs predicted loss).
    pub square: bool,
}

impl Chart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Chart {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            legend_title: None,
            series: Vec::new(),
            square: false,
        }
    }

    /// Whether anything with data would be drawn.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| {
            matches!(s.mark, Mark::Points { .. } | Mark::Line { .. })
                && s.points.iter().any(|p| usable(*p))
        })
    }

    /// The padded data range of each axis, in data units. Point series set the
    /// range; lines are clipped to it, so a fitted curve extrapolated far out does
    /// not squash the data. Horizontal lines (E) and curves within the points'
    /// x range extend the y range, but only up to [`MAX_STRETCH`] beyond the
    /// points: a degenerate fit's E of 1e-68 must not flatten the data into a
    /// line (it is left off the plot and named by [`Chart::off_plot_lines`]).
    pub fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for s in &self.series {
            if let Mark::Points { .. } = s.mark {
                for &(x, y) in s.points.iter().filter(|p| usable(**p)) {
                    xs.push(x);
                    ys.push(y);
                }
            }
        }
        let near = match (min(&ys), max(&ys)) {
            (Some(lo), Some(hi)) => (lo / MAX_STRETCH, hi * MAX_STRETCH),
            _ => (0.0, f64::INFINITY),
        };
        let within = |y: f64| y > 0.0 && y >= near.0 && y <= near.1;
        let hlines: Vec<f64> = self
            .series
            .iter()
            .filter(|s| matches!(s.mark, Mark::HLine { .. }))
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| within(*y))
            .collect();
        ys.extend(hlines);
        // A chart of lines only (training curves) is ranged by its lines.
        if xs.is_empty() {
            for s in self
                .series
                .iter()
                .filter(|s| matches!(s.mark, Mark::Line { .. }))
            {
                for &(x, y) in s.points.iter().filter(|p| usable(**p)) {
                    xs.push(x);
                    ys.push(y);
                }
            }
        } else if let (Some(xlo), Some(xhi)) = (min(&xs), max(&xs)) {
            // Lines within the points' x range add to the y range (a fitted
            // curve dipping below every point should stay visible).
            for s in &self.series {
                if let Mark::Line { .. } = s.mark {
                    ys.extend(
                        s.points
                            .iter()
                            .filter(|p| usable(**p) && p.0 >= xlo && p.0 <= xhi)
                            .map(|p| p.1)
                            .filter(|y| within(*y)),
                    );
                }
            }
        }
        if self.square {
            let all: Vec<f64> = xs.iter().chain(ys.iter()).copied().collect();
            let r = padded(min(&all), max(&all));
            return (r, r);
        }
        (padded(min(&xs), max(&xs)), padded(min(&ys), max(&ys)))
    }

    /// Labels of the horizontal lines outside the plotted y range, each
    /// marked as such in the legend; the caller says so in the caption.
    pub fn off_plot_lines(&mut self) -> Vec<String> {
        let (_, (y0, y1)) = self.ranges();
        let mut off = Vec::new();
        for s in &mut self.series {
            if !matches!(s.mark, Mark::HLine { .. }) {
                continue;
            }
            if s.points.iter().all(|p| p.1 >= y0 && p.1 <= y1) {
                continue;
            }
            if let Some(label) = &mut s.label {
                off.push(label.clone());
                label.push_str(" (off the plot)");
            }
        }
        off
    }

    fn legend(&self) -> Vec<&Series> {
        self.series.iter().filter(|s| s.label.is_some()).collect()
    }
}

fn usable((x, y): (f64, f64)) -> bool {
    x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0
}

fn min(v: &[f64]) -> Option<f64> {
    v.iter()
        .copied()
        .fold(None, |m, x| Some(m.map_or(x, |m: f64| m.min(x))))
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter()
        .copied()
        .fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
}

/// A range padded by 6% of its width in log space on each side (a factor of
/// 1.5 either way for a single value).
fn padded(lo: Option<f64>, hi: Option<f64>) -> (f64, f64) {
    match (lo, hi) {
        (Some(lo), Some(hi)) if hi > lo => {
            let (a, b) = (lo.ln(), hi.ln());
            let pad = (b - a) * 0.06;
            ((a - pad).exp(), (b + pad).exp())
        }
        (Some(v), _) => (v / 1.5, v * 1.5),
        _ => (0.1, 10.0),
    }
}

/// Tick values for a log axis on `[lo, hi]`: decades when the range spans
/// several, 1-2-5 or 1..9 multiples of powers of ten on narrower ranges, and
/// evenly spaced round numbers when even those give fewer than four ticks.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let sets: [&[f64]; 4] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        &[1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ];
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    for set in sets {
        let mut ticks: Vec<(f64, f64)> = (k0..=k1)
            .flat_map(|k| set.iter().map(move |&m| (m, m * 10f64.powi(k))))
            .filter(|(_, v)| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
            .collect();
        if set.len() == 1 {
            // Many decades: keep every second or third so labels do not collide.
            let stride = ticks.len().div_ceil(9);
            if stride > 1 {
                ticks = ticks.into_iter().step_by(stride).collect();
            }
        }
        let ticks = spaced(ticks, lo, hi);
        if ticks.len() >= 4 || (set.len() == 1 && ticks.len() >= 3) {
            return ticks;
        }
    }
    linear_ticks(lo, hi)
}

/// Closest two tick labels may sit on a log axis, as a fraction of its length:
/// the top of a decade crowds its ticks (8, 9 and 10 are 5% of a decade's
/// width apart), and their labels ran into each other (`9e41e5`).
const MIN_TICK_GAP: f64 = 0.07;

/// Ticks `(mantissa, value)` with no two closer than [`MIN_TICK_GAP`] of the
/// axis `[lo, hi]` in log space, sorted. Rounder ticks win a conflict: powers of
/// ten first, then 2 and 5, then the other multiples.
fn spaced(ticks: Vec<(f64, f64)>, lo: f64, hi: f64) -> Vec<f64> {
    let rank = |m: f64| {
        if m == 1.0 {
            0
        } else if m == 2.0 || m == 5.0 {
            1
        } else if m.fract() == 0.0 {
            2
        } else {
            3
        }
    };
    let mut by_rank = ticks;
    by_rank.sort_by_key(|&(m, _)| rank(m));
    let gap = MIN_TICK_GAP * (hi / lo).log10();
    let mut kept: Vec<f64> = Vec::new();
    for (_, v) in by_rank {
        if kept.iter().all(|k| (v / k).log10().abs() >= gap) {
            kept.push(v);
        }
    }
    kept.sort_by(f64::total_cmp);
    kept
}

/// Round numbers evenly spaced on `[lo, hi]`, four to eight of them.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() as i64;
    let end = (hi / step).floor() as i64;
    (start..=end)
        .map(|i| i as f64 * step)
        .filter(|v| *v > 0.0)
        .collect()
}

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: {message}")]
    Failed { path: String, message: String },
    #[error(transparent)]
    Interrupted(#[from] super::Interrupted),
}

/// Registers the embedded font once per process.
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An invalid font would only surface as a drawing error naming the
        // missing font, which is what the caller reports.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Writes `chart` as `<stem>.svg` and `<stem>.png` in `dir`; returns the SVG text
/// (for inlining into HTML). `stop` is polled between series and between
/// batches of [`POINTS_PER_POLL`] points: a chart of a million runs takes
/// seconds to draw.
pub fn write(
    chart: &Chart,
    dir: &Path,
    stem: &str,
    stop: super::Stop,
) -> Result<String, PlotError> {
    register_fonts();
    let svg_path = dir.join(format!("{stem}.svg"));
    let png_path = dir.join(format!("{stem}.png"));
    let fail = |path: &Path, e: &dyn std::fmt::Display| PlotError::Failed {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let interrupted = || {
        if stop() {
            Err(PlotError::Interrupted(super::Interrupted))
        } else {
            Ok(())
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(chart, &root, stop).map_err(|e| fail(&svg_path, &e))?;
        interrupted()?;
        root.present().map_err(|e| fail(&svg_path, &e))?;
    }
    std::fs::write(&svg_path, &svg).map_err(|e| fail(&svg_path, &e))?;
    {
        let root = BitMapBackend::new(&png_path, SIZE).into_drawing_area();
        draw(chart, &root, stop).map_err(|e| fail(&png_path, &e))?;
        interrupted()?;
        root.present().map_err(|e| fail(&png_path, &e))?;
    }
    Ok(svg)
}

/// How many points are drawn between two polls of the stop flag.
pub const POINTS_PER_POLL: usize = 4096;

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Pixels per character of legend text (DejaVu Sans at 14 px averages ~7.5).
const LEGEND_CHAR_PX: u32 = 8;
const LEGEND_ROW_PX: i32 = 22;

/// Draws `chart` on `root`: the plot on the left, the legend panel on the right.
/// Returns early, with the drawing unfinished, once `stop` says so.
fn draw<DB: DrawingBackend>(
    chart: &Chart,
    root: &DrawingArea<DB, Shift>,
    stop: super::Stop,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (w, h) = root.dim_in_pixel();
    let legend = chart.legend();
    let longest = legend
        .iter()
        .filter_map(|s| s.label.as_ref().map(|l| l.chars().count()))
        .chain(chart.legend_title.iter().map(|t| t.chars().count()))
        .max()
        .unwrap_or(0) as u32;
    let legend_w = if legend.is_empty() {
        0
    } else {
        (longest * LEGEND_CHAR_PX + 60).clamp(120, w / 3)
    };
    let (plot_area, legend_area) = root.split_horizontally(w - legend_w);

    let ((x0, x1), (y0, y1)) = chart.ranges();
    let mut cc = ChartBuilder::on(&plot_area)
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
            (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)),
        )?;
    let fmt = |v: &f64| sci(*v);
    cc.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .bold_line_style(RGBColor(228, 228, 228))
        .light_line_style(TRANSPARENT)
        .max_light_lines(0)
        .draw()?;

    for s in &chart.series {
        if stop() {
            return Ok(());
        }
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| usable(*p)).collect();
        let style = ShapeStyle::from(&s.colour);
        match s.mark {
            Mark::Points { shape, size } => {
                for batch in pts.chunks(POINTS_PER_POLL) {
                    if stop() {
                        return Ok(());
                    }
                    draw_points(&mut cc, batch, shape, size, s.colour)?;
                }
            }
            Mark::Line { dashed, width } => {
                // Clip to the x range ourselves: plotters draws outside the plot.
                let inside: Vec<(f64, f64)> = pts
                    .into_iter()
                    .filter(|p| p.0 >= x0 && p.0 <= x1 && p.1 >= y0 && p.1 <= y1)
                    .collect();
                if dashed {
                    cc.draw_series(DashedLineSeries::new(
                        inside,
                        9,
                        6,
                        style.stroke_width(width),
                    ))?;
                } else {
                    cc.draw_series(LineSeries::new(inside, style.stroke_width(width)))?;
                }
            }
            Mark::HLine { dashed } => {
                for &(_, y) in s
                    .points
                    .iter()
                    .filter(|p| p.1 > 0.0 && p.1 >= y0 && p.1 <= y1)
                {
                    let line = [(x0, y), (x1, y)];
                    if dashed {
                        cc.draw_series(DashedLineSeries::new(line, 9, 6, style.stroke_width(2)))?;
                    } else {
                        cc.draw_series(LineSeries::new(line, style.stroke_width(2)))?;
                    }
                }
            }
            Mark::Diagonal => {
                let (lo, hi) = (x0.max(y0), x1.min(y1));
                cc.draw_series(LineSeries::new([(lo, lo), (hi, hi)], style.stroke_width(1)))?;
            }
        }
    }

    if !legend.is_empty() {
        draw_legend(&legend_area, chart.legend_title.as_deref(), &legend, h)?;
    }
    Ok(())
}

fn draw_points<DB: DrawingBackend, X, Y>(
    cc: &mut ChartContext<DB, Cartesian2d<X, Y>>,
    pts: &[(f64, f64)],
    shape: Shape,
    size: u32,
    colour: Colour,
) -> DrawResult<DB>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    match shape {
        Shape::Dot => {
            cc.draw_series(pts.iter().map(|&p| Circle::new(p, size, colour.filled())))?;
        }
        Shape::Ring => {
            cc.draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, size, colour.stroke_width(2))),
            )?;
        }
        Shape::Triangle => {
            cc.draw_series(
                pts.iter()
                    .map(|&p| TriangleMarker::new(p, size + 2, colour.filled())),
            )?;
        }
        Shape::Cross => {
            cc.draw_series(
                pts.iter()
                    .map(|&p| Cross::new(p, size, colour.stroke_width(2))),
            )?;
        }
    }
    Ok(())
}

/// The legend panel: a heading, then one row per labelled series with a sample
/// of its mark. Rows that do not fit are summarised as "... and k more".
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: Option<&str>,
    entries: &[&Series],
    height: u32,
) -> DrawResult<DB> {
    let text = ("sans-serif", 14).into_font().color(&DARK);
    let mut y = 40;
    if let Some(title) = title {
        area.draw(&Text::new(
            title.to_string(),
            (8, y),
            ("sans-serif", 14)
                .into_font()
                .style(FontStyle::Bold)
                .color(&DARK),
        ))?;
        y += LEGEND_ROW_PX + 4;
    }
    let rows = ((height as i32 - y - 20) / LEGEND_ROW_PX).max(1) as usize;
    let shown = if entries.len() > rows {
        rows - 1
    } else {
        entries.len()
    };
    for s in entries.iter().take(shown) {
        let cy = y + 7;
        let style = ShapeStyle::from(&s.colour);
        match s.mark {
            Mark::Points { shape, .. } => {
                let c = (20, cy);
                match shape {
                    Shape::Dot => area.draw(&Circle::new(c, 5, s.colour.filled()))?,
                    Shape::Ring => area.draw(&Circle::new(c, 5, s.colour.stroke_width(2)))?,
                    Shape::Triangle => area.draw(&TriangleMarker::new(c, 7, s.colour.filled()))?,
                    Shape::Cross => area.draw(&Cross::new(c, 5, s.colour.stroke_width(2)))?,
                }
            }
            Mark::Line {
                dashed: false,
                width,
            } => area.draw(&PathElement::new(
                vec![(6, cy), (34, cy)],
                style.stroke_width(width),
            ))?,
            Mark::Line { dashed: true, .. } | Mark::HLine { .. } => {
                area.draw(&PathElement::new(
                    vec![(6, cy), (14, cy)],
                    style.stroke_width(2),
                ))?;
                area.draw(&PathElement::new(
                    vec![(20, cy), (28, cy)],
                    style.stroke_width(2),
                ))?;
            }
            Mark::Diagonal => area.draw(&PathElement::new(
                vec![(6, cy + 6), (34, cy - 6)],
                style.stroke_width(1),
            ))?,
        }
        let label = s.label.clone().unwrap_or_default();
        area.draw(&Text::new(label, (42, y), text.clone()))?;
        y += LEGEND_ROW_PX;
    }
    if shown < entries.len() {
        area.draw(&Text::new(
            format!("... and {} more", entries.len() - shown),
            (42, y),
            text,
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawing_a_large_chart_stops_soon_after_stop_turns_true() {
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let mut chart = Chart::new("many", "x", "y");
        let pts: Vec<(f64, f64)> = (0..300_000)
            .map(|i| (1.0 + i as f64, 2.0 + (i % 97) as f64 / 97.0))
            .collect();
        chart
            .series
            .push(Series::points(None, categorical(0), Shape::Cross, pts));
        let clock = Instant::now();
        write(&chart, dir.path(), "full", &|| false).unwrap();
        let full = clock.elapsed();
        // Stop 20 ms in: the drawing must end within a few batches of points,
        // not at the end of the chart.
        let clock = Instant::now();
        let stop = || clock.elapsed() > Duration::from_millis(20);
        let err = write(&chart, dir.path(), "stopped", &stop).unwrap_err();
        let stopped = clock.elapsed();
        assert!(matches!(err, PlotError::Interrupted(_)), "{err}");
        assert!(
            stopped < full / 3,
            "stopped after {stopped:?}; the whole chart takes {full:?}"
        );
        assert!(!dir.path().join("stopped.png").exists());
    }

    #[test]
    fn ticks_cover_narrow_and_wide_ranges() {
        // Several decades: powers of ten only.
        assert_eq!(log_ticks(50.0, 2e6), vec![100.0, 1e3, 1e4, 1e5, 1e6]);
        // Under a decade: 1-2-5 or finer, always at least four.
        let t = log_ticks(0.15, 0.9);
        assert!(t.len() >= 4, "{t:?}");
        assert!(t.iter().all(|v| (0.15..=0.9).contains(v)));
        // Very narrow: evenly spaced round numbers inside the range.
        let t = log_ticks(0.52, 0.58);
        assert!(t.len() >= 3, "{t:?}");
        assert!(t.iter().all(|v| (0.52..=0.58).contains(v)), "{t:?}");
        // Many decades are thinned to at most nine labels.
        assert!(log_ticks(1.0, 1e20).len() <= 9);
        // The top of a decade is crowded: 9e4 and 1e5 sat 4.5% of this axis
        // apart and their labels ran together; no two ticks are that close now,
        // and the rounder ones stay.
        let t = log_ticks(11_000.0, 115_000.0);
        let span = (115_000f64 / 11_000.0).log10();
        assert!(
            t.windows(2)
                .all(|w| (w[1] / w[0]).log10() >= MIN_TICK_GAP * span),
            "{t:?}"
        );
        for round in [2e4, 5e4, 1e5] {
            assert!(t.contains(&round), "{t:?}");
        }
        assert!(!t.contains(&9e4), "{t:?}");
    }

    #[test]
    fn sequential_colours_run_from_dark_to_light() {
        assert_eq!(sequential(0, 5), RGBColor(68, 1, 84));
        assert_eq!(sequential(4, 5), RGBColor(200, 180, 20));
        assert_ne!(sequential(1, 5), sequential(2, 5));
    }

    #[test]
    fn ranges_follow_points_and_asymptotes_not_extrapolated_lines() {
        let mut chart = Chart::new("t", "x", "y");
        chart.series.push(Series::points(
            None,
            GREY,
            Shape::Dot,
            vec![(10.0, 1.0), (1000.0, 0.5)],
        ));
        chart.series.push(Series::line(
            None,
            GREY,
            false,
            vec![(1.0, 50.0), (1e9, 0.01)],
        ));
        chart.series.push(Series::hline(None, GREY, 0.2));
        let ((x0, x1), (y0, y1)) = chart.ranges();
        assert!(x0 < 10.0 && x0 > 5.0 && x1 > 1000.0 && x1 < 2000.0);
        assert!(y0 < 0.2 && y0 > 0.1, "{y0}");
        assert!(y1 > 1.0 && y1 < 2.0, "{y1}");
    }

    #[test]
    fn a_far_asymptote_stays_off_the_plot_and_is_named() {
        let mut chart = Chart::new("t", "x", "y");
        chart.series.push(Series::points(
            None,
            GREY,
            Shape::Dot,
            vec![(10.0, 1.0), (1000.0, 0.5)],
        ));
        chart
            .series
            .push(Series::hline(Some("fitted E = 8e-68".into()), GREY, 8e-68));
        let (_, (y0, _)) = chart.ranges();
        assert!(y0 > 0.1, "{y0}");
        assert_eq!(chart.off_plot_lines(), ["fitted E = 8e-68"]);
        assert_eq!(
            chart.series[1].label.as_deref(),
            Some("fitted E = 8e-68 (off the plot)")
        );
    }
}
