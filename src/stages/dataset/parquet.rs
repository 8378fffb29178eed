//! `dataset.parquet`: a user's Parquet table read with Polars.
//!
//! Takes the same parameters as `dataset.csv` (except `separator`) and shares its
//! loader (see `table.rs`): features, label, task, an optional text column,
//! the null policy, the split and `n`. Writes `source.parquet` too.

use super::table;
use crate::stages::{ConfigureContext, Job, Kind, ParamError};

pub const KIND: Kind = Kind {
    name: "dataset.parquet",
    version: 1,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    table::configure(KIND.name, false, params, cx)
}

/// The reference of `dataset.parquet`'s parameters ([`crate::kinds_doc`]).
pub use super::table::TABLE_PARAMS as PARAMS;
