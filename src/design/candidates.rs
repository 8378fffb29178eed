//! The sizes a design chooses from, and what each candidate run costs.
//!
//! A design's `candidates` table is either the law's own axes,
//! `{ n = [...], d = [...] }` (the keys of a `simulate` stage; FLOPs are 6ND),
//! or the sweep keys of the `train` stage whose runs the fit read, such as
//! `{ width = [...], examples = [...] }`. For the latter each candidate is the
//! train parameters the runs share with the candidate's values put in, and its
//! N, D and FLOPs come from the model family exactly as the train stage counts
//! them ([`crate::train::family`], [`crate::train::flops`]): a proposal's costs
//! are the FLOPs its runs will record in `metrics.json` (`flops_exact`), and
//! its fragment uses the train stage's own keys.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::propose::Candidate;
use crate::data::DatasetMeta;
use crate::fit::predictions::Prediction;
use crate::stages::train::TrainParams;
use crate::stages::ParamError;
use crate::train::batches::Source;
use crate::train::family::ModelChoice;
use crate::train::flops;
use crate::train::model::ModelSpec;
use crate::train::trainer::planned_steps;

/// The parameter of a run that says which design round proposed it; a label
/// the candidates never set themselves.
pub const ROUND_KEY: &str = "round";

/// The `candidates` parameter: each key's values, in the order given; every
/// combination is a candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub axes: Vec<(String, Vec<Value>)>,
}

/// How a design's candidates are costed (`design.json`'s `cost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// `n`/`d` candidates: 6ND.
    SixNd,
    /// Train-stage candidates: the family's exact matrix-product FLOPs.
    Exact,
}

impl Cost {
    pub fn name(self) -> &'static str {
        match self {
            Cost::SixNd => "6ND",
            Cost::Exact => "exact (the train family's matrix-product FLOPs)",
        }
    }
}

impl Space {
    /// Reads and checks a design's `candidates` table.
    pub fn parse(table: &toml::Table) -> Result<Space, ParamError> {
        if table.is_empty() {
            return Err(ParamError::at(
                "candidates",
                "expected a table of lists, e.g. { n = [...], d = [...] } or a train stage's { width = [...], examples = [...] }",
            ));
        }
        let mut axes = Vec::new();
        for (key, value) in table {
            let at = |i: Option<usize>| match i {
                Some(i) => format!("candidates.{key}[{i}]"),
                None => format!("candidates.{key}"),
            };
            if key == ROUND_KEY {
                return Err(ParamError::at(
                    at(None),
                    "`round` is set by the design itself (the round it proposes)",
                ));
            }
            let Some(list) = value.as_array().filter(|l| !l.is_empty()) else {
                return Err(ParamError::at(at(None), "expected a non-empty list"));
            };
            let mut values = Vec::new();
            for (i, v) in list.iter().enumerate() {
                let json = match v {
                    toml::Value::Integer(x) if *x > 0 => Value::from(*x),
                    toml::Value::Float(x) if x.is_finite() && *x > 0.0 => Value::from(*x),
                    _ => return Err(ParamError::at(at(Some(i)), "expected a positive number")),
                };
                values.push(json);
            }
            axes.push((key.clone(), values));
        }
        Ok(Space { axes })
    }

    /// Whether the candidates are the law's own `n` and `d`.
    pub fn is_law(&self) -> bool {
        let keys: Vec<&str> = self.axes.iter().map(|(k, _)| k.as_str()).collect();
        keys == ["d", "n"] || keys == ["n", "d"]
    }

    /// Every combination of the axes' values, the first axis varying slowest.
    pub fn points(&self) -> Vec<BTreeMap<String, Value>> {
        let mut points = vec![BTreeMap::new()];
        for (key, values) in &self.axes {
            points = points
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut p = p.clone();
                        p.insert(key.clone(), v.clone());
                        p
                    })
                })
                .collect();
        }
        points
    }

    /// `n`/`d` candidates, costed 6ND.
    pub fn law_candidates(&self) -> Vec<Candidate> {
        self.points()
            .into_iter()
            .map(|p| {
                let (n, d) = (number(&p["n"]), number(&p["d"]));
                Candidate {
                    n,
                    d,
                    flops: 6.0 * n * d,
                    params: p,
                }
            })
            .collect()
    }

    /// Train-stage candidates: the parameters the fit's `runs` share, with
    /// each candidate's values put in, sized for the dataset in `dir` (its
    /// `meta`) exactly as the train stage will size them.
    pub fn train_candidates(
        &self,
        runs: &[Prediction],
        meta: &DatasetMeta,
        dir: &Path,
    ) -> Result<Vec<Candidate>, String> {
        let keys: Vec<&str> = self.axes.iter().map(|(k, _)| k.as_str()).collect();
        let template = shared_params(runs, &keys)?;
        let mut sizer = Sizer::default();
        // The dataset must be the one the runs trained on: each run's recorded
        // N must be what its own parameters give on it.
        for run in runs {
            let (Some(params), Some(n)) = (run_params(run)?, run.n) else {
                continue;
            };
            let sized = sizer.size(&params, meta, dir)?;
            if sized.n != n {
                return Err(format!(
                    "run `{}` recorded N = {n}, but its parameters give N = {} on the design's dataset input: give the design the dataset its fit's runs trained on",
                    run.id, sized.n
                ));
            }
        }
        self.points()
            .into_iter()
            .map(|point| {
                let mut params = template.clone();
                params.extend(point.clone());
                let sized = sizer
                    .size(&params, meta, dir)
                    .map_err(|e| format!("candidate {}: {e}", words(&point)))?;
                Ok(Candidate {
                    params: point,
                    ..sized
                })
            })
            .collect()
    }
}

/// The parameters every run shares once the candidate keys and `round` are
/// taken out: the train stage's fixed settings.
fn shared_params(runs: &[Prediction], keys: &[&str]) -> Result<BTreeMap<String, Value>, String> {
    let mut shared: Option<(String, BTreeMap<String, Value>)> = None;
    for run in runs {
        let Some(mut params) = run_params(run)? else {
            continue;
        };
        for key in keys {
            if params.remove(*key).is_none() {
                return Err(format!(
                    "candidates.{key}: run `{}` has no parameter `{key}` (its parameters: {}); candidates other than `n` and `d` are keys of the train stage the fit's runs come from",
                    run.id,
                    params.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        params.remove(ROUND_KEY);
        match &shared {
            None => shared = Some((run.id.clone(), params)),
            Some((first, s)) => {
                if let Some(key) = s
                    .keys()
                    .chain(params.keys())
                    .find(|k| s.get(*k) != params.get(*k))
                {
                    let show = |p: &BTreeMap<String, Value>| {
                        p.get(key).map_or("unset".to_string(), Value::to_string)
                    };
                    return Err(format!(
                        "the fit's runs differ in `{key}` ({first}: {}, {}: {}), which is not a candidate key: list it in `candidates` or fit runs that share it",
                        show(s),
                        run.id,
                        show(&params)
                    ));
                }
            }
        }
    }
    shared.map(|(_, p)| p).ok_or_else(|| {
        "the fit's runs record no parameters (`params` in predictions.parquet): train-stage candidates need the fit to read train or eval runs".to_string()
    })
}

/// A run's parameters, without its `round` (None when it records none).
fn run_params(run: &Prediction) -> Result<Option<BTreeMap<String, Value>>, String> {
    let Some(text) = run.params.as_deref() else {
        return Ok(None);
    };
    let mut params: BTreeMap<String, Value> = serde_json::from_str(text)
        .map_err(|e| format!("run `{}`: unreadable parameters ({e})", run.id))?;
    params.remove(ROUND_KEY);
    Ok(Some(params))
}

/// Sizes train parameters on a dataset, loading the dataset once per model.
#[derive(Default)]
struct Sizer {
    models: Vec<(ModelChoice, ModelSpec, Source)>,
}

impl Sizer {
    /// N (exact parameter count), D (units the planned steps read) and the
    /// exact training FLOPs of a train run with `params`.
    fn size(
        &mut self,
        params: &BTreeMap<String, Value>,
        meta: &DatasetMeta,
        dir: &Path,
    ) -> Result<Candidate, String> {
        let table: toml::Table = params
            .iter()
            .map(|(k, v)| {
                toml::Value::try_from(v)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| format!("parameter `{k}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let parsed = TrainParams::parse(&table).map_err(|e| match e.key {
            Some(key) => format!("train parameter `{key}`: {}", e.message),
            None => format!("train parameters: {}", e.message),
        })?;
        let i = match self.models.iter().position(|(m, _, _)| *m == parsed.model) {
            Some(i) => i,
            None => {
                let (spec, source) = parsed
                    .model
                    .for_dataset(meta, dir)
                    .map_err(|e| e.to_string())?;
                self.models.push((parsed.model, spec, source));
                self.models.len() - 1
            }
        };
        let (_, spec, source) = &self.models[i];
        let batch = parsed.run.batch_size;
        let steps = planned_steps(parsed.budget, source, batch);
        let seq = match source {
            Source::Stream { seq, .. } => *seq,
            Source::Table { .. } => 1,
        };
        Ok(Candidate {
            n: spec.param_count().0 as f64,
            d: (steps * source.units_per_batch(batch)) as f64,
            flops: flops::step_flops(spec, batch, seq) * steps as f64,
            params: BTreeMap::new(),
        })
    }
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// `width = 16, examples = 4096`.
pub fn words(params: &BTreeMap<String, Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(text: &str) -> Result<Space, ParamError> {
        Space::parse(&text.parse().unwrap())
    }

    #[test]
    fn candidates_are_every_combination_and_bad_values_are_located() {
        let s = space("width = [4, 8]\nexamples = [100, 200, 400]").unwrap();
        assert!(!s.is_law());
        let points = s.points();
        assert_eq!(points.len(), 6);
        assert_eq!(words(&points[0]), "examples = 100, width = 4");
        let law = space("n = [1e7, 2e7]\nd = [1e9]").unwrap();
        assert!(law.is_law());
        let c = law.law_candidates();
        assert_eq!((c[1].n, c[1].d, c[1].flops), (2e7, 1e9, 1.2e17));
        for (text, key) in [
            ("width = []", "candidates.width"),
            ("width = [4, -1]", "candidates.width[1]"),
            ("width = [4, \"x\"]", "candidates.width[1]"),
            ("round = [1]", "candidates.round"),
        ] {
            assert_eq!(space(text).unwrap_err().key.as_deref(), Some(key), "{text}");
        }
    }

    fn run(id: &str, params: &str) -> Prediction {
        Prediction {
            id: id.into(),
            n: None,
            d: None,
            c: None,
            loss: None,
            predicted: None,
            role: "fit".into(),
            held_out: false,
            holdout_predicted: None,
            status: Some("ok".into()),
            params: Some(params.into()),
        }
    }

    #[test]
    fn the_shared_parameters_are_the_runs_less_candidates_and_round() {
        let runs = [
            run(
                "a",
                r#"{"model": "mlp", "depth": 2, "width": 4, "examples": 100}"#,
            ),
            run(
                "b",
                r#"{"model": "mlp", "depth": 2, "width": 8, "examples": 200, "round": 1}"#,
            ),
        ];
        let shared = shared_params(&runs, &["width", "examples"]).unwrap();
        assert_eq!(words(&shared), r#"depth = 2, model = "mlp""#);
        let err = shared_params(&runs, &["width"]).unwrap_err();
        assert!(err.contains("differ in `examples`"), "{err}");
        let err = shared_params(&runs, &["widht"]).unwrap_err();
        assert!(err.contains("no parameter `widht`"), "{err}");
    }
}
