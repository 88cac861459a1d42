//! Evaluations beside the training steps, for the MLP on the CPU with two threads or more. At
//! an evaluation point the loop copies the weights into a second network and trains on while a
//! worker thread evaluates that copy; it takes the result before its next evaluation, any
//! checkpoint and its end, so metrics.csv, checkpoints and resume hold what an inline
//! evaluation gives them.
//!
//! The MLP's steps are small products (100 images) that gain little from a second thread, while
//! its evaluations (10,000 test images every 50 steps, 40% of its FLOPs) run about as well on one
//! core. So each side gets half the threads. On two threads a run then computes exactly what a
//! one-thread run does (each side's sums on one thread). NNDL_EVAL_OVERLAP=off evaluates inline,
//! for A/B runs.
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
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;
use tch::{nn, Device, Tensor};

/// The worker thread's answer: (test loss, test accuracy, seconds the evaluation took).
type Evaluated = Result<(f64, f64, f64), String>;

pub struct OverlappedEval {
    /// (the evaluated copy's parameter, the training parameter it copies), by parameter name.
    copies: Vec<(Tensor, Tensor)>,
    worker: Worker,
    /// The point whose test half is being computed.
    pending: Option<EvalPoint>,
}

struct Worker {
    jobs: Option<Sender<()>>,
    results: Receiver<Evaluated>,
    thread: Option<JoinHandle<()>>,
    /// The loop thread's libtorch threads before the split, given back on drop.
    threads: i32,
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
        let copies = theirs.into_iter().zip(ours).map(|((_, dst), (_, src))| (dst, src)).collect();
        let worker = Worker::start(copy, test.shallow_clone(), cfg.eval_chunk(Device::Cpu), cfg.flush_denormals)?;
        Ok(OverlappedEval { copies, worker, pending: None })
    }

    /// Starts evaluating the current weights for `point` (its test half is filled in by `take`).
    /// The previous point must have been taken.
    pub fn submit(&mut self, point: EvalPoint) -> Result<()> {
        ensure!(self.pending.is_none(), "an evaluation is still running");
        tch::no_grad(|| {
            for (dst, src) in &mut self.copies {
                dst.copy_(src);
            }
        });
        self.worker.submit()?;
        self.pending = Some(point);
        Ok(())
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
        let thread = std::thread::Builder::new().name("nndl-eval".into()).spawn(move || {
            // This thread's own libtorch and MKL threads, and denormal mode.
            tch::set_num_threads(worker_threads);
            let denormals = DenormalMode::enter(flush).map_err(|e| format!("{e:#}"));
            while next_job.recv().is_ok() {
                let done = denormals.as_ref().map_err(Clone::clone).map(|_| {
                    let start = Instant::now();
                    let (loss, accuracy) = evaluate(&copy.net, &test, chunk);
                    (loss, accuracy, start.elapsed().as_secs_f64())
                });
                if answer.send(done).is_err() {
                    break;
                }
            }
        })?;
        tch::set_num_threads(threads - worker_threads);
        Ok(Worker { jobs: Some(jobs), results, thread: Some(thread), threads })
    }

    fn submit(&self) -> Result<()> {
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
