//! The design criterion: how much a run at `(N, D)` would tell us about the
//! targets (ln N* and ln L* at the budget), judged on the fit's bootstrap
//! ensemble, and what the ensemble would look like once the run is in.
//!
//! The ensemble (one parameter vector per bootstrap replicate) is read as a
//! sample of what the law may be. For a candidate run, each member predicts its
//! log loss; where members disagree, and their disagreement goes together with
//! disagreement about N*, observing the run settles part of N*. Under the
//! linear-Gaussian reading of the ensemble (a new log loss `y = h(theta) + eps`,
//! `eps ~ N(0, sigma^2)`), the information the run carries about a target `g`
//! is `1/2 ln(Var g / (Var g - Cov(g, h)^2 / (Var h + sigma^2)))` nats: Bayesian
//! c-optimal design (Chaloner & Verdinelli 1995, "Bayesian experimental design:
//! a review", Statistical Science 10(3), section 2.3) with the bootstrap
//! ensemble as the prior.
//!
//! Once a run is chosen, its imagined outcome is assimilated with the ensemble
//! square-root filter (Whitaker & Hamill 2002, "Ensemble data assimilation
//! without perturbed observations", Monthly Weather Review 130): every member's
//! targets and predictions move toward the ensemble mean by the Kalman gain,
//! without perturbed observations, so the ensemble's spread becomes the expected
//! spread after the run. The next choice is then judged on that ensemble: a
//! second run where the first already settled the question gains little.

/// An ensemble of targets and candidate predictions, stored as means and
/// anomalies (member minus mean), the form the filter updates.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    /// Variance of one observed log loss around the law.
    noise_var: f64,
    /// Rows: the targets first, then one row per candidate's predicted log loss.
    means: Vec<f64>,
    anomalies: Vec<Vec<f64>>,
    targets: usize,
}

impl Ensemble {
    /// `targets[t][r]`: target `t` of member `r`; `predictions[j][r]`: member
    /// `r`'s log loss at candidate `j`. Every row has one value per member;
    /// members with a non-finite value anywhere are dropped.
    pub fn new(targets: Vec<Vec<f64>>, predictions: Vec<Vec<f64>>, noise_sd: f64) -> Ensemble {
        let n_targets = targets.len();
        let rows: Vec<Vec<f64>> = targets.into_iter().chain(predictions).collect();
        let members = rows.first().map_or(0, Vec::len);
        let keep: Vec<usize> = (0..members)
            .filter(|&r| rows.iter().all(|row| row[r].is_finite()))
            .collect();
        let mut means = Vec::with_capacity(rows.len());
        let mut anomalies = Vec::with_capacity(rows.len());
        for row in &rows {
            let values: Vec<f64> = keep.iter().map(|&r| row[r]).collect();
            let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
            means.push(mean);
            anomalies.push(values.iter().map(|v| v - mean).collect());
        }
        Ensemble {
            noise_var: noise_sd * noise_sd,
            means,
            anomalies,
            targets: n_targets,
        }
    }

    /// Members kept.
    pub fn members(&self) -> usize {
        self.anomalies.first().map_or(0, Vec::len)
    }

    pub fn candidates(&self) -> usize {
        self.means.len() - self.targets
    }

    fn cov(&self, i: usize, j: usize) -> f64 {
        let m = self.members();
        if m < 2 {
            return 0.0;
        }
        let (a, b) = (&self.anomalies[i], &self.anomalies[j]);
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (m - 1) as f64
    }

    /// Ensemble variance of target `t`.
    pub fn target_var(&self, t: usize) -> f64 {
        self.cov(t, t)
    }

    /// Target `t`'s member values (mean plus anomaly).
    pub fn target_values(&self, t: usize) -> Vec<f64> {
        self.anomalies[t]
            .iter()
            .map(|a| self.means[t] + a)
            .collect()
    }

    /// Standard deviation of candidate `j`'s predicted log loss.
    pub fn spread(&self, j: usize) -> f64 {
        let h = self.targets + j;
        self.cov(h, h).sqrt()
    }

    /// Nats of information observing candidate `j` gives about each target.
    pub fn gain(&self, j: usize) -> Vec<f64> {
        let h = self.targets + j;
        let v = self.cov(h, h) + self.noise_var;
        (0..self.targets)
            .map(|t| {
                let var = self.cov(t, t);
                let c = self.cov(t, h);
                let after = var - c * c / v;
                if var > 0.0 && after > 0.0 && v > 0.0 {
                    0.5 * (var / after).ln()
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Assimilates an imagined observation of candidate `j` at the ensemble's
    /// mean prediction: the square-root filter's update of every row.
    pub fn assimilate(&mut self, j: usize) {
        let h = self.targets + j;
        let var_h = self.cov(h, h);
        let v = var_h + self.noise_var;
        if !(v > 0.0 && var_h > 0.0) {
            return;
        }
        let alpha = 1.0 / (1.0 + (self.noise_var / v).sqrt());
        let gains: Vec<f64> = (0..self.means.len()).map(|s| self.cov(s, h) / v).collect();
        let observed = self.anomalies[h].clone();
        for (row, k) in self.anomalies.iter_mut().zip(gains) {
            for (a, o) in row.iter_mut().zip(&observed) {
                *a -= alpha * k * o;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members where the target and candidate 0's prediction move together
    /// (h0 = g + small), candidate 1 says nothing about the target.
    fn ensemble(noise_sd: f64) -> Ensemble {
        let g: Vec<f64> = (0..40).map(|r| ((r * 7919) % 40) as f64 / 10.0).collect();
        let h0: Vec<f64> = g
            .iter()
            .enumerate()
            .map(|(r, v)| v + 0.01 * (r % 3) as f64)
            .collect();
        let h1: Vec<f64> = (0..40).map(|r| ((r * 13) % 40) as f64 / 10.0).collect();
        Ensemble::new(vec![g], vec![h0, h1], noise_sd)
    }

    #[test]
    fn informative_runs_gain_and_the_update_matches_the_kalman_variance() {
        let e = ensemble(0.1);
        let gain0 = e.gain(0)[0];
        assert!(
            gain0 > 1.0,
            "a run that tracks the target settles it: {gain0}"
        );
        // The square-root update must leave exactly the Kalman posterior variance.
        let var = e.target_var(0);
        let c = e.cov(0, 1);
        let v = e.cov(1, 1) + 0.01;
        let mut after = e.clone();
        after.assimilate(0);
        let expected = var - c * c / v;
        assert!(
            (after.target_var(0) - expected).abs() < 1e-9 * var,
            "{} vs {expected}",
            after.target_var(0)
        );
        assert!((0.5 * (var / after.target_var(0)).ln() - gain0).abs() < 1e-9);
        // The mean stays: the imagined outcome is the ensemble's own prediction.
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        assert!((mean(&after.target_values(0)) - mean(&e.target_values(0))).abs() < 1e-12);
    }

    #[test]
    fn noise_and_repetition_give_diminishing_returns() {
        let quiet = ensemble(0.01);
        let loud = ensemble(1.0);
        assert!(quiet.gain(0)[0] > loud.gain(0)[0], "noisier runs tell less");
        assert!(
            quiet.gain(1)[0] < quiet.gain(0)[0] * 0.1,
            "an unrelated run tells little"
        );
        let mut once = loud.clone();
        once.assimilate(0);
        assert!(
            once.gain(0)[0] < loud.gain(0)[0],
            "the same run again is worth less than the first time"
        );
    }

    #[test]
    fn members_with_non_finite_values_are_dropped() {
        let e = Ensemble::new(
            vec![vec![1.0, f64::NAN, 3.0]],
            vec![vec![0.0, 1.0, 2.0]],
            0.1,
        );
        assert_eq!(e.members(), 2);
        assert_eq!(e.candidates(), 1);
    }
}
