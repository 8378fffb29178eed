//! Deterministic, seeded, nested subsampling of a pool of examples.
//!
//! One permutation of the pool is drawn from the seed alone. Validation and test
//! are its first items, so they never depend on the training size; the training
//! subset of size D is the next D items. A sweep over D therefore trains on
//! growing supersets of the same examples (D = 100 is a prefix of D = 1000) and
//! always evaluates on the same held-out sets.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::split::SplitSizes;

/// RNG streams of one seed, so independent uses of a seed never share draws.
pub mod stream {
    /// The pool permutation of loaders.
    pub const PERMUTATION: u64 = 1;
    /// The generator's fixed structure (teacher weights, Markov chain).
    pub const MODEL: u64 = 2;
    /// Calibration draws (teacher output scale, Bayes loss estimate).
    pub const CALIBRATION: u64 = 3;
    /// Inputs of a split (`+ split index`, 0 train, 1 val, 2 test).
    pub const INPUTS: u64 = 10;
    /// Label noise or label sampling of a split (`+ split index`).
    pub const NOISE: u64 = 20;
}

/// A ChaCha8 generator for `seed` on one of its streams.
pub fn seeded_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A uniformly random permutation of `0..len` (Fisher-Yates), fixed by the seed.
pub fn permutation(len: usize, seed: u64) -> Vec<usize> {
    let mut rng = seeded_rng(seed, stream::PERMUTATION);
    let mut perm: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = rng.gen_range(0..=i);
        perm.swap(i, j);
    }
    perm
}

/// Pool indices of each split, in the permuted order the split files keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsample {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits a pool of `pool` items: validation, then test, then the first `n` of the
/// training pool, all from one seeded permutation.
pub fn nested_subsample(pool: usize, sizes: &SplitSizes, n: usize, seed: u64) -> Subsample {
    assert!(
        sizes.val + sizes.test + sizes.train_pool <= pool && n <= sizes.train_pool,
        "split sizes checked by the caller"
    );
    let perm = permutation(pool, seed);
    let (val, rest) = perm.split_at(sizes.val);
    let (test, rest) = rest.split_at(sizes.test);
    Subsample {
        train: rest[..n].to_vec(),
        val: val.to_vec(),
        test: test.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_seeded_bijection() {
        let p = permutation(1000, 7);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, permutation(1000, 7));
        assert_ne!(p, permutation(1000, 8));
    }

    #[test]
    fn smaller_training_sets_are_prefixes_and_held_out_sets_fixed() {
        let sizes = SplitSizes {
            val: 100,
            test: 100,
            train_pool: 800,
        };
        let small = nested_subsample(1000, &sizes, 100, 3);
        let large = nested_subsample(1000, &sizes, 800, 3);
        assert_eq!(small.train[..], large.train[..100]);
        assert_eq!(small.val, large.val);
        assert_eq!(small.test, large.test);
        let mut all: Vec<usize> = [&large.train, &large.val, &large.test]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1000, "splits are disjoint and cover the pool");
    }
}
