//! Power-law fitting: the scientific core of scalepipe.
//!
//! Fits saturating power laws (`L = E + A/N^alpha`, `E + B/D^beta`,
//! `E + K/C^gamma`) and Hoffmann et al.'s `L = E + A/N^alpha + B/D^beta` the way
//! Hoffmann et al. (2022) and Besiroglu et al. (2024) do: Huber loss on log loss
//! with the prediction as a log-sum-exp, L-BFGS from every point of a grid, the
//! best optimum kept. Around the fit: bootstrap intervals, compute-optimal
//! allocation, an extrapolation check on held-out larger runs, and IsoFLOP
//! profiles (Approach 2).
//!
//! Data flow: [`table`] gathers runs (Polars; [`points`] turns each run's loss
//! curve into points when asked) -> [`table::select`] picks the usable
//! ones -> [`analysis::Analysis::run_grouped`] fits (seed [`replicates`]
//! grouped) ([`objective`], [`optimize`],
//! [`bootstrap`], [`derived`], [`holdout`], [`isoflop`], then [`diagnostics`]
//! judges the result) -> [`FitReport`]
//! ([`fit_json`], `fit.json`), [`predictions`] (`predictions.parquet`) and
//! [`summary`] (`summary.md`), each file with its one owner module. The `fit`
//! stage (`crate::stages::fit`) is the glue that reads parameters and calls
//! these.

pub mod analysis;
pub mod bootstrap;
pub mod derived;
pub mod diagnostics;
mod fastmath;
pub mod fit_json;
pub mod form;
pub mod grid;
pub mod holdout;
pub mod isoflop;
pub mod objective;
pub mod optimize;
pub mod points;
pub mod predictions;
pub mod replicates;
pub mod summary;
pub mod table;
pub mod truth;

pub use analysis::{Analysis, AnalysisError, Hooks};
pub use diagnostics::{Finding, Severity};
pub use fit_json::{Estimate, FitReport};
pub use form::{Form, FormKind, Irreducible, Variable};
pub use grid::Grid;
pub use objective::{Objective, Observation, Points};
