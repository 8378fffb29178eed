//! `dataset.markov_text`: a synthetic language with a known entropy rate.
//!
//! A random Markov chain of order `order` over `vocab` symbols: each context of
//! `order` symbols has a transition row that is a Zipf law (probability of the
//! r-th most likely next symbol proportional to r^-`zipf`) over its own seeded
//! random ordering of the vocabulary. The entropy rate, in nats per token, is the
//! loss a next-token model with at least `order` symbols of context reaches at
//! best; it is written to the metadata as the irreducible loss.
//!
//! The entropy rate is sum_s pi(s) H(P(.|s)) over the stationary distribution pi
//! of the chain on contexts, found by power iteration. Because every row is a
//! permutation of the same Zipf law, every H(P(.|s)) is the same number and the
//! rate equals it exactly; pi is still needed to start each split in the
//! stationary regime (so the first tokens are as typical as the rest) and gives the
//! unigram entropy reported beside it (the loss of the best context-free model).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::split::{Count, SplitSpec};
use super::subsample::{seeded_rng, stream};
use super::{json, new_meta, tick};
use crate::data::{write_meta, write_offsets, write_tokens, Split, Task};
use crate::kinds_doc::ParamDoc;
use crate::stages::{
    parse_params, ConfigureContext, Job, Kind, ParamError, StageContext, StageError,
};

pub const KIND: Kind = Kind {
    name: "dataset.markov_text",
    version: 1,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// Held-out tokens per split when `split` does not say.
const DEFAULT_HELD_OUT: u64 = 20_000;
/// Largest transition table (`vocab^(order+1)` entries) the generator will build:
/// 2^25 entries are 128 MiB of u32 symbols plus the stationary vectors.
pub const MAX_TRANSITIONS: u64 = 1 << 25;
/// Power iteration stops when the L1 change of pi falls below this.
const TOLERANCE: f64 = 1e-13;
const MAX_ITERATIONS: usize = 100_000;

/// The reference of `dataset.markov_text`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("tokens", "integer", "required", "Training tokens D."),
    ParamDoc::new("vocab", "integer", "32", "Vocabulary size."),
    ParamDoc::new("order", "integer", "1", "Tokens of context the next token depends on."),
    ParamDoc::new("zipf", "number", "1.0", "Zipf exponent of each context's next-token distribution."),
    ParamDoc::new("split", "table {val, test}", "val = test = 20000", "Held-out sizes as counts (a generator has no pool to take fractions of), drawn from their own streams so they never change with D."),
    ParamDoc::new("seed", "integer", "the pipeline's seed", "Seeds the draw; same parameters and seed give byte-identical files."),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Training tokens D.
    tokens: Count,
    #[serde(default)]
    split: SplitSpec,
    #[serde(default = "default_vocab")]
    vocab: usize,
    #[serde(default = "default_order")]
    order: u32,
    #[serde(default = "default_zipf")]
    zipf: f64,
    seed: u64,
}

fn default_vocab() -> usize {
    32
}
fn default_order() -> u32 {
    1
}
fn default_zipf() -> f64 {
    1.0
}

#[derive(Debug)]
struct MarkovJob {
    tokens: usize,
    val: usize,
    test: usize,
    vocab: usize,
    order: u32,
    zipf: f64,
    seed: u64,
}

fn configure(params: &toml::Table, _cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = parse_params(params)?;
    p.split.validate()?;
    let (val, test) = p
        .split
        .generated(KIND.name, (DEFAULT_HELD_OUT, DEFAULT_HELD_OUT))?;
    if p.vocab < 2 {
        return Err(ParamError::at("vocab", "expected an integer >= 2"));
    }
    if !(p.zipf >= 0.0 && p.zipf.is_finite()) {
        return Err(ParamError::at("zipf", "expected an exponent >= 0"));
    }
    let entries = (p.vocab as u64)
        .checked_pow(p.order + 1)
        .filter(|&e| e <= MAX_TRANSITIONS);
    if entries.is_none() {
        return Err(ParamError::at(
            "order",
            format!(
                "the chain would have vocab^(order+1) = {}^{} transition probabilities, more than the limit of {MAX_TRANSITIONS}; lower `vocab` or `order`",
                p.vocab,
                p.order + 1
            ),
        ));
    }
    Ok(Box::new(MarkovJob {
        tokens: p.tokens.0 as usize,
        val,
        test,
        vocab: p.vocab,
        order: p.order,
        zipf: p.zipf,
        seed: p.seed,
    }))
}

/// A Markov chain of order k over contexts `s = x_1 .. x_k` read as a base-`vocab`
/// number; the next context is `(s * vocab + y) mod vocab^k`.
#[derive(Debug, Clone)]
pub struct MarkovChain {
    pub vocab: usize,
    pub order: u32,
    /// Zipf law over ranks: `probs[r]` is the probability of the (r+1)-th symbol.
    pub probs: Vec<f64>,
    /// Cumulative of `probs`, for sampling.
    cdf: Vec<f64>,
    /// Row s: `ranking[s * vocab + r]` is the symbol of rank r after context s.
    pub ranking: Vec<u32>,
}

impl MarkovChain {
    /// Builds the chain from a seed: one random ranking of the vocabulary per context.
    pub fn new(vocab: usize, order: u32, zipf: f64, seed: u64) -> MarkovChain {
        let states = vocab.pow(order);
        let weights: Vec<f64> = (1..=vocab).map(|r| (r as f64).powf(-zipf)).collect();
        let total: f64 = weights.iter().sum();
        let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mut cdf = Vec::with_capacity(vocab);
        let mut acc = 0.0;
        for p in &probs {
            acc += p;
            cdf.push(acc);
        }
        let mut rng = seeded_rng(seed, stream::MODEL);
        let mut ranking = Vec::with_capacity(states * vocab);
        let mut row: Vec<u32> = (0..vocab as u32).collect();
        for _ in 0..states {
            for i in (1..vocab).rev() {
                let j = rng.gen_range(0..=i);
                row.swap(i, j);
            }
            ranking.extend_from_slice(&row);
        }
        MarkovChain {
            vocab,
            order,
            probs,
            cdf,
            ranking,
        }
    }

    /// Number of contexts, `vocab^order`.
    pub fn states(&self) -> usize {
        self.vocab.pow(self.order)
    }

    fn next_state(&self, state: usize, symbol: u32) -> usize {
        (state * self.vocab + symbol as usize) % self.states()
    }

    /// Stationary distribution over contexts by power iteration, and the number of
    /// iterations it took. Every transition has positive probability (for
    /// `zipf` finite), so the chain is irreducible and aperiodic and this converges.
    pub fn stationary(&self) -> Result<(Vec<f64>, usize), String> {
        let states = self.states();
        let mut pi = vec![1.0 / states as f64; states];
        let mut next = vec![0.0; states];
        for iteration in 1..=MAX_ITERATIONS {
            next.iter_mut().for_each(|v| *v = 0.0);
            for (s, &mass) in pi.iter().enumerate() {
                let row = &self.ranking[s * self.vocab..(s + 1) * self.vocab];
                for (&symbol, &p) in row.iter().zip(&self.probs) {
                    next[self.next_state(s, symbol)] += mass * p;
                }
            }
            let total: f64 = next.iter().sum();
            next.iter_mut().for_each(|v| *v /= total);
            let change: f64 = pi.iter().zip(&next).map(|(a, b)| (a - b).abs()).sum();
            std::mem::swap(&mut pi, &mut next);
            if change < TOLERANCE {
                return Ok((pi, iteration));
            }
        }
        Err(format!(
            "the stationary distribution did not converge in {MAX_ITERATIONS} power iterations"
        ))
    }

    /// Entropy (nats) of a transition row. Rows differ only in which symbol gets
    /// which rank, which entropy ignores, so this is every row's entropy.
    pub fn row_entropy(&self) -> f64 {
        -self
            .probs
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f64>()
    }

    /// Entropy rate sum_s pi(s) H(P(.|s)) in nats per token.
    pub fn entropy_rate(&self, pi: &[f64]) -> f64 {
        let h = self.row_entropy();
        pi.iter().map(|p| p * h).sum()
    }

    /// Entropy of the stationary distribution of single symbols.
    pub fn unigram_entropy(&self, pi: &[f64]) -> f64 {
        let mut marginal = vec![0.0; self.vocab];
        for (s, &mass) in pi.iter().enumerate() {
            let row = &self.ranking[s * self.vocab..(s + 1) * self.vocab];
            for (&symbol, &p) in row.iter().zip(&self.probs) {
                marginal[symbol as usize] += mass * p;
            }
        }
        -marginal
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f64>()
    }

    /// Draws a context from `pi`.
    fn draw_state(&self, pi: &[f64], rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.gen();
        let mut acc = 0.0;
        for (s, p) in pi.iter().enumerate() {
            acc += p;
            if u < acc {
                return s;
            }
        }
        pi.len() - 1
    }

    /// Samples the symbol after context `state`.
    pub fn step(&self, state: usize, rng: &mut ChaCha8Rng) -> u32 {
        let u: f64 = rng.gen();
        let rank = self.cdf.partition_point(|&c| c <= u).min(self.vocab - 1);
        self.ranking[state * self.vocab + rank]
    }

    /// `len` tokens of a stream started from a context drawn from `pi`; calls
    /// `each(position)` as it goes (progress, cancellation).
    pub fn sample(
        &self,
        pi: &[f64],
        len: usize,
        rng: &mut ChaCha8Rng,
        mut each: impl FnMut(usize) -> Result<(), StageError>,
    ) -> Result<Vec<u32>, StageError> {
        let mut state = self.draw_state(pi, rng);
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            each(i)?;
            let symbol = self.step(state, rng);
            out.push(symbol);
            state = self.next_state(state, symbol);
        }
        Ok(out)
    }
}

impl Job for MarkovJob {
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let chain = MarkovChain::new(self.vocab, self.order, self.zipf, self.seed);
        ctx.progress(0, 1, "stationary distribution");
        let (pi, iterations) = chain.stationary().map_err(StageError::msg)?;
        let out = ctx.out_dir();
        for (index, split, len) in [
            (1, Split::Val, self.val),
            (2, Split::Test, self.test),
            (0, Split::Train, self.tokens),
        ] {
            // Each split has its own stream, so a longer training stream extends the
            // shorter one and never moves the held-out streams.
            let mut rng = seeded_rng(self.seed, stream::INPUTS + index);
            let message = format!("{} tokens", split.name());
            let ids = chain.sample(&pi, len, &mut rng, |i| tick(ctx, i, len, &message))?;
            write_tokens(out, split, &ids)?;
            write_offsets(out, split, &[0])?;
        }

        let mut meta = new_meta(
            KIND.name,
            Task::LanguageModel,
            [self.tokens, self.val, self.test],
        );
        meta.vocab = Some(self.vocab);
        meta.irreducible_loss = Some(chain.entropy_rate(&pi));
        let extra = &mut meta.extra;
        extra.insert("order".into(), json(self.order));
        extra.insert("zipf".into(), json(self.zipf));
        extra.insert("seed".into(), json(self.seed));
        extra.insert("unigram_entropy".into(), json(chain.unigram_entropy(&pi)));
        extra.insert("contexts".into(), json(chain.states()));
        extra.insert("power_iterations".into(), json(iterations));
        write_meta(out, &meta)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stationary_distribution_is_fixed_by_the_chain() {
        let chain = MarkovChain::new(5, 2, 1.2, 9);
        let (pi, _) = chain.stationary().unwrap();
        assert!((pi.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let mut moved = vec![0.0; chain.states()];
        for (s, &mass) in pi.iter().enumerate() {
            for r in 0..chain.vocab {
                let symbol = chain.ranking[s * chain.vocab + r];
                moved[chain.next_state(s, symbol)] += mass * chain.probs[r];
            }
        }
        let err: f64 = pi.iter().zip(&moved).map(|(a, b)| (a - b).abs()).sum();
        assert!(err < 1e-10, "pi P != pi (L1 {err})");
    }

    #[test]
    fn uniform_rows_have_log_vocab_entropy() {
        let chain = MarkovChain::new(8, 1, 0.0, 1);
        let (pi, _) = chain.stationary().unwrap();
        assert!((chain.entropy_rate(&pi) - 8f64.ln()).abs() < 1e-12);
    }
}
