//! The table loader shared by `dataset.csv` and `dataset.parquet`: parameters,
//! column checks, null policy, label encoding, text tokenisation, nested splits.
//!
//! The two kinds differ only in how the file becomes a Polars frame; everything
//! after that (and every error about columns) is here, so both report problems
//! the same way: the file, the column and what was expected.

use std::collections::BTreeSet;
use std::path::PathBuf;

use polars::prelude::*;
use serde::Deserialize;

use super::split::{train_size, Count, SplitSpec};
use super::subsample::nested_subsample;
use super::tokenize::{byte_ids, fit_to_len, WordVocab};
use super::{json, new_meta, InputFile};
use crate::data::{
    write_meta, write_parquet, write_table, Columns, DataError, Split, Table, Targets, Task,
};
use crate::kinds_doc::ParamDoc;
use crate::stages::{parse_params, ConfigureContext, Job, ParamError, StageContext, StageError};

/// How a table file becomes a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Csv { separator: u8 },
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TaskName {
    Regression,
    Classification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Tokenizer {
    Byte,
    Word,
}

/// The reference of the table loaders' shared parameters ([`crate::kinds_doc`]):
/// all of `dataset.parquet`'s, and `dataset.csv`'s but `separator`.
pub const TABLE_PARAMS: &[ParamDoc] = &[
    ParamDoc::new("path", "string", "required", "The table file, relative to the pipeline file; with an input stage (one `command` that writes the table), a file in that stage's output directory."),
    ParamDoc::new("label", "string", "required", "The target column."),
    ParamDoc::new("task", "\"regression\" | \"classification\"", "required", "Real-valued target (MSE) or class labels (cross-entropy)."),
    ParamDoc::new("features", "list of strings", "every other numeric column", "Numeric feature columns."),
    ParamDoc::new("text", "string", "none", "A text column to tokenise instead of numeric features (text classification; train with model = \"text_classifier\")."),
    ParamDoc::new("tokenizer", "\"word\" | \"byte\"", "\"word\"", "With `text`: lowercase words (with an unknown id) or bytes."),
    ParamDoc::new("max_vocab", "integer", "10000", "With `text` and the word tokenizer: most ids, padding and unknown included."),
    ParamDoc::new("min_count", "integer", "1", "With `text` and the word tokenizer: words seen fewer times in the training pool map to the unknown id."),
    ParamDoc::new("max_len", "integer", "128", "With `text`: tokens per example (longer texts are cut, shorter padded)."),
    ParamDoc::new("drop_nulls", "bool", "false", "Drop rows with a missing value instead of failing."),
    ParamDoc::new("split", "table {train, val, test}", "val = test = 10%", "Counts of rows (integers) or fractions of the table (floats)."),
    ParamDoc::new("n", "integer", "the whole training pool", "Training examples D, a nested subsample: smaller n are subsets of larger ones."),
    ParamDoc::new("seed", "integer", "the pipeline's seed", "Seeds the draw; same parameters and seed give byte-identical files."),
];

/// `dataset.csv`'s own parameter, besides [`TABLE_PARAMS`].
pub const CSV_ONLY_PARAMS: &[ParamDoc] = &[ParamDoc::new(
    "separator",
    "one ASCII character",
    "\",\"",
    "The field separator.",
)];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    path: String,
    label: String,
    task: TaskName,
    features: Option<Vec<String>>,
    text: Option<String>,
    tokenizer: Option<Tokenizer>,
    max_vocab: Option<usize>,
    min_count: Option<u64>,
    max_len: Option<usize>,
    #[serde(default)]
    drop_nulls: bool,
    /// CSV only: the field separator, one ASCII character.
    separator: Option<String>,
    #[serde(default)]
    split: SplitSpec,
    /// Training examples D (default: the whole training pool).
    n: Option<Count>,
    seed: u64,
}

/// Turns one text into token ids.
type Encoder = Box<dyn Fn(&str) -> Vec<u32>>;

/// Text-column settings.
#[derive(Debug, Clone)]
struct TextColumn {
    column: String,
    tokenizer: Tokenizer,
    max_vocab: usize,
    min_count: u64,
    max_len: usize,
}

/// A configured table loader.
#[derive(Debug, Clone)]
pub(super) struct TableJob {
    kind: &'static str,
    format: Format,
    /// The table: a file of the project, or (`from_input`) a file its one input
    /// stage wrote, named relative to that stage's output directory.
    file: InputFile,
    from_input: bool,
    label: String,
    task: TaskName,
    features: Option<Vec<String>>,
    text: Option<TextColumn>,
    drop_nulls: bool,
    split: SplitSpec,
    n: Option<u64>,
    seed: u64,
}

/// Parses and checks the parameters of a table kind.
pub(super) fn configure(
    kind: &'static str,
    csv: bool,
    params: &toml::Table,
    cx: &ConfigureContext,
) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = parse_params(params)?;
    p.split.validate()?;
    let from_input = !cx.input_kinds.is_empty();
    let file = if from_input {
        input_table(&p.path, cx)?
    } else {
        InputFile::existing("path", &p.path, cx)?
    };
    let format = match (csv, &p.separator) {
        (false, Some(_)) => {
            return Err(ParamError::at(
                "separator",
                "only dataset.csv takes a separator",
            ))
        }
        (false, None) => Format::Parquet,
        (true, None) => Format::Csv { separator: b',' },
        (true, Some(s)) => match s.as_bytes() {
            [b] if b.is_ascii() => Format::Csv { separator: *b },
            _ => {
                return Err(ParamError::at(
                    "separator",
                    "expected one ASCII character, such as \",\" or \"\\t\"",
                ))
            }
        },
    };
    let text = match &p.text {
        None => {
            for key in ["tokenizer", "max_vocab", "min_count", "max_len"] {
                let given = match key {
                    "tokenizer" => p.tokenizer.is_some(),
                    "max_vocab" => p.max_vocab.is_some(),
                    "min_count" => p.min_count.is_some(),
                    _ => p.max_len.is_some(),
                };
                if given {
                    return Err(ParamError::at(
                        key,
                        "only applies with `text` (a text column)",
                    ));
                }
            }
            None
        }
        Some(column) => {
            if p.task != TaskName::Classification {
                return Err(ParamError::at(
                    "task",
                    "a `text` column is for text classification: expected task = \"classification\"",
                ));
            }
            if p.features.is_some() {
                return Err(ParamError::at(
                    "features",
                    "a text dataset's features are the tokens of the `text` column; drop `features`",
                ));
            }
            let max_vocab = p.max_vocab.unwrap_or(10_000);
            if max_vocab < 3 {
                return Err(ParamError::at(
                    "max_vocab",
                    "expected at least 3 (padding, unknown and one word)",
                ));
            }
            let max_len = p.max_len.unwrap_or(128);
            if max_len == 0 {
                return Err(ParamError::at("max_len", "expected an integer >= 1"));
            }
            let tokenizer = p.tokenizer.unwrap_or(Tokenizer::Word);
            if tokenizer == Tokenizer::Byte && p.min_count.is_some() {
                return Err(ParamError::at(
                    "min_count",
                    "applies to the word tokenizer only (bytes always use 257 ids)",
                ));
            }
            if p.min_count == Some(0) {
                return Err(ParamError::at("min_count", "expected an integer >= 1"));
            }
            if tokenizer == Tokenizer::Byte && p.max_vocab.is_some() {
                return Err(ParamError::at(
                    "max_vocab",
                    "byte-level tokens always use 257 ids (bytes + padding)",
                ));
            }
            Some(TextColumn {
                column: column.clone(),
                tokenizer,
                max_vocab,
                min_count: p.min_count.unwrap_or(1),
                max_len,
            })
        }
    };
    if let Some(features) = &p.features {
        if features.is_empty() {
            return Err(ParamError::at("features", "expected at least one column"));
        }
        if features.contains(&p.label) {
            return Err(ParamError::at(
                "features",
                format!("the label column `{}` cannot also be a feature", p.label),
            ));
        }
    }
    Ok(Box::new(TableJob {
        kind,
        format,
        file,
        from_input,
        label: p.label,
        task: p.task,
        features: p.features,
        text,
        drop_nulls: p.drop_nulls,
        split: p.split,
        n: p.n.map(|c| c.0),
        seed: p.seed,
    }))
}

/// A table an input stage writes (a `command` that exports one): `path` names a
/// file in that stage's output directory, found when the stage runs. Its
/// content is the input's, whose fingerprint this stage's key already holds.
fn input_table(path: &str, cx: &ConfigureContext) -> Result<InputFile, ParamError> {
    if cx.input_kinds.len() != 1 {
        return Err(ParamError::new(format!(
            "a table loader reads its own file or one written by one input stage; got {} inputs [{}]",
            cx.input_kinds.len(),
            cx.input_kinds.join(", ")
        )));
    }
    let relative = std::path::Path::new(path);
    let inside = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if path.is_empty() || !inside {
        return Err(ParamError::at(
            "path",
            "with an input stage, `path` names a file in that stage's output directory (e.g. \"table.csv\"), not an absolute path or one leaving it",
        ));
    }
    Ok(InputFile {
        written: path.to_string(),
        path: relative.to_path_buf(),
    })
}

impl TableJob {
    /// The loader with its file located in the input instance's outputs.
    fn located(&self, ctx: &StageContext) -> Result<TableJob, StageError> {
        let [input] = ctx.inputs() else {
            return Err(StageError::msg(format!(
                "a table loader with an input stage reads one input instance, got {}",
                ctx.inputs().len()
            )));
        };
        let path = input.dir.join(&self.file.written);
        if !path.is_file() {
            return Err(StageError::msg(format!(
                "{} ({}) wrote no file `{}` for this stage to read",
                input.id, input.kind, self.file.written
            )));
        }
        Ok(TableJob {
            file: InputFile {
                written: self.file.written.clone(),
                path,
            },
            from_input: false,
            ..self.clone()
        })
    }

    fn path(&self) -> &std::path::Path {
        &self.file.path
    }

    fn invalid(&self, message: impl Into<String>) -> DataError {
        DataError::invalid(self.path(), message)
    }

    /// Reads the file into a frame.
    fn load(&self) -> Result<DataFrame, DataError> {
        let path = self.path();
        let size = std::fs::metadata(path)
            .map_err(|e| DataError::io(path, e))?
            .len();
        if size == 0 {
            return Err(self.invalid("the file is empty"));
        }
        match self.format {
            Format::Parquet => crate::data::read_parquet(path),
            Format::Csv { separator } => CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .map_parse_options(|o| o.with_separator(separator))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|reader| reader.finish())
                .map_err(|e| DataError::polars(path, e)),
        }
    }

    /// Looks a column up, listing the file's columns if it is not there.
    fn column<'a>(
        &self,
        df: &'a DataFrame,
        name: &str,
        role: &str,
    ) -> Result<&'a Column, DataError> {
        df.column(name).map_err(|_| {
            let names: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|n| format!("`{n}`"))
                .collect();
            self.invalid(format!(
                "{role} column `{name}` not found; the columns are {}",
                names.join(", ")
            ))
        })
    }

    /// Feature column names: as given, or every column but the label.
    fn feature_names(&self, df: &DataFrame) -> Vec<String> {
        match (&self.features, &self.text) {
            (_, Some(_)) => Vec::new(),
            (Some(f), None) => f.clone(),
            (None, None) => df
                .get_column_names()
                .iter()
                .map(|n| n.to_string())
                .filter(|n| *n != self.label)
                .collect(),
        }
    }

    /// Applies the null policy to the used columns: error, or drop those rows.
    /// NaN counts as missing too, since no model can learn from it.
    fn handle_nulls(
        &self,
        df: DataFrame,
        used: &[String],
    ) -> Result<(DataFrame, usize), DataError> {
        let mut keep = vec![true; df.height()];
        for name in used {
            let column = self.column(&df, name, "used")?;
            let mut bad: Vec<usize> = column
                .is_null()
                .iter()
                .enumerate()
                .filter_map(|(i, null)| (null == Some(true)).then_some(i))
                .collect();
            let mut what = "null";
            if column.dtype().is_float() {
                let values = column
                    .cast(&DataType::Float64)
                    .map_err(|e| DataError::polars(self.path(), e))?;
                let nans: Vec<usize> = values
                    .f64()
                    .map_err(|e| DataError::polars(self.path(), e))?
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.filter(|v| v.is_nan()).map(|_| i))
                    .collect();
                if !nans.is_empty() && bad.is_empty() {
                    what = "NaN";
                }
                bad.extend(nans);
                bad.sort_unstable();
            }
            if bad.is_empty() {
                continue;
            }
            if !self.drop_nulls {
                return Err(self.invalid(format!(
                    "column `{name}` has {} {what} value(s), the first in data row {}; fill them in or set drop_nulls = true to drop such rows",
                    bad.len(),
                    bad[0] + 1
                )));
            }
            for i in bad {
                keep[i] = false;
            }
        }
        let dropped = keep.iter().filter(|k| !**k).count();
        if dropped == 0 {
            return Ok((df, 0));
        }
        let mask = BooleanChunked::from_slice("keep".into(), &keep);
        let df = df
            .filter(&mask)
            .map_err(|e| DataError::polars(self.path(), e))?;
        Ok((df, dropped))
    }

    /// Numeric feature columns as one row-major f32 matrix.
    fn features(&self, df: &DataFrame, names: &[String]) -> Result<Vec<f32>, DataError> {
        let rows = df.height();
        let cols = names.len();
        let mut x = vec![0f32; rows * cols];
        for (c, name) in names.iter().enumerate() {
            let column = self.column(df, name, "feature")?;
            let dtype = column.dtype();
            if !(dtype.is_primitive_numeric() || dtype.is_bool()) {
                return Err(self.invalid(format!(
                    "feature column `{name}` holds {dtype}, not numbers; list only numeric columns in `features`{}",
                    if dtype.is_string() {
                        ", or use `text` for a column of text"
                    } else {
                        ""
                    }
                )));
            }
            let values = column
                .cast(&DataType::Float32)
                .map_err(|e| DataError::polars(self.path(), e))?;
            let values = values
                .f32()
                .map_err(|e| DataError::polars(self.path(), e))?;
            for (r, v) in values.iter().enumerate() {
                x[r * cols + c] = v.unwrap_or(f32::NAN);
            }
        }
        Ok(x)
    }

    /// Labels: f32 targets, or class indices with the class names.
    fn labels(&self, df: &DataFrame) -> Result<(Targets, Vec<String>), DataError> {
        let name = &self.label;
        let column = self.column(df, name, "label")?;
        let dtype = column.dtype().clone();
        match self.task {
            TaskName::Regression => {
                if !dtype.is_primitive_numeric() {
                    return Err(self.invalid(format!(
                        "label column `{name}` holds {dtype}, not numbers, so it cannot be a regression target (use task = \"classification\" for categories)"
                    )));
                }
                let values = column
                    .cast(&DataType::Float32)
                    .map_err(|e| DataError::polars(self.path(), e))?;
                let y = values
                    .f32()
                    .map_err(|e| DataError::polars(self.path(), e))?
                    .iter()
                    .map(|v| v.unwrap_or(f32::NAN))
                    .collect();
                Ok((Targets::Regression(y), Vec::new()))
            }
            TaskName::Classification => {
                // Classes are the distinct values in sorted order, so the same
                // table always maps to the same indices.
                let keys: Vec<String> = if dtype.is_integer() || dtype.is_bool() {
                    let values = column
                        .cast(&DataType::Int64)
                        .map_err(|e| DataError::polars(self.path(), e))?;
                    let ints: Vec<i64> = values
                        .i64()
                        .map_err(|e| DataError::polars(self.path(), e))?
                        .iter()
                        .map(|v| v.unwrap_or_default())
                        .collect();
                    let distinct: Vec<i64> = ints
                        .iter()
                        .copied()
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let names: Vec<String> = distinct.iter().map(|v| v.to_string()).collect();
                    let labels = ints
                        .iter()
                        .map(|v| distinct.binary_search(v).expect("value is in distinct") as u32)
                        .collect();
                    return Ok((Targets::Classes(labels), names));
                } else if dtype.is_string() {
                    column
                        .str()
                        .map_err(|e| DataError::polars(self.path(), e))?
                        .iter()
                        .map(|v| v.unwrap_or_default().to_string())
                        .collect()
                } else {
                    return Err(self.invalid(format!(
                        "label column `{name}` holds {dtype}; class labels must be integers or strings"
                    )));
                };
                let names: Vec<String> = keys
                    .iter()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let labels = keys
                    .iter()
                    .map(|k| names.binary_search(k).expect("key is in names") as u32)
                    .collect();
                Ok((Targets::Classes(labels), names))
            }
        }
    }

    /// The text column's strings.
    fn texts(&self, df: &DataFrame, name: &str) -> Result<Vec<String>, DataError> {
        let column = self.column(df, name, "text")?;
        if !column.dtype().is_string() {
            return Err(self.invalid(format!(
                "text column `{name}` holds {}, not strings",
                column.dtype()
            )));
        }
        Ok(column
            .str()
            .map_err(|e| DataError::polars(self.path(), e))?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    }
}

/// Gathers rows `idx` of a row-major matrix and its targets.
fn take(x: &[f32], cols: usize, y: &Targets, idx: &[usize]) -> Table {
    let mut out = Vec::with_capacity(idx.len() * cols);
    for &i in idx {
        out.extend_from_slice(&x[i * cols..(i + 1) * cols]);
    }
    let y = match y {
        Targets::Regression(v) => Targets::Regression(idx.iter().map(|&i| v[i]).collect()),
        Targets::Classes(v) => Targets::Classes(idx.iter().map(|&i| v[i]).collect()),
    };
    Table {
        x: out,
        rows: idx.len(),
        cols,
        y,
    }
}

impl Job for TableJob {
    fn files(&self) -> Vec<PathBuf> {
        if self.from_input {
            return Vec::new();
        }
        vec![self.file.path.clone()]
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        if self.from_input {
            return self.located(ctx)?.run(ctx);
        }
        let out = ctx.out_dir();
        ctx.progress(0, 3, "reading");
        let df = self.load()?;
        if df.height() == 0 {
            return Err(self.invalid("the table has no rows").into());
        }
        ctx.log(&format!("read {}: {} rows", self.file.written, df.height()));
        self.column(&df, &self.label, "label")?;
        let feature_names = self.feature_names(&df);
        let mut used = feature_names.clone();
        used.push(self.label.clone());
        if let Some(text) = &self.text {
            used.push(text.column.clone());
        }
        for name in &used {
            let role = if *name == self.label {
                "label"
            } else if Some(name) == self.text.as_ref().map(|t| &t.column) {
                "text"
            } else {
                "feature"
            };
            self.column(&df, name, role)?;
        }
        if feature_names.is_empty() && self.text.is_none() {
            return Err(self
                .invalid(format!(
                    "no feature columns: the table has only the label `{}`",
                    self.label
                ))
                .into());
        }

        let (mut df, dropped) = self.handle_nulls(df, &used)?;
        if df.height() == 0 {
            return Err(self
                .invalid(format!(
                    "no rows left after dropping {dropped} row(s) with missing values"
                ))
                .into());
        }
        if dropped > 0 {
            ctx.log(&format!("dropped {dropped} row(s) with missing values"));
        }
        // The whole table after null handling, original names, for the fit stage.
        write_parquet(&out.join("source.parquet"), &mut df)?;

        ctx.progress(1, 3, "encoding");
        let pool = df.height();
        let sizes = self.split.resolve(pool).map_err(|m| self.invalid(m))?;
        let n = train_size(self.n, &sizes, "n", "examples").map_err(|m| self.invalid(m))?;
        // The whole training pool in order; the training set is its first n rows.
        let sub = nested_subsample(pool, &sizes, sizes.train_pool, self.seed);
        let (targets, class_names) = self.labels(&df)?;

        let mut meta_extra = serde_json::Map::new();
        let (x, cols, columns, vocab) = match &self.text {
            None => {
                let x = self.features(&df, &feature_names)?;
                meta_extra.insert("features".into(), json(&feature_names));
                (x, feature_names.len(), Columns::Features, None)
            }
            Some(text) => {
                let texts = self.texts(&df, &text.column)?;
                let (encode, vocab): (Encoder, usize) = match text.tokenizer {
                    Tokenizer::Byte => (Box::new(byte_ids), 257),
                    Tokenizer::Word => {
                        // Built from the training pool only (never from held-out
                        // rows), and from the whole pool rather than the first n, so
                        // every D of a sweep shares one vocabulary.
                        let vocab = WordVocab::build_min_count(
                            sub.train.iter().map(|&i| texts[i].as_str()),
                            text.max_vocab,
                            text.min_count,
                        );
                        let size = vocab.len();
                        meta_extra.insert("vocab_words".into(), json(vocab.words()));
                        (Box::new(move |t: &str| vocab.encode(t)), size)
                    }
                };
                let mut x = Vec::with_capacity(pool * text.max_len);
                let mut truncated = 0usize;
                for t in &texts {
                    let mut ids = encode(t);
                    truncated += fit_to_len(&mut ids, text.max_len) as usize;
                    x.extend(ids.into_iter().map(|id| id as f32));
                }
                meta_extra.insert("text_column".into(), json(&text.column));
                meta_extra.insert(
                    "tokenizer".into(),
                    json(match text.tokenizer {
                        Tokenizer::Byte => "byte",
                        Tokenizer::Word => "word",
                    }),
                );
                meta_extra.insert("truncated_rows".into(), json(truncated));
                (x, text.max_len, Columns::Tokens, Some(vocab))
            }
        };

        ctx.progress(2, 3, "writing splits");
        for (split, idx) in [
            (Split::Train, &sub.train[..n]),
            (Split::Val, &sub.val[..]),
            (Split::Test, &sub.test[..]),
        ] {
            write_table(out, split, &take(&x, cols, &targets, idx), columns)?;
        }

        let task = match (self.task, &self.text) {
            (TaskName::Regression, _) => Task::Regression,
            (TaskName::Classification, None) => Task::Classification,
            (TaskName::Classification, Some(_)) => Task::TextClassification,
        };
        let mut meta = new_meta(self.kind, task, [n, sizes.val, sizes.test]);
        meta.input_dim = Some(cols);
        meta.vocab = vocab;
        if self.task == TaskName::Classification {
            meta.classes = Some(class_names.len());
            meta_extra.insert("class_names".into(), json(&class_names));
        }
        meta.sources.push(self.file.source()?);
        meta_extra.insert("label".into(), json(&self.label));
        meta_extra.insert("rows".into(), json(pool));
        meta_extra.insert("dropped_rows".into(), json(dropped));
        meta_extra.insert("train_pool".into(), json(sizes.train_pool));
        meta_extra.insert("seed".into(), json(self.seed));
        meta.extra = meta_extra;
        write_meta(out, &meta)?;
        ctx.progress(3, 3, "done");
        Ok(())
    }
}
