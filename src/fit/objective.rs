//! The fitting objective: the sum over runs of Huber(delta) of the error in log
//! loss, `LSE(a_k - alpha_k ln X_k, e) - ln L`, with its analytic gradient.
//!
//! This is Hoffmann et al.'s (2022) objective as Besiroglu et al. (2024) reproduced
//! it. Huber on log loss keeps a few odd runs from dominating; the log-sum-exp keeps
//! the prediction finite for any parameters. Value and gradient come out of one pass
//! over the runs because they share every exponential, and the multistart fit
//! evaluates this millions of times: it is the hot loop of the whole stage.

use super::fastmath::{exp, ln};
use super::form::{ConstTerm, Form, Variable};

/// One run as the objective sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub n: f64,
    pub d: f64,
    pub c: f64,
    pub loss: f64,
}

impl Observation {
    pub fn get(&self, variable: Variable) -> f64 {
        variable.of(self.n, self.d, self.c)
    }
}

/// Runs prepared for one form: the logs of each term's variable, the log losses,
/// and a weight per run (bootstrap resamples are multiplicities, not copies).
///
/// The columns are padded to a multiple of [`LANES`] with weight-0 runs, so the
/// hot loop works on whole blocks the compiler can vectorise.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    /// `x[k][i]` = ln of term `k`'s variable for run `i`; unused terms stay empty.
    x: [Vec<f64>; 2],
    y: Vec<f64>,
    w: Vec<f64>,
    len: usize,
    /// `(min, max)` of each `x[k]`, which bound every exponent of the pass.
    x_range: [(f64, f64); 2],
}

/// Runs processed together in the hot loop.
const LANES: usize = 4;

impl Points {
    /// Prepares runs for `form`. The caller has already excluded runs whose
    /// variables or loss are not finite and positive.
    pub fn new(form: &Form, runs: &[Observation]) -> Self {
        let mut x = [Vec::new(), Vec::new()];
        for (k, term) in form.terms().iter().enumerate() {
            x[k] = runs.iter().map(|r| r.get(term.variable).ln()).collect();
        }
        let y = runs.iter().map(|r| r.loss.ln()).collect();
        Points::padded(x, y, vec![1.0; runs.len()])
    }

    /// Pads to whole blocks with weight-0 copies of the last run (copies, not
    /// zeros, so the padding never leaves the range the overflow check assumes).
    fn padded(mut x: [Vec<f64>; 2], mut y: Vec<f64>, mut w: Vec<f64>) -> Self {
        let len = y.len();
        let full = len.div_ceil(LANES) * LANES;
        let mut x_range = [(0.0, 0.0); 2];
        for (k, col) in x.iter_mut().enumerate().filter(|(_, c)| !c.is_empty()) {
            let last = col[len - 1];
            x_range[k] = col
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            col.resize(full, last);
        }
        if len > 0 {
            let last = y[len - 1];
            y.resize(full, last);
        }
        w.resize(full, 0.0);
        Points {
            x,
            y,
            w,
            len,
            x_range,
        }
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs with the given multiplicities (a bootstrap resample): runs drawn
    /// zero times are dropped, the others weighted by their count.
    pub fn reweighted(&self, counts: &[u32]) -> Points {
        assert_eq!(counts.len(), self.len, "one count per run");
        let keep: Vec<usize> = (0..self.len).filter(|&i| counts[i] > 0).collect();
        let pick = |v: &Vec<f64>| -> Vec<f64> {
            if v.is_empty() {
                Vec::new()
            } else {
                keep.iter().map(|&i| v[i]).collect()
            }
        };
        Points::padded(
            [pick(&self.x[0]), pick(&self.x[1])],
            pick(&self.y),
            keep.iter().map(|&i| self.w[i] * counts[i] as f64).collect(),
        )
    }

    /// Sum of the runs' weights.
    pub fn total_weight(&self) -> f64 {
        self.w.iter().sum()
    }

    /// The largest possible gradient norm's scale, `sum w delta (1 + |ln X|)`: a
    /// gradient this many times smaller is zero for any practical purpose.
    pub fn gradient_scale(&self, delta: f64) -> f64 {
        (0..self.len)
            .map(|i| {
                let xs: f64 = self
                    .x
                    .iter()
                    .filter(|c| !c.is_empty())
                    .map(|c| c[i].abs())
                    .sum();
                self.w[i] * delta * (1.0 + xs)
            })
            .sum()
    }
}

/// Huber's loss: quadratic within `delta` of zero, linear beyond, continuous with
/// a continuous derivative (scipy.special.huber's convention).
pub fn huber(delta: f64, r: f64) -> f64 {
    let a = r.abs();
    if a <= delta {
        0.5 * r * r
    } else {
        delta * (a - 0.5 * delta)
    }
}

/// The objective for one form on one set of runs.
#[derive(Debug, Clone, Copy)]
pub struct Objective<'a> {
    form: Form,
    points: &'a Points,
    delta: f64,
}

impl<'a> Objective<'a> {
    pub fn new(form: Form, points: &'a Points, delta: f64) -> Self {
        Objective {
            form,
            points,
            delta,
        }
    }

    pub fn form(&self) -> &Form {
        &self.form
    }

    pub fn dim(&self) -> usize {
        self.form.dim()
    }

    /// The scale of the largest possible gradient (see [`Points::gradient_scale`]).
    pub fn gradient_scale(&self) -> f64 {
        self.points.gradient_scale(self.delta)
    }

    /// The objective's natural scale, `sum w delta^2`: what it is when every run
    /// sits about `delta` off. Stopping tolerances are relative to it, which
    /// works even where the optimum is (nearly) zero.
    pub fn cost_unit(&self) -> f64 {
        self.points.total_weight() * self.delta * self.delta
    }

    /// The objective at `theta`.
    pub fn value(&self, theta: &[f64]) -> f64 {
        self.dispatch::<false>(theta, &mut [])
    }

    /// The objective at `theta`, writing its gradient into `grad` (length `dim`).
    pub fn value_and_gradient(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        debug_assert_eq!(grad.len(), self.dim());
        self.dispatch::<true>(theta, grad)
    }

    /// Picks the monomorphised loop for the form's shape, so the inner loop has
    /// no branches on the form.
    fn dispatch<const GRAD: bool>(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        if theta.iter().any(|t| !t.is_finite()) {
            grad.iter_mut().for_each(|g| *g = f64::NAN);
            return f64::INFINITY;
        }
        let terms = self.form.terms().len();
        let const_term = self.form.const_term();
        let (ce, ce_index) = match const_term {
            ConstTerm::Free(i) => (theta[i], Some(i)),
            ConstTerm::Fixed(e) => (e, None),
            ConstTerm::Absent => (f64::NEG_INFINITY, None),
        };
        let mut coef = [0.0; 2];
        let mut expo = [0.0; 2];
        for k in 0..terms {
            coef[k] = theta[self.form.coef_index(k)];
            expo[k] = theta[self.form.exponent_index(k)];
        }
        // Exponents are linear in ln X, so their extremes over the runs sit at the
        // ends of each x range. When no exponential can overflow and every
        // log-sum-exp has a term above e^-690, the sums need no shifting, which
        // saves an exponential per run; otherwise take the always-safe path.
        let mut z_max = ce;
        let mut z_floor = ce;
        for k in 0..terms {
            let (lo, hi) = self.points.x_range[k];
            let (at_lo, at_hi) = (coef[k] - expo[k] * lo, coef[k] - expo[k] * hi);
            z_max = z_max.max(at_lo.max(at_hi));
            z_floor = z_floor.max(at_lo.min(at_hi));
        }
        let direct = z_max <= 700.0 && z_floor >= -690.0;
        let mut sums = Sums::default();
        match (terms, const_term, direct) {
            (1, ConstTerm::Absent, _) => {
                self.pass::<1, false, GRAD, false>(coef, expo, ce, &mut sums)
            }
            (1, _, true) => self.pass::<1, true, GRAD, false>(coef, expo, ce, &mut sums),
            (1, _, false) => self.pass::<1, true, GRAD, true>(coef, expo, ce, &mut sums),
            (_, ConstTerm::Absent, true) => {
                self.pass::<2, false, GRAD, false>(coef, expo, ce, &mut sums)
            }
            (_, ConstTerm::Absent, false) => {
                self.pass::<2, false, GRAD, true>(coef, expo, ce, &mut sums)
            }
            (_, _, true) => self.pass::<2, true, GRAD, false>(coef, expo, ce, &mut sums),
            (_, _, false) => self.pass::<2, true, GRAD, true>(coef, expo, ce, &mut sums),
        }
        if GRAD {
            for k in 0..terms {
                grad[self.form.coef_index(k)] = sums.coef[k];
                // d/d alpha of (a - alpha x) is -x.
                grad[self.form.exponent_index(k)] = -sums.coef_x[k];
            }
            if let Some(i) = ce_index {
                grad[i] = sums.e;
            }
        }
        if sums.value.is_nan() {
            f64::INFINITY
        } else {
            sums.value
        }
    }

    /// One pass over the runs. `T` is the number of power-law terms, `E` whether a
    /// constant term exists, `SHIFT` whether the log-sum-exp is shifted by its
    /// largest argument (needed only when an exponential could overflow or all
    /// could underflow). A single term without a constant is a pure power law,
    /// whose log prediction is the exponent itself.
    ///
    /// Runs go through in blocks, each step a separate element-wise loop over
    /// stack buffers: simple loops are what the compiler vectorises reliably. Sums
    /// use a fixed number of lanes added in a fixed order, so the result depends on
    /// nothing but the inputs.
    #[inline(always)]
    fn pass<const T: usize, const E: bool, const GRAD: bool, const SHIFT: bool>(
        &self,
        coef: [f64; 2],
        expo: [f64; 2],
        ce: f64,
        sums: &mut Sums,
    ) {
        let p = self.points;
        let delta = self.delta;
        let half_delta = 0.5 * delta;
        let pure = T == 1 && !E;
        let big_e = if E && !SHIFT { ce.exp() } else { 0.0 };
        let full = p.y.len();
        let mut value = [0.0; LANES];
        let mut g_coef = [[0.0; LANES]; 2];
        let mut g_coef_x = [[0.0; LANES]; 2];
        let mut g_e = [0.0; LANES];
        let mut m = [0.0; BLOCK];
        let mut u0 = [0.0; BLOCK];
        let mut u1 = [0.0; BLOCK];
        let mut ue = [0.0; BLOCK];
        let mut g = [0.0; BLOCK];
        for start in (0..full).step_by(BLOCK) {
            let len = BLOCK.min(full - start);
            let x0 = &p.x[0][start..start + len];
            let x1 = if T == 2 {
                &p.x[1][start..start + len]
            } else {
                x0
            };
            let y = &p.y[start..start + len];
            let w = &p.w[start..start + len];
            let (m, u0, u1, ue, g) = (
                &mut m[..len],
                &mut u0[..len],
                &mut u1[..len],
                &mut ue[..len],
                &mut g[..len],
            );
            // Exponents (shifted by their maximum m when SHIFT).
            for j in 0..len {
                let z0 = coef[0] - expo[0] * x0[j];
                let z1 = coef[1] - expo[1] * x1[j];
                let mut mj = z0;
                if SHIFT {
                    if T == 2 {
                        mj = max(mj, z1);
                    }
                    if E {
                        mj = max(mj, ce);
                    }
                    u0[j] = z0 - mj;
                    u1[j] = z1 - mj;
                    ue[j] = ce - mj;
                } else {
                    u0[j] = z0;
                    u1[j] = z1;
                }
                m[j] = mj;
            }
            if !pure {
                for v in u0.iter_mut() {
                    *v = exp(*v);
                }
            }
            if T == 2 {
                for v in u1.iter_mut() {
                    *v = exp(*v);
                }
            }
            if E && SHIFT {
                for v in ue.iter_mut() {
                    *v = exp(*v);
                }
            }
            // m[j] becomes the run's weighted Huber value and g[j] the common factor
            // of its gradient, w dHuber/dr / s.
            for j in 0..len {
                let (r, s) = if pure {
                    (m[j] - y[j], 1.0)
                } else {
                    let mut s = u0[j];
                    if T == 2 {
                        s += u1[j];
                    }
                    if E {
                        s += if SHIFT { ue[j] } else { big_e };
                    }
                    let lse = if SHIFT { m[j] + ln(s) } else { ln(s) };
                    (lse - y[j], s)
                };
                let a = r.abs();
                let h = if a <= delta {
                    0.5 * r * r
                } else {
                    delta * (a - half_delta)
                };
                m[j] = w[j] * h;
                g[j] = w[j] * min(max(r, -delta), delta) / s;
            }
            add_lanes(&mut value, m);
            if GRAD {
                if pure {
                    add_lanes(&mut g_coef[0], g);
                    add_products(&mut g_coef_x[0], g, x0);
                } else {
                    for j in 0..len {
                        u0[j] *= g[j];
                    }
                    add_lanes(&mut g_coef[0], u0);
                    add_products(&mut g_coef_x[0], u0, x0);
                }
                if T == 2 {
                    for j in 0..len {
                        u1[j] *= g[j];
                    }
                    add_lanes(&mut g_coef[1], u1);
                    add_products(&mut g_coef_x[1], u1, x1);
                }
                if E {
                    if SHIFT {
                        add_products(&mut g_e, ue, g);
                    } else {
                        add_lanes(&mut g_e, g);
                    }
                }
            }
        }
        let total = |lanes: &[f64; LANES]| lanes.iter().sum::<f64>();
        sums.value = total(&value);
        for k in 0..T {
            sums.coef[k] = total(&g_coef[k]);
            sums.coef_x[k] = total(&g_coef_x[k]);
        }
        // Without shifting, every run's constant-term weight is the same E.
        sums.e = if E && !SHIFT {
            big_e * total(&g_e)
        } else {
            total(&g_e)
        };
    }
}

/// Runs per block of the hot loop (stack buffers of this length).
const BLOCK: usize = 64;

/// `a > b ? a : b`: what the SSE max instruction computes, unlike `f64::max`, whose
/// NaN rules cost extra instructions per element. Non-finite parameters never
/// reach the loop.
#[inline(always)]
fn max(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else {
        b
    }
}

#[inline(always)]
fn min(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// Adds `v` into lane accumulators (`v.len()` is a multiple of [`LANES`]).
#[inline(always)]
fn add_lanes(acc: &mut [f64; LANES], v: &[f64]) {
    for c in v.chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
}

/// Adds `a * b` element-wise into lane accumulators.
#[inline(always)]
fn add_products(acc: &mut [f64; LANES], a: &[f64], b: &[f64]) {
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
}

/// Running sums of one pass: the value and the gradient's pieces.
#[derive(Debug, Default)]
struct Sums {
    value: f64,
    coef: [f64; 2],
    coef_x: [f64; 2],
    e: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::form::{FormKind, Irreducible};

    fn runs() -> Vec<Observation> {
        (0..40)
            .map(|i| {
                let n = 1e6 * 1.3f64.powi(i % 13);
                let d = 2e7 * 1.7f64.powi(i % 7);
                let loss = 1.7
                    + 400.0 / n.powf(0.34)
                    + 410.0 / d.powf(0.28)
                    + 0.01 * ((i * 37 % 11) as f64 - 5.0) / 5.0;
                Observation {
                    n,
                    d,
                    c: 6.0 * n * d,
                    loss,
                }
            })
            .collect()
    }

    /// Central differences against the analytic gradient, for every form shape.
    #[test]
    fn gradient_matches_finite_differences() {
        let runs = runs();
        let forms = [
            (
                Form::new(FormKind::Chinchilla, Irreducible::Free),
                vec![6.1, 5.9, 0.4, 0.33, 0.27],
            ),
            // Exponentials that would overflow / all underflow: the shifted path.
            (
                Form::new(FormKind::Chinchilla, Irreducible::Free),
                vec![750.0, 5.9, 0.4, 0.01, 0.27],
            ),
            (
                Form::new(FormKind::Chinchilla, Irreducible::Free),
                vec![-800.0, -790.0, -795.0, 0.01, 0.02],
            ),
            (
                Form::new(FormKind::Chinchilla, Irreducible::Fixed(1.6)),
                vec![6.1, 5.9, 0.33, 0.27],
            ),
            (
                Form::new(FormKind::PowerN, Irreducible::Free),
                vec![3.0, 0.6, 0.2],
            ),
            (
                Form::new(FormKind::PowerD, Irreducible::Fixed(0.0)),
                vec![2.0, 0.1],
            ),
            (
                Form::new(FormKind::PowerC, Irreducible::Free),
                vec![4.0, 0.3, 0.05],
            ),
        ];
        // A large delta makes every residual quadratic, a tiny one every residual
        // linear; both branches of Huber must have the right derivative.
        for delta in [1e-3, 10.0, 1e-9] {
            for (form, theta) in &forms {
                let points = Points::new(form, &runs);
                let obj = Objective::new(*form, &points, delta);
                let mut grad = vec![0.0; form.dim()];
                let f = obj.value_and_gradient(theta, &mut grad);
                assert_eq!(f, obj.value(theta));
                for j in 0..form.dim() {
                    let h = 1e-6 * (1.0 + theta[j].abs());
                    let mut tp = theta.clone();
                    let mut tm = theta.clone();
                    tp[j] += h;
                    tm[j] -= h;
                    let fd = (obj.value(&tp) - obj.value(&tm)) / (2.0 * h);
                    let scale = grad[j].abs().max(fd.abs()).max(1e-12);
                    // Central differences carry the rounding error of f itself,
                    // about eps |f| / h, besides their O(h^2) truncation error.
                    let rounding = 8.0 * f64::EPSILON * f.abs() / h;
                    assert!(
                        (grad[j] - fd).abs() <= 1e-5 * scale + rounding,
                        "{:?} delta {delta} param {j}: analytic {} vs numeric {fd}",
                        form.kind,
                        grad[j]
                    );
                }
            }
        }
    }

    #[test]
    fn value_is_huber_of_log_error() {
        let runs = runs();
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        let theta = [6.0, 6.0, 0.5, 0.34, 0.28];
        let points = Points::new(&form, &runs);
        let got = Objective::new(form, &points, 1e-3).value(&theta);
        let want: f64 = runs
            .iter()
            .map(|r| huber(1e-3, form.predict(&theta, r.n, r.d, r.c).ln() - r.loss.ln()))
            .sum();
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    }

    #[test]
    fn weights_equal_repetition() {
        let runs = runs();
        let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
        let theta = [6.0, 6.0, 0.5, 0.34, 0.28];
        let points = Points::new(&form, &runs);
        let counts: Vec<u32> = (0..runs.len() as u32).map(|i| i % 3).collect();
        let repeated: Vec<Observation> = runs
            .iter()
            .zip(&counts)
            .flat_map(|(r, &k)| std::iter::repeat_n(*r, k as usize))
            .collect();
        let a = Objective::new(form, &points.reweighted(&counts), 1e-3).value(&theta);
        let rep = Points::new(&form, &repeated);
        let b = Objective::new(form, &rep, 1e-3).value(&theta);
        assert!((a - b).abs() <= 1e-12 * b);
    }
}
