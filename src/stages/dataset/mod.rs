//! `dataset.*` stage kinds: synthetic generators with known ground truth and
//! loaders for real files, all writing the layout of [`crate::data`].
//!
//! Every kind takes the training size D (`n` examples or `tokens`), a `split` for
//! the held-out sets and a `seed`. Loaders draw a nested subsample from the file's
//! pool ([`subsample`]); generators draw each split from its own RNG
//! stream, so a larger D extends the same training stream and never touches the
//! validation or test sets. The same parameters and seed give byte-identical
//! outputs.

pub mod csv;
pub mod idx;
pub mod markov_text;
pub mod parquet;
pub mod prefix;
pub mod split;
pub mod subsample;
mod table;
pub mod teacher;
pub mod text;
pub mod tokenize;

use std::path::{Path, PathBuf};

use crate::data::{DataError, DatasetMeta, SourceFile, Task};

use super::{ParamError, StageContext, StageError};

/// Progress is reported (and cancellation checked) every this many items.
const PROGRESS_EVERY: usize = 1 << 14;

/// Calls `ctx.progress` every [`PROGRESS_EVERY`] items and stops on Ctrl-C.
fn tick(ctx: &StageContext, pos: usize, len: usize, message: &str) -> Result<(), StageError> {
    if pos.is_multiple_of(PROGRESS_EVERY) || pos == len {
        if ctx.cancelled() {
            return Err(StageError::Cancelled);
        }
        ctx.progress(pos as u64, len as u64, message);
    }
    Ok(())
}

/// Metadata with the fields every kind fills; the caller adds the rest.
fn new_meta(kind: &str, task: Task, sizes: [usize; 3]) -> DatasetMeta {
    DatasetMeta {
        kind: kind.to_string(),
        task,
        n_train: sizes[0],
        n_val: sizes[1],
        n_test: sizes[2],
        input_dim: None,
        classes: None,
        vocab: None,
        irreducible_loss: None,
        sources: Vec::new(),
        extra: serde_json::Map::new(),
    }
}

/// A file named in the parameters: as written (recorded in metadata, so outputs do
/// not depend on where the project lives) and resolved (read and fingerprinted).
#[derive(Debug, Clone)]
struct InputFile {
    written: String,
    path: PathBuf,
}

impl InputFile {
    /// Resolves `written` and checks it is an existing file, naming `key` if not.
    fn existing(
        key: &str,
        written: &str,
        cx: &super::ConfigureContext,
    ) -> Result<InputFile, ParamError> {
        let path = cx.resolve(written);
        if !path.is_file() {
            let what = if path.exists() {
                "is not a regular file"
            } else {
                "does not exist"
            };
            return Err(ParamError::at(key, format!("{} {what}", path.display())));
        }
        Ok(InputFile {
            written: written.to_string(),
            path,
        })
    }

    fn source(&self) -> Result<SourceFile, DataError> {
        source_file(&self.written, &self.path)
    }
}

/// A [`SourceFile`] entry: the path as the user wrote it and the content hash.
fn source_file(written: &str, path: &Path) -> Result<SourceFile, DataError> {
    Ok(SourceFile {
        path: written.to_string(),
        blake3: crate::digest::hash_file(path).map_err(|e| DataError::io(path, e))?,
    })
}

/// JSON value of a serialisable parameter for `meta.json` extras.
fn json(value: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("plain values serialise")
}
