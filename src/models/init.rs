//! Initialisers the homework used that tch lacks, and how each preset initialises a layer.
use crate::config::Init;
use tch::{nn, Device, Kind, Tensor};

/// `tf.truncated_normal(stddev)`: N(0, stddev) with every value beyond 2 stddev redrawn.
pub fn truncated_normal(shape: &[i64], stddev: f64, device: Device) -> Tensor {
    let mut t = Tensor::randn(shape, (Kind::Float, device));
    loop {
        let outside = t.abs().gt(2.0);
        if !bool::try_from(outside.any()).expect("scalar bool") {
            break;
        }
        let redraw = Tensor::randn(shape, (Kind::Float, device));
        t = redraw.where_self(&outside, &t);
    }
    t * stddev
}

/// Sets a layer's weight and bias the way `init` says. Weights are drawn in tch's layout; the
/// draws are i.i.d., so the distribution is the one TF's [in, out] layout had.
pub fn apply(ws: &mut Tensor, bs: &mut Tensor, init: Init) {
    tch::no_grad(|| {
        let fan_in: i64 = ws.size()[1..].iter().product();
        let (w, b) = match init {
            Init::RandomNormal => (ws.randn_like(), bs.randn_like()),
            Init::TruncatedNormal => (truncated_normal(&ws.size(), 0.1, ws.device()), bs.ones_like() * 0.1),
            Init::He => (ws.randn_like() * (2.0 / fan_in as f64).sqrt(), bs.zeros_like()),
        };
        ws.copy_(&w);
        bs.copy_(&b);
    });
}

/// A linear layer (bias included) initialised as `init` says.
pub fn linear(vs: nn::Path, inputs: i64, outputs: i64, init: Init) -> nn::Linear {
    let mut layer = nn::linear(vs, inputs, outputs, Default::default());
    let bs = layer.bs.as_mut().expect("linear layers here have a bias");
    apply(&mut layer.ws, bs, init);
    layer
}
