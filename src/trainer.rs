//! The training loop shared by both networks. The data sit on the device; the batch order
//! (TF1's `next_batch`) is computed in large chunks and uploaded in one piece, so the loop never
//! waits on the host; training loss and accuracy accumulate on the device and are read only at
//! evaluation points. The loop can stop at any step boundary and hand over a checkpoint from
//! which `resume` continues bit for bit (on CPU).
use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::config::{Optimizer, Schedule, TrainConfig};
use crate::cuda_graph::StepGraph;
use crate::data::{Batcher, DeviceData, DeviceSplit};
use crate::metrics::EvalPoint;
use crate::optim::Optim;
use crate::overlapped_eval::OverlappedEval;
use crate::packed::PackInfo;
use crate::profile::{StepProfile, StepProfiler};
use crate::torch_extras::DenormalMode;
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

/// Indices uploaded at a time.
const PLAN_CHUNK: usize = 1 << 20;

/// Mean loss and accuracy over a split, without gradients, in chunks of `chunk` rows (which
/// bounds memory on any device). Always in eval mode: the faithful CNN's dropout layer decides
/// itself to stay on.
pub fn evaluate(net: &dyn ModuleT, split: &DeviceSplit, chunk: i64) -> (f64, f64) {
    evaluate_with(net, split, chunk, |_, _| {})
}

/// `evaluate`, also handing each chunk's (predictions, labels) to `seen`.
pub fn evaluate_with(net: &dyn ModuleT, split: &DeviceSplit, chunk: i64, mut seen: impl FnMut(&Tensor, &Tensor)) -> (f64, f64) {
    tch::no_grad(|| {
        let device = split.images.device();
        // Summed on the device, read once at the end.
        let mut loss = Tensor::zeros([], (Kind::Float, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let n = split.len();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let logits = net.forward_t(&split.images.narrow(0, start, len), false);
            let labels = split.labels.narrow(0, start, len);
            loss += logits.log_softmax(-1, Kind::Float).nll_loss_nd(&labels, None::<Tensor>, Reduction::Sum, -100);
            let predictions = logits.argmax(-1, false);
            correct += predictions.eq_tensor(&labels).sum(Kind::Int64);
            seen(&predictions, &labels);
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

/// What the loop needs: the network, its variables, the settings and the data.
pub struct TrainContext<'a> {
    pub net: &'a dyn ModuleT,
    pub vs: &'a nn::VarStore,
    pub cfg: &'a TrainConfig,
    pub data: &'a DeviceData,
    /// On CUDA, capture the step once and replay it where the run allows.
    pub allow_graph: bool,
    /// No notes on stderr.
    pub quiet: bool,
    /// `--profile-steps`: record this many steps with libtorch's profiler.
    pub profile_steps: Option<usize>,
}

/// Who watches the loop: logs, metrics.csv, checkpoints, signals.
pub trait Observer {
    fn on_eval(&mut self, point: &EvalPoint) -> Result<()>;
    /// After each step: whether to checkpoint before going on (`next` is the next iteration).
    fn checkpoint_due(&mut self, next: usize) -> bool;
    fn on_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<()>;
    /// The signal number when a stop was asked for.
    fn stop_requested(&self) -> Option<i32>;
    fn on_step(&mut self, _done: usize) {}
    /// On the CPU, each step's training loss as it happens (on CUDA it stays on the device).
    fn on_loss(&mut self, _iteration: usize, _loss: f64) {}
}

#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    Finished,
    /// Stopped by a signal after checkpointing.
    Interrupted { signal: i32, next_iteration: usize },
    /// The training loss went NaN or infinite at `iteration` (on CUDA: somewhere in the
    /// evaluation interval ending there, `exact` false), or the test loss of its evaluation
    /// (`in_test_loss`: the logits overflowed while the training loss was still finite).
    Diverged { iteration: usize, exact: bool, last_finite: Option<(usize, f64)>, in_test_loss: bool },
    /// A pack's member whose own files (metrics.csv, its checkpoint) could not be written: it
    /// stops, the others go on, and its last checkpoint stands for a rerun.
    Failed(String),
}

pub struct TrainOutcome {
    pub points: Vec<EvalPoint>,
    /// Time in the loop, over every session of a resumed run: to the end of the last step (the
    /// checkpoint that closes a session is written after it, as the weights and figures are).
    pub train_seconds: f64,
    /// Of which evaluations (the device is synchronised first, so queued training work is
    /// not counted here); with `eval_overlap`, the time they took beside the steps.
    pub eval_seconds: f64,
    /// Whether the evaluations ran beside the steps, on a thread of their own.
    pub eval_overlap: bool,
    /// Whether the steps took the evaluation thread's share of the threads while it had
    /// nothing to evaluate.
    pub eval_threads_lent: bool,
    /// Whether the steps ran as a replayed CUDA graph.
    pub cuda_graph: bool,
    /// How a pack's member trained beside the others; None for a single run.
    pub pack: Option<PackInfo>,
    /// What `--profile-steps` recorded.
    pub profile: Option<StepProfile>,
    pub ending: Ending,
}

/// Running sums of the training loss and correct predictions since the last evaluation, kept
/// on the device (updated in place, so a captured CUDA graph keeps updating them).
pub(crate) struct TrainSums {
    pub(crate) loss: Tensor,
    /// Correct predictions counted by batch position ([B] i64): a step adds its hits as they
    /// are, one kernel, where a count per step took a cast, a sum and an add. Evaluation points
    /// and checkpoints read the total.
    pub(crate) correct: Tensor,
}

impl TrainSums {
    pub(crate) fn zeros(batch_size: usize, device: Device) -> TrainSums {
        TrainSums { loss: Tensor::zeros([], (Kind::Float, device)), correct: Tensor::zeros([batch_size as i64], (Kind::Int64, device)) }
    }

    /// The correct predictions since the last evaluation, a 0-dim i64 tensor.
    pub(crate) fn correct_total(&self) -> Tensor {
        self.correct.sum(Kind::Int64)
    }
}

/// One training step on the batch in `batch` ([2, B]: indices, then their labels): forward,
/// backward, update, sums. Gradients must have been cleared; nothing here waits for the device.
/// Returns the loss.
fn step(net: &dyn ModuleT, opt: &mut Optim, cfg: &TrainConfig, train: &DeviceSplit, batch: &Tensor, sums: &mut TrainSums) -> Tensor {
    let (idx, ys) = (batch.get(0), batch.get(1));
    let mut xs = train.images.index_select(0, &idx);
    if cfg.augment_shift > 0 {
        xs = random_shift(&xs, cfg.augment_shift);
    }
    let logits = net.forward_t(&xs, true);
    let loss = logits.cross_entropy_for_logits(&ys);
    loss.backward();
    opt.step();
    tch::no_grad(|| {
        sums.loss += loss.detach();
        sums.correct += logits.argmax(-1, false).eq_tensor(&ys);
    });
    loss
}

/// A chunk's batches on the device, each iteration's indices beside their labels: `indices`
/// [n, ...] gives [n, 2, ...]. A step then copies both in one piece, and its graph gathers no
/// labels.
pub(crate) fn plan_batches(indices: &Tensor, labels: &Tensor) -> Tensor {
    let indices = indices.to_device(labels.device());
    let ys = labels.index_select(0, &indices.view([-1])).view_as(&indices);
    Tensor::stack(&[indices, ys], 1)
}

/// Eager steps before capture: cuDNN picks its algorithms and the allocator settles.
pub(crate) const GRAPH_WARMUP: usize = 3;

/// The first line of profile.txt: what ran, and how.
pub(crate) fn profile_about(cfg: &TrainConfig, device: Device, graph: bool, members: i64) -> String {
    let pack = if members > 1 { format!(", a pack of {members} members") } else { String::new() };
    let graph = if device.is_cuda() { if graph { ", steps as a CUDA graph" } else { ", steps one by one" } } else { "" };
    let threads = match tch::get_num_threads() {
        1 => "1 thread".to_string(),
        n => format!("{n} threads"),
    };
    format!("{} {}, {}, {threads}{graph}{pack}", cfg.model.name(), cfg.preset.name(), crate::device::name(device))
}

/// Whether this run's step can be a CUDA graph, and why not when it cannot (said once).
/// A graph replays the captured kernels with the captured scalars, so only steps whose host-side
/// values never change qualify: plain SGD at a constant learning rate.
pub(crate) fn graph_for(cfg: &TrainConfig, device: Device, allow: bool, remaining: usize) -> (Option<StepGraph>, Option<String>) {
    let Device::Cuda(index) = device else { return (None, None) };
    let why_not = if !allow {
        Some("--no-cuda-graph".to_string())
    } else if cfg.optimizer != Optimizer::Sgd || !matches!(cfg.schedule, Schedule::Constant {}) {
        Some("its learning rate or optimizer state changes on the host every step".into())
    } else if remaining <= GRAPH_WARMUP {
        Some("too few steps to be worth capturing".into())
    } else {
        None
    };
    if let Some(why) = why_not {
        return (None, Some(why));
    }
    match StepGraph::new(index) {
        Ok(g) => (Some(g), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    }
}

/// The loop's position, everything a checkpoint holds besides parameters and optimizer.
pub(crate) struct LoopState {
    pub(crate) next: usize,
    /// The batcher as it stood before the current chunk was drawn, and that chunk's start.
    pub(crate) chunk_batcher: Batcher,
    pub(crate) chunk_start: usize,
    pub(crate) batcher: Batcher,
    pub(crate) sums: TrainSums,
    pub(crate) since_eval: usize,
    pub(crate) points: Vec<EvalPoint>,
    pub(crate) train_seconds: f64,
    pub(crate) eval_seconds: f64,
    /// The last step with a finite training loss, and that loss (CPU: every step's is read).
    pub(crate) last_finite: Option<(usize, f64)>,
}

pub(crate) fn plan_iters(cfg: &TrainConfig) -> usize {
    (PLAN_CHUNK / cfg.batch_size).max(1)
}

impl LoopState {
    pub(crate) fn fresh(cfg: &TrainConfig, train_len: usize, device: Device) -> LoopState {
        let batcher = Batcher::new(train_len, cfg.seed);
        LoopState {
            next: 0,
            chunk_batcher: batcher.clone(),
            chunk_start: 0,
            batcher,
            sums: TrainSums::zeros(cfg.batch_size, device),
            since_eval: 0,
            points: vec![],
            train_seconds: 0.0,
            eval_seconds: 0.0,
            last_finite: None,
        }
    }

    /// Puts parameters, optimizer, generator and position back as the checkpoint has them.
    fn restore(ck: &Checkpoint, vs: &nn::VarStore, opt: &mut Optim, train_len: usize, device: Device) -> Result<LoopState> {
        let m = &ck.meta;
        restore_params(ck, vs.variables())?;
        let (adam, _) = opt.state();
        let moments: HashMap<String, Tensor> = adam.iter().filter_map(|(k, _)| ck.tensors.get(k).map(|t| (k.clone(), t.to_device(device)))).collect();
        opt.restore(&moments, m.adam_step)?;
        crate::torch_extras::set_cpu_rng_state(&checkpoint_rng(ck)?)?;
        if device.is_cuda() {
            // The CUDA generator's state is not reachable through tch: re-seed it from the
            // position, so a resumed CUDA run is reproducible, though not the uninterrupted one.
            tch::Cuda::manual_seed(m.config.seed.wrapping_add(m.next_iteration as u64));
        }
        LoopState::position_from(ck, train_len, device)
    }

    /// The loop's position as a checkpoint has it: step, batch order, running sums, history.
    pub(crate) fn position_from(ck: &Checkpoint, train_len: usize, device: Device) -> Result<LoopState> {
        let m = &ck.meta;
        let order: Vec<i64> = Vec::try_from(ck.tensor("batcher.order")?.to_kind(Kind::Int64))?;
        anyhow::ensure!(order.len() == train_len, "batcher.order has {} entries, the training set {train_len}", order.len());
        let order: Vec<u32> = order.into_iter().map(u32::try_from).collect::<Result<_, _>>().map_err(|_| anyhow!("batcher.order holds a negative index"))?;
        let chunk_batcher = Batcher::restore(order, &m.batcher).ok_or_else(|| anyhow!("batcher.order is not a permutation of the training set"))?;
        let scalar = |key: &str, kind: Kind| -> Result<Tensor> {
            let t = ck.tensor(key)?;
            anyhow::ensure!(t.numel() == 1, "{key} is not a scalar");
            Ok(t.to_kind(kind).reshape([]).to_device(device))
        };
        // A checkpoint keeps the total, so it goes back in the first position.
        let sums = TrainSums::zeros(m.config.batch_size, device);
        sums.correct.get(0).copy_(&scalar("sums.correct", Kind::Int64)?);
        Ok(LoopState {
            next: m.next_iteration,
            chunk_batcher: chunk_batcher.clone(),
            chunk_start: m.chunk_start,
            batcher: chunk_batcher,
            sums: TrainSums { loss: scalar("sums.loss", Kind::Float)?, ..sums },
            since_eval: m.since_eval,
            points: m.points.clone(),
            train_seconds: m.train_seconds,
            eval_seconds: m.eval_seconds,
            last_finite: m.last_finite_loss,
        })
    }

    /// The batch indices of the chunk that step `i` falls in (`i` a chunk start, or the first
    /// step of a resumed session): a resumed run redraws its chunk from the batcher saved at
    /// that chunk's start.
    pub(crate) fn draw_chunk(&mut self, i: usize, cfg: &TrainConfig) -> Vec<i64> {
        let per_chunk = plan_iters(cfg);
        self.chunk_start = i - i % per_chunk;
        if i.is_multiple_of(per_chunk) {
            self.chunk_batcher = self.batcher.clone();
        }
        self.batcher = self.chunk_batcher.clone();
        let n = per_chunk.min(cfg.iterations - self.chunk_start);
        (0..n).flat_map(|_| self.batcher.next_batch(cfg.batch_size)).collect()
    }

    fn checkpoint(&self, ctx: &TrainContext, opt: &Optim, train_seconds: f64, device: Device) -> Checkpoint {
        // Views, not copies: the checkpoint is written out before the next step changes them.
        let params = ctx.vs.variables().into_iter().map(|(n, t)| (n, t.detach())).collect();
        self.checkpoint_of(ctx.cfg, params, opt.state(), crate::torch_extras::cpu_rng_state(), train_seconds, device)
    }

    /// A checkpoint of this position with the given parameters, optimizer state (moments by key,
    /// Adam's step) and CPU generator state.
    pub(crate) fn checkpoint_of(&self, cfg: &TrainConfig, params: Vec<(String, Tensor)>, optimizer: (Vec<(String, Tensor)>, Option<i64>), rng: Vec<u8>, train_seconds: f64, device: Device) -> Checkpoint {
        let mut tensors: HashMap<String, Tensor> = params.into_iter().map(|(n, t)| (format!("param.{n}"), t)).collect();
        let (moments, adam_step) = optimizer;
        tensors.extend(moments);
        // At a chunk boundary the batcher stands exactly where the next chunk starts.
        let per_chunk = plan_iters(cfg);
        let (chunk_batcher, chunk_start) =
            if self.next.is_multiple_of(per_chunk) { (&self.batcher, self.next) } else { (&self.chunk_batcher, self.chunk_start) };
        let order: Vec<i64> = chunk_batcher.order().iter().map(|&i| i as i64).collect();
        tensors.insert("batcher.order".into(), Tensor::from_slice(&order));
        tensors.insert("rng.cpu".into(), Tensor::from_slice(&rng));
        tensors.insert("sums.loss".into(), self.sums.loss.shallow_clone());
        tensors.insert("sums.correct".into(), self.sums.correct_total());
        let meta = CheckpointMeta {
            format: 1,
            next_iteration: self.next,
            config: cfg.clone(),
            adam_step,
            chunk_start,
            batcher: chunk_batcher.position(),
            since_eval: self.since_eval,
            points: self.points.clone(),
            train_seconds,
            eval_seconds: self.eval_seconds,
            device: crate::device::name(device),
            convolutions: crate::models::conv_block::ConvPlan::for_run(cfg.model, device),
            last_finite_loss: self.last_finite,
        };
        Checkpoint { meta, tensors }
    }
}

/// Copies the checkpoint's parameters into `params` (name, tensor or view), shapes checked.
pub(crate) fn restore_params(ck: &Checkpoint, params: impl IntoIterator<Item = (String, Tensor)>) -> Result<()> {
    tch::no_grad(|| {
        for (name, mut var) in params {
            let src = ck.tensor(&format!("param.{name}"))?;
            if src.size() != var.size() || src.kind() != var.kind() {
                bail!("checkpoint's {name} is {:?} {:?}, the model's {:?} {:?}", src.kind(), src.size(), var.kind(), var.size());
            }
            var.copy_(src);
        }
        Ok(())
    })
}

/// The CPU generator's state a checkpoint holds.
pub(crate) fn checkpoint_rng(ck: &Checkpoint) -> Result<Vec<u8>> {
    Ok(Vec::try_from(ck.tensor("rng.cpu")?.to_kind(Kind::Uint8))?)
}

/// Trains from the start, or from `resume`, until the configured iterations are done, a stop is
/// asked for, or the loss diverges.
pub fn train(ctx: &TrainContext, resume: Option<&Checkpoint>, obs: &mut dyn Observer) -> Result<TrainOutcome> {
    let cfg = ctx.cfg;
    let _denormals = DenormalMode::enter(cfg.flush_denormals)?;
    let (train, test) = (&ctx.data.train, &ctx.data.test);
    let device = train.images.device();
    let mut opt = Optim::new(cfg, ctx.vs)?;
    let mut st = match resume {
        None => LoopState::fresh(cfg, train.len() as usize, device),
        Some(ck) => LoopState::restore(ck, ctx.vs, &mut opt, train.len() as usize, device)?,
    };
    let (mut graph, no_graph) = graph_for(cfg, device, ctx.allow_graph, cfg.iterations - st.next);
    if let (Some(why), false) = (no_graph, ctx.quiet) {
        crate::say!("note: training steps run one by one, not as a CUDA graph: {why}");
    }
    if let (Some(note), false) = (cfg.warmup_note(), ctx.quiet) {
        crate::say!("note: {note}");
    }
    let capture_at = st.next + GRAPH_WARMUP;
    let mut profiler = StepProfiler::plan(ctx.profile_steps, capture_at + 1, cfg, device, profile_about(cfg, device, graph.is_some(), 1), ctx.quiet);
    let mut profile = None;
    let bs = cfg.batch_size as i64;
    let per_chunk = plan_iters(cfg);
    let mut plan: Option<Tensor> = None;
    // The batch's indices and labels live in one fixed buffer, which a captured graph reads.
    let mut batch = Tensor::zeros([2, bs], (Kind::Int64, device));
    let started = Instant::now();
    let earlier_seconds = st.train_seconds;
    let seconds = |started: &Instant| earlier_seconds + started.elapsed().as_secs_f64();
    let mut ending = Ending::Finished;
    let mut closed_at = None;
    // The MLP on two CPU threads or more evaluates on a thread of its own, beside the steps.
    let mut beside = OverlappedEval::wanted(cfg, device, profiler.is_some()).then(|| OverlappedEval::start(cfg, ctx.vs, test)).transpose()?;
    crate::signals::stop_in_good_order();
    for i in st.next..cfg.iterations {
        if let Some(signal) = obs.stop_requested() {
            st.next = i;
            if let Some(end) = settle(beside.as_mut(), &mut st, obs, cfg.allow_nan)? {
                ending = end;
                break;
            }
            let t = *closed_at.insert(seconds(&started));
            obs.on_checkpoint(&st.checkpoint(ctx, &opt, t, device))?;
            ending = Ending::Interrupted { signal, next_iteration: i };
            break;
        }
        if let Some(worker) = beside.as_mut() {
            worker.lend_idle_threads();
        }
        if let Some(p) = profiler.as_mut() {
            p.before_step(i);
        }
        let planned = match &mut plan {
            Some(planned) if i % per_chunk != 0 => planned,
            slot => slot.insert(plan_batches(&Tensor::from_slice(&st.draw_chunk(i, cfg)).view([-1, bs]), &train.labels)),
        };
        if !matches!(cfg.schedule, Schedule::Constant {}) {
            opt.set_lr(cfg.lr_at(i));
        }
        batch.copy_(&planned.get((i - st.chunk_start) as i64));
        let loss = match graph.as_mut() {
            Some(g) if g.is_captured() => {
                g.replay()?;
                None
            }
            Some(g) if i == capture_at => {
                // Nothing else runs on the device while the step is captured.
                if let Some(end) = settle(beside.as_mut(), &mut st, obs, cfg.allow_nan)? {
                    ending = end;
                    break;
                }
                // Invariant for replay: zero_grad sets the gradients to None, so the captured
                // backward allocates (from the graph's pool) and writes fresh gradients each
                // replay instead of accumulating; the learning rate is a host constant.
                opt.zero_grad();
                g.capture(|| {
                    let _ = step(ctx.net, &mut opt, cfg, train, &batch, &mut st.sums);
                })?;
                g.replay()?;
                None
            }
            _ => {
                opt.zero_grad();
                Some(step(ctx.net, &mut opt, cfg, train, &batch, &mut st.sums))
            }
        };
        // On the CPU every step's loss is checked (reading it costs nothing); on CUDA only at
        // evaluation points, to keep the device busy.
        if let (Some(loss), false) = (loss, device.is_cuda()) {
            let value = loss.double_value(&[]);
            obs.on_loss(i, value);
            if value.is_finite() {
                st.last_finite = Some((i, value));
            } else if !cfg.allow_nan {
                ending = Ending::Diverged { iteration: i, exact: true, last_finite: st.last_finite, in_test_loss: false };
                break;
            }
        }
        if let Some(p) = profiler.as_mut() {
            profile = p.after_step(i).or(profile);
        }
        st.since_eval += 1;
        if cfg.is_eval_point(i) {
            if let Device::Cuda(d) = device {
                tch::Cuda::synchronize(d as i64);
            }
            let point = EvalPoint {
                iteration: i,
                train_loss: st.sums.loss.double_value(&[]) / st.since_eval as f64,
                train_accuracy: st.sums.correct_total().double_value(&[]) / (st.since_eval * cfg.batch_size) as f64,
                test_loss: f64::NAN,
                test_accuracy: f64::NAN,
            };
            if !point.train_loss.is_finite() && !cfg.allow_nan {
                ending = Ending::Diverged { iteration: i, exact: !device.is_cuda(), last_finite: st.last_finite, in_test_loss: false };
                break;
            }
            match beside.as_mut() {
                Some(worker) => {
                    // The previous point first: the worker's copy of the weights is then free.
                    if let Some(end) = settle(Some(&mut *worker), &mut st, obs, cfg.allow_nan)? {
                        ending = end;
                        break;
                    }
                    worker.submit(point)?;
                }
                None => {
                    let eval_start = Instant::now();
                    let (test_loss, test_accuracy) = evaluate(ctx.net, test, cfg.eval_chunk(device));
                    if let Some(end) = record(&mut st, obs, EvalPoint { test_loss, test_accuracy, ..point }, eval_start.elapsed().as_secs_f64(), cfg.allow_nan)? {
                        ending = end;
                        break;
                    }
                }
            }
            let _ = st.sums.loss.zero_();
            let _ = st.sums.correct.zero_();
            st.since_eval = 0;
        }
        obs.on_step(i + 1);
        st.next = i + 1;
        if st.next == cfg.iterations || obs.checkpoint_due(st.next) {
            if let Device::Cuda(d) = device {
                tch::Cuda::synchronize(d as i64);
            }
            // A checkpoint holds every evaluation up to its iteration.
            if let Some(end) = settle(beside.as_mut(), &mut st, obs, cfg.allow_nan)? {
                ending = end;
                break;
            }
            let t = seconds(&started);
            if st.next == cfg.iterations {
                closed_at = Some(t);
            }
            obs.on_checkpoint(&st.checkpoint(ctx, &opt, t, device))?;
        }
    }
    // A run that diverged between two evaluations still records the earlier one.
    if let Some(end) = settle(beside.as_mut(), &mut st, obs, cfg.allow_nan)? {
        ending = end;
    }
    let eval_overlap = beside.is_some();
    let eval_threads_lent = beside.as_ref().is_some_and(OverlappedEval::lends);
    drop(beside);
    let cuda_graph = graph.as_ref().is_some_and(StepGraph::is_captured);
    drop(graph);
    let train_seconds = closed_at.unwrap_or_else(|| seconds(&started));
    Ok(TrainOutcome { points: st.points, train_seconds, eval_seconds: st.eval_seconds, eval_overlap, eval_threads_lent, cuda_graph, pack: None, ending, profile })
}

/// An evaluation point is complete: the observer sees it and the loop keeps it.
/// A NaN or infinite test loss (the logits overflowed; the training loss may still be finite)
/// ends the run as a diverged one, unless `allow_nan`, and the point is not recorded.
fn record(st: &mut LoopState, obs: &mut dyn Observer, point: EvalPoint, seconds: f64, allow_nan: bool) -> Result<Option<Ending>> {
    st.eval_seconds += seconds;
    if let Some(end) = diverged_in_test_loss(&point, allow_nan, st.last_finite) {
        return Ok(Some(end));
    }
    obs.on_eval(&point)?;
    st.points.push(point);
    Ok(None)
}

/// The divergence a point's non-finite test loss means, unless `allow_nan`.
pub(crate) fn diverged_in_test_loss(point: &EvalPoint, allow_nan: bool, last_finite: Option<(usize, f64)>) -> Option<Ending> {
    (!point.test_loss.is_finite() && !allow_nan).then_some(Ending::Diverged { iteration: point.iteration, exact: true, last_finite, in_test_loss: true })
}

/// Records the evaluation running beside the steps, if any, once it is done (`record`).
fn settle(beside: Option<&mut OverlappedEval>, st: &mut LoopState, obs: &mut dyn Observer, allow_nan: bool) -> Result<Option<Ending>> {
    match beside.map(OverlappedEval::take).transpose()?.flatten() {
        Some((point, seconds)) => record(st, obs, point, seconds, allow_nan),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::{plan_batches, random_shift};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn planned_batches_carry_their_own_labels() {
        let labels = Tensor::from_slice(&[7i64, 3, 9, 1, 4]);
        // Two iterations of two members' batches of two: [n, M, B] -> [n, 2, M, B].
        let indices = Tensor::from_slice(&[4i64, 0, 2, 2, 1, 3, 0, 4]).view([2, 2, 2]);
        let plan = plan_batches(&indices, &labels);
        assert_eq!(plan.size(), [2, 2, 2, 2]);
        assert!(plan.select(1, 0).equal(&indices));
        let expected = Tensor::from_slice(&[4i64, 7, 9, 9, 3, 1, 7, 4]).view([2, 2, 2]);
        assert!(plan.select(1, 1).equal(&expected), "{:?}", Vec::<i64>::try_from(plan.select(1, 1).view([-1])).unwrap());
    }

    #[test]
    fn shift_zero_is_the_identity() {
        let images = Tensor::rand([5, 784], (Kind::Float, Device::Cpu));
        assert!(random_shift(&images, 0).equal(&images));
    }

    #[test]
    fn a_single_lit_pixel_moves_by_the_drawn_offset() {
        tch::set_num_threads(1);
        // One lit pixel in the middle of each image; after a shift of up to 2 it sits within
        // 2 rows and 2 columns of (14, 14), still alone and still 1.0, and the offsets vary.
        let n = 64;
        let images = Tensor::zeros([n, 28, 28], (Kind::Float, Device::Cpu));
        let _ = images.narrow(1, 14, 1).narrow(2, 14, 1).fill_(1.0);
        let shifted = random_shift(&images.view([n, 784]), 2).view([n, 28, 28]);
        let mut offsets = std::collections::HashSet::new();
        for i in 0..n {
            let img = shifted.get(i);
            assert_eq!(img.sum(Kind::Float).double_value(&[]), 1.0, "image {i} keeps exactly one lit pixel");
            let at = img.flatten(0, -1).argmax(0, false).int64_value(&[]);
            let (r, c) = (at / 28, at % 28);
            assert!((12..=16).contains(&r) && (12..=16).contains(&c), "image {i}: pixel moved to ({r}, {c})");
            offsets.insert((r - 14, c - 14));
        }
        assert!(offsets.len() > 10, "offsets are drawn per image: {offsets:?}");
    }
}
