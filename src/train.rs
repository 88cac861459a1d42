//! The training loop shared by both networks. The data sit on the device; the whole batch order
//! is computed up front (TF1's `next_batch`) and uploaded in large chunks, so the loop never
//! waits on the host; training loss and accuracy accumulate on the device and are read only at
//! evaluation points.
use crate::artifacts::MetricRow;
use crate::config::{Optimizer, Schedule, TrainConfig};
use crate::cuda_graph::StepGraph;
use crate::data::{Batcher, Split};
use anyhow::Result;
use indicatif::ProgressBar;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

/// Indices uploaded at a time.
const PLAN_CHUNK: usize = 1 << 20;

/// A split resident on the device: images [N, 784] f32, labels [N] i64.
pub struct DeviceSplit {
    pub images: Tensor,
    pub labels: Tensor,
}

impl DeviceSplit {
    pub fn upload(split: &Split, device: Device) -> DeviceSplit {
        let n = split.len() as i64;
        let images = Tensor::from_slice(&split.images).view([n, 784]).to_device(device);
        let labels = Tensor::from_slice(&split.labels).to_kind(Kind::Int64).to_device(device);
        DeviceSplit { images, labels }
    }

    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Mean loss and accuracy over a split, without gradients, in chunks.
/// Always in eval mode: the faithful CNN's dropout layer decides itself to stay on.
/// `chunk` rows go through the network at a time, which bounds memory on any device.
pub fn evaluate(net: &dyn ModuleT, split: &DeviceSplit, chunk: i64) -> (f64, f64) {
    tch::no_grad(|| {
        let device = split.images.device();
        let mut loss = Tensor::zeros([], (Kind::Float, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let n = split.len();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let logits = net.forward_t(&split.images.narrow(0, start, len), false);
            let labels = split.labels.narrow(0, start, len);
            loss += logits.log_softmax(-1, Kind::Float).nll_loss_nd(&labels, None::<Tensor>, Reduction::Sum, -100);
            correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
            start += len;
        }
        (loss.double_value(&[]) / n as f64, correct.double_value(&[]) / n as f64)
    })
}

/// Shifts each image by its own random offset in [-max, max] pixels, zero-filled.
pub fn random_shift(images: &Tensor, max: i64) -> Tensor {
    let device = images.device();
    let n = images.size()[0];
    let padded = images.view([n, 28, 28]).constant_pad_nd([max, max, max, max]);
    let offsets = Tensor::randint(2 * max + 1, [n, 2], (Kind::Int64, device));
    let base = Tensor::arange(28, (Kind::Int64, device));
    let rows = (base.view([1, 28]) + offsets.narrow(1, 0, 1)).view([n, 28, 1]);
    let cols = (base.view([1, 28]) + offsets.narrow(1, 1, 1)).view([n, 1, 28]);
    let batch = Tensor::arange(n, (Kind::Int64, device)).view([n, 1, 1]);
    padded.index(&[Some(batch), Some(rows), Some(cols)]).view([n, 784])
}

/// Everything the loop reports at an evaluation point.
pub struct EvalPoint {
    pub iteration: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
}

impl EvalPoint {
    pub fn rows(&self) -> [MetricRow; 2] {
        [
            MetricRow { iteration: self.iteration, split: "train", loss: self.train_loss, accuracy: self.train_accuracy },
            MetricRow { iteration: self.iteration, split: "test", loss: self.test_loss, accuracy: self.test_accuracy },
        ]
    }
}

pub struct TrainOutcome {
    pub points: Vec<EvalPoint>,
    /// Time spent in evaluations (the device is synchronised first, so queued training work is
    /// not counted here).
    pub eval_seconds: f64,
    /// Whether the steps ran as a replayed CUDA graph.
    pub cuda_graph: bool,
}

/// Running sums of the training loss and correct predictions since the last evaluation, kept
/// on the device (updated in place, so a captured CUDA graph keeps updating them).
struct TrainSums {
    loss: Tensor,
    correct: Tensor,
}

/// One training step on the batch whose indices sit in `idx`: forward, backward, update, sums.
/// Gradients must have been cleared; nothing here waits for the device.
fn step(net: &dyn ModuleT, opt: &mut nn::Optimizer, cfg: &TrainConfig, train: &DeviceSplit, idx: &Tensor, sums: &mut TrainSums) {
    let mut xs = train.images.index_select(0, idx);
    if cfg.augment_shift > 0 {
        xs = random_shift(&xs, cfg.augment_shift);
    }
    let ys = train.labels.index_select(0, idx);
    let logits = net.forward_t(&xs, true);
    let loss = logits.cross_entropy_for_logits(&ys);
    loss.backward();
    opt.step();
    tch::no_grad(|| {
        sums.loss += loss.detach();
        sums.correct += logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64);
    });
}

/// Eager steps before capture: cuDNN picks its algorithms and the allocator settles.
const GRAPH_WARMUP: usize = 3;

/// A CUDA graph replays the captured kernels with the captured scalars, so only steps whose
/// host-side values never change qualify: plain SGD at a constant learning rate.
fn graph_for(cfg: &TrainConfig, device: Device, allow: bool) -> Option<StepGraph> {
    let Device::Cuda(index) = device else { return None };
    if !allow || cfg.optimizer != Optimizer::Sgd || cfg.schedule != Schedule::Constant || cfg.iterations <= GRAPH_WARMUP {
        return None;
    }
    StepGraph::new(index).ok()
}

/// Trains `net` (variables in `vs`) on `train` as `cfg` says, evaluating on `test`.
/// On CUDA, eligible runs capture the step once and replay it (`allow_graph`).
/// `on_eval` sees each evaluation point as it happens (logs, progress).
#[allow(clippy::too_many_arguments)]
pub fn train(
    net: &dyn ModuleT,
    vs: &nn::VarStore,
    cfg: &TrainConfig,
    train: &DeviceSplit,
    test: &DeviceSplit,
    allow_graph: bool,
    progress: &ProgressBar,
    mut on_eval: impl FnMut(&EvalPoint),
) -> Result<TrainOutcome> {
    let device = train.images.device();
    let mut opt = match cfg.optimizer {
        Optimizer::Sgd => nn::Sgd::default().build(vs, cfg.lr)?,
        Optimizer::Adam => nn::Adam::default().build(vs, cfg.lr)?,
    };
    let mut graph = graph_for(cfg, device, allow_graph);
    let mut batcher = Batcher::new(train.len() as usize, cfg.seed);
    let bs = cfg.batch_size as i64;
    let plan_iters = (PLAN_CHUNK / cfg.batch_size).max(1);
    let mut plan = Tensor::zeros([0], (Kind::Int64, device));
    // The batch's indices live in one fixed buffer, which a captured graph reads.
    let mut idx = Tensor::zeros([bs], (Kind::Int64, device));
    let mut sums = TrainSums { loss: Tensor::zeros([], (Kind::Float, device)), correct: Tensor::zeros([], (Kind::Int64, device)) };
    let mut since_eval = 0usize;
    let mut points = Vec::new();
    let mut eval_seconds = 0.0;
    for i in 0..cfg.iterations {
        let slot = (i % plan_iters) as i64;
        if slot == 0 {
            let n = plan_iters.min(cfg.iterations - i);
            let indices: Vec<i64> = (0..n).flat_map(|_| batcher.next_batch(cfg.batch_size)).collect();
            plan = Tensor::from_slice(&indices).to_device(device);
        }
        if cfg.schedule != Schedule::Constant {
            opt.set_lr(cfg.lr_at(i));
        }
        idx.copy_(&plan.narrow(0, slot * bs, bs));
        match graph.as_mut() {
            Some(g) if g.is_captured() => g.replay()?,
            Some(g) if i == GRAPH_WARMUP => {
                opt.zero_grad();
                g.capture(|| step(net, &mut opt, cfg, train, &idx, &mut sums))?;
                g.replay()?;
            }
            _ => {
                opt.zero_grad();
                step(net, &mut opt, cfg, train, &idx, &mut sums);
            }
        }
        since_eval += 1;
        if cfg.is_eval_point(i) {
            if let Device::Cuda(i) = device {
                tch::Cuda::synchronize(i as i64);
            }
            let eval_start = std::time::Instant::now();
            let (test_loss, test_accuracy) = evaluate(net, test, cfg.eval_chunk(device));
            eval_seconds += eval_start.elapsed().as_secs_f64();
            let point = EvalPoint {
                iteration: i,
                train_loss: sums.loss.double_value(&[]) / since_eval as f64,
                train_accuracy: sums.correct.double_value(&[]) / (since_eval * cfg.batch_size) as f64,
                test_loss,
                test_accuracy,
            };
            on_eval(&point);
            points.push(point);
            let _ = sums.loss.zero_();
            let _ = sums.correct.zero_();
            since_eval = 0;
        }
        progress.inc(1);
    }
    let cuda_graph = graph.as_ref().is_some_and(StepGraph::is_captured);
    drop(graph);
    Ok(TrainOutcome { points, eval_seconds, cuda_graph })
}
