//! The homework's CNN: conv5x5x32 SAME + ReLU, max-pool 2; conv5x5x64 SAME + ReLU, max-pool 2;
//! flatten in TF's NHWC order (so TF weights map onto fc1); fc 1024 + ReLU; dropout; fc 10.
//! The conv blocks, and how each device computes them, are in `conv_block`.
use super::conv_block::{conv_block, ConvPlan};
use super::init::linear;
use crate::config::{Dropout, Init};
use tch::nn;
use tch::Tensor;

/// TF1's `tf.nn.dropout(x, keep_prob)` keeps with probability keep_prob and scales by
/// 1/keep_prob: torch's dropout with p = 1 - keep_prob. `in_eval` applies it at test time too.
pub fn dropout(x: &Tensor, train: bool, mode: Dropout) -> Tensor {
    match mode {
        Dropout::KeepProb { keep_prob, in_eval } if train || in_eval => {
            if MASKS.with(|m| m.borrow().is_some()) {
                recorded_dropout(x, keep_prob, train)
            } else {
                x.dropout(1.0 - keep_prob, true)
            }
        }
        _ => x.shallow_clone(),
    }
}

thread_local! {
    /// While recording: each dropout's keep mask (1 = kept), in the order drawn, and whether it
    /// was a training step's.
    static MASKS: std::cell::RefCell<Option<Vec<(bool, Tensor)>>> = const { std::cell::RefCell::new(None) };
}

/// libtorch's CPU dropout spelt out (`noise = bernoulli(keep) / keep; x * noise`), the same draws
/// and the same arithmetic, keeping the mask for `--export-steps`.
fn recorded_dropout(x: &Tensor, keep_prob: f64, train: bool) -> Tensor {
    let mut noise = x.empty_like();
    let _ = noise.bernoulli_float_(keep_prob);
    MASKS.with(|m| {
        if let Some(masks) = m.borrow_mut().as_mut() {
            masks.push((train, noise.to_kind(tch::Kind::Uint8)));
        }
    });
    let _ = noise.g_div_scalar_(keep_prob);
    x * noise
}

/// Starts keeping every dropout mask this thread draws.
pub fn record_masks() {
    MASKS.with(|m| *m.borrow_mut() = Some(Vec::new()));
}

/// The masks kept since `record_masks` (and stops keeping them).
pub fn take_masks() -> Vec<(bool, Tensor)> {
    MASKS.with(|m| m.borrow_mut().take().unwrap_or_default())
}

/// NCHW -> NHWC -> [N, 7*7*64], the order of TF's reshape.
pub fn flatten_nhwc(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).flatten(1, -1)
}

pub fn features(vs: &nn::Path, init: Init, plan: ConvPlan) -> nn::SequentialT {
    let layout = plan.layout;
    nn::seq_t()
        .add_fn(move |x| layout.images(x))
        .add(conv_block(vs / "conv1", 1, 32, init, plan.bias_at))
        .add(conv_block(vs / "conv2", 32, 64, init, plan.bias_at))
        .add_fn(flatten_nhwc)
}

pub fn cnn(vs: &nn::Path, init: Init, mode: Dropout, plan: ConvPlan) -> nn::SequentialT {
    nn::seq_t()
        .add(features(vs, init, plan))
        .add(linear(vs / "fc1", 7 * 7 * 64, 1024, init))
        .add_fn(|x| x.relu())
        .add_fn_t(move |x, train| dropout(x, train, mode))
        .add(linear(vs / "fc2", 1024, 10, init))
}
