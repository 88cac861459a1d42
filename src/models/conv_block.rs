//! The CNN's conv blocks (conv 5x5 SAME with bias, ReLU, max-pool 2), and how a device
//! computes them: the activations' layout and where the bias is added (`ConvPlan`). Every plan
//! gives the homework's values; plans differ in speed and in how they round.
use super::init::apply;
use crate::config::Init;
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

/// SAME padding for a 5x5 kernel at stride 1.
const SAME_5X5: i64 = 2;

/// One of the homework's conv blocks: conv 5x5 SAME with bias, ReLU, max-pool 2, the bias added
/// where `bias_at` says; its variables are tch's conv2d's (`weight`, `bias`).
#[derive(Debug)]
pub struct ConvBlock {
    conv: nn::Conv2D,
    bias_at: BiasAt,
}

impl nn::Module for ConvBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let bias = self.conv.bs.as_ref().expect("convolutions here have a bias");
        conv_relu_pool(x, &self.conv.ws, bias, 1, self.bias_at)
    }
}

/// A conv block with its variables under `vs`, initialised as `init` says.
pub fn conv_block(vs: nn::Path, inputs: i64, outputs: i64, init: Init, bias_at: BiasAt) -> ConvBlock {
    let cfg = nn::ConvConfig { padding: SAME_5X5, ..Default::default() };
    let mut conv = nn::conv2d(vs, inputs, outputs, 5, cfg);
    let bs = conv.bs.as_mut().expect("convolutions here have a bias");
    apply(&mut conv.ws, bs, init);
    ConvBlock { conv, bias_at }
}

/// The homework's `max_pool(relu(conv(x) + b), 2)` for 5x5 SAME weights `w` (`groups` > 1: the
/// packed CNN's members side by side), with the bias added where `bias_at` says.
pub fn conv_relu_pool(x: &Tensor, w: &Tensor, b: &Tensor, groups: i64, bias_at: BiasAt) -> Tensor {
    let conv = |bias: Option<&Tensor>| x.conv2d(w, bias, [1, 1], [SAME_5X5, SAME_5X5], [1, 1], groups);
    match bias_at {
        BiasAt::Conv => relu_pool(&conv(Some(b))),
        BiasAt::Pool => pool_bias_relu(&conv(None), b),
    }
}

/// `relu_pool(y + b)` with the per-channel bias `b` added after the pooling (`BiasAt::Pool`).
pub fn pool_bias_relu(y: &Tensor, b: &Tensor) -> Tensor {
    (y.max_pool2d_default(2) + b.view([1, -1, 1, 1])).relu()
}

/// The homework's `max_pool(relu(x), 2)`, computed as `relu(max_pool(x, 2))`: ReLU is monotonic,
/// so both give the same values, and the same gradients bit for bit (the gradient reaches the
/// window's first maximum when it is positive, and nothing otherwise), while the ReLU and its
/// backward touch a quarter of the elements (profiled on the CPU: 0.9 ms of a 45-50 ms training
/// step instead of 3.9 ms).
pub fn relu_pool(x: &Tensor) -> Tensor {
    x.max_pool2d_default(2).relu()
}

/// How the convolutions lay out their activations. Channels-last on the CPU: NCHW shapes with
/// NHWC strides, so libtorch runs the convolutions channels-last (about 25% faster there,
/// measured) and the final NHWC flatten is a free view. Plain NCHW on CUDA, PyTorch's default
/// (the faithful CNN's loop took 0.81x the channels-last time on an H200, cuDNN in float32).
/// NNDL_CNN_LAYOUT=nchw|nhwc overrides the device's choice, for A/B measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Nchw,
    ChannelsLast,
}

impl Layout {
    pub fn for_device(device: tch::Device) -> Layout {
        match std::env::var("NNDL_CNN_LAYOUT").as_deref() {
            Ok("nchw") => Layout::Nchw,
            Ok("nhwc") => Layout::ChannelsLast,
            _ if device.is_cuda() => Layout::Nchw,
            _ => Layout::ChannelsLast,
        }
    }

    /// [N, 784] -> [N, 1, 28, 28] in this layout (with one channel, only the strides differ).
    pub fn images(self, x: &Tensor) -> Tensor {
        match self {
            Layout::ChannelsLast => x.view([-1, 28, 28, 1]).permute([0, 3, 1, 2]),
            Layout::Nchw => x.view([-1, 1, 28, 28]),
        }
    }
}

/// Where the convolutions add their bias. The homework's `max_pool(relu(conv(x) + b))` equals
/// `relu(max_pool(conv(x)) + b)` value for value: rounding is monotonic, so adding a channel's
/// constant commutes with the maximum. After the pooling, the bias's add and its gradient's sum
/// touch a quarter of the elements, as the ReLU already does, where libtorch adds a cuDNN
/// convolution's bias with a broadcast kernel of its own over the whole output and sums its
/// gradient over the whole output. What changes: the bias's gradient sums in another
/// order, and where two values of a window differ by less than the bias's rounding, TF's order
/// sees a tie and sends the gradient to the first of them, this order to the larger.
/// NNDL_CNN_BIAS=conv|pool; `conv` (the homework's order) unless told: on the CPU, oneDNN adds
/// the bias inside its convolution and moving it measured no gain; on CUDA not yet measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BiasAt {
    Conv,
    Pool,
}

impl BiasAt {
    pub fn from_env() -> BiasAt {
        match std::env::var("NNDL_CNN_BIAS").as_deref() {
            Ok("pool") => BiasAt::Pool,
            _ => BiasAt::Conv,
        }
    }
}

/// How the CNN's convolution blocks compute: their activations' layout and where the bias goes
/// (summary.json's `convolutions`: both change how a run rounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvPlan {
    pub layout: Layout,
    pub bias_at: BiasAt,
}

impl ConvPlan {
    pub fn for_device(device: tch::Device) -> ConvPlan {
        ConvPlan { layout: Layout::for_device(device), bias_at: BiasAt::from_env() }
    }

    /// A run's plan: None for the MLP, which has no convolutions.
    pub fn for_run(model: crate::config::ModelKind, device: tch::Device) -> Option<ConvPlan> {
        (model == crate::config::ModelKind::Cnn).then(|| ConvPlan::for_device(device))
    }

    /// In summary.json's and the README's words: "channels-last layout, bias at the conv".
    pub fn describe(self) -> String {
        let name = |v: serde_json::Result<serde_json::Value>| v.ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        format!("{} layout, bias at the {}", name(serde_json::to_value(self.layout)), name(serde_json::to_value(self.bias_at)))
    }

    /// "X before and Y now (the switches)" when `earlier` (a run's recorded plan) is not `now`:
    /// that run's bits will not be this session's.
    pub fn change(earlier: Option<ConvPlan>, now: Option<ConvPlan>) -> Option<String> {
        let (before, now) = (earlier?, now?);
        (before != now).then(|| format!("{} before and {} now (NNDL_CNN_LAYOUT, NNDL_CNN_BIAS)", before.describe(), now.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn images_are_channels_last_on_the_cpu_and_nchw_on_cuda() {
        if std::env::var("NNDL_CNN_LAYOUT").is_ok() {
            return;
        }
        let x = Tensor::arange(2 * 784, (Kind::Float, Device::Cpu)).view([2, 784]);
        let cpu = Layout::for_device(Device::Cpu).images(&x);
        let cuda = Layout::for_device(Device::Cuda(0)).images(&x);
        assert_eq!(cpu.size(), [2, 1, 28, 28]);
        assert_eq!(cpu.stride(), [784, 1, 28, 1], "NCHW shape, NHWC strides");
        assert_eq!(cuda.size(), [2, 1, 28, 28]);
        assert!(cuda.is_contiguous());
        assert!(cpu.equal(&cuda), "the same images either way");
    }

    /// (mul i mod modulo) - offset for i in 0..n: scrambled values, not drawn (libtorch's
    /// generator is shared with tests that check its state).
    fn scrambled(n: i64, mul: i64, modulo: i64, offset: f64) -> Tensor {
        (Tensor::arange(n, (Kind::Int64, Device::Cpu)) * mul).remainder(modulo).to_kind(Kind::Float) - offset
    }

    /// Values and gradients of `relu_pool` equal the homework's order bit for bit, with windows
    /// holding no positive value, a tied positive maximum, or one positive maximum.
    #[test]
    fn pooling_before_relu_changes_nothing() {
        // (37 i mod 7 - 5) / 2 gives, of the 192 windows, 109 with no positive value, 27 whose
        // positive maximum is tied, and 56 with one positive maximum.
        let x = scrambled(4 * 3 * 8 * 8, 37, 7, 5.0).view([4, 3, 8, 8]) / 2.0;
        let upstream = scrambled(4 * 3 * 4 * 4, 13, 7, 3.0).view([4, 3, 4, 4]);
        let run = |f: &dyn Fn(&Tensor) -> Tensor| {
            let x = x.copy().set_requires_grad(true);
            let y = f(&x);
            (&y * &upstream).sum(Kind::Float).backward();
            (y.detach(), x.grad())
        };
        let (y0, g0) = run(&|x| x.relu().max_pool2d_default(2));
        let (y1, g1) = run(&|x| relu_pool(x));
        assert!(y0.equal(&y1) && g0.equal(&g1));
        assert!(bool::try_from(x.eq(0.0).any()).unwrap(), "the data hold ties at zero");
    }

    /// `pool_bias_relu(y, b)` gives the homework's `relu_pool(y + b)` values bit for bit, and here
    /// its gradients too (integer upstream gradients: the bias's sums are exact in either order).
    /// Only where the bias's rounding ties a window's values does the gradient go elsewhere.
    #[test]
    fn the_bias_after_pooling_gives_the_same_values() {
        // Multiples of 1/64 in [-0.78, 0.78], which these biases keep distinct (17 of the 192
        // windows end at or below zero, for the ReLU).
        let y = scrambled(4 * 3 * 8 * 8, 37, 101, 50.0).view([4, 3, 8, 8]) / 64.0;
        let upstream = scrambled(4 * 3 * 4 * 4, 13, 7, 3.0).view([4, 3, 4, 4]);
        let run = |b: &[f32], f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
            let (y, b) = (y.copy().set_requires_grad(true), Tensor::from_slice(b).set_requires_grad(true));
            let out = f(&y, &b);
            (&out * &upstream).sum(Kind::Float).backward();
            (out.detach(), y.grad(), b.grad())
        };
        let homework = |y: &Tensor, b: &Tensor| relu_pool(&(y + b.view([1, -1, 1, 1])));
        let moved = |y: &Tensor, b: &Tensor| pool_bias_relu(y, b);
        let (o0, gy0, gb0) = run(&[0.1, -0.3, 0.45], &homework);
        let (o1, gy1, gb1) = run(&[0.1, -0.3, 0.45], &moved);
        assert!(o0.equal(&o1) && gy0.equal(&gy1) && gb0.equal(&gb1));
        assert!(bool::try_from(o0.eq(0.0).any()).unwrap(), "some windows end below zero");
        // 2^24 rounds every window of channel 0 to one value: the same outputs, but the
        // homework's order sends each window's gradient to its first element, not its largest.
        let (o0, gy0, _) = run(&[16777216.0, 0.1, 0.1], &homework);
        let (o1, gy1, _) = run(&[16777216.0, 0.1, 0.1], &moved);
        assert!(o0.equal(&o1));
        assert!(!gy0.get(0).get(0).equal(&gy1.get(0).get(0)) && gy0.narrow(1, 1, 2).equal(&gy1.narrow(1, 1, 2)));
    }
}
