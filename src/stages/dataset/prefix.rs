//! `dataset.prefix`: the first D training units of a dataset stage's entry, so
//! a data-size sweep reads (and tokenises, or parses) its source once.
//!
//! A dataset stage without a size sweep writes its whole training pool once,
//! with the held-out sets. A `dataset.prefix` stage lists it as its input and
//! sweeps the size: `tokens` over a token corpus (`dataset.text`,
//! `dataset.markov_text`), `n` (rows) over a table (`dataset.csv`,
//! `dataset.parquet`, `dataset.idx`, `dataset.teacher`). Each of its instances
//! copies only the first D units of the input's training split (exactly what
//! the input kind with that `tokens` or `n` would keep, since every dataset
//! kind's smaller D is a prefix of its larger one) and links the input's
//! validation, test and `source.parquet` files instead of copying them. A D
//! sweep then costs one read of the source, and each sweep point's entry holds
//! D units plus links.

use std::path::Path;

use serde::Deserialize;

use super::json;
use super::split::Count;
use crate::data::{
    copy_table_prefix, offsets_path, read_meta, read_offsets, read_tokens_prefix, table_path,
    tokens_path, write_meta, write_offsets, write_tokens, Split, Task,
};
use crate::kinds_doc::ParamDoc;
use crate::stages::{
    parse_params, ConfigureContext, Job, Kind, ParamError, StageContext, StageError,
};

pub const KIND: Kind = Kind {
    name: "dataset.prefix",
    // 2: takes tables (`n` rows) as well as token corpora (`tokens`).
    version: 2,
    takes_seed: false,
    maps_inputs: true,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// The reference of `dataset.prefix`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new(
        "tokens",
        "integer",
        "required for a token corpus",
        "Training tokens D: the first `tokens` of the input's training stream (validation and test are the input's, linked).",
    ),
    ParamDoc::new(
        "n",
        "integer",
        "required for a table",
        "Training examples D: the first `n` rows of the input table's training split (dataset.csv, dataset.parquet, dataset.idx, dataset.teacher without `n` sweeps; validation, test and source.parquet are the input's, linked).",
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    tokens: Option<Count>,
    n: Option<Count>,
}

/// How much of the input's training split to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    /// The first tokens of a token stream.
    Tokens(usize),
    /// The first rows of a table.
    Rows(usize),
}

#[derive(Debug)]
struct PrefixJob {
    size: Size,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = parse_params(params)?;
    if cx.input_kinds.len() != 1 || !cx.input_kinds[0].starts_with("dataset.") {
        return Err(ParamError::new(format!(
            "a dataset.prefix stage takes one dataset stage as input (a token corpus such as dataset.text, or a table such as dataset.csv); got [{}]",
            cx.input_kinds.join(", ")
        )));
    }
    let size = match (p.tokens, p.n) {
        (Some(t), None) => Size::Tokens(t.0 as usize),
        (None, Some(n)) => Size::Rows(n.0 as usize),
        (Some(_), Some(_)) => {
            return Err(ParamError::at(
                "n",
                "give `tokens` (a token corpus) or `n` (a table's rows), not both",
            ))
        }
        (None, None) => {
            return Err(ParamError::new(
                "missing the size: `tokens` for a token corpus or `n` (rows) for a table",
            ))
        }
    };
    Ok(Box::new(PrefixJob { size }))
}

/// Hard-links `from` to `to` (both in the store, which never rewrites a file),
/// or copies it where links are not possible.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), StageError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| StageError::io(to, e))
}

impl Job for PrefixJob {
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let [input] = ctx.inputs() else {
            return Err(StageError::msg(format!(
                "dataset.prefix takes one dataset instance, got {}",
                ctx.inputs().len()
            )));
        };
        let mut meta = read_meta(&input.dir)?;
        let tokens = meta.task == Task::LanguageModel;
        let (size, unit) = match (self.size, tokens) {
            (Size::Tokens(t), true) => (t, "tokens"),
            (Size::Rows(n), false) => (n, "rows"),
            (Size::Tokens(_), false) => {
                return Err(StageError::msg(format!(
                    "{} is a table (task {:?}), not a token stream: give its size as `n` (rows) instead of `tokens`",
                    input.id, meta.task
                )))
            }
            (Size::Rows(_), true) => {
                return Err(StageError::msg(format!(
                    "{} is a token stream: give its size as `tokens` instead of `n`",
                    input.id
                )))
            }
        };
        if size > meta.n_train {
            return Err(StageError::msg(format!(
                "{size} training {unit} requested but {} holds only {}",
                input.id, meta.n_train
            )));
        }
        let out = ctx.out_dir();
        if tokens {
            let train = read_tokens_prefix(&input.dir, Split::Train, size)?;
            write_tokens(out, Split::Train, &train.ids)?;
            let offsets: Vec<u64> = read_offsets(&input.dir, Split::Train)?
                .into_iter()
                .filter(|&o| (o as usize) < size)
                .collect();
            write_offsets(out, Split::Train, &offsets)?;
            for split in [Split::Val, Split::Test] {
                link_or_copy(&tokens_path(&input.dir, split), &tokens_path(out, split))?;
                link_or_copy(&offsets_path(&input.dir, split), &offsets_path(out, split))?;
            }
        } else {
            copy_table_prefix(&input.dir, out, Split::Train, size)?;
            for split in [Split::Val, Split::Test] {
                link_or_copy(&table_path(&input.dir, split), &table_path(out, split))?;
            }
            // A table loader's whole input table, which a fit may read as runs.
            let source = input.dir.join("source.parquet");
            if source.is_file() {
                link_or_copy(&source, &out.join("source.parquet"))?;
            }
        }
        ctx.log(&format!(
            "first {size} of {} training {unit} of {}; validation and test linked",
            meta.n_train, input.id
        ));
        if meta.n_val > size || meta.n_test > size {
            ctx.warn(&format!(
                "held-out data outweighs training data: {} validation and {} test {unit} against {size} training {unit}",
                meta.n_val, meta.n_test
            ));
        }
        let pool_key = if tokens {
            "corpus_train_tokens"
        } else {
            "pool_train_rows"
        };
        meta.extra.insert(pool_key.into(), json(meta.n_train));
        meta.extra.insert("prefix_of".into(), json(&input.id));
        meta.n_train = size;
        write_meta(out, &meta).map_err(StageError::from)
    }
}
