//! Datasets as the training and evaluation stages see them.
//!
//! Dataset stages write one directory per instance: `meta.json` ([`DatasetMeta`])
//! plus one file per split. Tables (`dataset.teacher`, `dataset.csv`,
//! `dataset.parquet`, `dataset.idx`) are `train.parquet`, `val.parquet`,
//! `test.parquet` with f32 feature columns `x0..x{d-1}` (or u32 token columns
//! `t0..t{L-1}` for a text column) and a label column `y` (f32 for regression, u32
//! class index for classification). Token streams (`dataset.markov_text`,
//! `dataset.text`) are `train.bin`, `val.bin`, `test.bin`: little-endian u32 token
//! ids, documents concatenated, with `{split}.offsets.bin` (u64 starts of the
//! split's contiguous pieces). Table loaders also write `source.parquet`, the
//! input table with its original column names.
//!
//! The `io` module (re-exported here) reads and writes these files. How dataset
//! stages make them (split sizes, seeded nested subsampling, tokenisers) lives
//! beside those stages in `stages::dataset`.

mod io;

pub use io::{
    copy_table_prefix, meta_path, offsets_path, read_meta, read_offsets, read_parquet, read_table,
    read_tokens, read_tokens_prefix, read_u32s, table_path, tokens_path, write_meta, write_offsets,
    write_parquet, write_table, write_tokens, write_u32s, Columns, DataError,
};

use serde::{Deserialize, Serialize};

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// What a dataset is for, which decides the model family and the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Real-valued target, mean squared error.
    Regression,
    /// Class labels, cross-entropy.
    Classification,
    /// Sequences of token ids with a class label (text classification).
    TextClassification,
    /// A token stream for next-token prediction.
    LanguageModel,
}

/// A source file a dataset was read from, with its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub blake3: String,
}

/// `meta.json` of a dataset stage's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Stage kind that wrote it (`dataset.teacher`).
    pub kind: String,
    pub task: Task,
    /// Examples (tables) or tokens (streams) in each split.
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    /// Feature count of a table; sequence length of a text table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_dim: Option<usize>,
    /// Number of classes for classification tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Vocabulary size for token data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<usize>,
    /// Best achievable loss (MSE or nats), where the generator knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreducible_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceFile>,
    /// Kind-specific extras (vocabulary list, generator settings, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A table split in memory: row-major features and their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// `rows * cols` values, row-major. For text classification these are token
    /// ids (exact in f32 below 2^24), 0 being padding.
    pub x: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub y: Targets,
}

/// Targets of a table split.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    Regression(Vec<f32>),
    Classes(Vec<u32>),
}

/// A token stream split in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub vocab: usize,
}
