//! A known Chinchilla law, `L = E + A/N^alpha + B/D^beta`, and noisy draws from
//! it: the ground truth of simulated studies (the `simulate` stage), so a
//! design or a fit can be checked against the compute-optimal N* it should find.
//!
//! A draw is seeded by the seed and the point alone (a blake3 of both), so the
//! loss at `(N, D)` is the same whichever other points a study has and in
//! whichever order they run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::derived::Derived;
use super::form::{Form, FormKind, Irreducible};

/// The true law of a simulated study.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnownLaw {
    pub e: f64,
    pub a: f64,
    pub alpha: f64,
    pub b: f64,
    pub beta: f64,
}

impl KnownLaw {
    /// Hoffmann et al.'s (2022) fitted law (Approach 3), the default truth.
    pub const CHINCHILLA: KnownLaw = KnownLaw {
        e: 1.69,
        a: 406.4,
        alpha: 0.34,
        b: 410.7,
        beta: 0.28,
    };

    /// The law as the fit's free `chinchilla` form and parameter vector.
    pub fn fitted(&self) -> (Form, Vec<f64>) {
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        let theta = vec![self.a.ln(), self.b.ln(), self.e.ln(), self.alpha, self.beta];
        (form, theta)
    }

    /// The noiseless loss at `(n, d)`.
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.e + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta)
    }

    /// The compute-optimal N and the loss there, at `budget` FLOPs (C = 6ND).
    pub fn optimum(&self, budget: f64) -> (f64, f64) {
        let (form, theta) = self.fitted();
        let derived = Derived::compute(&form, &theta, &[budget]);
        let b = &derived.budgets[0];
        (b.n_opt.unwrap_or(f64::NAN), b.loss)
    }

    /// One observed loss at `(n, d)`: the true loss times `exp(noise * z)`,
    /// z standard normal (noise is the standard deviation of the log loss,
    /// the scale the fit's objective works on).
    pub fn draw(&self, n: f64, d: f64, noise: f64, seed: u64) -> f64 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&seed.to_le_bytes());
        hasher.update(&n.to_bits().to_le_bytes());
        hasher.update(&d.to_bits().to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(*hasher.finalize().as_bytes());
        let z: f64 = StandardNormal.sample(&mut rng);
        self.loss(n, d) * (noise * z).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_depend_on_the_point_and_seed_only() {
        let law = KnownLaw::CHINCHILLA;
        let a = law.draw(1e7, 1e9, 0.02, 3);
        assert_eq!(a, law.draw(1e7, 1e9, 0.02, 3));
        assert_ne!(a, law.draw(1e7, 1e9, 0.02, 4));
        assert_ne!(a, law.draw(2e7, 1e9, 0.02, 3));
        assert_eq!(law.draw(1e7, 1e9, 0.0, 3), law.loss(1e7, 1e9));
        let (form, theta) = law.fitted();
        let l = form.predict(&theta, 1e7, 1e9, 6e16);
        assert!((l - law.loss(1e7, 1e9)).abs() < 1e-12);
    }
}
