//! `dataset.csv`: a user's CSV table read with Polars (header row required).
//!
//! Parameters: `path`, `label`, `task = "regression" | "classification"`,
//! `features` (default: every column but the label), optional `separator`, a
//! `text` column with `tokenizer = "word" | "byte"`, `max_vocab`, `max_len` for
//! text classification, `drop_nulls`, `split`, `n` and `seed`. Everything after
//! parsing is shared with `dataset.parquet` (see `table.rs`). Besides the splits
//! it writes `source.parquet`, the whole table with its original column names.

use super::table;
use crate::stages::{ConfigureContext, Job, Kind, ParamError};

pub const KIND: Kind = Kind {
    name: "dataset.csv",
    version: 1,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    table::configure(KIND.name, true, params, cx)
}

/// The reference of `dataset.csv`'s parameters ([`crate::kinds_doc`]): the
/// table loaders' and `separator`.
pub fn params() -> Vec<crate::kinds_doc::ParamDoc> {
    [super::table::TABLE_PARAMS, super::table::CSV_ONLY_PARAMS].concat()
}
