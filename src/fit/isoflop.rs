//! Hoffmann et al.'s Approach 2 (IsoFLOP profiles): group runs into compute
//! bands, fit a parabola of loss in `ln N` within each band, take its minimum as
//! that budget's optimal model size, and fit `N_opt ∝ C^a` across bands.
//!
//! It is a cross-check of the parametric (`chinchilla`) fit that assumes no
//! functional form for L(N, D). Bands are either fixed-width bins of `log10 C`
//! (`width`, for runs spread over compute) or clusters separated by gaps
//! (`gap`, for runs trained at a handful of exact budgets, as Hoffmann et al. did).

use serde::{Deserialize, Serialize};

use super::objective::Observation;

/// How runs are grouped into bands and which bands count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsoflopSettings {
    pub grouping: Grouping,
    /// Fewest runs (with at least three distinct N) a band needs for a parabola.
    pub min_runs: usize,
}

/// How runs are grouped by compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Grouping {
    /// Bins of this width in `log10 C`, centred on multiples of the width.
    Width(f64),
    /// A new band starts where sorted `log10 C` jumps by more than this.
    Gap(f64),
}

/// One compute band's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Geometric mean of the band's compute.
    pub c: f64,
    pub runs: usize,
    /// Optimal N from the parabola's minimum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_opt: Option<f64>,
    /// `C / (6 N_opt)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_opt: Option<f64>,
    /// The parabola's value at its minimum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_min: Option<f64>,
    /// Whether the band enters the fit across bands; if not, why.
    pub used: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The outcome of Approach 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isoflop {
    pub bands: Vec<Band>,
    /// Exponent of `N_opt ∝ C^a` (needs two usable bands).
    pub a: Option<f64>,
    /// Exponent of `D_opt ∝ C^b`; `b = 1 - a` because `D = C / 6N`.
    pub b: Option<f64>,
    /// `N_opt = k C^a`.
    pub k: Option<f64>,
}

/// Runs Approach 2 on runs with finite positive N, C and loss.
pub fn isoflop(runs: &[Observation], settings: &IsoflopSettings) -> Isoflop {
    let groups = group(runs, settings.grouping);
    let mut bands = Vec::new();
    for members in groups {
        let c = (members.iter().map(|&i| runs[i].c.ln()).sum::<f64>() / members.len() as f64).exp();
        let mut band = Band {
            c,
            runs: members.len(),
            n_opt: None,
            d_opt: None,
            loss_min: None,
            used: false,
            note: None,
        };
        let mut ns: Vec<f64> = members.iter().map(|&i| runs[i].n).collect();
        ns.sort_by(f64::total_cmp);
        ns.dedup();
        if members.len() < settings.min_runs || ns.len() < 3 {
            band.note = Some(format!(
                "too few runs ({} runs, {} distinct N; need {} and 3)",
                members.len(),
                ns.len(),
                settings.min_runs
            ));
            bands.push(band);
            continue;
        }
        let xs: Vec<f64> = members.iter().map(|&i| runs[i].n.ln()).collect();
        let ys: Vec<f64> = members.iter().map(|&i| runs[i].loss).collect();
        match parabola_minimum(&xs, &ys) {
            None => band.note = Some("loss is not convex in ln N here (no minimum)".into()),
            Some((x_min, loss_min)) => {
                let n_opt = x_min.exp();
                band.n_opt = Some(n_opt);
                band.d_opt = Some(c / (6.0 * n_opt));
                band.loss_min = Some(loss_min);
                if n_opt < ns[0] || n_opt > ns[ns.len() - 1] {
                    band.note = Some("minimum lies outside the band's range of N".into());
                } else {
                    band.used = true;
                }
            }
        }
        bands.push(band);
    }
    let used: Vec<(f64, f64)> = bands
        .iter()
        .filter(|b| b.used)
        .map(|b| (b.c.ln(), b.n_opt.unwrap_or(f64::NAN).ln()))
        .collect();
    let (a, k) = match line(&used) {
        Some((slope, intercept)) => (Some(slope), Some(intercept.exp())),
        None => (None, None),
    };
    Isoflop {
        bands,
        a,
        b: a.map(|a| 1.0 - a),
        k,
    }
}

/// Groups run indices into bands in increasing compute.
fn group(runs: &[Observation], grouping: Grouping) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].c.total_cmp(&runs[b].c).then(a.cmp(&b)));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut last_key = f64::NAN;
    let mut last_lc = f64::NAN;
    for i in order {
        let lc = runs[i].c.log10();
        let new_group = match grouping {
            Grouping::Width(w) => {
                let key = (lc / w).round();
                let fresh = key != last_key;
                last_key = key;
                fresh
            }
            Grouping::Gap(g) => last_lc.is_nan() || lc - last_lc > g,
        };
        last_lc = lc;
        if new_group || groups.is_empty() {
            groups.push(Vec::new());
        }
        groups.last_mut().expect("pushed").push(i);
    }
    groups
}

/// Least-squares parabola through `(x, y)`; its minimum `(x, y)` if it opens
/// upward. x is centred first so the normal equations stay well conditioned.
fn parabola_minimum(xs: &[f64], ys: &[f64]) -> Option<(f64, f64)> {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let mut m = [[0.0; 4]; 3];
    for (&x, &y) in xs.iter().zip(ys) {
        let t = x - mean;
        let basis = [1.0, t, t * t];
        for r in 0..3 {
            for c in 0..3 {
                m[r][c] += basis[r] * basis[c];
            }
            m[r][3] += basis[r] * y;
        }
    }
    let p = solve3(m)?;
    if p[2].is_nan() || p[2] <= 0.0 {
        return None;
    }
    let t = -p[1] / (2.0 * p[2]);
    Some((mean + t, p[0] + p[1] * t + p[2] * t * t))
}

/// Solves a 3x3 system given as an augmented matrix (Gaussian elimination with
/// partial pivoting); `None` when singular.
fn solve3(mut m: [[f64; 4]; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col];
        for row in m.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
        }
    }
    let mut x = [0.0; 3];
    for r in (0..3).rev() {
        let s: f64 = (r + 1..3).map(|c| m[r][c] * x[c]).sum();
        x[r] = (m[r][3] - s) / m[r][r];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Least-squares line `y = slope x + intercept` (needs two distinct x).
fn line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs at exact budgets from a known Chinchilla law: the profiles' minima
    /// must follow the closed-form N_opt ∝ C^(beta/(alpha+beta)).
    #[test]
    fn recovers_the_allocation_exponent_of_a_known_law() {
        let (big_a, big_b, e, alpha, beta) = (400.0, 400.0, 1.7, 0.34, 0.28);
        let law = |n: f64, d: f64| e + big_a / f64::powf(n, alpha) + big_b / f64::powf(d, beta);
        let mut runs = Vec::new();
        for c in [1e18, 1e19, 1e20, 1e21] {
            let g = (alpha * big_a / (beta * big_b)).powf(1.0 / (alpha + beta));
            let n_star = g * (c / 6.0f64).powf(beta / (alpha + beta));
            // Points close to the minimum, where the loss is nearly a parabola in ln N.
            for k in -3..=3 {
                let n = n_star * (0.15 * k as f64).exp();
                let d = c / (6.0 * n);
                runs.push(Observation {
                    n,
                    d,
                    c,
                    loss: law(n, d),
                });
            }
        }
        let settings = IsoflopSettings {
            grouping: Grouping::Gap(0.05),
            min_runs: 3,
        };
        let out = isoflop(&runs, &settings);
        assert_eq!(out.bands.len(), 4);
        assert!(out.bands.iter().all(|b| b.used), "{out:?}");
        let a = out.a.unwrap();
        assert!((a - beta / (alpha + beta)).abs() < 0.01, "a = {a}");
        let width = isoflop(
            &runs,
            &IsoflopSettings {
                grouping: Grouping::Width(0.5),
                min_runs: 3,
            },
        );
        assert_eq!(width.a, out.a);
    }

    #[test]
    fn a_concave_band_is_reported_not_used() {
        let runs: Vec<Observation> = [1e6, 2e6, 4e6, 8e6]
            .iter()
            .enumerate()
            .map(|(i, &n)| Observation {
                n,
                d: 1.0,
                c: 1e15,
                loss: 3.0 - 0.1 * (i as f64 - 1.5).powi(2),
            })
            .collect();
        let out = isoflop(
            &runs,
            &IsoflopSettings {
                grouping: Grouping::Width(0.1),
                min_runs: 3,
            },
        );
        assert!(!out.bands[0].used);
        assert!(out.bands[0].note.as_deref().unwrap().contains("not convex"));
        assert_eq!(out.a, None);
    }
}
