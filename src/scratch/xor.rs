//! The homework's XOR network, 2-2-2-1 with sigmoid everywhere, trained sample by sample with the
//! homework's own arithmetic, in the same order of floating-point operations as its Python:
//! - output delta = expected - output (no sigmoid derivative);
//! - hidden delta = (sum over the right layer of w * delta) * (out * (1 - out));
//! - updates w += delta * input * lr and b += delta * lr, layer by layer from the input, using
//!   the outputs of the forward pass;
//! - loss = sum of (expected - output)^2 over the samples in their current order, divided by 4.
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

pub const SAMPLES: [([f64; 2], [f64; 1]); 4] = [([0.0, 0.0], [0.0]), ([0.0, 1.0], [1.0]), ([1.0, 0.0], [1.0]), ([1.0, 1.0], [0.0])];
/// A run converged when its final loss is below this.
pub const CONVERGED_BELOW: f64 = 1e-3;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Python's `x ** 2` calls the C library's pow; so do we (black_box keeps LLVM from turning it
/// into x * x, which could differ in the last bit).
fn square_like_python(x: f64) -> f64 {
    x.powf(std::hint::black_box(2.0))
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Neuron {
    pub weights: Vec<f64>,
    pub bias: f64,
}

/// A fully connected sigmoid layer: OUT neurons of IN inputs each.
#[derive(Clone, Debug)]
struct Layer<const IN: usize, const OUT: usize> {
    w: [[f64; IN]; OUT],
    b: [f64; OUT],
    out: [f64; OUT],
    delta: [f64; OUT],
}

// Index loops on purpose: they mirror the homework's `for i in range(len(inputs))` one for one.
#[allow(clippy::needless_range_loop)]
impl<const IN: usize, const OUT: usize> Layer<IN, OUT> {
    /// As the homework's `append_layer`: per neuron, its IN weights then its bias.
    fn from_draws(draw: &mut impl FnMut() -> f64) -> Self {
        let mut layer = Layer { w: [[0.0; IN]; OUT], b: [0.0; OUT], out: [0.0; OUT], delta: [0.0; OUT] };
        for n in 0..OUT {
            for i in 0..IN {
                layer.w[n][i] = draw();
            }
            layer.b[n] = draw();
        }
        layer
    }

    fn feedforward(&mut self, inputs: &[f64; IN]) -> [f64; OUT] {
        for n in 0..OUT {
            let mut sum = 0.0;
            for i in 0..IN {
                sum += inputs[i] * self.w[n][i];
            }
            sum += self.b[n];
            self.out[n] = sigmoid(sum);
        }
        self.out
    }

    /// Hidden deltas from the layer to the right, which must already have its deltas.
    fn backprop_from<const NEXT: usize>(&mut self, right: &Layer<OUT, NEXT>) {
        for j in 0..OUT {
            let mut error = 0.0;
            for r in 0..NEXT {
                error += right.w[r][j] * right.delta[r];
            }
            self.delta[j] = error * (self.out[j] * (1.0 - self.out[j]));
        }
    }

    fn update(&mut self, inputs: &[f64; IN], lr: f64) {
        for n in 0..OUT {
            for i in 0..IN {
                self.w[n][i] += self.delta[n] * inputs[i] * lr;
            }
            self.b[n] += self.delta[n] * lr;
        }
    }

    fn neurons(&self) -> Vec<Neuron> {
        (0..OUT).map(|n| Neuron { weights: self.w[n].to_vec(), bias: self.b[n] }).collect()
    }
}

#[derive(Clone, Debug)]
pub struct XorNet {
    l1: Layer<2, 2>,
    l2: Layer<2, 2>,
    l3: Layer<2, 1>,
}

impl XorNet {
    /// Draws the 15 parameters in the homework's order from `draw`.
    pub fn from_draws(mut draw: impl FnMut() -> f64) -> XorNet {
        XorNet { l1: Layer::from_draws(&mut draw), l2: Layer::from_draws(&mut draw), l3: Layer::from_draws(&mut draw) }
    }

    /// Rebuilds a net from dumped neurons (layers of 2, 2 and 1 neurons).
    pub fn from_neurons(layers: &[Vec<Neuron>]) -> Option<XorNet> {
        let flat: Vec<f64> = layers.iter().flatten().flat_map(|n| n.weights.iter().copied().chain([n.bias])).collect();
        let shape_ok = layers.len() == 3 && [2, 2, 1].iter().zip(layers).all(|(&n, l)| l.len() == n && l.iter().all(|x| x.weights.len() == 2));
        let mut it = flat.into_iter();
        shape_ok.then(|| XorNet::from_draws(|| it.next().expect("15 parameters")))
    }

    pub fn neurons(&self) -> Vec<Vec<Neuron>> {
        vec![self.l1.neurons(), self.l2.neurons(), self.l3.neurons()]
    }

    pub fn feedforward(&mut self, x: &[f64; 2]) -> [f64; 1] {
        let h1 = self.l1.feedforward(x);
        let h2 = self.l2.feedforward(&h1);
        self.l3.feedforward(&h2)
    }

    fn feedback(&mut self, expected: &[f64; 1]) {
        self.l3.delta[0] = expected[0] - self.l3.out[0];
        self.l2.backprop_from(&self.l3);
        self.l1.backprop_from(&self.l2);
    }

    fn update(&mut self, x: &[f64; 2], lr: f64) {
        let (h1, h2) = (self.l1.out, self.l2.out);
        self.l1.update(x, lr);
        self.l2.update(&h1, lr);
        self.l3.update(&h2, lr);
    }

    /// One sample: forward, deltas, updates.
    pub fn train_sample(&mut self, x: &[f64; 2], y: &[f64; 1], lr: f64) {
        self.feedforward(x);
        self.feedback(y);
        self.update(x, lr);
    }

    /// The homework's `get_loss`, over the samples in `order`.
    pub fn loss(&mut self, order: &[usize; 4]) -> f64 {
        let mut loss = 0.0;
        for &s in order {
            let (x, y) = SAMPLES[s];
            let out = self.feedforward(&x);
            loss += square_like_python(y[0] - out[0]);
        }
        loss / SAMPLES.len() as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XorPreset {
    /// The homework's: weights and biases uniform in [0, 1), learning rate 0.3.
    #[value(alias = "seed")]
    #[serde(alias = "seed")]
    Homework,
    /// Same network, schedule and learning rate; the first layer starts as two parallel lines
    /// that cut off (0,0) and (1,1), each with a random steepness, the later layers uniform in
    /// [-0.5, 0.5).
    Robust,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum XorInit {
    /// Every weight and bias uniform in [low, high), drawn in the homework's order.
    Uniform { low: f64, high: f64 },
    /// The homework's failures are two first-layer units that cut off the same corner of the square
    /// (three inputs then look alike: loss 1/6). Here unit 1 starts as the line x1 + x2 = c1,
    /// c1 uniform in [0.3, 0.7) (cuts off (0,0)), unit 2 as x1 + x2 = c2, c2 in [1.3, 1.7)
    /// (cuts off (1,1)), each with a random steepness in [2, 4); layers 2 and 3 start uniform
    /// in [-0.5, 0.5). Training still has to find everything after the first layer.
    ParallelLines,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct XorConfig {
    pub preset: XorPreset,
    pub learning_rate: f64,
    pub epochs: usize,
    pub log_every: usize,
    pub init: XorInit,
}

impl XorConfig {
    pub fn preset(preset: XorPreset) -> XorConfig {
        let init = match preset {
            XorPreset::Homework => XorInit::Uniform { low: 0.0, high: 1.0 },
            XorPreset::Robust => XorInit::ParallelLines,
        };
        XorConfig { preset, learning_rate: 0.3, epochs: 3001, log_every: 50, init }
    }

    /// Rejects settings that cannot train, with the flag's name.
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            return Err(format!("invalid --epochs {}: must be between 1 and {MAX_EPOCHS}", self.epochs));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!("invalid --lr {}: must be a finite number > 0", self.learning_rate));
        }
        if self.log_every == 0 {
            return Err("invalid log_every 0: must be at least 1".into());
        }
        if let XorInit::Uniform { low, high } = self.init {
            // high - low scales every draw: it must be finite too (-1e308..1e308 is not).
            if !(low.is_finite() && high.is_finite() && low < high && (high - low).is_finite()) {
                return Err(format!("invalid --init-low/--init-high {}..{}: need finite low < high, less than about 1.8e308 apart", short(low), short(high)));
            }
        }
        Ok(())
    }
}

/// A bound on --epochs: a run keeps one loss per logged epoch (and, with --dump, every order).
pub const MAX_EPOCHS: usize = 100_000_000;

/// Draws the initial network as `init` says.
pub fn initial_net(init: XorInit, rng: &mut Rng) -> XorNet {
    let mut uniform = |lo: f64, hi: f64| lo + (hi - lo) * rng.next_f64();
    match init {
        XorInit::Uniform { low, high } => XorNet::from_draws(|| uniform(low, high)),
        XorInit::ParallelLines => {
            let mut line = |lo: f64, hi: f64| {
                let (steep, c) = (uniform(2.0, 4.0), uniform(lo, hi));
                Neuron { weights: vec![steep, steep], bias: -steep * c }
            };
            let first = vec![line(0.3, 0.7), line(1.3, 1.7)];
            let mut rest = |n: usize| -> Vec<Neuron> {
                (0..n).map(|_| Neuron { weights: vec![uniform(-0.5, 0.5), uniform(-0.5, 0.5)], bias: uniform(-0.5, 0.5) }).collect()
            };
            let (second, third) = (rest(2), rest(1));
            XorNet::from_neurons(&[first, second, third]).expect("2-2-1 neurons of 2 inputs")
        }
    }
}

/// A whole run, with what a replay needs: the initial parameters and every epoch's order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct XorRun {
    pub seed: u64,
    pub config: XorConfig,
    pub initial: Vec<Vec<Neuron>>,
    /// The sample order of every epoch, as indices into SAMPLES.
    pub orders: Vec<[usize; 4]>,
    /// (epoch, loss) every `log_every` epochs and after the last epoch.
    pub losses: Vec<(usize, f64)>,
}

impl XorRun {
    pub fn final_loss(&self) -> f64 {
        self.losses.last().map(|l| l.1).unwrap_or(f64::NAN)
    }

    pub fn converged(&self) -> bool {
        self.final_loss() < CONVERGED_BELOW
    }
}

/// One epoch: the samples in `order`, one update each; then, at a logging epoch and after the
/// last one, the homework's loss over the samples in that same order.
fn run_epoch(net: &mut XorNet, epoch: usize, order: &[usize; 4], config: &XorConfig, losses: &mut Vec<(usize, f64)>) {
    for &s in order {
        let (x, y) = SAMPLES[s];
        net.train_sample(&x, &y, config.learning_rate);
    }
    if epoch.is_multiple_of(config.log_every) || epoch + 1 == config.epochs {
        losses.push((epoch, net.loss(order)));
    }
}

/// Trains one network. `keep_orders` records every epoch's order (for --dump).
pub fn train(seed: u64, config: &XorConfig, keep_orders: bool) -> XorRun {
    let mut rng = Rng::new(seed);
    let mut net = initial_net(config.init, &mut rng);
    let initial = net.neurons();
    let mut order = [0, 1, 2, 3];
    let mut orders = Vec::new();
    let mut losses = Vec::new();
    for epoch in 0..config.epochs {
        rng.shuffle(&mut order);
        if keep_orders {
            orders.push(order);
        }
        run_epoch(&mut net, epoch, &order, config, &mut losses);
    }
    XorRun { seed, config: config.clone(), initial, orders, losses }
}

/// Replays a dumped run: its initial parameters and orders, our arithmetic.
pub fn replay(run: &XorRun) -> Option<Vec<(usize, f64)>> {
    let mut net = XorNet::from_neurons(&run.initial)?;
    let mut losses = Vec::new();
    for (epoch, order) in run.orders.iter().enumerate() {
        run_epoch(&mut net, epoch, order, &run.config, &mut losses);
    }
    Some(losses)
}

/// A number as a person would type it: 1e308, not its 309 digits.
fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-4) { format!("{x:e}") } else { format!("{x}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_matches_hand_arithmetic() {
        // All parameters 0.5: every hidden output is sigmoid(1.5) for input (1, 1)... check the
        // output delta and the first update by hand.
        let mut net = XorNet::from_draws(|| 0.5);
        let out = net.feedforward(&[1.0, 1.0])[0];
        let h1 = sigmoid(0.5 + 0.5 + 0.5);
        let h2 = sigmoid(h1 * 0.5 + h1 * 0.5 + 0.5);
        assert_eq!(out, sigmoid(h2 * 0.5 + h2 * 0.5 + 0.5));
        net.feedback(&[0.0]);
        assert_eq!(net.l3.delta[0], 0.0 - out);
        let d2 = (0.5 * (0.0 - out)) * (h2 * (1.0 - h2));
        assert_eq!(net.l2.delta, [d2, d2]);
        net.update(&[1.0, 1.0], 0.3);
        assert_eq!(net.l3.w[0][0], 0.5 + (0.0 - out) * h2 * 0.3);
        assert_eq!(net.l3.b[0], 0.5 + (0.0 - out) * 0.3);
    }

    #[test]
    fn replay_reproduces_training_bit_for_bit() {
        let run = train(3, &XorConfig::preset(XorPreset::Homework), true);
        assert_eq!(run.losses.len(), 61);
        assert_eq!(replay(&run).unwrap(), run.losses);
    }

    #[test]
    fn final_loss_is_after_the_last_epoch() {
        // 10 epochs log at epoch 0 only; the final loss must still be the one after epoch 9.
        let mut cfg = XorConfig::preset(XorPreset::Homework);
        cfg.epochs = 10;
        let run = train(1, &cfg, false);
        assert_eq!(run.losses.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0, 9]);
        assert_eq!(run.final_loss(), run.losses[1].1);
        // 3001 epochs: the last is a logging epoch anyway, logged once.
        let full = train(1, &XorConfig::preset(XorPreset::Homework), false);
        assert_eq!(full.losses.len(), 61);
    }

    #[test]
    fn neurons_round_trip() {
        let net = XorNet::from_draws({
            let mut i = 0.0;
            move || {
                i += 1.0;
                i
            }
        });
        let back = XorNet::from_neurons(&net.neurons()).unwrap();
        assert_eq!(back.neurons(), net.neurons());
        assert_eq!(net.neurons()[0][0], Neuron { weights: vec![1.0, 2.0], bias: 3.0 });
        assert!(XorNet::from_neurons(&net.neurons()[..2]).is_none());
    }
}
