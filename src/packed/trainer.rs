//! The training loop of a pack: the single loop (`crate::trainer`) for M members at once. Each
//! member keeps its own position (batch order, running sums, evaluations) as a `LoopState`, so
//! its checkpoints are a single run's and `nndl resume` continues any member alone. A member
//! whose loss goes NaN or infinite is stopped (its learning rate set to 0) and the rest go on.
use super::net::{log_likelihood_and_hits, Input, PackedNet};
use super::optim::PackedOptim;
use super::rngs::MemberRngs;
use super::{Arrangement, PackInfo};
use crate::checkpoint::Checkpoint;
use crate::config::{Dropout, ModelKind, Optimizer, Schedule, TrainConfig};
use crate::cuda_graph::SideStream;
use crate::data::{DeviceData, DeviceSplit};
use crate::metrics::EvalPoint;
use crate::profile::StepProfiler;
use crate::torch_extras::DenormalMode;
use crate::trainer::{checkpoint_rng, graph_for, plan_batches, plan_iters, profile_about, random_shift, restore_params, Ending, LoopState, Observer, TrainOutcome, TrainSums, GRAPH_WARMUP};
use anyhow::{bail, Result};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Width of the CNN's dropout layer (fc1's outputs).
const DROPOUT_WIDTH: i64 = 1024;

pub struct PackContext<'a> {
    pub net: &'a PackedNet,
    /// One config per member: equal but for seed and learning rate.
    pub cfgs: &'a [TrainConfig],
    pub data: &'a DeviceData,
    pub allow_graph: bool,
    pub quiet: bool,
    /// `--profile-steps`: record this many steps with libtorch's profiler.
    pub profile_steps: Option<usize>,
}

/// Where a member starts: its generator state after its initialisation, or its checkpoint.
pub enum MemberStart<'a> {
    Fresh { rng: Vec<u8> },
    Resume(&'a Checkpoint),
}

struct Member {
    st: LoopState,
    /// Why the member stopped before the others (diverged, or its files failed).
    stopped: Option<Ending>,
}

impl Member {
    fn active(&self) -> bool {
        self.stopped.is_none()
    }
}

/// Trains every member until the iterations are done or a stop is asked for; `obs[m]` watches
/// member m (the first member still training keeps the checkpoint clock for all).
pub fn train_packed(ctx: &PackContext, starts: &[MemberStart], obs: &mut [&mut dyn Observer]) -> Result<Vec<TrainOutcome>> {
    let cfg = &ctx.cfgs[0];
    // Per thread: a sub-pack's thread sets its own.
    let _denormals = DenormalMode::enter(cfg.flush_denormals)?;
    let net = ctx.net;
    let m_count = net.members;
    let (train, test) = (&ctx.data.train, &ctx.data.test);
    let device = train.images.device();
    let mut opt = PackedOptim::new(cfg.optimizer, &net.leaves, m_count, device);
    let bs = cfg.batch_size as i64;
    // Member m's sums are row m: its loss, and its correct predictions by batch position.
    let sums = TrainSums { loss: Tensor::zeros([m_count], (Kind::Float, device)), correct: Tensor::zeros([m_count, bs], (Kind::Int64, device)) };
    let mut rng_states = Vec::new();
    let mut members = Vec::new();
    for (m, start) in starts.iter().enumerate() {
        let mut st = match start {
            MemberStart::Fresh { rng } => {
                rng_states.push(rng.clone());
                LoopState::fresh(&ctx.cfgs[m], train.len() as usize, device)
            }
            MemberStart::Resume(ck) => {
                restore_member(ctx, &mut opt, m as i64, ck)?;
                rng_states.push(checkpoint_rng(ck)?);
                LoopState::position_from(ck, train.len() as usize, device)?
            }
        };
        // The member's running sums become views of the pack's.
        tch::no_grad(|| {
            sums.loss.get(m as i64).copy_(&st.sums.loss);
            sums.correct.get(m as i64).copy_(&st.sums.correct);
        });
        st.sums = TrainSums { loss: sums.loss.get(m as i64), correct: sums.correct.get(m as i64) };
        members.push(Member { st, stopped: None });
    }
    let first = members[0].st.next;
    if members.iter().any(|mb| mb.st.next != first || mb.st.since_eval != members[0].st.since_eval) {
        bail!("a pack's members must stand at the same iteration");
    }
    let mut rngs = MemberRngs::new(device, rng_states);
    let (mut graph, no_graph) = graph_for(cfg, device, ctx.allow_graph, cfg.iterations - first);
    if let (Some(why), false) = (no_graph, ctx.quiet) {
        crate::say!("note: training steps run one by one, not as a CUDA graph: {why}");
    }
    if let (Some(note), false) = (cfg.warmup_note(), ctx.quiet) {
        crate::say!("note: {note}");
    }
    let capture_at = first + GRAPH_WARMUP;
    let about = profile_about(cfg, device, graph.is_some(), m_count);
    let mut profiler = StepProfiler::plan(ctx.profile_steps, capture_at + 1, cfg, device, about, ctx.quiet);
    let mut profile = None;
    let per_chunk = plan_iters(cfg);
    let mut plan: Option<Tensor> = None;
    // Every member's batch indices and labels ([2, M, B]), in the buffer a captured graph reads.
    let mut batch = Tensor::zeros([2, m_count, bs], (Kind::Int64, device));
    let lrs_at = |i: usize, members: &[Member]| -> Vec<f64> {
        ctx.cfgs.iter().zip(members).map(|(c, mb)| if mb.active() { c.lr_at(i) } else { 0.0 }).collect()
    };
    opt.set_lrs(&lrs_at(first, &members));
    let started = Instant::now();
    let earlier_seconds = members[0].st.train_seconds;
    let seconds = |started: &Instant| earlier_seconds + started.elapsed().as_secs_f64();
    let mut interrupted = None;
    // The loop's time ends with the last step; the checkpoint that closes the session follows.
    let mut closed_at = None;
    let branches = unit_branches(net, device, ctx.quiet);
    let mut step_ctx = StepParts { net, cfg, train, rngs: &mut rngs, sums: &sums, branches: branches.as_deref() };
    crate::signals::stop_in_good_order();
    for i in first..cfg.iterations {
        if let Some(signal) = obs[0].stop_requested() {
            let t = *closed_at.insert(seconds(&started));
            checkpoint_all(ctx, &mut members, &opt, step_ctx.rngs, t, obs, device);
            interrupted = Some((signal, i));
            break;
        }
        if let Some(p) = profiler.as_mut() {
            p.before_step(i);
        }
        let planned = match &mut plan {
            Some(planned) if i % per_chunk != 0 => planned,
            slot => {
                let chunks: Vec<i64> = members.iter_mut().flat_map(|mb| mb.st.draw_chunk(i, &ctx.cfgs[0])).collect();
                let n = chunks.len() as i64 / (m_count * bs);
                slot.insert(plan_batches(&Tensor::from_slice(&chunks).view([m_count, n, bs]).transpose(0, 1).contiguous(), &train.labels))
            }
        };
        // Adam's bias correction changes every step, a schedule's rate too.
        if cfg.optimizer == Optimizer::Adam || !matches!(cfg.schedule, Schedule::Constant {}) {
            opt.set_lrs(&lrs_at(i, &members));
        }
        batch.copy_(&planned.get((i - members[0].st.chunk_start) as i64));
        let losses = match graph.as_mut() {
            Some(g) if g.is_captured() => {
                g.replay()?;
                None
            }
            Some(g) if i == capture_at => {
                let mut failed = None;
                g.capture(|| {
                    if let Err(e) = step_ctx.step(&mut opt, &batch) {
                        failed = Some(e);
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                g.replay()?;
                None
            }
            _ => Some(step_ctx.step(&mut opt, &batch)?),
        };
        // On the CPU every step's losses are checked; on CUDA only at evaluation points.
        let mut newly_stopped = false;
        if let (Some(losses), false) = (losses, device.is_cuda()) {
            let values: Vec<f64> = Vec::try_from(losses.to_kind(Kind::Double))?;
            for (m, mb) in members.iter_mut().enumerate().filter(|(_, mb)| mb.active()) {
                obs[m].on_loss(i, values[m]);
                if values[m].is_finite() {
                    mb.st.last_finite = Some((i, values[m]));
                } else if !ctx.cfgs[m].allow_nan {
                    mb.stopped = Some(Ending::Diverged { iteration: i, exact: true, last_finite: mb.st.last_finite, in_test_loss: false });
                    newly_stopped = true;
                }
            }
        }
        if let Some(p) = profiler.as_mut() {
            profile = p.after_step(i).or(profile);
        }
        for mb in members.iter_mut() {
            mb.st.since_eval += 1;
        }
        if cfg.is_eval_point(i) {
            if let Device::Cuda(d) = device {
                tch::Cuda::synchronize(d as i64);
            }
            let eval_start = Instant::now();
            let results = evaluate_packed(net, test, cfg.eval_chunk(device), cfg.dropout, step_ctx.rngs)?;
            let eval_seconds = eval_start.elapsed().as_secs_f64();
            let train_loss: Vec<f64> = Vec::try_from(sums.loss.to_kind(Kind::Double))?;
            let train_correct: Vec<f64> = Vec::try_from(sums.correct.sum_dim_intlist(1, false, Kind::Double))?;
            for (m, mb) in members.iter_mut().enumerate() {
                mb.st.eval_seconds += eval_seconds;
                if !mb.active() {
                    continue;
                }
                let since = mb.st.since_eval as f64;
                let point = EvalPoint {
                    iteration: i,
                    train_loss: train_loss[m] / since,
                    train_accuracy: train_correct[m] / (since * bs as f64),
                    test_loss: results[m].0,
                    test_accuracy: results[m].1,
                };
                if !point.train_loss.is_finite() && !ctx.cfgs[m].allow_nan {
                    mb.stopped = Some(Ending::Diverged { iteration: i, exact: !device.is_cuda(), last_finite: mb.st.last_finite, in_test_loss: false });
                    newly_stopped = true;
                    continue;
                }
                if let Some(end) = crate::trainer::diverged_in_test_loss(&point, ctx.cfgs[m].allow_nan, mb.st.last_finite) {
                    mb.stopped = Some(end);
                    newly_stopped = true;
                    continue;
                }
                match obs[m].on_eval(&point) {
                    Ok(()) => mb.st.points.push(point),
                    Err(e) => {
                        mb.stopped = Some(Ending::Failed(format!("{e:#}")));
                        newly_stopped = true;
                    }
                }
            }
            let _ = sums.loss.shallow_clone().zero_();
            let _ = sums.correct.shallow_clone().zero_();
            members.iter_mut().for_each(|mb| mb.st.since_eval = 0);
        }
        if newly_stopped {
            // A stopped member's parameters stay as they are; the others' steps do not see it.
            opt.set_lrs(&lrs_at(i + 1, &members));
        }
        for (m, mb) in members.iter_mut().enumerate() {
            mb.st.next = i + 1;
            if mb.active() {
                obs[m].on_step(i + 1);
            }
        }
        if members.iter().all(|mb| !mb.active()) {
            break;
        }
        // The first member still training keeps the checkpoint clock (a stopped one's stands still).
        let lead = members.iter().position(Member::active).unwrap_or(0);
        if i + 1 == cfg.iterations || obs[lead].checkpoint_due(i + 1) {
            if let Device::Cuda(d) = device {
                tch::Cuda::synchronize(d as i64);
            }
            let t = seconds(&started);
            if i + 1 == cfg.iterations {
                closed_at = Some(t);
            }
            if checkpoint_all(ctx, &mut members, &opt, step_ctx.rngs, t, obs, device) {
                if members.iter().all(|mb| !mb.active()) {
                    break;
                }
                opt.set_lrs(&lrs_at(i + 1, &members));
            }
        }
    }
    let cuda_graph = graph.as_ref().is_some_and(|g| g.is_captured());
    drop(graph);
    let stacks = net.stacked && net.spans.len() > 1;
    let arrangement = match (net.stacked, stacks, net.weights_in_out()) {
        (true, true, true) => Arrangement::StacksInOut,
        (true, true, false) => Arrangement::Stacks,
        (true, false, true) => Arrangement::StackedInOut,
        (true, false, false) => Arrangement::Stacked,
        (false, ..) if branches.is_some() => Arrangement::Streams,
        (false, ..) => Arrangement::InTurn,
    };
    let pack = PackInfo { members: m_count as usize, arrangement, stack: stacks.then(|| net.spans[0].count as usize) };
    let train_seconds = closed_at.unwrap_or_else(|| seconds(&started));
    Ok(members.into_iter().map(|mb| {
        let ending = match (mb.stopped, interrupted) {
            (Some(d), _) => d,
            (None, Some((signal, next_iteration))) => Ending::Interrupted { signal, next_iteration },
            (None, None) => Ending::Finished,
        };
        TrainOutcome { points: mb.st.points, train_seconds, eval_seconds: mb.st.eval_seconds, eval_overlap: false, eval_threads_lent: false, cuda_graph, pack: Some(pack.clone()), ending, profile: profile.clone() }
    }).collect())
}

/// Puts member m's parameters and moments back as its checkpoint has them.
fn restore_member(ctx: &PackContext, opt: &mut PackedOptim, m: i64, ck: &Checkpoint) -> Result<()> {
    let device = ctx.data.train.images.device();
    restore_params(ck, ctx.net.member(m))?;
    opt.restore_member(&ctx.net.leaves, m, |key| Ok(ck.tensor(key)?.to_device(device)), ck.meta.adam_step)
}

/// Every active member's checkpoint, handed to its observer. A member whose checkpoint cannot
/// be written (its folder's disk full, say) stops there, as a diverged one does, and the others
/// go on; whether any stopped.
fn checkpoint_all(ctx: &PackContext, members: &mut [Member], opt: &PackedOptim, rngs: &MemberRngs, seconds: f64, obs: &mut [&mut dyn Observer], device: Device) -> bool {
    let mut stopped = false;
    for (m, mb) in members.iter_mut().enumerate().filter(|(_, mb)| mb.active()) {
        let mi = m as i64;
        let ck = mb.st.checkpoint_of(&ctx.cfgs[m], ctx.net.member(mi), opt.member_state(&ctx.net.leaves, mi), rngs.state(m), seconds, device);
        if let Err(e) = obs[m].on_checkpoint(&ck) {
            mb.stopped = Some(Ending::Failed(format!("{e:#}")));
            stopped = true;
        }
    }
    stopped
}

/// On CUDA, a pack's streams, one per unit of its step (each member of a member-by-member pack,
/// or each stack: see `super::stacked_on`, `super::stack_size`); None for a single stack or off
/// CUDA, or with a note when they cannot be made.
fn unit_branches(net: &PackedNet, device: Device, quiet: bool) -> Option<Vec<SideStream>> {
    let Device::Cuda(index) = device else { return None };
    if net.spans.len() < 2 {
        return None;
    }
    match net.spans.iter().map(|_| SideStream::new(index)).collect::<Result<Vec<_>>>() {
        Ok(streams) => Some(streams),
        Err(e) => {
            if !quiet {
                crate::say!("note: the pack's members run one after another, not on streams of their own: {e:#}");
            }
            None
        }
    }
}

/// What one packed step reads and updates besides the optimizer.
struct StepParts<'a> {
    net: &'a PackedNet,
    cfg: &'a TrainConfig,
    train: &'a DeviceSplit,
    rngs: &'a mut MemberRngs,
    sums: &'a TrainSums,
    /// One stream per unit (`PackedNet::spans`): each unit's step in a branch of its own.
    branches: Option<&'a [SideStream]>,
}

impl StepParts<'_> {
    /// One step of every member on its batch (`batch` [2, M, B]: indices, then their labels);
    /// returns the losses [M].
    fn step(&mut self, opt: &mut PackedOptim, batch: &Tensor) -> Result<Tensor> {
        let (m, b) = (self.net.members, batch.size()[2]);
        let ys = batch.get(1);
        let mut xs = self.train.images.index_select(0, &batch.get(0).view([-1])).view([m, b, 784]);
        if self.cfg.augment_shift > 0 {
            let shifted: Vec<Tensor> = (0..m).map(|k| self.rngs.with(k as usize, || random_shift(&xs.get(k), self.cfg.augment_shift))).collect::<Result<_>>()?;
            xs = Tensor::stack(&shifted, 0);
        }
        let noise = match self.cfg.dropout {
            Dropout::KeepProb { keep_prob, .. } => Some(self.rngs.dropout_noise(m, b, DROPOUT_WIDTH, keep_prob, xs.device())?),
            Dropout::None {} => None,
        };
        opt.begin_step();
        // Unit by unit (the whole stack, each stack, or each member): forward, backward and
        // update of one unit at a time, so that its parameters and gradients stay in cache (a
        // member's as in its single run); on CUDA with branches, each unit on its own stream,
        // all side by side.
        let mut parts = Vec::new();
        for (k, &span) in self.net.spans.iter().enumerate() {
            let mut unit_step = || {
                let logits = self.net.unit_logits(span, &Input::PerMember(&xs), noise.as_ref());
                let (likelihood, hits) = log_likelihood_and_hits(&logits, &ys.narrow(0, span.first, span.count), !self.net.stacked);
                let loss = likelihood / -(b as f64);
                self.backward_and_update(opt, &loss, &self.net.unit_leaves(span));
                (loss.detach(), hits)
            };
            parts.push(match self.branches {
                Some(streams) => streams[k].branch(unit_step)?,
                None => unit_step(),
            });
        }
        for stream in self.branches.unwrap_or_default() {
            stream.join()?;
        }
        let (losses, hits) = match parts.len() {
            1 => parts.remove(0),
            _ => {
                let (losses, hits): (Vec<Tensor>, Vec<Tensor>) = parts.into_iter().unzip();
                (Tensor::cat(&losses, 0), Tensor::cat(&hits, 0))
            }
        };
        tch::no_grad(|| {
            let _ = self.sums.loss.shallow_clone().g_add_(&losses.detach());
            let _ = self.sums.correct.shallow_clone().g_add_(&hits);
        });
        Ok(losses.detach())
    }

    /// Gradients of the summed `losses` for the leaves `which`, and their update.
    fn backward_and_update(&self, opt: &mut PackedOptim, losses: &Tensor, which: &[usize]) {
        let leaves: Vec<&Tensor> = which.iter().map(|&i| &self.net.leaves[i].tensor).collect();
        let grads = Tensor::run_backward(&[losses.sum(Kind::Float)], &leaves, false, false);
        opt.update(&self.net.leaves, which, &grads);
    }
}

/// Every member's mean test loss and accuracy. The images are shared, so the first layer runs
/// once for all members. Dropout at evaluation (the faithful CNN) draws each member's masks in
/// the single run's chunks.
fn evaluate_packed(net: &PackedNet, split: &DeviceSplit, chunk: i64, dropout: Dropout, rngs: &mut MemberRngs) -> Result<Vec<(f64, f64)>> {
    tch::no_grad(|| {
        let m = net.members;
        let device = split.images.device();
        let mut loss = Tensor::zeros([m], (Kind::Float, device));
        let mut correct = Tensor::zeros([m], (Kind::Int64, device));
        let n = split.len();
        // Stacked, the CNN's members take the chunk in sub-chunks (its activations are about
        // 100 KB an image and member, so memory stays a single run's); the MLP's are 2 KB, so
        // all its members take whole chunks: ten times fewer, larger kernels.
        let sub = if net.stacked && net.model == ModelKind::Cnn { (chunk / m).max(1) } else { chunk };
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let noise = match dropout {
                Dropout::KeepProb { keep_prob, in_eval: true } => Some(rngs.dropout_noise(m, len, DROPOUT_WIDTH, keep_prob, device)?),
                _ => None,
            };
            let mut at = 0;
            while at < len {
                let l = sub.min(len - at);
                let images = split.images.narrow(0, start + at, l);
                let logits = net.forward(Input::Shared(&images), noise.as_ref().map(|t| t.narrow(1, at, l)).as_ref());
                let (likelihood, hits) = log_likelihood_and_hits(&logits, &split.labels.narrow(0, start + at, l), !net.stacked);
                loss -= likelihood;
                correct += hits.sum_dim_intlist(1, false, Kind::Int64);
                at += l;
            }
            start += len;
        }
        let loss: Vec<f64> = Vec::try_from(loss.to_kind(Kind::Double))?;
        let correct: Vec<f64> = Vec::try_from(correct.to_kind(Kind::Double))?;
        Ok(loss.iter().zip(&correct).map(|(l, c)| (l / n as f64, c / n as f64)).collect())
    })
}
