//! Evaluations beside the training steps, for the MLP on the CPU with two threads or more. At
//! an evaluation point the loop copies the weights into a second network and trains on while a
//! worker thread evaluates that copy; it takes the result before its next evaluation, any
//! checkpoint and its end, so metrics.csv, checkpoints and resume hold what an inline
//! evaluation gives them.
//!
//! The MLP's steps are small products (100 images) that gain little from a second thread, while
//! its evaluations (10,000 test images every 50 steps, 40% of its FLOPs) run about as well on one
//! core. So each side gets half the threads. On two threads a run then computes exactly what a
//! one-thread run does (each side's sums on one thread). An evaluation takes about 60% of the
//! time between two evaluation points here; for the rest the worker waits, and the steps take
//! its threads too, where a step computes the same bits on all the threads as on the loop's
//! half (checked at start; at 100 images here it does, at 1000 it does not). NNDL_EVAL_OVERLAP=off
//! evaluates inline, `fixed` keeps each side to its half, for A/B runs.
//!
//! Not on CUDA: the same evaluation on a second stream, beside the steps' graph replays, took
//! 1.02x the inline loop on an H200 for either net (the steps already keep the GPU busy); its
//! code is in commit 19de534.
use crate::config::{ModelKind, TrainConfig};
use crate::data::DeviceSplit;
use crate::metrics::EvalPoint;
use crate::run::{parameters, Network};
use crate::torch_extras::{cpu_rng_state, set_cpu_rng_state, DenormalMode};
use crate::trainer::evaluate;
use anyhow::{anyhow, ensure, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

/// The worker thread's answer: (test loss, test accuracy, seconds the evaluation took).
type Evaluated = Result<(f64, f64, f64), String>;

pub struct OverlappedEval {
    /// (the evaluated copy's parameter, the training parameter it copies), by parameter name.
    copies: Vec<(Tensor, Tensor)>,
    worker: Worker,
    /// The point whose test half is being computed.
    pending: Option<EvalPoint>,
    /// Whether the loop may take the worker's threads while it has nothing to evaluate.
    lend: bool,
    /// Whether the loop holds them now.
    lent: bool,
}

struct Worker {
    jobs: Option<Sender<()>>,
    results: Receiver<Evaluated>,
    thread: Option<JoinHandle<()>>,
    /// The loop thread's libtorch threads before the split, given back on drop.
    threads: i32,
    /// The loop's share of them while the worker evaluates.
    loop_threads: i32,
    /// Set by the worker when it has answered and waits for the next evaluation.
    idle: Arc<AtomicBool>,
}

impl OverlappedEval {
    /// Whether this run evaluates beside its steps: the MLP on the CPU with two threads or more,
    /// unless NNDL_EVAL_OVERLAP=off; not while `--profile-steps` records (its window would hold
    /// the evaluation's operators).
    pub fn wanted(cfg: &TrainConfig, device: Device, profiling: bool) -> bool {
        !profiling
            && device == Device::Cpu
            && cfg.model == ModelKind::Mlp
            && tch::get_num_threads() >= 2
            && std::env::var("NNDL_EVAL_OVERLAP").as_deref() != Ok("off")
    }

    /// Builds the copy of the network, and the thread that evaluates it.
    pub fn start(cfg: &TrainConfig, vs: &nn::VarStore, test: &DeviceSplit) -> Result<OverlappedEval> {
        let copy = network_copy(cfg)?;
        let (theirs, ours) = (parameters(&copy.vs), parameters(vs));
        ensure!(theirs.iter().map(|p| &p.0).eq(ours.iter().map(|p| &p.0)), "the evaluation copy has other parameters than the network");
        let copies: Vec<(Tensor, Tensor)> = theirs.into_iter().zip(ours).map(|((_, dst), (_, src))| (dst, src)).collect();
        copy_weights(&copies);
        let all = tch::get_num_threads();
        let lend = std::env::var("NNDL_EVAL_OVERLAP").as_deref() != Ok("fixed")
            && steps_agree_across_threads(&copy, test, cfg.batch_size as i64, all - all / 2, all);
        let worker = Worker::start(copy, test.shallow_clone(), cfg.eval_chunk(Device::Cpu), cfg.flush_denormals)?;
        Ok(OverlappedEval { copies, worker, pending: None, lend, lent: false })
    }

    /// Starts evaluating the current weights for `point` (its test half is filled in by `take`).
    /// The previous point must have been taken.
    pub fn submit(&mut self, point: EvalPoint) -> Result<()> {
        ensure!(self.pending.is_none(), "an evaluation is still running");
        if self.lent {
            tch::set_num_threads(self.worker.loop_threads);
            self.lent = false;
        }
        copy_weights(&self.copies);
        self.worker.submit()?;
        self.pending = Some(point);
        Ok(())
    }

    /// Whether the loop takes the worker's threads while it has nothing to evaluate.
    pub fn lends(&self) -> bool {
        self.lend
    }

    /// Before a step: while the worker has nothing to evaluate, the loop's steps take all the
    /// threads.
    pub fn lend_idle_threads(&mut self) {
        if self.lend && !self.lent && self.worker.idle.load(Ordering::Acquire) {
            tch::set_num_threads(self.worker.threads);
            self.lent = true;
        }
    }

    /// The submitted point with its test loss and accuracy, and the seconds its evaluation
    /// took (waiting for it if it still runs); None when nothing is pending.
    pub fn take(&mut self) -> Result<Option<(EvalPoint, f64)>> {
        let Some(mut point) = self.pending.take() else { return Ok(None) };
        let answer = self.worker.results.recv().map_err(|_| anyhow!("the evaluation thread stopped"))?;
        let (loss, accuracy, seconds) = answer.map_err(|e| anyhow!(e))?;
        point.test_loss = loss;
        point.test_accuracy = accuracy;
        Ok(Some((point, seconds)))
    }
}

/// Copies each training parameter into the evaluated copy's (pairs of (copy's, training's)).
fn copy_weights(copies: &[(Tensor, Tensor)]) {
    tch::no_grad(|| copies.iter().for_each(|(dst, src)| dst.shallow_clone().copy_(src)));
}

/// Whether a step's forward and backward (the copy's, on a batch of test images) give the same
/// bits on `few` threads as on `all`. MKL and libtorch split their work by the thread count and
/// nothing promises that they then sum alike; the loop takes the idle worker's threads only
/// where they do, since when it takes them depends on timing. Leaves `all` set.
fn steps_agree_across_threads(copy: &Network, test: &DeviceSplit, rows: i64, few: i32, all: i32) -> bool {
    let rows = rows.min(test.len());
    let (xs, ys) = (test.images.narrow(0, 0, rows), test.labels.narrow(0, 0, rows));
    let params = copy.vs.trainable_variables();
    let step_on = |threads: i32| -> Vec<Tensor> {
        tch::set_num_threads(threads);
        let loss = copy.net.forward_t(&xs, true).cross_entropy_for_logits(&ys);
        loss.backward();
        let mut out = vec![loss.detach()];
        for p in &params {
            let mut grad = p.grad();
            out.push(grad.copy());
            let _ = grad.zero_();
        }
        out
    };
    let (on_few, on_all) = (step_on(few), step_on(all));
    on_few.iter().zip(&on_all).all(|(a, b)| a.equal(b))
}

/// A network like the run's, for the weights to be copied into. Building it draws initial
/// weights from the CPU generator, whose state is then put back: the run goes on drawing from it
/// (the modern preset's shifts).
fn network_copy(cfg: &TrainConfig) -> Result<Network> {
    let rng = cpu_rng_state();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = crate::models::build_to_run_on(&vs.root(), cfg, Device::Cpu);
    set_cpu_rng_state(&rng)?;
    Ok(Network { vs, net })
}

impl Worker {
    /// The evaluation thread, with half the libtorch threads; the loop thread keeps the others.
    fn start(copy: Network, test: DeviceSplit, chunk: i64, flush: bool) -> Result<Worker> {
        let threads = tch::get_num_threads();
        let worker_threads = threads / 2;
        let (jobs, next_job) = channel::<()>();
        let (answer, results) = channel::<Evaluated>();
        let idle = Arc::new(AtomicBool::new(true));
        let worker_idle = idle.clone();
        let thread = std::thread::Builder::new().name("nndl-eval".into()).spawn(move || {
            // This thread's own libtorch and MKL threads, and denormal mode.
            tch::set_num_threads(worker_threads);
            let denormals = DenormalMode::enter(flush).map_err(|e| format!("{e:#}"));
            while next_job.recv().is_ok() {
                let done = denormals.as_ref().map_err(Clone::clone).and_then(|_| {
                    let start = Instant::now();
                    // Out of memory (or a bug) here is the run's error, with its reason.
                    let (loss, accuracy) = crate::torch_extras::catch_panics(|| Ok(evaluate(&copy.net, &test, chunk))).map_err(|e| format!("{e:#}"))?;
                    Ok((loss, accuracy, start.elapsed().as_secs_f64()))
                });
                // Idle before the answer is out: the loop's next submit, which clears the flag,
                // comes after it has taken the answer.
                worker_idle.store(true, Ordering::Release);
                if answer.send(done).is_err() {
                    break;
                }
            }
        })?;
        let loop_threads = threads - worker_threads;
        tch::set_num_threads(loop_threads);
        Ok(Worker { jobs: Some(jobs), results, thread: Some(thread), threads, loop_threads, idle })
    }

    fn submit(&self) -> Result<()> {
        self.idle.store(false, Ordering::Release);
        let stopped = || anyhow!("the evaluation thread stopped");
        self.jobs.as_ref().ok_or_else(stopped)?.send(()).map_err(|_| stopped())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the worker after its current evaluation.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tch::set_num_threads(self.threads);
    }
}
