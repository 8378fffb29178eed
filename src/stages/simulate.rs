//! `simulate`: stands in for a train+eval pair where the truth must be known.
//! Each instance is one run at `(n, d)` whose loss is drawn from a known law
//! `L = E + A/N^alpha + B/D^beta` with multiplicative noise ([`KnownLaw`]), and
//! writes the `metrics.json` a fit reads (N, D, FLOPs = 6ND, loss, the true E).
//! So a study's compute-optimal N* is known exactly, and a user can rehearse an
//! experiment design before spending compute.
//!
//! ```toml
//! [stages.sim]
//! kind = "simulate"
//! noise = 0.01
//! [stages.sim.sweep]
//! n = [1e6, 3e6, 1e7]
//! d = [1e8, 1e9]
//! ```

use serde::Deserialize;

use super::{ConfigureContext, Job, Kind, ParamError, StageContext, StageError};
use crate::fit::truth::KnownLaw;
use crate::kinds_doc::ParamDoc;
use crate::train::metrics::{self, RunMetrics};

pub const KIND: Kind = Kind {
    name: "simulate",
    version: 1,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// The reference of `simulate`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("n", "number", "required", "Parameters N of the simulated run (sweep it)."),
    ParamDoc::new("d", "number", "required", "Training tokens D of the simulated run (sweep it)."),
    ParamDoc::new("e", "number", "1.69", "True irreducible loss E (Hoffmann et al.'s fit by default, as every coefficient here)."),
    ParamDoc::new("a", "number", "406.4", "True coefficient A of the N term."),
    ParamDoc::new("alpha", "number", "0.34", "True exponent alpha of the N term."),
    ParamDoc::new("b", "number", "410.7", "True coefficient B of the D term."),
    ParamDoc::new("beta", "number", "0.28", "True exponent beta of the D term."),
    ParamDoc::new("noise", "number", "0.01", "Standard deviation of the log loss: the observed loss is the true one times exp(noise z), z standard normal."),
    ParamDoc::new("round", "integer", "0", "Which design round proposed the run (a label the `design` stage reads back; the draw does not depend on it)."),
    ParamDoc::new("seed", "integer", "the pipeline's seed", "Seeds the noise; a draw depends only on the seed and (n, d)."),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    n: f64,
    d: f64,
    #[serde(default = "defaults::e")]
    e: f64,
    #[serde(default = "defaults::a")]
    a: f64,
    #[serde(default = "defaults::alpha")]
    alpha: f64,
    #[serde(default = "defaults::b")]
    b: f64,
    #[serde(default = "defaults::beta")]
    beta: f64,
    #[serde(default = "defaults::noise")]
    noise: f64,
    #[serde(default)]
    round: u32,
    #[serde(default)]
    seed: u64,
}

mod defaults {
    use super::KnownLaw;
    pub fn e() -> f64 {
        KnownLaw::CHINCHILLA.e
    }
    pub fn a() -> f64 {
        KnownLaw::CHINCHILLA.a
    }
    pub fn alpha() -> f64 {
        KnownLaw::CHINCHILLA.alpha
    }
    pub fn b() -> f64 {
        KnownLaw::CHINCHILLA.b
    }
    pub fn beta() -> f64 {
        KnownLaw::CHINCHILLA.beta
    }
    pub fn noise() -> f64 {
        0.01
    }
}

/// A configured simulated run.
#[derive(Debug)]
struct SimulateJob {
    law: KnownLaw,
    n: f64,
    d: f64,
    noise: f64,
    round: u32,
    seed: u64,
    params: serde_json::Value,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = super::parse_params(params)?;
    if !cx.input_kinds.is_empty() {
        return Err(ParamError::new(
            "a simulate stage takes no inputs: its runs come from its own (n, d) sweep",
        ));
    }
    for (key, v) in [("n", p.n), ("d", p.d), ("a", p.a), ("b", p.b)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(ParamError::at(key, "expected a positive number"));
        }
    }
    for (key, v) in [
        ("e", p.e),
        ("alpha", p.alpha),
        ("beta", p.beta),
        ("noise", p.noise),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ParamError::at(key, "expected a number >= 0"));
        }
    }
    Ok(Box::new(SimulateJob {
        law: KnownLaw {
            e: p.e,
            a: p.a,
            alpha: p.alpha,
            b: p.b,
            beta: p.beta,
        },
        n: p.n,
        d: p.d,
        noise: p.noise,
        round: p.round,
        seed: p.seed,
        params: serde_json::to_value(params).unwrap_or_default(),
    }))
}

impl Job for SimulateJob {
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let loss = self.law.draw(self.n, self.d, self.noise, self.seed);
        let mut other = serde_json::Map::new();
        other.insert("simulated".into(), true.into());
        other.insert("true_loss".into(), self.law.loss(self.n, self.d).into());
        other.insert("round".into(), self.round.into());
        other.insert(
            "law".into(),
            serde_json::to_value(self.law).unwrap_or_default(),
        );
        let run = RunMetrics {
            status: Some("ok".into()),
            n_params: Some(self.n),
            d: Some(self.d),
            d_unit: Some("tokens".into()),
            flops: Some(6.0 * self.n * self.d),
            loss: Some(loss),
            irreducible_loss: Some(self.law.e),
            params: self.params.clone(),
            other,
            ..RunMetrics::default()
        };
        ctx.log(&format!(
            "N {:e}, D {:e}: loss {loss} (true {}, noise {})",
            self.n,
            self.d,
            self.law.loss(self.n, self.d),
            self.noise
        ));
        metrics::write_run(ctx.out_dir(), &run).map_err(StageError::from)
    }
}
