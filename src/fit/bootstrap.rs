//! Bootstrap confidence intervals: resample the runs with replacement, refit, and
//! report the median and the 2.5/97.5 percentiles of every fitted and derived
//! number.
//!
//! Each replicate refits from the full-data optimum and from a few grid points
//! drawn at random (a resample can move the optimum to another basin). Replicate
//! `r` draws from its own ChaCha8 stream of the stage's seed, and replicates are
//! gathered in order, so the intervals are the same whatever the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

use super::form::Form;
use super::grid::Grid;
use super::objective::{Objective, Observation, Points};
use super::optimize::{self, Cancelled, Settings, Solution};
use super::replicates::{self, ReplicateMode};

/// How many replicates, how many extra random starts each, and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapSettings {
    pub replicates: usize,
    pub random_starts: usize,
    pub seed: u64,
}

/// A percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub median: f64,
    /// 2.5th percentile.
    pub lo: f64,
    /// 97.5th percentile.
    pub hi: f64,
}

/// The bootstrap's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bootstrap {
    pub replicates: usize,
    /// Replicates whose best start did not reach a stationary point.
    pub not_converged: usize,
    /// Interval of each named number, in the order the caller named them. Numbers
    /// that were not finite in some replicates are summarised over the others.
    pub intervals: Vec<(String, Interval)>,
    /// The refitted parameter vectors, one per replicate (for tests and plots).
    #[serde(skip)]
    pub thetas: Vec<Vec<f64>>,
}

impl Bootstrap {
    pub fn get(&self, name: &str) -> Option<&Interval> {
        self.intervals
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i)
    }
}

/// Names and computes the numbers to summarise for a parameter vector.
pub type Numbers<'a> = dyn Fn(&[f64]) -> Vec<(String, f64)> + Sync + 'a;

/// One resample of `n` runs: how often each was drawn.
pub fn resample_counts(n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut counts = vec![0u32; n];
    for _ in 0..n {
        counts[rng.gen_range(0..n)] += 1;
    }
    counts
}

/// The random generator of replicate `r`.
pub fn replicate_rng(seed: u64, r: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(r as u64 + 1);
    rng
}

/// How a replicate draws its sample.
#[derive(Debug, Clone, Copy)]
pub enum Resample<'a> {
    /// The fitted points, with replacement.
    Points,
    /// Groups of seed replicates with replacement, then seeds inside each drawn
    /// group ([`replicates::resample`]); `runs` are every seed's run.
    Seeds {
        runs: &'a [Observation],
        groups: &'a [Vec<usize>],
        mode: ReplicateMode,
    },
}

/// Runs the bootstrap, resampling the points. `numbers` names the quantities
/// to summarise for a parameter vector (parameters and derived numbers).
#[allow(clippy::too_many_arguments)]
pub fn bootstrap(
    form: &Form,
    points: &Points,
    delta: f64,
    best: &[f64],
    grid: &Grid,
    optimizer: &Settings,
    settings: &BootstrapSettings,
    numbers: &Numbers,
    progress: &(dyn Fn(u64) + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Bootstrap, Cancelled> {
    bootstrap_with(
        Resample::Points,
        form,
        points,
        delta,
        best,
        grid,
        optimizer,
        settings,
        numbers,
        progress,
        cancelled,
    )
}

/// [`bootstrap`] with the resampling `resample` says.
#[allow(clippy::too_many_arguments)]
pub fn bootstrap_with(
    resample: Resample,
    form: &Form,
    points: &Points,
    delta: f64,
    best: &[f64],
    grid: &Grid,
    optimizer: &Settings,
    settings: &BootstrapSettings,
    numbers: &Numbers,
    progress: &(dyn Fn(u64) + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Bootstrap, Cancelled> {
    let done = AtomicU64::new(0);
    let every = (settings.replicates as u64 / 100).max(1);
    let fits: Vec<Option<Solution>> = (0..settings.replicates)
        .into_par_iter()
        .map(|r| {
            if cancelled() {
                return None;
            }
            let mut rng = replicate_rng(settings.seed, r);
            let sample = match resample {
                Resample::Points => points.reweighted(&resample_counts(points.len(), &mut rng)),
                Resample::Seeds { runs, groups, mode } => {
                    replicates::resample(form, runs, groups, mode, &mut rng)
                }
            };
            let objective = Objective::new(*form, &sample, delta);
            let mut starts = vec![best.to_vec()];
            for _ in 0..settings.random_starts {
                starts.push(grid.point(rng.gen_range(0..grid.len())));
            }
            let solutions = starts
                .iter()
                .map(|s| optimize::minimize(&objective, s, optimizer))
                .collect();
            let k = done.fetch_add(1, Ordering::Relaxed) + 1;
            if k.is_multiple_of(every) {
                progress(k);
            }
            Some(optimize::summarize(solutions).best)
        })
        .collect();
    if fits.iter().any(Option::is_none) {
        return Err(Cancelled);
    }
    let fits: Vec<Solution> = fits.into_iter().flatten().collect();
    let rows: Vec<Vec<(String, f64)>> = fits.iter().map(|s| numbers(&s.theta)).collect();
    let names: Vec<String> = numbers(best).into_iter().map(|(n, _)| n).collect();
    let intervals = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let values: Vec<f64> = rows
                .iter()
                .filter_map(|row| row.get(j).map(|(_, v)| *v))
                .filter(|v| v.is_finite())
                .collect();
            (name.clone(), interval(values))
        })
        .collect();
    Ok(Bootstrap {
        replicates: fits.len(),
        not_converged: fits.iter().filter(|s| !s.converged).count(),
        intervals,
        thetas: fits.into_iter().map(|s| s.theta).collect(),
    })
}

/// Median and 2.5/97.5 percentiles, interpolating linearly between order
/// statistics (numpy's default), so small samples give sensible intervals.
pub fn interval(mut values: Vec<f64>) -> Interval {
    values.sort_by(f64::total_cmp);
    Interval {
        median: percentile(&values, 0.5),
        lo: percentile(&values, 0.025),
        hi: percentile(&values, 0.975),
    }
}

/// The `q`-quantile of sorted values (NaN for none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v: Vec<f64> = (1..=11).map(f64::from).collect();
        let i = interval(v);
        assert_eq!(i.median, 6.0);
        assert!((i.lo - 1.25).abs() < 1e-12);
        assert!((i.hi - 10.75).abs() < 1e-12);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn resamples_are_seeded_and_complete() {
        let a = resample_counts(50, &mut replicate_rng(7, 3));
        let b = resample_counts(50, &mut replicate_rng(7, 3));
        let c = resample_counts(50, &mut replicate_rng(7, 4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.iter().sum::<u32>(), 50);
    }
}
