//! `predictions.parquet`: every run a fit saw, with its observed and predicted
//! loss, written by the fit stage and read back by reports.
//!
//! Columns: `id`, `n`, `d`, `c`, `loss`, `predicted`, `residual` (observed minus
//! predicted), `log_residual`, `role` (`fit` or `excluded`), `held_out` (the runs
//! the extrapolation check predicted), `holdout_predicted` (that check's
//! prediction), `status` and `params`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use super::fit_json::FitReport;
use super::form::Form;
use super::table::{f64_column, str_column, Run, Selection, TableError};

/// The file name, in a fit output directory.
pub const FILE: &str = "predictions.parquet";

/// One row of a fit's `predictions.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub id: String,
    pub n: Option<f64>,
    pub d: Option<f64>,
    pub c: Option<f64>,
    pub loss: Option<f64>,
    pub predicted: Option<f64>,
    /// `fit` or `excluded`.
    pub role: String,
    pub held_out: bool,
    /// The extrapolation check's prediction (fitted without this run).
    pub holdout_predicted: Option<f64>,
    pub status: Option<String>,
    /// The run's parameters as JSON text (a stage's resolved parameters).
    pub params: Option<String>,
}

/// `predictions.parquet`: every run with its observed and predicted loss.
/// `residual` is observed minus predicted; `role` is `fit` or `excluded`;
/// `held_out` marks the runs the extrapolation check predicted, with that
/// check's prediction in `holdout_predicted`.
pub fn write(
    dir: &Path,
    form: &Form,
    report: &FitReport,
    runs: &[Run],
    selection: &Selection,
) -> Result<(), TableError> {
    let path = dir.join(FILE);
    let mut role = vec!["excluded"; runs.len()];
    for &i in &selection.included {
        role[i] = "fit";
    }
    let held: BTreeMap<&str, f64> = report
        .holdout
        .as_ref()
        .map(|h| {
            h.errors
                .runs
                .iter()
                .map(|r| (r.id.as_str(), r.predicted))
                .collect()
        })
        .unwrap_or_default();
    let predicted: Vec<Option<f64>> = runs
        .iter()
        .map(|r| {
            let has_all = form.variables().iter().all(|v| r.get(*v).is_some());
            has_all
                .then(|| {
                    let o = r.observation();
                    form.predict(&report.theta, o.n, o.d, o.c)
                })
                .filter(|p| p.is_finite())
        })
        .collect();
    let residual: Vec<Option<f64>> = runs
        .iter()
        .zip(&predicted)
        .map(|(r, p)| Some(r.loss? - (*p)?))
        .collect();
    let log_residual: Vec<Option<f64>> = runs
        .iter()
        .zip(&predicted)
        .map(|(r, p)| {
            let l = r.loss.filter(|l| *l > 0.0)?;
            Some(l.ln() - (*p)?.ln())
        })
        .collect();
    let is_fit: Vec<bool> = role.iter().map(|r| *r == "fit").collect();
    let held_out: Vec<bool> = runs
        .iter()
        .zip(&is_fit)
        .map(|(r, f)| *f && held.contains_key(r.id.as_str()))
        .collect();
    let holdout_predicted: Vec<Option<f64>> = runs
        .iter()
        .zip(&held_out)
        .map(|(r, h)| {
            if *h {
                held.get(r.id.as_str()).copied()
            } else {
                None
            }
        })
        .collect();
    let col = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
    let mut df = DataFrame::new(
        runs.len(),
        vec![
            Column::new(
                "id".into(),
                runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ),
            col("n", runs.iter().map(|r| r.n).collect()),
            col("d", runs.iter().map(|r| r.d).collect()),
            col("c", runs.iter().map(|r| r.c).collect()),
            col("loss", runs.iter().map(|r| r.loss).collect()),
            col("predicted", predicted),
            col("residual", residual),
            col("log_residual", log_residual),
            Column::new("role".into(), role),
            Column::new("held_out".into(), held_out),
            col("holdout_predicted", holdout_predicted),
            Column::new(
                "status".into(),
                runs.iter().map(|r| r.status.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "params".into(),
                runs.iter().map(|r| r.params.clone()).collect::<Vec<_>>(),
            ),
        ],
    )
    .map_err(|source| TableError::Polars {
        path: path.clone(),
        source,
    })?;
    let file = File::create(&path).map_err(|source| TableError::Io {
        path: path.clone(),
        source,
    })?;
    ParquetWriter::new(file)
        .finish(&mut df)
        .map_err(|source| TableError::Polars { path, source })?;
    Ok(())
}

/// Reads a fit's `predictions.parquet`.
pub fn read(dir: &Path) -> Result<Vec<Prediction>, TableError> {
    let path = &dir.join(FILE);
    let fail = |source: PolarsError| TableError::Polars {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let df = ParquetReader::new(file).finish().map_err(fail)?;
    let nums = |name: &str| f64_column(&df, name);
    let strs = |name: &str| str_column(&df, name);
    let bools = |name: &str| -> PolarsResult<Vec<bool>> {
        Ok(df
            .column(name)?
            .bool()?
            .iter()
            .map(|b| b.unwrap_or(false))
            .collect())
    };
    let ids = strs("id").map_err(fail)?;
    let (n, d, c) = (
        nums("n").map_err(fail)?,
        nums("d").map_err(fail)?,
        nums("c").map_err(fail)?,
    );
    let loss = nums("loss").map_err(fail)?;
    let predicted = nums("predicted").map_err(fail)?;
    let role = strs("role").map_err(fail)?;
    let held_out = bools("held_out").map_err(fail)?;
    let holdout_predicted = nums("holdout_predicted").map_err(fail)?;
    let status = strs("status").map_err(fail)?;
    let params = strs("params").map_err(fail)?;
    Ok((0..df.height())
        .map(|i| Prediction {
            id: ids[i].clone().unwrap_or_default(),
            n: n[i],
            d: d[i],
            c: c[i],
            loss: loss[i],
            predicted: predicted[i],
            role: role[i].clone().unwrap_or_default(),
            held_out: held_out[i],
            holdout_predicted: holdout_predicted[i],
            status: status[i].clone(),
            params: params[i].clone(),
        })
        .collect())
}
