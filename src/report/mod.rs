//! Reports: what a researcher looks at after a run. Plots (SVG and PNG) of the
//! runs and fitted scaling laws, and a summary as Markdown and self-contained
//! HTML.
//!
//! Data flow: [`gather`] reads the report stage's inputs through each file's
//! owner (fits' `fit.json` and `predictions.parquet` in `crate::fit`, runs'
//! `metrics.json`, `dataset.json` and `loss_curve.csv` in `crate::train`) ->
//! [`figures`] turns them into [`plot::Chart`]s, which [`plot`] renders ->
//! [`document`] builds the text as a [`document::Doc`] -> [`markdown`] and
//! [`html`] render it. Fitted curves are evaluated by [`law`] with the fit
//! module's own forms, so the plots draw exactly the law the fit reported. The
//! `report` stage (`crate::stages::report`) wires this to files.

pub mod document;
pub mod figures;
pub mod gather;
pub mod html;
pub mod law;
pub mod markdown;
pub mod plot;

pub use document::{Doc, Header};
pub use gather::{gather, GatherError, Gathered};

/// Polled inside long work (per input read, per series and per batch of
/// points drawn, per fit section): `true` once the run is interrupted.
pub type Stop<'a> = &'a (dyn Fn() -> bool + Sync);

/// The report stopped early because [`Stop`] said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the report was interrupted")]
pub struct Interrupted;
