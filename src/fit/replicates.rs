//! Seed replicates: runs that differ only in their seed (a stage with
//! `seeds = K`), grouped so the fit sees them for what they are.
//!
//! Small runs vary a lot from seed to seed (Porian et al. 2024 bootstrap over
//! seeds). A fit takes each group's mean loss (`replicates = "mean"`) or every
//! run (`"all"`); the bootstrap draws groups with replacement and, inside each
//! drawn group, its seeds with replacement, so the intervals carry the seed
//! noise as well as the choice of runs; and the seed noise (the pooled spread
//! of ln loss within groups) widens parameter intervals into prediction
//! intervals for a new run.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Deserialize;

use super::bootstrap::{self, percentile, resample_counts};
use super::fit_json::SeedSpread;
use super::form::Form;
use super::objective::{Observation, Points};
use super::table::Run;

/// `replicates = "mean" | "all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicateMode {
    /// One point per group: the mean loss over its seeds.
    #[default]
    Mean,
    /// Every run is a point.
    All,
}

impl ReplicateMode {
    pub fn name(self) -> &'static str {
        match self {
            ReplicateMode::Mean => "mean",
            ReplicateMode::All => "all",
        }
    }
}

/// Groups of `runs[included[..]]` that differ only in their seed: positions
/// into `included`, in order of first appearance. Runs agree when they have
/// the same N and D and the same instance id once its `seed=` key is removed
/// (`eval[seed=1,width=4]` and `eval[seed=2,width=4]`; a curve point's id
/// names its run). Every other run, a table row included, is its own group.
pub fn group(runs: &[Run], included: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for (pos, &i) in included.iter().enumerate() {
        let run = &runs[i];
        let key = match without_seed(&run.id) {
            Some(id) => format!(
                "{:?}|{:?}|{id}",
                run.n.map(f64::to_bits),
                run.d.map(f64::to_bits)
            ),
            None => format!("#{pos}"),
        };
        match by_key.get(&key) {
            Some(&g) => groups[g].push(pos),
            None => {
                by_key.insert(key, groups.len());
                groups.push(vec![pos]);
            }
        }
    }
    groups
}

/// An instance id with the `seed=` key of its point removed, or None when it
/// has none (`train[seed=3,width=8]@d=640` -> `train[width=8]@d=640`).
fn without_seed(id: &str) -> Option<String> {
    let open = id.find('[')?;
    let close = open + id[open..].find(']')?;
    let keys: Vec<&str> = id[open + 1..close].split(',').collect();
    let kept: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !k.starts_with("seed="))
        .collect();
    (kept.len() < keys.len())
        .then(|| format!("{}[{}]{}", &id[..open], kept.join(","), &id[close + 1..]))
}

/// Whether any group holds more than one seed.
pub fn any_replicated(groups: &[Vec<usize>]) -> bool {
    groups.iter().any(|g| g.len() > 1)
}

/// The group's mean as one observation (its runs share N, D and C).
pub fn mean_of(runs: &[Observation], members: impl ExactSizeIterator<Item = usize>) -> Observation {
    let k = members.len().max(1) as f64;
    let mut first = None;
    let mut sum = 0.0;
    for i in members {
        first.get_or_insert(runs[i]);
        sum += runs[i].loss;
    }
    Observation {
        loss: sum / k,
        ..first.unwrap_or(Observation {
            n: f64::NAN,
            d: f64::NAN,
            c: f64::NAN,
            loss: f64::NAN,
        })
    }
}

/// One bootstrap resample that draws groups, then seeds inside each drawn group.
pub fn resample(
    form: &Form,
    runs: &[Observation],
    groups: &[Vec<usize>],
    mode: ReplicateMode,
    rng: &mut ChaCha8Rng,
) -> Points {
    let draws = resample_counts(groups.len(), rng);
    let mut counts = vec![0u32; runs.len()];
    let mut means = Vec::new();
    for (members, &times) in groups.iter().zip(&draws) {
        for _ in 0..times {
            let seeds: Vec<usize> = if members.len() == 1 {
                vec![members[0]]
            } else {
                (0..members.len())
                    .map(|_| members[rng.gen_range(0..members.len())])
                    .collect()
            };
            match mode {
                ReplicateMode::All => seeds.iter().for_each(|&i| counts[i] += 1),
                ReplicateMode::Mean => means.push(mean_of(runs, seeds.into_iter())),
            }
        }
    }
    match mode {
        ReplicateMode::All => Points::new(form, runs).reweighted(&counts),
        ReplicateMode::Mean => Points::new(form, &means),
    }
}

/// Each replicated group's loss over its seeds, and the pooled within-group
/// standard deviation of ln loss (None without a replicated group).
pub fn spread(runs: &[Observation], groups: &[Vec<usize>]) -> (Option<f64>, Vec<SeedSpread>) {
    let mut ss = 0.0;
    let mut dof = 0usize;
    let mut rows = Vec::new();
    for members in groups.iter().filter(|g| g.len() > 1) {
        let losses: Vec<f64> = members.iter().map(|&i| runs[i].loss).collect();
        let k = losses.len() as f64;
        let mean = losses.iter().sum::<f64>() / k;
        let var = losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (k - 1.0);
        let logs: Vec<f64> = losses.iter().map(|l| l.ln()).collect();
        let log_mean = logs.iter().sum::<f64>() / k;
        ss += logs.iter().map(|l| (l - log_mean).powi(2)).sum::<f64>();
        dof += losses.len() - 1;
        let first = runs[members[0]];
        rows.push(SeedSpread {
            n: first.n,
            d: first.d,
            seeds: losses.len(),
            mean,
            std: var.sqrt(),
            min: losses.iter().copied().fold(f64::INFINITY, f64::min),
            max: losses.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        });
    }
    ((dof > 0).then(|| (ss / dof as f64).sqrt()), rows)
}

/// The standard deviation of ln loss around the fitted law (`dim` free
/// parameters): the noise of a new run when there are no replicates to
/// measure it directly.
pub fn residual_log_std(form: &Form, theta: &[f64], runs: &[Observation], dim: usize) -> f64 {
    let ss: f64 = runs
        .iter()
        .map(|r| (r.loss.ln() - form.predict(theta, r.n, r.d, r.c).ln()).powi(2))
        .sum();
    (ss / runs.len().saturating_sub(dim).max(1) as f64).sqrt()
}

/// A 95% prediction interval `(lo, hi)` for the loss of a new run at
/// (`n`, `d`, `c`): each bootstrap replicate's prediction times
/// exp(noise), the noise drawn from N(0, `log_std`^2) on its own seeded stream.
pub fn prediction_interval(
    form: &Form,
    thetas: &[Vec<f64>],
    log_std: f64,
    (n, d, c): (f64, f64, f64),
    seed: u64,
    stream: usize,
) -> Option<(f64, f64)> {
    let mut rng = bootstrap::replicate_rng(seed ^ 0x5eed_5eed_5eed_5eed, stream);
    let noise = Normal::new(0.0, log_std.max(0.0)).ok()?;
    let mut logs: Vec<f64> = thetas
        .iter()
        .map(|t| form.predict(t, n, d, c).ln())
        .filter(|v| v.is_finite())
        .map(|v| v + noise.sample(&mut rng))
        .collect();
    if logs.len() < 2 {
        return None;
    }
    logs.sort_by(f64::total_cmp);
    Some((
        percentile(&logs, 0.025).exp(),
        percentile(&logs, 0.975).exp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, n: f64, loss: f64) -> Run {
        Run {
            id: id.into(),
            n: Some(n),
            d: Some(100.0),
            c: Some(600.0 * n),
            loss: Some(loss),
            status: None,
            params: None,
        }
    }

    #[test]
    fn resamples_draw_groups_then_seeds_from_a_seeded_stream() {
        use super::super::form::{FormKind, Irreducible};
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        let obs: Vec<Observation> = (0..6)
            .map(|i| Observation {
                n: 1e6 * (1 + i / 3) as f64,
                d: 1e7,
                c: 6e13,
                loss: 2.0 + i as f64 * 0.01,
            })
            .collect();
        let groups = vec![vec![0, 1, 2], vec![3, 4, 5]];
        let rng = || bootstrap::replicate_rng(1, 0);
        let all = resample(&form, &obs, &groups, ReplicateMode::All, &mut rng());
        // Two groups drawn, three seeds drawn inside each.
        assert_eq!(all.total_weight(), 6.0);
        assert_eq!(
            all,
            resample(&form, &obs, &groups, ReplicateMode::All, &mut rng())
        );
        let mean = resample(&form, &obs, &groups, ReplicateMode::Mean, &mut rng());
        assert_eq!(mean.len(), 2, "one mean per drawn group");
        // Over a few replicates the seeds inside a group are drawn unevenly.
        let uneven = (0..20).any(|r| {
            let p = resample(
                &form,
                &obs,
                &groups,
                ReplicateMode::All,
                &mut bootstrap::replicate_rng(1, r),
            );
            p.len() < 6
        });
        assert!(uneven, "some replicate leaves a seed out");
    }

    #[test]
    fn runs_group_when_only_their_seed_differs() {
        let runs = vec![
            run("eval[seed=0,width=2]", 10.0, 1.0),
            run("eval[seed=0,width=4]", 20.0, 2.0),
            run("eval[seed=1,width=2]", 10.0, 3.0),
            // Same N and D, another dataset: not a replicate.
            run("eval[n=5,seed=1,width=2]", 10.0, 3.0),
            run("t.csv#1", 10.0, 1.0),
            run("t.csv#2", 10.0, 1.0),
        ];
        let groups = group(&runs, &[0, 1, 2, 3, 4, 5]);
        assert_eq!(groups, vec![vec![0, 2], vec![1], vec![3], vec![4], vec![5]]);
        assert_eq!(
            without_seed("train[seed=3,width=8]@d=640").as_deref(),
            Some("train[width=8]@d=640")
        );
        let obs: Vec<Observation> = runs.iter().map(Run::observation).collect();
        assert_eq!(mean_of(&obs, groups[0].iter().copied()).loss, 2.0);
        let (log_std, rows) = spread(&obs, &groups);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].seeds, rows[0].min, rows[0].max), (2, 1.0, 3.0));
        assert!((log_std.unwrap() - (3f64.ln() / 2f64.sqrt())).abs() < 1e-12);
    }
}
