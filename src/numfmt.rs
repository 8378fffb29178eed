//! Number formatting for everything a person reads: a fit's `summary.md`, report
//! tables and plot ticks. Compact `1e6`-style scientific notation for the
//! quantities that span decades (N, D, C) and plain decimals with a fixed number
//! of significant digits for losses. One owner, so a number reads the same in a
//! summary and in the report beside it.

/// A compact label: plain decimals between 0.01 and 10 000 (`0.25`, `300`),
/// otherwise mantissa and exponent with up to three significant digits (`1e6`,
/// `2.5e5`, `1.23e9`). Non-finite values print as `n/a`.
pub fn sci(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if (1e-2..1e4).contains(&a) {
        return sig(v, 3);
    }
    let mut exp = a.log10().floor() as i32;
    let mut mantissa = v / 10f64.powi(exp);
    // Rounding to three digits can carry into the next decade (9.996e5 -> 1e6).
    let rounded = (mantissa * 100.0).round() / 100.0;
    if rounded.abs() >= 10.0 {
        exp += 1;
        mantissa = v / 10f64.powi(exp);
    }
    format!("{}e{exp}", trim(&format!("{:.2}", mantissa)))
}

/// `v` with `digits` significant digits, trailing zeros dropped (`0.1234`,
/// `1.817`, `4353`).
pub fn sig(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if decimals == 0 {
        // Large numbers keep their integer digits; round the rest away.
        let scale = 10f64.powi(magnitude + 1 - digits as i32);
        if scale > 1.0 {
            return format!("{}", (v / scale).round() * scale);
        }
        return text;
    }
    trim(&text)
}

/// A fitted number: four significant digits in the plain range, scientific
/// notation outside it (`0.3466`, `406.4`, `2.19e103`).
pub fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-3..1e5).contains(&a) || !v.is_finite() {
        sig(v, 4)
    } else {
        sci(v)
    }
}

/// A percentage with two significant digits (`3.4%`, `0.52%`).
pub fn percent(fraction: f64) -> String {
    format!("{}%", sig(fraction * 100.0, 2))
}

/// A duration in seconds as a short human string (`0.8 s`, `2 min 5 s`).
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "n/a".to_string();
    }
    if secs < 60.0 {
        return format!("{} s", sig(secs, 2));
    }
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {s} s")
    }
}

fn trim(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sci_is_compact_and_exact_at_decades() {
        assert_eq!(sci(1e6), "1e6");
        assert_eq!(sci(2.5e5), "2.5e5");
        assert_eq!(sci(1.234e9), "1.23e9");
        assert_eq!(sci(9.996e5), "1e6");
        assert_eq!(sci(0.25), "0.25");
        assert_eq!(sci(300.0), "300");
        assert_eq!(sci(4353.0), "4350");
        assert_eq!(sci(5e-3), "5e-3");
        assert_eq!(sci(-2e7), "-2e7");
        assert_eq!(sci(f64::NAN), "n/a");
    }

    #[test]
    fn sig_keeps_significant_digits() {
        assert_eq!(sig(1.81712, 4), "1.817");
        assert_eq!(sig(0.123456, 3), "0.123");
        assert_eq!(sig(0.5, 4), "0.5");
        assert_eq!(sig(123456.0, 3), "123000");
        assert_eq!(percent(0.0342), "3.4%");
        assert_eq!(num(2.194e103), "2.19e103");
        assert_eq!(num(406.43), "406.4");
        assert_eq!(num(0.34731), "0.3473");
        assert_eq!(num(5.76e23), "5.76e23");
        assert_eq!(num(0.0010182), "0.001018");
        assert_eq!(num(1.0182e-4), "1.02e-4");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.84), "0.84 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(7260.0), "2 h 1 min");
    }
}
