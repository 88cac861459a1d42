//! A vanilla RNN and the homework's BPTT derivation, checked numerically:
//!   s_t = W h_{t-1} + U x_t,  h_t = f(s_t),  z_t = V h_t,  y^_t = softmax(z_t),
//!   L = sum_t cross-entropy(y^_t, y_t),  h_0 = 0.
//! dL/dU is computed literally by the homework's double sum
//!   sum_t sum_{k<=t} delta_{t,k} (x) x_k,  delta_{t,t} = f'(s_t) . V^T (y^_t - y_t),
//!   delta_{t,k} = f'(s_k) . W^T delta_{t,k+1},
//! and by the usual O(T) backward recursion; dL/dW and dL/dV come with it.
use crate::rng::Rng;
use serde::Serialize;

/// Row-major dense matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat { rows, cols, data: vec![0.0; rows * cols] }
    }

    pub fn random(rows: usize, cols: usize, scale: f64, rng: &mut Rng) -> Mat {
        Mat { rows, cols, data: (0..rows * cols).map(|_| scale * (2.0 * rng.next_f64() - 1.0)).collect() }
    }

    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// self * v
    pub fn mul_vec(&self, v: &[f64]) -> Vec<f64> {
        (0..self.rows).map(|r| (0..self.cols).map(|c| self.at(r, c) * v[c]).sum()).collect()
    }

    /// self^T * v
    pub fn tr_mul_vec(&self, v: &[f64]) -> Vec<f64> {
        (0..self.cols).map(|c| (0..self.rows).map(|r| self.at(r, c) * v[r]).sum()).collect()
    }

    /// self += a (x) b
    pub fn add_outer(&mut self, a: &[f64], b: &[f64]) {
        for (r, &ar) in a.iter().enumerate() {
            for (c, &bc) in b.iter().enumerate() {
                self.data[r * self.cols + c] += ar * bc;
            }
        }
    }

    pub fn norm(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    /// ||a - b|| / max(||a||, ||b||), 0 when both are 0.
    pub fn rel_error(&self, other: &Mat) -> f64 {
        let diff: f64 = self.data.iter().zip(&other.data).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
        let scale = self.norm().max(other.norm());
        if scale == 0.0 { 0.0 } else { diff / scale }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Sigmoid,
    /// softplus: ln(1 + e^s), smooth so finite differences stay meaningful.
    Softplus,
}

impl Activation {
    pub const ALL: [Activation; 3] = [Activation::Tanh, Activation::Sigmoid, Activation::Softplus];

    pub fn f(self, s: f64) -> f64 {
        match self {
            Activation::Tanh => s.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-s).exp()),
            Activation::Softplus => s.max(0.0) + (-s.abs()).exp().ln_1p(),
        }
    }

    pub fn df(self, s: f64) -> f64 {
        match self {
            Activation::Tanh => 1.0 - s.tanh().powi(2),
            Activation::Sigmoid => {
                let y = self.f(s);
                y * (1.0 - y)
            }
            Activation::Softplus => Activation::Sigmoid.f(s),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rnn {
    pub u: Mat,
    pub w: Mat,
    pub v: Mat,
    pub f: Activation,
}

/// One sequence: inputs x_1..x_T and target classes y_1..y_T.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub xs: Vec<Vec<f64>>,
    pub ys: Vec<usize>,
}

/// Everything the forward pass leaves for the backward one (index t = 0 is time 1).
pub struct Trace {
    pub s: Vec<Vec<f64>>,
    /// h_0 = 0, then h_1..h_T.
    pub h: Vec<Vec<f64>>,
    /// y^_t - y_t (one-hot), the softmax cross-entropy gradient with respect to z_t.
    pub dz: Vec<Vec<f64>>,
    pub loss: f64,
}

pub struct Grads {
    pub u: Mat,
    pub w: Mat,
    pub v: Mat,
}

impl Grads {
    /// dL/dU, dL/dW and dL/dV one after another, as one row.
    pub fn flattened(&self) -> Mat {
        let data: Vec<f64> = [&self.u, &self.w, &self.v].iter().flat_map(|m| m.data.iter().copied()).collect();
        Mat { rows: 1, cols: data.len(), data }
    }
}

/// softmax(z) and log softmax(z)[y]: the log taken of the shifted sum, not of p[y], which
/// underflows to 0 (an infinite loss) when softplus states grow large.
fn softmax_and_log_p(z: &[f64], y: usize) -> (Vec<f64>, f64) {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    let log_p = z[y] - m - sum.ln();
    (e.into_iter().map(|v| v / sum).collect(), log_p)
}

impl Rnn {
    pub fn random(inputs: usize, hidden: usize, outputs: usize, f: Activation, rng: &mut Rng) -> Rnn {
        Rnn {
            u: Mat::random(hidden, inputs, 0.8, rng),
            w: Mat::random(hidden, hidden, 0.8, rng),
            v: Mat::random(outputs, hidden, 0.8, rng),
            f,
        }
    }

    pub fn forward(&self, seq: &Sequence) -> Trace {
        let hidden = self.w.rows;
        let mut trace = Trace { s: vec![], h: vec![vec![0.0; hidden]], dz: vec![], loss: 0.0 };
        for (x, &y) in seq.xs.iter().zip(&seq.ys) {
            let wh = self.w.mul_vec(trace.h.last().expect("h_0 present"));
            let s: Vec<f64> = wh.iter().zip(self.u.mul_vec(x)).map(|(a, b)| a + b).collect();
            let h: Vec<f64> = s.iter().map(|&v| self.f.f(v)).collect();
            let (mut p, log_p) = softmax_and_log_p(&self.v.mul_vec(&h), y);
            trace.loss -= log_p;
            p[y] -= 1.0;
            trace.s.push(s);
            trace.h.push(h);
            trace.dz.push(p);
        }
        trace
    }

    pub fn loss(&self, seq: &Sequence) -> f64 {
        self.forward(seq).loss
    }

    fn fprime(&self, s: &[f64]) -> Vec<f64> {
        s.iter().map(|&v| self.f.df(v)).collect()
    }

    /// The homework's formula, literally: for every t, walk delta_{t,k} from k = t down to 1.
    /// O(T^2) by design.
    pub fn grads_homework(&self, seq: &Sequence) -> Grads {
        let tr = self.forward(seq);
        let (mut gu, mut gw, mut gv) = (Mat::zeros(self.u.rows, self.u.cols), Mat::zeros(self.w.rows, self.w.cols), Mat::zeros(self.v.rows, self.v.cols));
        for t in 0..seq.xs.len() {
            gv.add_outer(&tr.dz[t], &tr.h[t + 1]);
            // delta_{t,t} = f'(s_t) . V^T (y^_t - y_t)
            let mut delta: Vec<f64> = self.fprime(&tr.s[t]).iter().zip(self.v.tr_mul_vec(&tr.dz[t])).map(|(a, b)| a * b).collect();
            for k in (0..=t).rev() {
                gu.add_outer(&delta, &seq.xs[k]);
                gw.add_outer(&delta, &tr.h[k]);
                if k > 0 {
                    // delta_{t,k-1} = f'(s_{k-1}) . W^T delta_{t,k}
                    delta = self.fprime(&tr.s[k - 1]).iter().zip(self.w.tr_mul_vec(&delta)).map(|(a, b)| a * b).collect();
                }
            }
        }
        Grads { u: gu, w: gw, v: gv }
    }

    /// The usual O(T) recursion: delta_t = f'(s_t) . (V^T dz_t + W^T delta_{t+1}).
    pub fn grads_recursive(&self, seq: &Sequence) -> Grads {
        let tr = self.forward(seq);
        let (mut gu, mut gw, mut gv) = (Mat::zeros(self.u.rows, self.u.cols), Mat::zeros(self.w.rows, self.w.cols), Mat::zeros(self.v.rows, self.v.cols));
        let mut carry = vec![0.0; self.w.rows];
        for t in (0..seq.xs.len()).rev() {
            gv.add_outer(&tr.dz[t], &tr.h[t + 1]);
            let back: Vec<f64> = self.v.tr_mul_vec(&tr.dz[t]).iter().zip(self.w.tr_mul_vec(&carry)).map(|(a, b)| a + b).collect();
            let delta: Vec<f64> = self.fprime(&tr.s[t]).iter().zip(back).map(|(a, b)| a * b).collect();
            gu.add_outer(&delta, &seq.xs[t]);
            gw.add_outer(&delta, &tr.h[t]);
            carry = delta;
        }
        Grads { u: gu, w: gw, v: gv }
    }

    /// Fourth-order central differences of the loss with respect to every entry of one matrix:
    /// (-L(x+2e) + 8L(x+e) - 8L(x-e) + L(x-2e)) / 12e. Plain central differences (error
    /// O(e^2)) missed 1e-7 on a few of thousands of problems, where softplus states grow large.
    pub fn grads_numeric(&self, seq: &Sequence, eps: f64) -> Grads {
        let numeric = |pick: fn(&mut Rnn) -> &mut Mat| {
            let mut probe = self.clone();
            let n = pick(&mut probe).data.len();
            let mut g = pick(&mut probe).clone();
            for i in 0..n {
                let orig = pick(&mut probe).data[i];
                let mut loss_at = |step: f64| {
                    pick(&mut probe).data[i] = orig + step * eps;
                    probe.loss(seq)
                };
                let (up2, up, down, down2) = (loss_at(2.0), loss_at(1.0), loss_at(-1.0), loss_at(-2.0));
                pick(&mut probe).data[i] = orig;
                g.data[i] = (8.0 * (up - down) - (up2 - down2)) / (12.0 * eps);
            }
            g
        };
        Grads { u: numeric(|r| &mut r.u), w: numeric(|r| &mut r.w), v: numeric(|r| &mut r.v) }
    }
}

/// The larger of two errors, NaN if either is: `f64::max` would drop a NaN and pass the check.
pub fn worse(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// A random problem: sizes, sequence and weights all drawn from `rng`.
pub fn random_problem(f: Activation, rng: &mut Rng) -> (Rnn, Sequence) {
    let inputs = 1 + rng.below(6) as usize;
    let hidden = 1 + rng.below(8) as usize;
    let outputs = 2 + rng.below(5) as usize;
    let steps = 1 + rng.below(12) as usize;
    let rnn = Rnn::random(inputs, hidden, outputs, f, rng);
    let seq = Sequence {
        xs: (0..steps).map(|_| (0..inputs).map(|_| 2.0 * rng.next_f64() - 1.0).collect()).collect(),
        ys: (0..steps).map(|_| rng.below(outputs as u64) as usize).collect(),
    };
    (rnn, seq)
}

/// `per_activation` random problems for each activation, in a fixed order from `seed`.
pub fn random_problems(per_activation: usize, seed: u64) -> Vec<(Rnn, Sequence)> {
    let mut rng = Rng::new(seed);
    (0..per_activation).flat_map(|_| Activation::ALL.map(|f| random_problem(f, &mut rng))).collect()
}

/// Largest relative errors over the problems checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub problems: usize,
    /// Homework formula vs central finite differences (dL/dU, dL/dW, dL/dV).
    pub max_rel_error_finite_diff: f64,
    /// Homework formula vs the O(T) recursion.
    pub max_rel_error_recursion: f64,
}

/// The finite differences' step: about where the fourth-order truncation meets f64 rounding.
pub const FINITE_DIFF_STEP: f64 = 3e-4;

pub fn check(problems: &[(Rnn, Sequence)]) -> CheckReport {
    let mut report = CheckReport::default();
    for (rnn, seq) in problems {
        let formula = rnn.grads_homework(seq);
        let recursive = rnn.grads_recursive(seq);
        let numeric = rnn.grads_numeric(seq, FINITE_DIFF_STEP);
        for (a, b) in [(&formula.u, &recursive.u), (&formula.w, &recursive.w), (&formula.v, &recursive.v)] {
            report.max_rel_error_recursion = worse(report.max_rel_error_recursion, a.rel_error(b));
        }
        // The differences are compared over the whole gradient: one matrix's may be near zero
        // (dL/dW with one hidden unit and a short sequence), where they show only their rounding.
        report.max_rel_error_finite_diff = worse(report.max_rel_error_finite_diff, formula.flattened().rel_error(&numeric.flattened()));
        report.problems += 1;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_matches_finite_differences_and_recursion() {
        let r = check(&random_problems(20, 42));
        assert_eq!(r.problems, 60);
        assert!(r.max_rel_error_finite_diff <= 1e-7, "{r:?}");
        assert!(r.max_rel_error_recursion <= 1e-12, "{r:?}");
    }

    #[test]
    fn check_catches_a_wrong_formula() {
        // Dropping the W^T propagation (truncating BPTT to k = t) must be caught.
        let mut rng = Rng::new(5);
        let (rnn, seq) = loop {
            let (rnn, seq) = random_problem(Activation::Tanh, &mut rng);
            if seq.xs.len() >= 3 {
                break (rnn, seq);
            }
        };
        let tr = rnn.forward(&seq);
        let mut truncated = Mat::zeros(rnn.u.rows, rnn.u.cols);
        for t in 0..seq.xs.len() {
            let d: Vec<f64> = rnn.fprime(&tr.s[t]).iter().zip(rnn.v.tr_mul_vec(&tr.dz[t])).map(|(a, b)| a * b).collect();
            truncated.add_outer(&d, &seq.xs[t]);
        }
        let numeric = rnn.grads_numeric(&seq, FINITE_DIFF_STEP);
        assert!(truncated.rel_error(&numeric.u) > 1e-3);
    }

    #[test]
    fn large_softplus_states_keep_the_loss_finite_and_a_nan_fails() {
        // Seed 13's 516th problem: its softplus logits grow so large that p[y] underflowed to 0,
        // an infinite loss, and its NaN differences were dropped by f64::max and passed.
        let problems = random_problems(172, 13);
        let (rnn, seq) = problems.last().expect("516 problems");
        assert_eq!(rnn.f, Activation::Softplus);
        assert!(rnn.loss(seq).is_finite() && rnn.loss(seq) > 1e3, "{}", rnn.loss(seq));
        assert!(check(std::slice::from_ref(&(rnn.clone(), seq.clone()))).max_rel_error_finite_diff <= 1e-7);
        assert!(worse(0.0, f64::NAN).is_nan() && worse(f64::NAN, 1.0).is_nan());
    }

    #[test]
    fn activations_derivatives_are_right() {
        for f in Activation::ALL {
            for s in [-3.0, -0.5, 0.0, 0.7, 2.5] {
                let numeric = (f.f(s + 1e-6) - f.f(s - 1e-6)) / 2e-6;
                assert!((numeric - f.df(s)).abs() < 1e-8, "{f:?} at {s}");
            }
        }
    }
}
