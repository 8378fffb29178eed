//! Gathering runs into one table with Polars: one row per run with its N, D, C,
//! loss and status, from training/evaluation `metrics.json` files or from any
//! table (a dataset stage's `source.parquet`, or a CSV/Parquet file).
//!
//! Every source becomes the same canonical frame (`id`, `n`, `d`, `c`, `loss`,
//! `status`, `params`), so the rest of the fit never cares where runs came from.
//! Choosing which runs enter the fit is separate ([`select`]): a run is excluded,
//! with the reason recorded, when it diverged or lacks a finite positive value the
//! form needs, and optionally when it is among the highest losses.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::form::Variable;
use super::Observation;
use crate::train::metrics::RunMetrics;

/// Which source columns hold each quantity. `None` means the default name (`n`,
/// `d`, `c`, `loss`, `status`, `id` for tables; the `metrics.json` keys
/// `n_params`, `d`, `flops`, `loss`, `status` for runs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    pub id: Option<String>,
    pub n: Option<String>,
    pub d: Option<String>,
    pub c: Option<String>,
    pub loss: Option<String>,
    pub status: Option<String>,
    /// Derive `D = C / (6 N)` (tables that record compute but not tokens).
    pub d_from_c: bool,
}

/// Why a table could not be read or mapped.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Polars {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    #[error("{}: no column `{column}` (for {role}); columns are: {available}", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        role: &'static str,
        available: String,
    },
    #[error("{}: unsupported table format (expected a .csv or .parquet file)", path.display())]
    Format { path: PathBuf },
}

/// One run of the canonical table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: String,
    pub n: Option<f64>,
    pub d: Option<f64>,
    pub c: Option<f64>,
    pub loss: Option<f64>,
    pub status: Option<String>,
    /// The run's parameters as JSON (`{"width":64}`), for runs from `metrics.json`.
    pub params: Option<String>,
}

impl Run {
    /// The run as the objective reads it. Missing values become NaN: `select`
    /// keeps only runs that have every variable the form needs.
    pub fn observation(&self) -> Observation {
        Observation {
            n: self.n.unwrap_or(f64::NAN),
            d: self.d.unwrap_or(f64::NAN),
            c: self.c.unwrap_or(f64::NAN),
            loss: self.loss.unwrap_or(f64::NAN),
        }
    }

    pub fn get(&self, variable: Variable) -> Option<f64> {
        match variable {
            Variable::N => self.n,
            Variable::D => self.d,
            Variable::C => self.c,
        }
    }
}

/// Reads a CSV or Parquet file (by extension) into a frame.
pub fn read_file(path: &Path) -> Result<DataFrame, TableError> {
    let polars_err = |source| TableError::Polars {
        path: path.to_path_buf(),
        source,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => {
            if !path.is_file() {
                return Err(TableError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
                .map_err(polars_err)
        }
        Some("parquet") => {
            let file = File::open(path).map_err(|source| TableError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            ParquetReader::new(file).finish().map_err(polars_err)
        }
        _ => Err(TableError::Format {
            path: path.to_path_buf(),
        }),
    }
}

/// Maps a frame read from `path` to the canonical columns. Rows without an id
/// column are named `<prefix>#<row>` (1-based).
pub fn canonical(
    raw: &DataFrame,
    map: &ColumnMap,
    path: &Path,
    prefix: &str,
) -> Result<DataFrame, TableError> {
    let names: Vec<String> = raw
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let available = || names.join(", ");
    // An explicitly mapped column must exist; a default one may be absent.
    let find = |explicit: &Option<String>,
                default: &str,
                role: &'static str|
     -> Result<Option<&Column>, TableError> {
        match explicit {
            Some(name) => raw
                .column(name)
                .map(Some)
                .map_err(|_| TableError::MissingColumn {
                    path: path.to_path_buf(),
                    column: name.clone(),
                    role,
                    available: available(),
                }),
            None => Ok(raw.column(default).ok()),
        }
    };
    let height = raw.height();
    let numbers = |col: Option<&Column>| -> Result<Vec<Option<f64>>, TableError> {
        match col {
            None => Ok(vec![None; height]),
            Some(col) => {
                let cast = col
                    .cast(&DataType::Float64)
                    .map_err(|source| TableError::Polars {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let values = cast.f64().map_err(|source| TableError::Polars {
                    path: path.to_path_buf(),
                    source,
                })?;
                Ok(values.iter().collect())
            }
        }
    };
    let strings = |col: Option<&Column>| -> Result<Vec<Option<String>>, TableError> {
        match col {
            None => Ok(vec![None; height]),
            Some(col) => {
                let cast = col
                    .cast(&DataType::String)
                    .map_err(|source| TableError::Polars {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let values = cast.str().map_err(|source| TableError::Polars {
                    path: path.to_path_buf(),
                    source,
                })?;
                Ok(values.iter().map(|v| v.map(str::to_string)).collect())
            }
        }
    };

    let n = numbers(find(&map.n, "n", "N")?)?;
    let mut d = if map.d_from_c {
        vec![None; height]
    } else {
        numbers(find(&map.d, "d", "D")?)?
    };
    let mut c = numbers(find(&map.c, "c", "C")?)?;
    let loss = numbers(find(&map.loss, "loss", "the loss")?)?;
    let status = strings(find(&map.status, "status", "the status")?)?;
    let ids = strings(find(&map.id, "id", "run ids")?)?;
    let params = strings(raw.column("params").ok())?;
    if map.d_from_c && map.c.is_none() && raw.column("c").is_err() {
        return Err(TableError::MissingColumn {
            path: path.to_path_buf(),
            column: "c".into(),
            role: "C, which d_from_c needs (set `c = \"...\"`)",
            available: available(),
        });
    }
    for i in 0..height {
        // C = 6ND is the convention of Kaplan et al. and Hoffmann et al.
        match (n[i], d[i], c[i]) {
            (Some(ni), _, Some(ci)) if map.d_from_c => d[i] = Some(ci / (6.0 * ni)),
            (Some(ni), Some(di), None) => c[i] = Some(6.0 * ni * di),
            _ => {}
        }
    }
    let ids: Vec<String> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| id.unwrap_or_else(|| format!("{prefix}#{}", i + 1)))
        .collect();
    DataFrame::new(
        height,
        vec![
            Column::new("id".into(), ids),
            Column::new("n".into(), n),
            Column::new("d".into(), d),
            Column::new("c".into(), c),
            Column::new("loss".into(), loss),
            Column::new("status".into(), status),
            Column::new("params".into(), params),
        ],
    )
    .map_err(|source| TableError::Polars {
        path: path.to_path_buf(),
        source,
    })
}

/// A run's `metrics.json` (read by its owner, [`crate::train::metrics`]) as a
/// one-row frame of its scalar fields, ready for [`canonical`] with the metrics
/// defaults. `path` names the file in errors.
pub fn metrics_frame(metrics: &RunMetrics, path: &Path, id: &str) -> Result<DataFrame, TableError> {
    let obj = metrics.to_object();
    let mut columns = vec![Column::new("id".into(), [id.to_string()])];
    for (key, v) in &obj {
        if key == "id" {
            continue;
        }
        let column = match v {
            serde_json::Value::Number(x) => Column::new(key.as_str().into(), [x.as_f64()]),
            serde_json::Value::String(s) => Column::new(key.as_str().into(), [s.clone()]),
            // A run that diverged may have no loss to report.
            serde_json::Value::Null => Column::new(key.as_str().into(), [None::<f64>]),
            serde_json::Value::Object(_) if key == "params" => {
                Column::new(key.as_str().into(), [v.to_string()])
            }
            _ => continue,
        };
        columns.push(column);
    }
    // The contract's keys are always columns, so a run lacking one is excluded
    // for it rather than failing the gather.
    for key in METRICS_KEYS {
        if !obj.contains_key(key) {
            columns.push(Column::new(key.into(), [None::<f64>]));
        }
    }
    if !obj.contains_key("status") {
        columns.push(Column::new("status".into(), [Option::<&str>::None]));
    }
    DataFrame::new(1, columns).map_err(|source| TableError::Polars {
        path: path.to_path_buf(),
        source,
    })
}

/// Numeric keys of the train/eval `metrics.json` contract.
const METRICS_KEYS: [&str; 5] = ["n_params", "n_params_non_embedding", "d", "flops", "loss"];

/// The column map for `metrics.json` rows: the user's names where given, else
/// the metrics keys of the train/eval contract.
pub fn metrics_map(user: &ColumnMap) -> ColumnMap {
    let or = |v: &Option<String>, default: &str| Some(v.clone().unwrap_or(default.into()));
    ColumnMap {
        id: Some("id".into()),
        n: or(&user.n, "n_params"),
        d: or(&user.d, "d"),
        c: or(&user.c, "flops"),
        loss: or(&user.loss, "loss"),
        status: or(&user.status, "status"),
        d_from_c: user.d_from_c,
    }
}

/// Stacks canonical frames into one.
pub fn stack(frames: Vec<DataFrame>) -> Result<DataFrame, PolarsError> {
    let mut iter = frames.into_iter();
    let Some(mut all) = iter.next() else {
        return Ok(DataFrame::empty());
    };
    for f in iter {
        all.vstack_mut_owned(f)?;
    }
    all.rechunk_mut_par();
    Ok(all)
}

/// A float column's values (null stays `None`).
pub fn f64_column(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<f64>>> {
    Ok(df.column(name)?.f64()?.iter().collect())
}

/// A string column's values (null stays `None`).
pub fn str_column(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// The canonical frame's rows.
pub fn runs(df: &DataFrame) -> Result<Vec<Run>, PolarsError> {
    let nums = |name: &str| f64_column(df, name);
    let strs = |name: &str| str_column(df, name);
    let (ids, n, d, c, loss, status, params) = (
        strs("id")?,
        nums("n")?,
        nums("d")?,
        nums("c")?,
        nums("loss")?,
        strs("status")?,
        strs("params")?,
    );
    Ok((0..df.height())
        .map(|i| Run {
            id: ids[i].clone().unwrap_or_default(),
            n: n[i],
            d: d[i],
            c: c[i],
            loss: loss[i],
            status: status[i].clone(),
            params: params[i].clone(),
        })
        .collect())
}

/// A run left out of the fit, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    pub id: String,
    pub reason: String,
}

/// Which runs enter the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Indices into the runs, in table order.
    pub included: Vec<usize>,
    /// `(index, reason)` of every other run, in table order.
    pub excluded: Vec<(usize, String)>,
}

impl Selection {
    /// Moves the included runs for which `reason` gives one to the excluded.
    pub fn exclude_where(&mut self, reason: impl Fn(usize) -> Option<String>) {
        let mut kept = Vec::with_capacity(self.included.len());
        for &i in &self.included {
            match reason(i) {
                Some(r) => self.excluded.push((i, r)),
                None => kept.push(i),
            }
        }
        self.included = kept;
        self.excluded.sort_by_key(|(i, _)| *i);
    }
}

/// Keeps the runs that finished (`status` absent or `ok`) with a finite positive
/// loss and finite positive `needs`, then drops the `exclude_top_loss` highest
/// losses among them (Besiroglu et al. drop Hoffmann et al.'s 5 worst runs, which
/// sit far off any fit).
pub fn select(runs: &[Run], needs: &[Variable], exclude_top_loss: usize) -> Selection {
    let mut included = Vec::new();
    let mut excluded = Vec::new();
    let usable = |v: Option<f64>| matches!(v, Some(x) if x.is_finite() && x > 0.0);
    for (i, run) in runs.iter().enumerate() {
        let reason = match run.status.as_deref() {
            Some("diverged") => Some("diverged".to_string()),
            Some(s) if s != "ok" && !s.is_empty() => Some(format!("status is `{s}`")),
            _ => None,
        }
        .or_else(|| (!usable(run.loss)).then(|| describe("loss", run.loss)))
        .or_else(|| {
            needs
                .iter()
                .find(|v| !usable(run.get(**v)))
                .map(|v| describe(v.name(), run.get(*v)))
        });
        match reason {
            Some(r) => excluded.push((i, r)),
            None => included.push(i),
        }
    }
    if exclude_top_loss > 0 {
        let mut by_loss = included.clone();
        // Highest loss first; ties keep table order, so the choice is stable.
        by_loss.sort_by(|&a, &b| {
            let (la, lb) = (runs[a].loss.unwrap_or(0.0), runs[b].loss.unwrap_or(0.0));
            lb.total_cmp(&la).then(a.cmp(&b))
        });
        let drop: Vec<usize> = by_loss.into_iter().take(exclude_top_loss).collect();
        included.retain(|i| !drop.contains(i));
        for i in drop {
            excluded.push((
                i,
                format!("among the {exclude_top_loss} highest losses (exclude_top_loss)"),
            ));
        }
        excluded.sort_by_key(|(i, _)| *i);
    }
    Selection { included, excluded }
}

fn describe(name: &str, value: Option<f64>) -> String {
    match value {
        None => format!("{name} is missing"),
        Some(x) if !x.is_finite() => format!("{name} is not finite ({x})"),
        Some(x) => format!("{name} is not positive ({x})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, loss: Option<f64>, status: Option<&str>) -> Run {
        Run {
            id: id.into(),
            n: Some(1e6),
            d: Some(1e7),
            c: Some(6e13),
            loss,
            status: status.map(str::to_string),
            params: None,
        }
    }

    #[test]
    fn select_lists_every_exclusion_with_its_reason() {
        let mut runs = vec![
            run("ok1", Some(3.0), Some("ok")),
            run("div", Some(2.0), Some("diverged")),
            run("nan", Some(f64::NAN), None),
            run("big", Some(9.0), None),
            run("ok2", Some(2.5), None),
            run("neg", Some(-1.0), None),
        ];
        runs.push(Run {
            n: None,
            ..run("non", Some(2.0), None)
        });
        let sel = select(&runs, &[Variable::N, Variable::D], 1);
        assert_eq!(sel.included, vec![0, 4]);
        let reasons: Vec<(usize, &str)> =
            sel.excluded.iter().map(|(i, r)| (*i, r.as_str())).collect();
        assert_eq!(
            reasons,
            vec![
                (1, "diverged"),
                (2, "loss is not finite (NaN)"),
                (3, "among the 1 highest losses (exclude_top_loss)"),
                (5, "loss is not positive (-1)"),
                (6, "n is missing"),
            ]
        );
    }

    #[test]
    fn canonical_maps_columns_and_derives_tokens() {
        let raw = DataFrame::new(
            2,
            vec![
                Column::new("Model Size".into(), [1e6, 2e6]),
                Column::new("Training FLOP".into(), [6e13, 2.4e14]),
                Column::new("loss".into(), [3.0, 2.9]),
            ],
        )
        .unwrap();
        let map = ColumnMap {
            n: Some("Model Size".into()),
            c: Some("Training FLOP".into()),
            d_from_c: true,
            ..ColumnMap::default()
        };
        let df = canonical(&raw, &map, Path::new("t.csv"), "t.csv").unwrap();
        let runs = runs(&df).unwrap();
        assert_eq!(runs[1].id, "t.csv#2");
        assert!((runs[0].d.unwrap() - 1e7).abs() < 1e-6);
        assert!((runs[1].d.unwrap() - 2e7).abs() < 1e-6);

        let bad = ColumnMap {
            n: Some("Params".into()),
            ..ColumnMap::default()
        };
        let err = canonical(&raw, &bad, Path::new("t.csv"), "t").unwrap_err();
        assert!(err.to_string().contains("no column `Params`"), "{err}");
        assert!(err.to_string().contains("Model Size"), "{err}");
    }
}
