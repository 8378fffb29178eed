//! `dataset.text`: a plain-text corpus (a directory walked with a glob, or one file)
//! turned into a token stream for language modelling.
//!
//! Files are read in sorted order of their path relative to `path`, so the corpus
//! is the same on every machine. Tokens are bytes (vocab 256) by default, or
//! characters (`tokenizer = "char"`, vocabulary = the corpus's distinct characters
//! sorted by code point, listed in `meta.json` as `extra.chars`). A file that
//! cannot be read, holds a NUL byte or is not UTF-8 is reported as an error,
//! unless `skip_unreadable = true`, which skips it and records it in the metadata.
//!
//! The corpus is cut into blocks of `block` tokens; a seeded permutation of the
//! blocks gives validation and test (`split`) and then the training blocks, of
//! which the first `tokens` tokens are kept, so smaller D are prefixes of larger
//! ones. Each split's `offsets.bin` gives where its blocks start.

use std::path::PathBuf;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use walkdir::WalkDir;

use super::split::{train_size, Count, SplitSizes, SplitSpec};
use super::subsample::nested_subsample;
use super::tokenize::char_vocab;
use super::{json, new_meta, source_file};
use crate::data::{write_meta, write_offsets, write_tokens, Split, Task};
use crate::stages::{
    parse_params, ConfigureContext, Job, Kind, ParamError, StageContext, StageError,
};

pub const KIND: Kind = Kind {
    name: "dataset.text",
    version: 1,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    configure,
};

/// Problems listed in one error before the rest are counted.
const MAX_LISTED: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Tokenizer {
    Byte,
    Char,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    path: String,
    #[serde(default = "default_glob")]
    glob: String,
    #[serde(default = "default_tokenizer")]
    tokenizer: Tokenizer,
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
    let root = cx.resolve(&p.path);
    let files = if root.is_file() {
        vec![CorpusFile {
            written: p.path.clone(),
            path: root,
        }]
    } else if root.is_dir() {
        let matcher = Glob::new(&p.glob)
            .map_err(|e| ParamError::at("glob", format!("invalid glob: {e}")))?
            .compile_matcher();
        walk(&root, &p.path, &matcher, p.skip_unreadable)?
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
                "no file under {} matches `{}`",
                cx.resolve(&p.path).display(),
                p.glob
            ),
        ));
    }
    Ok(Box::new(TextJob {
        files,
        tokenizer: p.tokenizer,
        tokens: p.tokens.map(|c| c.0),
        block: p.block,
        skip_unreadable: p.skip_unreadable,
        split: p.split,
        seed: p.seed,
    }))
}

/// Files under `root` whose relative path matches, sorted by that path.
fn walk(
    root: &std::path::Path,
    written_root: &str,
    matcher: &GlobMatcher,
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
        if matcher.is_match(&rel) {
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
                // From the whole corpus, so every D of a sweep shares the vocabulary
                // and no held-out character is unknown.
                let chars = char_vocab(texts.iter().map(|(_, t)| t.as_str()));
                let stream = texts
                    .iter()
                    .flat_map(|(_, t)| t.chars())
                    .map(|c| chars.binary_search(&c).expect("char is in the vocab") as u32)
                    .collect();
                let listed: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
                meta_extra.insert("chars".into(), json(listed));
                (stream, chars.len())
            }
        };
        if stream.is_empty() {
            return Err(StageError::msg(format!(
                "the corpus is empty: {} file(s) hold no text",
                texts.len()
            )));
        }

        // Blocks of the stream are the units of the split.
        let starts: Vec<usize> = (0..stream.len()).step_by(self.block).collect();
        let block_len = |b: usize| self.block.min(stream.len() - starts[b]);
        let pool = starts.len();
        let sizes = self.split.resolve(pool).map_err(|m| {
            StageError::msg(format!(
                "{m} (blocks of {} tokens; the corpus has {} tokens; lower `block` for a small corpus)",
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
