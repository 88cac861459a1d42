//! Evaluations beside the training steps. At an evaluation point the loop copies the weights
//! into a second network and trains on while that copy is evaluated; it takes the result before
//! its next evaluation, any checkpoint and its end, so metrics.csv, checkpoints and resume hold
//! what an inline evaluation gives them.
//!
//! CPU: the MLP with two threads or more. Its steps are small products (100 images) that gain
//! little from a second thread, while its evaluations (10,000 test images every 50 steps, 40% of
//! its FLOPs) run about as well on one core. So each side gets half the threads, and a worker
//! thread evaluates. On two threads a run then computes exactly what a one-thread run does (each
//! side's sums on one thread). NNDL_EVAL_OVERLAP=off evaluates inline, for A/B runs.
//!
//! CUDA, both nets, only with NNDL_EVAL_OVERLAP=on until a GPU has timed it: the evaluation's
//! kernels go to a second stream, after the copy of the weights on the steps' stream, and run
//! beside the next steps' kernels (a step of 100 images leaves most of the GPU idle). The loop
//! queues them where an inline evaluation runs, between the same two steps, so the faithful
//! CNN's evaluation dropout takes the same draws from the CUDA generator (its offsets are taken
//! when kernels are queued, not when they run).
use crate::config::{ModelKind, TrainConfig};
use crate::cuda_graph::SideStream;
use crate::data::DeviceSplit;
use crate::metrics::EvalPoint;
use crate::run::{parameters, Network};
use crate::torch_extras::{cpu_rng_state, set_cpu_rng_state, DenormalMode};
use crate::trainer::{evaluate, evaluation_means, evaluation_sums};
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
    side: Side,
    /// The point whose test half is being computed.
    pending: Option<EvalPoint>,
}

/// Where the copy is evaluated.
enum Side {
    Thread(Worker),
    Stream(StreamEval),
}

struct Worker {
    jobs: Option<Sender<()>>,
    results: Receiver<Evaluated>,
    thread: Option<JoinHandle<()>>,
    /// The loop thread's libtorch threads before the split, given back on drop.
    threads: i32,
}

struct StreamEval {
    stream: SideStream,
    copy: Network,
    test: DeviceSplit,
    chunk: i64,
    /// The queued evaluation's summed loss and correct count, on the device.
    sums: Option<(Tensor, Tensor)>,
}

impl OverlappedEval {
    /// Whether this run evaluates beside its steps: the MLP on the CPU with two threads or more,
    /// and on CUDA when asked for; not while `--profile-steps` records (its window would hold
    /// the evaluation's operators).
    pub fn wanted(cfg: &TrainConfig, device: Device, profiling: bool) -> bool {
        let setting = std::env::var("NNDL_EVAL_OVERLAP");
        !profiling
            && match device {
                Device::Cpu => cfg.model == ModelKind::Mlp && tch::get_num_threads() >= 2 && setting.as_deref() != Ok("off"),
                Device::Cuda(_) => setting.as_deref() == Ok("on"),
                _ => false,
            }
    }

    /// Builds the copy of the network, and the thread or stream that evaluates it.
    pub fn start(cfg: &TrainConfig, vs: &nn::VarStore, test: &DeviceSplit) -> Result<OverlappedEval> {
        let device = vs.device();
        let copy = network_copy(cfg, device)?;
        let (theirs, ours) = (parameters(&copy.vs), parameters(vs));
        ensure!(theirs.iter().map(|p| &p.0).eq(ours.iter().map(|p| &p.0)), "the evaluation copy has other parameters than the network");
        let copies = theirs.into_iter().zip(ours).map(|((_, dst), (_, src))| (dst, src)).collect();
        let (test, chunk) = (test.shallow_clone(), cfg.eval_chunk(device));
        let side = match device {
            Device::Cuda(index) => Side::Stream(StreamEval { stream: SideStream::new(index)?, copy, test, chunk, sums: None }),
            _ => Side::Thread(Worker::start(copy, test, chunk, cfg.flush_denormals)?),
        };
        Ok(OverlappedEval { copies, side, pending: None })
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
        match &mut self.side {
            Side::Thread(worker) => worker.submit()?,
            Side::Stream(eval) => {
                let sums = eval.stream.run(|| evaluation_sums(&eval.copy.net, &eval.test, eval.chunk, |_, _| {}))?;
                eval.sums = Some(sums);
            }
        }
        self.pending = Some(point);
        Ok(())
    }

    /// The submitted point with its test loss and accuracy, and the seconds its evaluation
    /// took (waiting for it if it still runs); None when nothing is pending.
    pub fn take(&mut self) -> Result<Option<(EvalPoint, f64)>> {
        let Some(mut point) = self.pending.take() else { return Ok(None) };
        let (loss, accuracy, seconds) = match &mut self.side {
            Side::Thread(worker) => worker.results.recv().map_err(|_| anyhow!("the evaluation thread stopped"))?.map_err(|e| anyhow!(e))?,
            Side::Stream(eval) => {
                let seconds = eval.stream.wait()?;
                let sums = eval.sums.take().ok_or_else(|| anyhow!("no evaluation was queued"))?;
                let (loss, accuracy) = evaluation_means(sums, eval.test.len());
                (loss, accuracy, seconds)
            }
        };
        point.test_loss = loss;
        point.test_accuracy = accuracy;
        Ok(Some((point, seconds)))
    }
}

/// A network like the run's, on `device`, for the weights to be copied into. It is built on the
/// CPU, whose generator's state is put back (the run goes on drawing from it: the modern preset's
/// shifts), and without seeding, which would also reset the CUDA generator the run draws its
/// dropout masks from.
fn network_copy(cfg: &TrainConfig, device: Device) -> Result<Network> {
    let rng = cpu_rng_state();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = crate::models::build_to_run_on(&vs.root(), cfg, device);
    set_cpu_rng_state(&rng)?;
    vs.set_device(device);
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

impl Drop for StreamEval {
    fn drop(&mut self) {
        // The queued kernels read the copy and write the sums: they finish before those go.
        if self.sums.is_some() {
            let _ = self.stream.wait();
        }
    }
}
