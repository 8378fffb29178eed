//! The learning-rate schedules: linear warmup from zero, then cosine decay to a
//! floor (GPT-3, Chinchilla), warmup-stable-decay (WSD: a constant rate, then a
//! short decay to the floor; Hägele et al. 2024), or the constant rate alone
//! (every point of its loss curve is a model at the same rate, so the points
//! are comparable with one another, unlike a cosine run's).
//!
//! WSD is what lets runs of several lengths share their training: up to its
//! cooldown a WSD run's rates do not depend on its length, so a longer run's
//! stable phase continues a shorter run's (see [`Schedule::stable_end`]).

use serde::{Deserialize, Serialize};

/// The form of a WSD cooldown, from the peak rate to the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Decay {
    /// Falls linearly.
    #[default]
    #[serde(rename = "linear")]
    Linear,
    /// `1 - sqrt(progress)`: drops fast, then flattens (Hägele et al. find it
    /// slightly better than linear).
    #[serde(rename = "1-sqrt")]
    OneMinusSqrt,
}

/// What follows the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    /// Cosine decay from the peak, reaching the floor at step `total`.
    Cosine,
    /// The peak until the last `cooldown_steps` steps, which decay to the floor.
    Wsd { cooldown_steps: usize, decay: Decay },
    /// The peak to the end: no decay.
    Constant,
}

/// Linear warmup over `warmup` steps to `peak`, then `shape` down to `floor` by
/// step `total` (and `floor` after it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub peak: f64,
    pub floor: f64,
    pub warmup: usize,
    pub total: usize,
    pub shape: Shape,
}

/// A run's schedule as a pipeline asks for it, before the run's length is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScheduleChoice {
    Cosine,
    /// WSD whose cooldown is `cooldown` (a fraction) of the run's steps.
    Wsd {
        cooldown: f64,
        decay: Decay,
    },
    /// The peak rate after the warmup, never decayed.
    Constant,
}

impl ScheduleChoice {
    /// The schedule of a `total`-step run.
    pub fn schedule(self, peak: f64, floor: f64, warmup: usize, total: usize) -> Schedule {
        let shape = match self {
            ScheduleChoice::Cosine => Shape::Cosine,
            ScheduleChoice::Wsd { cooldown, decay } => Shape::Wsd {
                cooldown_steps: cooldown_steps(total, cooldown),
                decay,
            },
            ScheduleChoice::Constant => Shape::Constant,
        };
        Schedule {
            peak,
            floor,
            warmup,
            total,
            shape,
        }
    }

    /// How `metrics.json` names it: `cosine`, `constant`, or `wsd-cooldown`
    /// for a WSD run (which always ends with its cooldown, so its final loss
    /// is a fully trained model's at its D).
    pub fn label(self) -> &'static str {
        match self {
            ScheduleChoice::Cosine => "cosine",
            ScheduleChoice::Wsd { .. } => "wsd-cooldown",
            ScheduleChoice::Constant => "constant",
        }
    }
}

/// Steps of a WSD cooldown that is `fraction` of a `total`-step run: rounded,
/// at least one and at most all of them.
pub fn cooldown_steps(total: usize, fraction: f64) -> usize {
    ((fraction * total as f64).round() as usize).clamp(1, total.max(1))
}

impl Schedule {
    /// Learning rate for the update made at `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        match self.shape {
            Shape::Cosine => {
                if step < self.warmup {
                    return self.warm(step);
                }
                let span = self.total.saturating_sub(self.warmup).max(1);
                let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.floor + (self.peak - self.floor) * cosine
            }
            Shape::Constant if step < self.warmup => self.warm(step),
            Shape::Constant => self.peak,
            Shape::Wsd {
                cooldown_steps,
                decay,
            } => {
                let start = self.total.saturating_sub(cooldown_steps);
                let decayed = if step < start {
                    self.peak
                } else {
                    // The first cooldown update is already below the peak and
                    // the last one uses the floor.
                    let progress =
                        (((step - start) + 1) as f64 / cooldown_steps.max(1) as f64).min(1.0);
                    let left = match decay {
                        Decay::Linear => 1.0 - progress,
                        Decay::OneMinusSqrt => 1.0 - progress.sqrt(),
                    };
                    self.floor + (self.peak - self.floor) * left
                };
                // A cooldown that starts inside the warmup decays from where the
                // warmup got to rather than jumping to the peak.
                if step < self.warmup {
                    decayed.min(self.warm(step))
                } else {
                    decayed
                }
            }
        }
    }

    /// The first step of a WSD cooldown: steps before it are the stable phase,
    /// whose rates are the same for every run length. `None` for cosine, whose
    /// every rate depends on the length, and for constant, which has no
    /// cooldown (and no checkpoint to share).
    pub fn stable_end(&self) -> Option<usize> {
        match self.shape {
            Shape::Cosine | Shape::Constant => None,
            Shape::Wsd { cooldown_steps, .. } => Some(self.total.saturating_sub(cooldown_steps)),
        }
    }

    fn warm(&self, step: usize) -> f64 {
        self.peak * (step + 1) as f64 / self.warmup as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_the_floor() {
        let s = Schedule {
            peak: 1.0,
            floor: 0.1,
            warmup: 4,
            total: 14,
            shape: Shape::Cosine,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(9) - 0.55).abs() < 1e-12, "{}", s.lr(9));
        assert!((s.lr(14) - 0.1).abs() < 1e-12);
        assert!((s.lr(100) - 0.1).abs() < 1e-12);
        let lrs: Vec<f64> = (4..14).map(|i| s.lr(i)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]));
        assert_eq!(s.stable_end(), None);
    }

    fn wsd(total: usize, decay: Decay) -> Schedule {
        Schedule {
            peak: 1.0,
            floor: 0.1,
            warmup: 4,
            total,
            shape: Shape::Wsd {
                cooldown_steps: cooldown_steps(total, 0.2),
                decay,
            },
        }
    }

    #[test]
    fn wsd_holds_the_peak_then_decays_over_the_cooldown() {
        let s = wsd(20, Decay::Linear);
        assert_eq!(s.stable_end(), Some(16));
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert!((4..16).all(|i| s.lr(i) == 1.0));
        // Four cooldown steps: 3/4, 2/4, 1/4 and none of the way above the floor.
        let cool: Vec<f64> = (16..20).map(|i| s.lr(i)).collect();
        for (got, want) in cool.iter().zip([0.775, 0.55, 0.325, 0.1]) {
            assert!((got - want).abs() < 1e-12, "{cool:?}");
        }
        assert!((s.lr(25) - 0.1).abs() < 1e-12);

        let sqrt = wsd(20, Decay::OneMinusSqrt);
        assert!((sqrt.lr(16) - (0.1 + 0.9 * (1.0 - 0.25f64.sqrt()))).abs() < 1e-12);
        assert!((sqrt.lr(19) - 0.1).abs() < 1e-12);
        assert!(
            (16..20).all(|i| sqrt.lr(i) <= s.lr(i)),
            "1-sqrt drops faster"
        );
    }

    #[test]
    fn wsd_runs_of_any_length_share_their_stable_phase() {
        // What resuming a longer run from a shorter one's cooldown start relies on.
        for decay in [Decay::Linear, Decay::OneMinusSqrt] {
            let (short, long) = (wsd(20, decay), wsd(200, decay));
            let end = short.stable_end().unwrap();
            assert!((0..end).all(|i| short.lr(i) == long.lr(i)));
            assert_ne!(short.lr(end), long.lr(end));
        }
        assert_eq!(cooldown_steps(3, 0.01), 1);
        assert_eq!(cooldown_steps(3, 1.0), 3);
    }

    #[test]
    fn constant_warms_up_then_holds_the_peak_to_the_end() {
        let s = ScheduleChoice::Constant.schedule(1.0, 0.1, 4, 20);
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert!((4..30).all(|i| s.lr(i) == 1.0));
        assert_eq!(s.stable_end(), None);
        assert_eq!(ScheduleChoice::Constant.label(), "constant");
    }

    #[test]
    fn a_cooldown_inside_the_warmup_never_exceeds_the_warmup() {
        let s = wsd(5, Decay::Linear); // one cooldown step, at step 4 > warmup 4
        assert_eq!(s.stable_end(), Some(4));
        let short = Schedule {
            total: 3,
            shape: Shape::Wsd {
                cooldown_steps: 2,
                decay: Decay::Linear,
            },
            ..s
        };
        assert_eq!(short.lr(0), 0.25);
        assert!(short.lr(1) <= 0.5);
        assert!((short.lr(2) - 0.1).abs() < 1e-12);
    }
}
