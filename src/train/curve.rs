//! `loss_curve.csv`: a train run's loss at every step (`step,loss,lr`), written
//! by the trainer and read back by reports, plus the held-out evaluations made
//! during training (`eval_every`): `d` (units seen after the step) and
//! `val_loss` are filled on the rows of the steps evaluated after and empty
//! elsewhere. Fits on loss curves ([`read_evals`]) read those points.

use std::path::{Path, PathBuf};

/// The file name, in a train output directory.
pub const FILE: &str = "loss_curve.csv";

/// One row of `loss_curve.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
}

/// A held-out evaluation made during training, after the update of `step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalPoint {
    pub step: usize,
    /// Training units (tokens or examples) seen up to and including `step`.
    pub d: usize,
    /// Mean held-out loss.
    pub loss: f64,
}

/// Why a curve could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: line {line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Writes the curve and the held-out evaluations into `dir`; without
/// evaluations the file keeps its three columns. Floats use Rust's shortest
/// round-trip formatting, so equal curves give equal bytes.
pub fn write(dir: &Path, curve: &[CurvePoint], evals: &[EvalPoint]) -> Result<(), CurveError> {
    let path = dir.join(FILE);
    let mut text = String::from(if evals.is_empty() {
        "step,loss,lr\n"
    } else {
        "step,loss,lr,d,val_loss\n"
    });
    let mut pending = evals.iter().peekable();
    for p in curve {
        text.push_str(&format!("{},{},{}", p.step, p.loss, p.lr));
        if !evals.is_empty() {
            match pending.next_if(|e| e.step == p.step) {
                Some(e) => text.push_str(&format!(",{},{}", e.d, e.loss)),
                None => text.push_str(",,"),
            }
        }
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(|source| CurveError::Io { path, source })
}

/// Reads back a curve [`write`] wrote, exactly (losses as the `f32` they were):
/// a run resumed from another's checkpoint continues its curve.
pub fn read(dir: &Path) -> Result<Vec<CurvePoint>, CurveError> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| CurveError::Io {
        path: path.clone(),
        source,
    })?;
    let mut lines = text.lines().enumerate();
    // Columns after these three (if any) are not part of a curve point.
    if !lines
        .next()
        .is_some_and(|(_, h)| h.starts_with("step,loss,lr"))
    {
        return Err(CurveError::Invalid {
            path,
            line: 1,
            message: "expected a header starting `step,loss,lr`".into(),
        });
    }
    lines
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            let mut fields = line.split(',');
            let mut next = || fields.next().unwrap_or_default();
            let (step, loss, lr) = (next(), next(), next());
            match (step.parse(), loss.parse(), lr.parse()) {
                (Ok(step), Ok(loss), Ok(lr)) => Ok(CurvePoint { step, loss, lr }),
                _ => Err(CurveError::Invalid {
                    path: path.clone(),
                    line: i + 1,
                    message: "expected `step,loss,lr` numbers".into(),
                }),
            }
        })
        .collect()
}

/// Reads the held-out evaluations of the curve file at `path` (none when it
/// has no `val_loss` column: a run trained without `eval_every`).
pub fn read_evals(path: &Path) -> Result<Vec<EvalPoint>, CurveError> {
    let text = std::fs::read_to_string(path).map_err(|source| CurveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, message: String| CurveError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<&str> = header.split(',').map(str::trim).collect();
    let at = |name: &str| header.iter().position(|h| *h == name);
    let Some(val_at) = at("val_loss") else {
        return Ok(Vec::new());
    };
    let (Some(step_at), Some(d_at)) = (at("step"), at("d")) else {
        return Err(bad(
            1,
            "a `val_loss` column needs `step` and `d` columns".into(),
        ));
    };
    let mut evals = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(val) = fields.get(val_at).filter(|v| !v.is_empty()) else {
            continue;
        };
        let parse = |k: usize| fields.get(k).and_then(|f| f.parse::<f64>().ok());
        match (parse(step_at), parse(d_at), val.parse::<f64>().ok()) {
            (Some(step), Some(d), Some(loss)) => evals.push(EvalPoint {
                step: step as usize,
                d: d as usize,
                loss,
            }),
            _ => {
                return Err(bad(
                    i + 1,
                    "expected numbers in `step`, `d` and `val_loss`".into(),
                ))
            }
        }
    }
    Ok(evals)
}

/// Reads `(step, loss)` pairs from the curve file at `path`, finding the
/// columns by their header names.
pub fn read_points(path: &Path) -> Result<Vec<(f64, f64)>, CurveError> {
    let text = std::fs::read_to_string(path).map_err(|source| CurveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, message: String| CurveError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').map(str::trim).collect(),
        None => return Ok(Vec::new()),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad(1, format!("no `{name}` column")))
    };
    let (step_at, loss_at) = (column("step")?, column("loss")?);
    let mut points = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let number = |k: usize| -> Result<f64, CurveError> {
            fields
                .get(k)
                .and_then(|f| f.trim().parse::<f64>().ok())
                .ok_or_else(|| bad(i + 1, "expected numbers".into()))
        };
        points.push((number(step_at)?, number(loss_at)?));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_round_trip_and_parse_by_header() {
        let dir = tempfile::tempdir().unwrap();
        let curve = [
            CurvePoint {
                step: 0,
                loss: 2.5,
                lr: 0.001,
            },
            CurvePoint {
                step: 1,
                loss: 2.25,
                lr: 0.001,
            },
        ];
        write(dir.path(), &curve, &[]).unwrap();
        assert_eq!(read(dir.path()).unwrap(), curve);
        let path = dir.path().join(FILE);
        std::fs::write(&path, "step,loss,lr,more\n0,2.5,0.001,\n1,2.25,0.001,7\n").unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            curve,
            "later columns are ignored"
        );
        assert_eq!(read_points(&path).unwrap(), vec![(0.0, 2.5), (1.0, 2.25)]);
        assert!(read_evals(&path).unwrap().is_empty());
        let evals = [EvalPoint {
            step: 1,
            d: 64,
            loss: 2.0,
        }];
        write(dir.path(), &curve, &evals).unwrap();
        assert_eq!(read_points(&path).unwrap(), vec![(0.0, 2.5), (1.0, 2.25)]);
        assert_eq!(read_evals(&path).unwrap(), evals);
        std::fs::write(&path, "loss,step\n2.5,0\n").unwrap();
        assert_eq!(read_points(&path).unwrap(), vec![(0.0, 2.5)]);
        std::fs::write(&path, "step,loss\n0,abc\n").unwrap();
        let err = read_points(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
