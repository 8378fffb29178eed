//! The `split` parameter of dataset stages: how many examples (or tokens) go to
//! validation and test, and how large the training pool is.
//!
//! Each amount is either a count (an integer: `val = 500`) or a fraction of the
//! pool (a float: `val = 0.1`). The training subset actually used is the stage's
//! `n` (or `tokens`), taken from the training pool; see [`super::subsample`].

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::stages::ParamError;

/// One split's size: an absolute count or a fraction of the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Count(u64),
    Fraction(f64),
}

impl Amount {
    /// The amount out of `pool` items (fractions round to the nearest item).
    pub fn of(self, pool: usize) -> usize {
        match self {
            Amount::Count(c) => c as usize,
            Amount::Fraction(f) => (f * pool as f64).round() as usize,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(c) => write!(f, "{c}"),
            Amount::Fraction(x) => write!(f, "{x}"),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count (integer >= 0) or a fraction (float between 0 and 1)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount::Count(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                u64::try_from(v)
                    .map(Amount::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                if (0.0..=1.0).contains(&v) {
                    Ok(Amount::Fraction(v))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(AmountVisitor)
    }
}

/// `split = {train = 0.8, val = 0.1, test = 0.1}`; every key optional.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub train: Option<Amount>,
    pub val: Option<Amount>,
    pub test: Option<Amount>,
}

/// A split resolved against a pool of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSizes {
    pub val: usize,
    pub test: usize,
    /// Items available for training (the largest `n` allowed).
    pub train_pool: usize,
}

/// Validation and test fractions used when `split` does not say.
pub const DEFAULT_HELD_OUT_FRACTION: f64 = 0.1;

impl SplitSpec {
    /// Checks what can be checked before the pool size is known: fractions must not
    /// add up to more than the whole pool.
    pub fn validate(&self) -> Result<(), ParamError> {
        let total: f64 = [self.train, self.val_amount(), self.test_amount()]
            .into_iter()
            .flatten()
            .filter_map(|a| match a {
                Amount::Fraction(f) => Some(f),
                Amount::Count(_) => None,
            })
            .sum();
        if total > 1.0 + 1e-9 {
            return Err(ParamError::at(
                "split",
                format!("the fractions add up to {total}, more than 1"),
            ));
        }
        Ok(())
    }

    fn val_amount(&self) -> Option<Amount> {
        Some(
            self.val
                .unwrap_or(Amount::Fraction(DEFAULT_HELD_OUT_FRACTION)),
        )
    }

    fn test_amount(&self) -> Option<Amount> {
        Some(
            self.test
                .unwrap_or(Amount::Fraction(DEFAULT_HELD_OUT_FRACTION)),
        )
    }

    /// Sizes for a pool of `pool` items. Validation and test are carved off first;
    /// the training pool is what remains, capped by `train` when given.
    pub fn resolve(&self, pool: usize) -> Result<SplitSizes, String> {
        self.resolve_capped(pool, usize::MAX)
    }

    /// [`Self::resolve`], with a validation or test set left to the default
    /// fraction capped at `default_cap` items (what the user gives is kept).
    pub fn resolve_capped(&self, pool: usize, default_cap: usize) -> Result<SplitSizes, String> {
        let held_out = |given: Option<Amount>, default: Amount| match given {
            Some(amount) => amount.of(pool),
            None => default.of(pool).min(default_cap),
        };
        let val = held_out(self.val, self.val_amount().expect("default"));
        let test = held_out(self.test, self.test_amount().expect("default"));
        let remaining = pool.checked_sub(val + test).ok_or_else(|| {
            format!("split asks for {val} validation + {test} test items but there are only {pool}")
        })?;
        let train_pool = match self.train {
            None => remaining,
            Some(amount) => {
                let t = amount.of(pool);
                if t > remaining {
                    return Err(format!(
                        "split asks for {t} training items but only {remaining} of {pool} remain after {val} validation and {test} test items"
                    ));
                }
                t
            }
        };
        if train_pool == 0 {
            return Err(format!(
                "no items left for training out of {pool} (validation {val}, test {test})"
            ));
        }
        Ok(SplitSizes {
            val,
            test,
            train_pool,
        })
    }

    /// Validation and test sizes for a generator, which has no pool: only counts
    /// make sense, since fractions of `n` would change the held-out sets with `n`.
    pub fn generated(&self, kind: &str, default: (u64, u64)) -> Result<(usize, usize), ParamError> {
        if self.train.is_some() {
            return Err(ParamError::at(
                "split.train",
                format!("{kind} generates its data: the training size is `n`/`tokens`, so give only `val` and `test` counts"),
            ));
        }
        let count = |key: &str, amount: Option<Amount>, default: u64| {
            match amount {
            None => Ok(default as usize),
            Some(Amount::Count(c)) => Ok(c as usize),
            Some(Amount::Fraction(_)) => Err(ParamError::at(
                format!("split.{key}"),
                format!("{kind} generates its data, so the held-out sets are counts (e.g. {key} = 1000), not fractions: a fraction of the training size would change them as it is swept"),
            )),
        }
        };
        Ok((
            count("val", self.val, default.0)?,
            count("test", self.test, default.1)?,
        ))
    }
}

/// The training subset size: `n` if given (checked against the pool), else the
/// whole training pool. `key` names the parameter (`n`, `tokens`) in errors.
pub fn train_size(
    n: Option<u64>,
    sizes: &SplitSizes,
    key: &str,
    unit: &str,
) -> Result<usize, String> {
    match n {
        None => Ok(sizes.train_pool),
        Some(n) if n as usize > sizes.train_pool => Err(format!(
            "{key} = {n} training {unit} requested but the training pool holds only {} (after {} validation and {} test)",
            sizes.train_pool, sizes.val, sizes.test
        )),
        Some(n) => Ok(n as usize),
    }
}

/// A size parameter (`n`, `tokens`): a whole number, written as an integer or as a
/// float such as `1e5` (sweeps over data sizes are often written that way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number >= 1 (such as 1000 or 1e3)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                if v == 0 {
                    return Err(E::invalid_value(de::Unexpected::Unsigned(v), &self));
                }
                Ok(Count(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                if v >= 1.0 && v.fract() == 0.0 && v < 2f64.powi(53) {
                    Ok(Count(v as u64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SplitSpec, String> {
        let value: toml::Value = toml::from_str::<toml::Table>(text)
            .map(toml::Value::Table)
            .map_err(|e| e.to_string())?;
        SplitSpec::deserialize(value).map_err(|e| e.to_string())
    }

    #[test]
    fn fractions_and_counts_resolve() {
        let spec = parse("train = 0.8\nval = 0.1\ntest = 0.1").unwrap();
        spec.validate().unwrap();
        let s = spec.resolve(1000).unwrap();
        assert_eq!((s.val, s.test, s.train_pool), (100, 100, 800));
        let spec = parse("val = 30\ntest = 0.5").unwrap();
        let s = spec.resolve(100).unwrap();
        assert_eq!((s.val, s.test, s.train_pool), (30, 50, 20));
    }

    #[test]
    fn defaults_hold_out_ten_percent_each() {
        let s = SplitSpec::default().resolve(50).unwrap();
        assert_eq!((s.val, s.test, s.train_pool), (5, 5, 40));
    }

    #[test]
    fn default_held_out_sets_are_capped_but_given_ones_are_not() {
        let s = SplitSpec::default().resolve_capped(10_000, 300).unwrap();
        assert_eq!((s.val, s.test, s.train_pool), (300, 300, 9_400));
        let spec = parse("val = 0.2").unwrap();
        let s = spec.resolve_capped(10_000, 300).unwrap();
        assert_eq!((s.val, s.test), (2_000, 300));
    }

    #[test]
    fn bad_splits_are_rejected() {
        let spec = parse("train = 0.8\nval = 0.2\ntest = 0.1").unwrap();
        assert!(spec.validate().unwrap_err().message.contains("more than 1"));
        let err = parse("val = 1.5").unwrap_err();
        assert!(err.contains("fraction"), "{err}");
        let err = parse("valid = 0.1").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let spec = parse("val = 80\ntest = 30").unwrap();
        assert!(spec.resolve(100).unwrap_err().contains("only 100"));
    }

    #[test]
    fn generators_take_counts_only() {
        let spec = parse("val = 0.1").unwrap();
        let err = spec.generated("dataset.teacher", (1, 1)).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("split.val"));
        let spec = parse("val = 7").unwrap();
        assert_eq!(spec.generated("dataset.teacher", (1, 2)).unwrap(), (7, 2));
    }

    #[test]
    fn counts_accept_whole_floats() {
        #[derive(Deserialize)]
        struct P {
            n: Count,
        }
        let p: P = toml::from_str("n = 1e3").unwrap();
        assert_eq!(p.n, Count(1000));
        let p: P = toml::from_str("n = 250").unwrap();
        assert_eq!(p.n, Count(250));
        assert!(toml::from_str::<P>("n = 2.5").is_err());
        assert!(toml::from_str::<P>("n = 0").is_err());
    }

    #[test]
    fn n_must_fit_the_pool() {
        let sizes = SplitSizes {
            val: 1,
            test: 1,
            train_pool: 8,
        };
        assert_eq!(train_size(None, &sizes, "n", "examples").unwrap(), 8);
        assert_eq!(train_size(Some(3), &sizes, "n", "examples").unwrap(), 3);
        assert!(train_size(Some(9), &sizes, "n", "examples")
            .unwrap_err()
            .contains("only 8"));
    }
}
