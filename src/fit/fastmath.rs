//! `exp` and `ln` for the objective's hot loop, written so the compiler can
//! vectorise them.
//!
//! `f64::exp` and `f64::ln` are calls into the C library, which keeps the loop over
//! runs scalar. These are branch-free polynomial evaluations with the usual range
//! reductions, accurate to a few units in the last place on the ranges the
//! objective uses (checked against the library in the tests), so the fitted
//! optimum is the same as with the library functions far below any tolerance
//! that matters.
//!
//! Private to `fit` (only the objective uses them). What they buy, measured with
//! `bench-fit --threads 1 --bootstrap 500` on a shared 2-vCPU Xeon (other builds
//! running, load average 1.9 to 2.2; CPU seconds, 3 runs each, same optimum
//! 1.0182740178005982e-3): the 4,500-start grid 1.75 to 1.84 s with these against
//! 1.95 to 1.99 s with `f64::exp`/`f64::ln`, about 9% (5% on the bootstrap). The
//! larger gain (about 2x, as reported, not re-measured here) needs AVX2 and FMA, that is a build with
//! `-C target-cpu=native` or similar: selecting such a path at run time
//! (`is_x86_feature_detected!` and `#[target_feature]` functions) needs `unsafe`
//! to call them from ordinary code, which the crate forbids, so the default
//! build keeps this portable version.

/// ln 2 split in two: the high part has its low 28 mantissa bits clear, so
/// `k * LN2_HI` is exact for any exponent `k`, and `LN2_HI + LN2_LO` is ln 2 to
/// about 1e-26.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LOG2E: f64 = std::f64::consts::LOG2_E;
/// 1.5 * 2^52: adding it rounds a small float to an integer held in the low
/// mantissa bits (this avoids a float-to-int conversion, which baseline x86-64
/// cannot vectorise).
const ROUND: f64 = 6_755_399_441_055_744.0;
/// Largest argument [`exp`] is accurate for.
const EXP_MAX: f64 = 709.0;
/// Below this, [`exp`] returns exactly 0 (the true value is under 4e-308).
const EXP_MIN: f64 = -708.0;

/// `e^x` for `x <= EXP_MAX`; 0 for `x < EXP_MIN` (including `-inf`).
#[inline(always)]
pub(super) fn exp(x: f64) -> f64 {
    let mut xc = if x > EXP_MIN { x } else { EXP_MIN };
    xc = if xc < EXP_MAX { xc } else { EXP_MAX };
    let t = xc * LOG2E + ROUND;
    let k = t - ROUND;
    // Two-part ln 2 so that r = x - k ln 2 is exact to the last bit.
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r on |r| <= ln(2)/2: the degree-13 remainder is below
    // 5e-18 relative.
    let mut p = 1.0 / 6_227_020_800.0;
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k from its bits: k sits in the low bits of t; 1 <= k + 1023 <= 2046 after
    // the clamps.
    let kbits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f64::from_bits(kbits.wrapping_add(1023) << 52);
    if x < EXP_MIN {
        0.0
    } else {
        p * scale
    }
}

/// `ln x` for positive, normal, finite `x` (at least 2.3e-308).
#[inline(always)]
pub(super) fn ln(x: f64) -> f64 {
    const MANTISSA: u64 = 0x000f_ffff_ffff_ffff;
    const ONE: u64 = 0x3ff0_0000_0000_0000;
    // x = 2^k m with m in [1, 2); k read from the exponent bits the same way
    // `exp` writes them: or-ing them into the mantissa of 2^52.
    let bits = x.to_bits();
    let m = f64::from_bits((bits & MANTISSA) | ONE);
    let k =
        f64::from_bits(0x4330_0000_0000_0000 | (bits >> 52)) - (4_503_599_627_370_496.0 + 1023.0);
    // Centre m on 1: m in [sqrt(1/2), sqrt(2)).
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    let k = if big { k + 1.0 } else { k };
    // ln m = 2 atanh(f), f = (m - 1)/(m + 1), |f| <= 0.172: the series to f^19
    // leaves a remainder below 1e-17.
    let f = (m - 1.0) / (m + 1.0);
    let f2 = f * f;
    let mut p = 1.0 / 19.0;
    p = p * f2 + 1.0 / 17.0;
    p = p * f2 + 1.0 / 15.0;
    p = p * f2 + 1.0 / 13.0;
    p = p * f2 + 1.0 / 11.0;
    p = p * f2 + 1.0 / 9.0;
    p = p * f2 + 1.0 / 7.0;
    p = p * f2 + 1.0 / 5.0;
    p = p * f2 + 1.0 / 3.0;
    p = p * f2 + 1.0;
    (k * LN2_HI + 2.0 * f * p) + k * LN2_LO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / b.abs()
        }
    }

    #[test]
    fn exp_matches_the_library_to_a_few_ulps() {
        let mut worst: f64 = 0.0;
        for i in 0..=400_000 {
            let x = EXP_MIN + (EXP_MAX - EXP_MIN) * i as f64 / 400_000.0;
            worst = worst.max(rel(exp(x), x.exp()));
        }
        for i in 0..=100_000 {
            let x = -2.0 + 4.0 * i as f64 / 100_000.0;
            worst = worst.max(rel(exp(x), x.exp()));
        }
        assert!(worst < 1e-15, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn ln_matches_the_library_to_a_few_ulps() {
        // Absolute error on the scale of max(1, |ln x|): that is what a sum of
        // logs in the objective sees.
        let mut worst: f64 = 0.0;
        for i in 0..=400_000 {
            let x = 10f64.powf(-300.0 + 600.0 * i as f64 / 400_000.0);
            worst = worst.max((ln(x) - x.ln()).abs() / x.ln().abs().max(1.0));
        }
        for i in 0..=100_000 {
            let x = 0.5 + 3.0 * i as f64 / 100_000.0;
            worst = worst.max((ln(x) - x.ln()).abs() / x.ln().abs().max(1.0));
        }
        assert!(worst < 1e-15, "worst error {worst:e}");
        assert_eq!(ln(1.0), 0.0);
        assert!((ln(2.0) - std::f64::consts::LN_2).abs() < 1e-16);
    }
}
