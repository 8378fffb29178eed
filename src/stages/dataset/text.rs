//! `dataset.text`: a plain-text corpus (a directory walked with a glob, or one file)
//! turned into a token stream for language modelling.
//!
//! Files are read in sorted order of their path relative to `path`, so the corpus
//! is the same on every machine. `glob` and `exclude` match that relative path as
//! gitignore does: `*` stays within one directory, `**` crosses them. Tokens are
//! bytes (vocab 256) by default, or characters (`tokenizer = "char"`: the corpus's
//! characters seen at least `min_count` times, at most `max_vocab` ids, sorted by
//! code point and listed in `meta.json` as `extra.chars`; the rest share one
//! unknown id after them, `extra.unknown_id`). A file that cannot be read, holds a
//! NUL byte or is not UTF-8 is reported as an error, unless `skip_unreadable =
//! true`, which skips it and records it in the metadata.
//!
//! The corpus is cut into blocks of `block` tokens; a seeded permutation of the
//! blocks gives validation and test (`split`, counts in tokens rounded up to whole
//! blocks; by default 10% each but at most [`DEFAULT_HELD_OUT_CAP`] tokens) and then
//! the training blocks, of which the first `tokens` tokens are kept, so smaller D
//! are prefixes of larger ones. Each split's `offsets.bin` gives where its blocks
//! start.

use std::path::PathBuf;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use walkdir::WalkDir;

use super::split::{train_size, Count, SplitSizes, SplitSpec};
use super::subsample::nested_subsample;
use super::tokenize::CharVocab;
use super::{json, new_meta, source_file};
use crate::data::{write_meta, write_offsets, write_tokens, Split, Task};
use crate::kinds_doc::ParamDoc;
use crate::stages::{
    parse_params, ConfigureContext, Job, Kind, ParamError, StageContext, StageError,
};

pub const KIND: Kind = Kind {
    name: "dataset.text",
    // 2: split counts in tokens (were blocks), default held-out sets capped at
    // DEFAULT_HELD_OUT_CAP tokens, `*` no longer crosses `/`, char vocabulary
    // capped by `max_vocab` with an unknown id.
    version: 2,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// Most tokens a validation or test set gets when `split` leaves its size to the
/// default fraction: 10% of a 128M-character corpus would be 12.8M tokens, more
/// than most training runs of a sweep see, and `eval` would score all of them.
pub const DEFAULT_HELD_OUT_CAP: usize = 250_000;

/// Default `max_vocab` of the char tokenizer, the unknown id included.
pub const DEFAULT_MAX_CHAR_VOCAB: usize = 512;

/// Problems listed in one error before the rest are counted.
const MAX_LISTED: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Tokenizer {
    Byte,
    Char,
}

/// The reference of `dataset.text`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("path", "string", "required", "A text file, or a directory walked for files matching `glob`; relative to the pipeline file. `{python_stdlib}` at its start stands for Python's standard library on the running machine (`$PYTHON` or `python3`)."),
    ParamDoc::new("glob", "glob", "\"**/*\"", "Files under `path` to read, matched against their path relative to it: `*` stays within one directory (`*.py` is the top level only), `**/` crosses directories (`**/*.py`)."),
    ParamDoc::new("exclude", "list of globs", "[]", "Files to leave out, matched like `glob` (e.g. `[\"**/test/**\", \"**/tests/**\"]`)."),
    ParamDoc::new("tokenizer", "\"byte\" | \"char\"", "\"byte\"", "Bytes (256 ids) or Unicode characters of the corpus."),
    ParamDoc::new("max_vocab", "integer", "512", "Char tokenizer: most ids, the unknown id included; rarer characters share the unknown id."),
    ParamDoc::new("min_count", "integer", "1", "Char tokenizer: characters seen fewer times map to the unknown id."),
    ParamDoc::new("tokens", "integer", "the whole training pool", "Training tokens D: a prefix of the seeded training blocks, so smaller D nest in larger ones."),
    ParamDoc::new("block", "integer", "256", "Tokens per block: the corpus is cut into blocks and a seeded permutation of the blocks gives the splits."),
    ParamDoc::new("split", "table {train, val, test}", "val, test = 10% each, at most 250,000 tokens", "Held-out sizes in tokens (integers, rounded up to whole blocks) or fractions of the corpus (floats); a size you give is not capped."),
    ParamDoc::new("skip_unreadable", "bool", "false", "Skip (and record in meta.json) files that are binary or not UTF-8 instead of failing."),
    ParamDoc::new("seed", "integer", "the pipeline's seed", "Seeds the draw; same parameters and seed give byte-identical files."),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    path: String,
    #[serde(default = "default_glob")]
    glob: String,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default = "default_tokenizer")]
    tokenizer: Tokenizer,
    max_vocab: Option<usize>,
    min_count: Option<u64>,
    /// Training tokens D (default: the whole training pool).
    tokens: Option<Count>,
    #[serde(default = "default_block")]
    block: usize,
    #[serde(default)]
    skip_unreadable: bool,
    #[serde(default)]
    split: SplitSpec,
    seed: u64,
}

fn default_glob() -> String {
    "**/*".to_string()
}
fn default_tokenizer() -> Tokenizer {
    Tokenizer::Byte
}
fn default_block() -> usize {
    256
}

/// One corpus file: its path relative to the root (`/`-separated) and on disk.
#[derive(Debug, Clone)]
struct CorpusFile {
    written: String,
    path: PathBuf,
}

#[derive(Debug)]
struct TextJob {
    files: Vec<CorpusFile>,
    tokenizer: Tokenizer,
    max_vocab: usize,
    min_count: u64,
    tokens: Option<u64>,
    block: usize,
    skip_unreadable: bool,
    split: SplitSpec,
    seed: u64,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = parse_params(params)?;
    p.split.validate()?;
    if p.block == 0 {
        return Err(ParamError::at("block", "expected an integer >= 1"));
    }
    if p.tokenizer == Tokenizer::Byte {
        for (key, given) in [
            ("max_vocab", p.max_vocab.is_some()),
            ("min_count", p.min_count.is_some()),
        ] {
            if given {
                return Err(ParamError::at(
                    key,
                    "applies to tokenizer = \"char\" only (bytes always have 256 ids)",
                ));
            }
        }
    }
    if p.max_vocab.is_some_and(|v| v < 2) {
        return Err(ParamError::at(
            "max_vocab",
            "expected an integer >= 2 (one character and the unknown id)",
        ));
    }
    if p.min_count == Some(0) {
        return Err(ParamError::at("min_count", "expected an integer >= 1"));
    }
    let root = match p.path.strip_prefix(PYTHON_STDLIB) {
        Some(rest) => python_stdlib()?.join(rest.trim_start_matches('/')),
        None => cx.resolve(&p.path),
    };
    let files = if root.is_file() {
        vec![CorpusFile {
            written: p.path.clone(),
            path: root.clone(),
        }]
    } else if root.is_dir() {
        let include = glob_set("glob", std::slice::from_ref(&p.glob))?;
        let exclude = glob_set("exclude", &p.exclude)?;
        walk(&root, &p.path, &include, &exclude, p.skip_unreadable)?
    } else {
        return Err(ParamError::at(
            "path",
            format!("{} does not exist", root.display()),
        ));
    };
    if files.is_empty() {
        return Err(ParamError::at(
            "glob",
            format!(
                "no file under {} matches `{}`{} (`*` stays within a directory; `**/` crosses them)",
                root.display(),
                p.glob,
                if p.exclude.is_empty() { "" } else { " outside `exclude`" },
            ),
        ));
    }
    Ok(Box::new(TextJob {
        files,
        tokenizer: p.tokenizer,
        max_vocab: p.max_vocab.unwrap_or(DEFAULT_MAX_CHAR_VOCAB),
        min_count: p.min_count.unwrap_or(1),
        tokens: p.tokens.map(|c| c.0),
        block: p.block,
        skip_unreadable: p.skip_unreadable,
        split: p.split,
        seed: p.seed,
    }))
}

/// A `path` starting with this names Python's standard library on the machine
/// that runs the pipeline, so a pipeline over it stays portable. Sources are
/// recorded as written, so `meta.json` does not depend on where Python lives.
pub const PYTHON_STDLIB: &str = "{python_stdlib}";

/// The directory of Python's standard library, from `$PYTHON` or `python3`.
fn python_stdlib() -> Result<PathBuf, ParamError> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let fail = |why: String| {
        ParamError::at(
            "path",
            format!("cannot locate Python's standard library for {PYTHON_STDLIB} with `{python}`: {why} (set $PYTHON to the interpreter)"),
        )
    };
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('stdlib'))",
        ])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!("{}", out.status)));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err(fail("it printed nothing".into()));
    }
    Ok(PathBuf::from(dir))
}

/// Globs matched like gitignore: `*` and `?` stay within one path component.
fn glob_set(key: &str, globs: &[String]) -> Result<GlobSet, ParamError> {
    let mut set = GlobSetBuilder::new();
    for (i, glob) in globs.iter().enumerate() {
        let at = if key == "glob" {
            key.to_string()
        } else {
            format!("{key}[{i}]")
        };
        let glob: Glob = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| ParamError::at(at, format!("invalid glob: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| ParamError::at(key, format!("invalid glob: {e}")))
}

/// Files under `root` whose relative path matches `include` and not `exclude`,
/// sorted by that path.
fn walk(
    root: &std::path::Path,
    written_root: &str,
    include: &GlobSet,
    exclude: &GlobSet,
    skip_unreadable: bool,
) -> Result<Vec<CorpusFile>, ParamError> {
    let mut files = Vec::new();
    for entry in WalkDir::new(root) {
        let entry = match entry {
            Ok(entry) => entry,
            // A directory we cannot list is as unreadable as a file we cannot read.
            Err(_) if skip_unreadable => continue,
            Err(err) => {
                return Err(ParamError::at(
                    "path",
                    format!(
                        "cannot walk {}: {err} (set skip_unreadable = true to skip it)",
                        root.display()
                    ),
                ))
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root");
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let rel = rel.join("/");
        if include.is_match(&rel) && !exclude.is_match(&rel) {
            files.push(CorpusFile {
                written: format!("{}/{rel}", written_root.trim_end_matches('/')),
                path: entry.path().to_path_buf(),
            });
        }
    }
    files.sort_by(|a, b| a.written.cmp(&b.written));
    Ok(files)
}

/// Why a corpus file was not used.
fn check_text(bytes: &[u8]) -> Result<&str, String> {
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(format!("binary file (NUL byte at offset {pos})"));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })
}

impl TextJob {
    /// Reads every file; returns the texts used and why the others were not,
    /// each by index into `files`.
    #[allow(clippy::type_complexity)]
    fn read_corpus(
        &self,
        ctx: &StageContext,
    ) -> Result<(Vec<(usize, String)>, Vec<(usize, String)>), StageError> {
        let mut texts = Vec::new();
        let mut problems = Vec::new();
        for (i, file) in self.files.iter().enumerate() {
            if ctx.cancelled() {
                return Err(StageError::Cancelled);
            }
            ctx.progress(i as u64, self.files.len() as u64, "reading files");
            match std::fs::read(&file.path) {
                Err(e) => problems.push((i, format!("cannot read: {e}"))),
                Ok(bytes) => match check_text(&bytes) {
                    Ok(text) => texts.push((i, text.to_string())),
                    Err(why) => problems.push((i, why)),
                },
            }
        }
        if !problems.is_empty() && !self.skip_unreadable {
            let mut lines: Vec<String> = problems
                .iter()
                .take(MAX_LISTED)
                .map(|(i, why)| format!("  {}: {why}", self.files[*i].path.display()))
                .collect();
            if problems.len() > MAX_LISTED {
                lines.push(format!("  ... and {} more", problems.len() - MAX_LISTED));
            }
            return Err(StageError::msg(format!(
                "{} of {} corpus file(s) are not readable text (set skip_unreadable = true to skip them, or narrow `glob`):\n{}",
                problems.len(),
                self.files.len(),
                lines.join("\n")
            )));
        }
        for (i, why) in &problems {
            ctx.log(&format!("skipped {}: {why}", self.files[*i].path.display()));
        }
        Ok((texts, problems))
    }
}

impl Job for TextJob {
    fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let out = ctx.out_dir();
        let (texts, skipped) = self.read_corpus(ctx)?;

        let mut meta_extra = serde_json::Map::new();
        let (stream, vocab): (Vec<u32>, usize) = match self.tokenizer {
            Tokenizer::Byte => (
                texts
                    .iter()
                    .flat_map(|(_, t)| t.bytes().map(u32::from))
                    .collect(),
                256,
            ),
            Tokenizer::Char => {
                // From the whole corpus, so every D of a sweep shares the vocabulary.
                let vocab = CharVocab::build(
                    texts.iter().map(|(_, t)| t.as_str()),
                    self.max_vocab,
                    self.min_count,
                );
                let stream: Vec<u32> = texts
                    .iter()
                    .flat_map(|(_, t)| t.chars())
                    .map(|c| vocab.id(c))
                    .collect();
                let listed: Vec<String> = vocab.chars().iter().map(|c| c.to_string()).collect();
                meta_extra.insert("chars".into(), json(listed));
                if let Some(unknown) = vocab.unknown() {
                    let share = stream.iter().filter(|&&t| t == unknown).count() as f64
                        / stream.len().max(1) as f64;
                    meta_extra.insert("unknown_id".into(), json(unknown));
                    meta_extra.insert("unknown_chars".into(), json(vocab.dropped()));
                    meta_extra.insert("unknown_share".into(), json(share));
                    ctx.log(&format!(
                        "char vocabulary: {} ids; {} rare characters share the unknown id {unknown} ({:.3}% of tokens)",
                        vocab.len(),
                        vocab.dropped(),
                        share * 100.0
                    ));
                }
                (stream, vocab.len())
            }
        };
        if stream.is_empty() {
            return Err(StageError::msg(format!(
                "the corpus is empty: {} file(s) hold no text",
                texts.len()
            )));
        }

        ctx.log(&format!(
            "corpus: {} file(s), {} tokens, vocabulary {vocab}",
            texts.len(),
            stream.len()
        ));

        // Blocks of the stream are the units of the split; sizes are given in
        // tokens and rounded up to whole blocks.
        let starts: Vec<usize> = (0..stream.len()).step_by(self.block).collect();
        let block_len = |b: usize| self.block.min(stream.len() - starts[b]);
        let pool = starts.len();
        let in_tokens = self
            .split
            .resolve_capped(stream.len(), DEFAULT_HELD_OUT_CAP)
            .map_err(|m| {
                StageError::msg(format!(
                    "split: {m} (counts are tokens; the corpus has {} tokens)",
                    stream.len()
                ))
            })?;
        let blocks = |tokens: usize| tokens.div_ceil(self.block);
        let (val_blocks, test_blocks) = (blocks(in_tokens.val), blocks(in_tokens.test));
        let sizes = SplitSpec {
            train: self.split.train.map(|a| super::split::Amount::Count(blocks(a.of(stream.len())) as u64)),
            val: Some(super::split::Amount::Count(val_blocks as u64)),
            test: Some(super::split::Amount::Count(test_blocks as u64)),
        }
        .resolve(pool)
        .map_err(|m| {
            StageError::msg(format!(
                "split: {m} (blocks of {} tokens; the corpus has {} tokens; lower `block` for a small corpus)",
                self.block,
                stream.len()
            ))
        })?;
        let sub = nested_subsample(pool, &sizes, sizes.train_pool, self.seed);
        let pool_tokens: usize = sub.train.iter().map(|&b| block_len(b)).sum();
        let token_sizes = SplitSizes {
            val: sub.val.iter().map(|&b| block_len(b)).sum(),
            test: sub.test.iter().map(|&b| block_len(b)).sum(),
            train_pool: pool_tokens,
        };
        let d =
            train_size(self.tokens, &token_sizes, "tokens", "tokens").map_err(StageError::msg)?;
        if token_sizes.val > d || token_sizes.test > d {
            ctx.warn(&format!(
                "held-out data outweighs training data: {} validation and {} test tokens against {d} training tokens (set `split = {{val = ..., test = ...}}` in tokens)",
                token_sizes.val, token_sizes.test
            ));
        }

        for (split, blocks, limit) in [
            (Split::Train, &sub.train, d),
            (Split::Val, &sub.val, usize::MAX),
            (Split::Test, &sub.test, usize::MAX),
        ] {
            let mut ids = Vec::new();
            let mut offsets = Vec::new();
            for &b in blocks {
                if ids.len() >= limit {
                    break;
                }
                offsets.push(ids.len() as u64);
                let take = block_len(b).min(limit - ids.len());
                ids.extend_from_slice(&stream[starts[b]..starts[b] + take]);
            }
            write_tokens(out, split, &ids)?;
            write_offsets(out, split, &offsets)?;
        }

        let mut meta = new_meta(
            KIND.name,
            Task::LanguageModel,
            [d, token_sizes.val, token_sizes.test],
        );
        meta.vocab = Some(vocab);
        for (i, _) in &texts {
            let file = &self.files[*i];
            meta.sources.push(source_file(&file.written, &file.path)?);
        }
        meta_extra.insert(
            "tokenizer".into(),
            json(match self.tokenizer {
                Tokenizer::Byte => "byte",
                Tokenizer::Char => "char",
            }),
        );
        meta_extra.insert("block".into(), json(self.block));
        meta_extra.insert("corpus_tokens".into(), json(stream.len()));
        meta_extra.insert("train_pool".into(), json(pool_tokens));
        meta_extra.insert("seed".into(), json(self.seed));
        if !skipped.is_empty() {
            let listed: Vec<serde_json::Value> = skipped
                .iter()
                .map(
                    |(i, why)| serde_json::json!({ "path": self.files[*i].written, "reason": why }),
                )
                .collect();
            meta_extra.insert("skipped".into(), json(listed));
        }
        meta.extra = meta_extra;
        write_meta(out, &meta).map_err(StageError::from)
    }
}
