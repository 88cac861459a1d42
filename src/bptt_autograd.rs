//! The BPTT check's libtorch side: the same gradients by autograd in f64 (outside `scratch`,
//! which never touches tch), and the report that sets all three checks against their targets.
use crate::scratch::bptt::{self, Activation, Mat, Rnn, Sequence};
use serde::Serialize;
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(Serialize, serde::Deserialize, Debug, Clone)]
pub struct BpttReport {
    pub problems: usize,
    pub activations: Vec<Activation>,
    pub max_rel_error_finite_diff: f64,
    pub max_rel_error_recursion: f64,
    pub max_rel_error_autograd: f64,
    pub target_finite_diff: f64,
    pub target_autograd: f64,
    pub passed: bool,
    pub wall_seconds: f64,
}

fn to_tensor(m: &Mat) -> Tensor {
    Tensor::from_slice(&m.data).view([m.rows as i64, m.cols as i64]).set_requires_grad(true)
}

fn from_tensor(t: &Tensor, like: &Mat) -> Mat {
    let data: Vec<f64> = Vec::<f64>::try_from(t.flatten(0, -1)).expect("f64 gradient");
    Mat { rows: like.rows, cols: like.cols, data }
}

/// dL/dU, dL/dW, dL/dV from libtorch autograd, in f64.
pub fn autograd_grads(rnn: &Rnn, seq: &Sequence) -> [Mat; 3] {
    let (u, w, v) = (to_tensor(&rnn.u), to_tensor(&rnn.w), to_tensor(&rnn.v));
    let mut h = Tensor::zeros([rnn.w.rows as i64], (Kind::Double, tch::Device::Cpu));
    let mut loss = Tensor::zeros([], (Kind::Double, tch::Device::Cpu));
    for (x, &y) in seq.xs.iter().zip(&seq.ys) {
        let s = w.mv(&h) + u.mv(&Tensor::from_slice(x));
        h = match rnn.f {
            Activation::Tanh => s.tanh(),
            Activation::Sigmoid => s.sigmoid(),
            // As scratch computes it: libtorch's softplus returns s itself above 20.
            Activation::Softplus => s.relu() + (-s.abs()).exp().log1p(),
        };
        let logp = v.mv(&h).log_softmax(0, Kind::Double);
        loss -= logp.get(y as i64);
    }
    loss.backward();
    [from_tensor(&u.grad(), &rnn.u), from_tensor(&w.grad(), &rnn.w), from_tensor(&v.grad(), &rnn.v)]
}

pub fn run(per_activation: usize, seed: u64, quiet: bool) -> BpttReport {
    let started = Instant::now();
    let problems = bptt::random_problems(per_activation, seed);
    let progress = crate::progress::Progress::new(2 * problems.len() as u64, "bptt", quiet);
    let mut pure = bptt::CheckReport::default();
    for chunk in problems.chunks(64) {
        let r = bptt::check(chunk);
        pure.problems += r.problems;
        pure.max_rel_error_finite_diff = bptt::worse(pure.max_rel_error_finite_diff, r.max_rel_error_finite_diff);
        pure.max_rel_error_recursion = bptt::worse(pure.max_rel_error_recursion, r.max_rel_error_recursion);
        progress.inc(chunk.len() as u64);
    }
    let mut max_autograd = 0.0f64;
    for (rnn, seq) in &problems {
        let g = rnn.grads_homework(seq);
        let [au, aw, av] = autograd_grads(rnn, seq);
        for error in [g.u.rel_error(&au), g.w.rel_error(&aw), g.v.rel_error(&av)] {
            max_autograd = bptt::worse(max_autograd, error);
        }
        progress.inc(1);
    }
    progress.finish();
    let (target_finite_diff, target_autograd) = (1e-7, 1e-10);
    BpttReport {
        problems: pure.problems,
        activations: Activation::ALL.to_vec(),
        max_rel_error_finite_diff: pure.max_rel_error_finite_diff,
        max_rel_error_recursion: pure.max_rel_error_recursion,
        max_rel_error_autograd: max_autograd,
        target_finite_diff,
        target_autograd,
        passed: pure.max_rel_error_finite_diff <= target_finite_diff && max_autograd <= target_autograd,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}

pub fn describe(r: &BpttReport) -> String {
    format!(
        "bptt: {} random RNNs (tanh, sigmoid, softplus); homework dL/dU, dL/dW, dL/dV vs finite differences: max rel. error {:.2e} (target {:.0e}); vs libtorch autograd: {:.2e} (target {:.0e}); vs O(T) recursion: {:.2e}; {}",
        r.problems, r.max_rel_error_finite_diff, r.target_finite_diff, r.max_rel_error_autograd, r.target_autograd,
        r.max_rel_error_recursion, if r.passed { "PASS" } else { "FAIL" }
    )
}

