//! Reading and writing a dataset stage's on-disk formats: `meta.json`, table splits
//! as Parquet, token streams as little-endian u32 `.bin` files.
//!
//! Every error names the file it happened on, so a user (or another stage) that
//! meets a broken dataset directory learns which file to look at. Writers are
//! deterministic: the same values give byte-identical files, which the cache and
//! the "same seed, same bytes" promise rely on.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::{DatasetMeta, Split, Table, Targets, Tokens};

/// Why reading or writing a dataset file failed. Each variant carries the path.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Polars could not parse or write the file.
    #[error("{}: {source}", path.display())]
    Polars {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    /// `meta.json` is not valid JSON of the expected shape.
    #[error("{}: invalid dataset metadata: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file was read but its content is not what was expected.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl DataError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn polars(path: impl AsRef<Path>, source: PolarsError) -> Self {
        DataError::Polars {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn invalid(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}

/// Column layout of a table split's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// f32 columns `x0..x{d-1}`.
    Features,
    /// u32 token id columns `t0..t{L-1}` (0 = padding) for text classification.
    Tokens,
}

/// Path of `meta.json` in a dataset directory.
pub fn meta_path(dir: &Path) -> PathBuf {
    dir.join("meta.json")
}

/// Path of a table split (`train.parquet`).
pub fn table_path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("{}.parquet", split.name()))
}

/// Path of a token stream split (`train.bin`).
pub fn tokens_path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("{}.bin", split.name()))
}

/// Path of a token stream's piece offsets (`train.offsets.bin`).
pub fn offsets_path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("{}.offsets.bin", split.name()))
}

/// Reads a dataset directory's `meta.json`.
pub fn read_meta(dir: &Path) -> Result<DatasetMeta, DataError> {
    let path = meta_path(dir);
    let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| DataError::Json { path, source })
}

/// Writes `meta.json` (pretty, keys of `extra` sorted, trailing newline).
pub fn write_meta(dir: &Path, meta: &DatasetMeta) -> Result<(), DataError> {
    let path = meta_path(dir);
    let mut text = serde_json::to_string_pretty(meta).map_err(|source| DataError::Json {
        path: path.clone(),
        source,
    })?;
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))
}

/// Reads one table split (`{split}.parquet`) into row-major features and targets.
///
/// Feature columns are `x0..x{d-1}` (f32) or `t0..t{L-1}` (u32 token ids, returned
/// as f32); the label `y` is f32 (regression) or u32 (class index).
pub fn read_table(dir: &Path, split: Split) -> Result<Table, DataError> {
    let path = table_path(dir, split);
    let df = read_parquet(&path)?;
    table_from_frame(&df, &path)
}

/// Writes one table split as `{split}.parquet`.
pub fn write_table(
    dir: &Path,
    split: Split,
    table: &Table,
    columns: Columns,
) -> Result<PathBuf, DataError> {
    let path = table_path(dir, split);
    let mut df = frame_from_table(table, columns).map_err(|e| DataError::polars(&path, e))?;
    write_parquet(&path, &mut df)?;
    Ok(path)
}

/// Reads one token stream split (`{split}.bin`); the vocabulary size comes from
/// `meta.json` in the same directory and every id is checked against it.
pub fn read_tokens(dir: &Path, split: Split) -> Result<Tokens, DataError> {
    let vocab = token_vocab(dir)?;
    let path = tokens_path(dir, split);
    let ids = read_u32s(&path)?;
    checked_tokens(&path, ids, vocab)
}

/// Reads the first `n` tokens of a token stream split, without reading the rest
/// (a data-size sweep over a large corpus takes prefixes of one stream).
pub fn read_tokens_prefix(dir: &Path, split: Split, n: usize) -> Result<Tokens, DataError> {
    use std::io::Read;
    let vocab = token_vocab(dir)?;
    let path = tokens_path(dir, split);
    let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let mut bytes = Vec::with_capacity(n * 4);
    file.take(n as u64 * 4)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(&path, e))?;
    if bytes.len() != n * 4 {
        return Err(DataError::invalid(
            &path,
            format!(
                "holds {} tokens, fewer than the {n} asked for",
                bytes.len() / 4
            ),
        ));
    }
    checked_tokens(&path, decode_u32s(&bytes), vocab)
}

/// Writes the first `rows` rows of a table split of dataset directory `from`
/// as the same split of `to`, reading only those rows (a data-size sweep over
/// a table takes nested prefixes of one training split). Returns the path
/// written.
pub fn copy_table_prefix(
    from: &Path,
    to: &Path,
    split: Split,
    rows: usize,
) -> Result<PathBuf, DataError> {
    let path = table_path(from, split);
    let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let mut df = ParquetReader::new(file)
        .with_slice(Some((0, rows)))
        .finish()
        .map_err(|e| DataError::polars(&path, e))?;
    if df.height() != rows {
        return Err(DataError::invalid(
            &path,
            format!(
                "holds {} rows, fewer than the {rows} asked for",
                df.height()
            ),
        ));
    }
    // One chunk per column, as a table written whole has: the same rows give
    // the same bytes.
    df.rechunk_mut();
    let out = table_path(to, split);
    write_parquet(&out, &mut df)?;
    Ok(out)
}

/// The vocabulary size a token dataset's `meta.json` declares.
fn token_vocab(dir: &Path) -> Result<usize, DataError> {
    read_meta(dir)?.vocab.ok_or_else(|| {
        DataError::invalid(
            meta_path(dir),
            "no `vocab` in dataset metadata: not a token dataset",
        )
    })
}

/// `ids` read from `path`, each checked to lie inside the vocabulary.
fn checked_tokens(path: &Path, ids: Vec<u32>, vocab: usize) -> Result<Tokens, DataError> {
    if let Some((pos, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(DataError::invalid(
            path,
            format!("token {id} at position {pos} is outside the vocabulary of {vocab}"),
        ));
    }
    Ok(Tokens { ids, vocab })
}

/// Writes one token stream split as `{split}.bin` (little-endian u32).
pub fn write_tokens(dir: &Path, split: Split, ids: &[u32]) -> Result<PathBuf, DataError> {
    let path = tokens_path(dir, split);
    write_u32s(&path, ids)?;
    Ok(path)
}

/// Reads the start offsets of the contiguous pieces of a token split
/// (`{split}.offsets.bin`, little-endian u64). A model that must not read across
/// a cut in the source (a block boundary of a shuffled corpus) uses them.
pub fn read_offsets(dir: &Path, split: Split) -> Result<Vec<u64>, DataError> {
    let path = offsets_path(dir, split);
    let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    if bytes.len() % 8 != 0 {
        return Err(DataError::invalid(
            &path,
            format!("{} bytes is not a whole number of u64 offsets", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect())
}

/// Writes piece start offsets as `{split}.offsets.bin`.
pub fn write_offsets(dir: &Path, split: Split, offsets: &[u64]) -> Result<PathBuf, DataError> {
    let path = offsets_path(dir, split);
    let file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
    let mut out = BufWriter::new(file);
    for o in offsets {
        out.write_all(&o.to_le_bytes())
            .map_err(|e| DataError::io(&path, e))?;
    }
    out.flush().map_err(|e| DataError::io(&path, e))?;
    Ok(path)
}

/// Reads a whole file of little-endian u32 values.
pub fn read_u32s(path: &Path) -> Result<Vec<u32>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.len() % 4 != 0 {
        return Err(DataError::invalid(
            path,
            format!(
                "{} bytes is not a whole number of little-endian u32 token ids",
                bytes.len()
            ),
        ));
    }
    Ok(decode_u32s(&bytes))
}

/// Little-endian u32 values from bytes whose length is a multiple of 4.
fn decode_u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4-byte chunk")))
        .collect()
}

/// Writes little-endian u32 values.
pub fn write_u32s(path: &Path, values: &[u32]) -> Result<(), DataError> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut out = BufWriter::new(file);
    for v in values {
        out.write_all(&v.to_le_bytes())
            .map_err(|e| DataError::io(path, e))?;
    }
    out.flush().map_err(|e| DataError::io(path, e))
}

/// Reads a Parquet file into a frame.
pub fn read_parquet(path: &Path) -> Result<DataFrame, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| DataError::polars(path, e))
}

/// Writes a frame as Parquet with settings fixed here, so the bytes depend only on
/// the frame: zstd at its default level, one row group per 64Ki rows, statistics on.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), DataError> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    ParquetWriter::new(BufWriter::new(file))
        .with_compression(ParquetCompression::Zstd(None))
        .with_row_group_size(Some(65_536))
        .finish(df)
        .map_err(|e| DataError::polars(path, e))?;
    Ok(())
}

/// Builds the frame of a table split: feature columns then `y`.
fn frame_from_table(table: &Table, columns: Columns) -> PolarsResult<DataFrame> {
    let expected = table.rows * table.cols;
    if table.x.len() != expected {
        return Err(PolarsError::ShapeMismatch(
            format!(
                "table has {} feature values, expected rows * cols = {expected}",
                table.x.len()
            )
            .into(),
        ));
    }
    let mut cols = Vec::with_capacity(table.cols + 1);
    for c in 0..table.cols {
        let values = (0..table.rows).map(|r| table.x[r * table.cols + c]);
        let column = match columns {
            Columns::Features => Column::new(format!("x{c}").into(), values.collect::<Vec<f32>>()),
            Columns::Tokens => Column::new(
                format!("t{c}").into(),
                values.map(|v| v as u32).collect::<Vec<u32>>(),
            ),
        };
        cols.push(column);
    }
    let y = match &table.y {
        Targets::Regression(v) => Column::new("y".into(), v.as_slice()),
        Targets::Classes(v) => Column::new("y".into(), v.as_slice()),
    };
    cols.push(y);
    DataFrame::new(table.rows, cols)
}

/// Reads a split frame back into a [`Table`], checking its column layout.
fn table_from_frame(df: &DataFrame, path: &Path) -> Result<Table, DataError> {
    let rows = df.height();
    let names: Vec<&str> = df
        .get_column_names()
        .into_iter()
        .map(|n| n.as_str())
        .filter(|n| *n != "y")
        .collect();
    let prefix = match names.first().and_then(|n| n.chars().next()) {
        Some('t') => 't',
        _ => 'x',
    };
    for (i, name) in names.iter().enumerate() {
        if *name != format!("{prefix}{i}") {
            return Err(DataError::invalid(
                path,
                format!(
                    "column {i} is `{name}`, expected `{prefix}{i}` (feature columns x0..x{{d-1}} or token columns t0..t{{L-1}}, then y)"
                ),
            ));
        }
    }
    let cols = names.len();
    let mut x = vec![0f32; rows * cols];
    for (c, name) in names.iter().enumerate() {
        let column = df.column(name).map_err(|e| DataError::polars(path, e))?;
        if column.null_count() > 0 {
            return Err(DataError::invalid(
                path,
                format!("column `{name}` has nulls"),
            ));
        }
        let values = column
            .cast(&DataType::Float32)
            .map_err(|e| DataError::polars(path, e))?;
        let values = values.f32().map_err(|e| DataError::polars(path, e))?;
        for (r, v) in values.into_no_null_iter().enumerate() {
            x[r * cols + c] = v;
        }
    }
    let y = df
        .column("y")
        .map_err(|_| DataError::invalid(path, "no label column `y`"))?;
    if y.null_count() > 0 {
        return Err(DataError::invalid(path, "label column `y` has nulls"));
    }
    let y = match y.dtype() {
        DataType::Float32 => Targets::Regression(
            y.f32()
                .map_err(|e| DataError::polars(path, e))?
                .into_no_null_iter()
                .collect(),
        ),
        DataType::UInt32 => Targets::Classes(
            y.u32()
                .map_err(|e| DataError::polars(path, e))?
                .into_no_null_iter()
                .collect(),
        ),
        other => {
            return Err(DataError::invalid(
                path,
                format!("label column `y` is {other}, expected f32 (regression) or u32 (class)"),
            ))
        }
    };
    Ok(Table { x, rows, cols, y })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Task;

    fn meta(vocab: Option<usize>) -> DatasetMeta {
        DatasetMeta {
            kind: "test".into(),
            task: Task::LanguageModel,
            n_train: 3,
            n_val: 0,
            n_test: 0,
            input_dim: None,
            classes: None,
            vocab,
            irreducible_loss: None,
            sources: Vec::new(),
            extra: Default::default(),
        }
    }

    #[test]
    fn table_round_trips_features_and_classes() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table {
            x: vec![0.5, -1.0, 2.0, 3.25, 4.0, -0.0],
            rows: 3,
            cols: 2,
            y: Targets::Classes(vec![2, 0, 1]),
        };
        write_table(dir.path(), Split::Val, &table, Columns::Features).unwrap();
        assert_eq!(read_table(dir.path(), Split::Val).unwrap(), table);
    }

    #[test]
    fn table_round_trips_tokens_and_regression() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table {
            x: vec![5.0, 1.0, 0.0, 7.0, 0.0, 0.0],
            rows: 2,
            cols: 3,
            y: Targets::Regression(vec![0.25, -8.0]),
        };
        write_table(dir.path(), Split::Train, &table, Columns::Tokens).unwrap();
        let df = read_parquet(&table_path(dir.path(), Split::Train)).unwrap();
        assert_eq!(df.column("t2").unwrap().dtype(), &DataType::UInt32);
        assert_eq!(read_table(dir.path(), Split::Train).unwrap(), table);
    }

    #[test]
    fn tokens_round_trip_and_are_checked_against_vocab() {
        let dir = tempfile::tempdir().unwrap();
        write_meta(dir.path(), &meta(Some(10))).unwrap();
        write_tokens(dir.path(), Split::Train, &[1, 9, 0]).unwrap();
        let tokens = read_tokens(dir.path(), Split::Train).unwrap();
        assert_eq!(
            tokens,
            Tokens {
                ids: vec![1, 9, 0],
                vocab: 10
            }
        );
        write_tokens(dir.path(), Split::Test, &[1, 10]).unwrap();
        let err = read_tokens(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.bin") && err.contains("token 10 at position 1"),
            "{err}"
        );
    }

    #[test]
    fn truncated_token_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_meta(dir.path(), &meta(Some(10))).unwrap();
        std::fs::write(tokens_path(dir.path(), Split::Val), [1u8, 0, 0, 0, 7]).unwrap();
        let err = read_tokens(dir.path(), Split::Val).unwrap_err().to_string();
        assert!(err.contains("val.bin") && err.contains("5 bytes"), "{err}");
    }

    #[test]
    fn missing_meta_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_meta(dir.path()).unwrap_err().to_string();
        assert!(err.contains("meta.json"), "{err}");
        std::fs::write(meta_path(dir.path()), "{\"kind\": 3}").unwrap();
        let err = read_meta(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("meta.json") && err.contains("invalid dataset metadata"),
            "{err}"
        );
    }

    #[test]
    fn meta_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = meta(Some(256));
        m.irreducible_loss = Some(1.5);
        m.extra.insert("order".into(), 2.into());
        write_meta(dir.path(), &m).unwrap();
        assert_eq!(read_meta(dir.path()).unwrap(), m);
    }

    #[test]
    fn parquet_bytes_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table {
            x: (0..2000).map(|i| (i as f32).sin()).collect(),
            rows: 500,
            cols: 4,
            y: Targets::Regression((0..500).map(|i| i as f32).collect()),
        };
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        write_table(&a, Split::Train, &table, Columns::Features).unwrap();
        write_table(&b, Split::Train, &table, Columns::Features).unwrap();
        let bytes_a = std::fs::read(table_path(&a, Split::Train)).unwrap();
        let bytes_b = std::fs::read(table_path(&b, Split::Train)).unwrap();
        assert_eq!(bytes_a, bytes_b);
    }
}
