//! `dataset.prefix`: the first `tokens` training tokens of a token dataset, so a
//! data-size sweep reads and tokenises a corpus once.
//!
//! A `dataset.text` (or `dataset.markov_text`) stage without a `tokens` sweep
//! writes the whole corpus once: every training block and the held-out sets. A
//! `dataset.prefix` stage lists it as its input and sweeps `tokens`; each of its
//! instances reads only the first `tokens` ids of the input's training stream
//! (the same tokens `dataset.text` with that `tokens` would keep, since smaller
//! D are prefixes of larger ones) and links the input's validation and test files
//! instead of copying them. A D sweep then costs one corpus read, and each sweep
//! point's entry holds D tokens plus links.

use std::path::Path;

use serde::Deserialize;

use super::json;
use super::split::Count;
use crate::data::{
    offsets_path, read_meta, read_offsets, read_tokens_prefix, tokens_path, write_meta,
    write_offsets, write_tokens, Split, Task,
};
use crate::kinds_doc::ParamDoc;
use crate::stages::{
    parse_params, ConfigureContext, Job, Kind, ParamError, StageContext, StageError,
};

pub const KIND: Kind = Kind {
    name: "dataset.prefix",
    version: 1,
    takes_seed: false,
    maps_inputs: true,
    inherits_inputs_of: None,
    configure,
};

/// The reference of `dataset.prefix`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[ParamDoc::new(
    "tokens",
    "integer",
    "required",
    "Training tokens D: the first `tokens` of the input's training stream (validation and test are the input's, linked).",
)];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    tokens: Count,
}

#[derive(Debug)]
struct PrefixJob {
    tokens: usize,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = parse_params(params)?;
    if cx.input_kinds.len() != 1 || !cx.input_kinds[0].starts_with("dataset.") {
        return Err(ParamError::new(format!(
            "a dataset.prefix stage takes one dataset stage as input (a dataset.text or dataset.markov_text corpus); got [{}]",
            cx.input_kinds.join(", ")
        )));
    }
    Ok(Box::new(PrefixJob {
        tokens: p.tokens.0 as usize,
    }))
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
        if meta.task != Task::LanguageModel {
            return Err(StageError::msg(format!(
                "{} is not a token stream (task {:?}): dataset.prefix takes a dataset.text or dataset.markov_text corpus; tables take `n` on their own stage",
                input.id, meta.task
            )));
        }
        if self.tokens > meta.n_train {
            return Err(StageError::msg(format!(
                "tokens = {} training tokens requested but {} holds only {}",
                self.tokens, input.id, meta.n_train
            )));
        }
        let out = ctx.out_dir();
        let train = read_tokens_prefix(&input.dir, Split::Train, self.tokens)?;
        write_tokens(out, Split::Train, &train.ids)?;
        let offsets: Vec<u64> = read_offsets(&input.dir, Split::Train)?
            .into_iter()
            .filter(|&o| (o as usize) < self.tokens)
            .collect();
        write_offsets(out, Split::Train, &offsets)?;
        for split in [Split::Val, Split::Test] {
            link_or_copy(&tokens_path(&input.dir, split), &tokens_path(out, split))?;
            link_or_copy(&offsets_path(&input.dir, split), &offsets_path(out, split))?;
        }
        ctx.log(&format!(
            "first {} of {} training tokens of {}; validation and test linked",
            self.tokens, meta.n_train, input.id
        ));
        if meta.n_val > self.tokens || meta.n_test > self.tokens {
            ctx.warn(&format!(
                "held-out data outweighs training data: {} validation and {} test tokens against {} training tokens",
                meta.n_val, meta.n_test, self.tokens
            ));
        }
        meta.extra
            .insert("corpus_train_tokens".into(), json(meta.n_train));
        meta.extra.insert("prefix_of".into(), json(&input.id));
        meta.n_train = self.tokens;
        write_meta(out, &meta).map_err(StageError::from)
    }
}
