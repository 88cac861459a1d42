//! Evaluations beside the training steps: the MLP on the CPU, with two threads or more.
//!
//! The MLP's steps are small products (100 images) that gain little from a second thread, while
//! its evaluations (10,000 test images every 50 steps, 40% of its FLOPs) run about as well on one
//! core. So each side gets half the threads: at an evaluation point the loop copies the weights
//! into a second network and trains on, while a worker thread evaluates that copy. The loop
//! takes the result before its next evaluation, any checkpoint and its end, so metrics.csv,
//! checkpoints and resume hold what an inline evaluation gives them. On two threads a run then
//! computes exactly what a one-thread run does (each side's sums on one thread).
//! NNDL_EVAL_OVERLAP=off evaluates inline, for A/B runs.
use crate::config::{ModelKind, TrainConfig};
use crate::data::DeviceSplit;
use crate::metrics::EvalPoint;
use crate::run::{build_network, parameters};
use crate::torch_extras::{cpu_rng_state, set_cpu_rng_state, DenormalMode};
use crate::trainer::evaluate;
use anyhow::{anyhow, ensure, Result};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;
use tch::{nn, Device, Tensor};

/// The worker's answer: (test loss, test accuracy, seconds the evaluation took).
type Evaluated = Result<(f64, f64, f64), String>;

pub struct OverlappedEval {
    /// (the worker's copy, the training parameter it copies), by parameter name.
    copies: Vec<(Tensor, Tensor)>,
    jobs: Option<Sender<()>>,
    results: Receiver<Evaluated>,
    worker: Option<JoinHandle<()>>,
    /// The point whose test half the worker is computing.
    pending: Option<EvalPoint>,
    /// The loop thread's libtorch threads before the split, given back on drop.
    threads: i32,
}

impl OverlappedEval {
    /// Whether this run evaluates beside its steps: the MLP on the CPU with two threads or more,
    /// not while `--profile-steps` records (its window would hold the worker's operators).
    pub fn wanted(cfg: &TrainConfig, device: Device, profiling: bool) -> bool {
        device == Device::Cpu
            && cfg.model == ModelKind::Mlp
            && tch::get_num_threads() >= 2
            && !profiling
            && std::env::var("NNDL_EVAL_OVERLAP").as_deref() != Ok("off")
    }

    /// Builds the worker's network and thread, and gives the loop thread the other half of the
    /// threads.
    pub fn start(cfg: &TrainConfig, vs: &nn::VarStore, test: &DeviceSplit) -> Result<OverlappedEval> {
        // build_network seeds and draws from libtorch's one CPU generator, which the run goes on
        // using (the modern preset's shifts): its state is put back.
        let rng = cpu_rng_state();
        let copy = build_network(cfg, Device::Cpu);
        set_cpu_rng_state(&rng)?;
        let (theirs, ours) = (parameters(&copy.vs), parameters(vs));
        ensure!(theirs.iter().map(|p| &p.0).eq(ours.iter().map(|p| &p.0)), "the evaluation copy has other parameters than the network");
        let copies = theirs.into_iter().zip(ours).map(|((_, dst), (_, src))| (dst, src)).collect();
        let threads = tch::get_num_threads();
        let worker_threads = threads / 2;
        let (jobs, next_job) = channel::<()>();
        let (answer, results) = channel::<Evaluated>();
        let (test, chunk, flush) = (test.shallow_clone(), cfg.eval_chunk(Device::Cpu), cfg.flush_denormals);
        let worker = std::thread::Builder::new().name("nndl-eval".into()).spawn(move || {
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
        Ok(OverlappedEval { copies, jobs: Some(jobs), results, worker: Some(worker), pending: None, threads })
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
        let stopped = || anyhow!("the evaluation thread stopped");
        self.jobs.as_ref().ok_or_else(stopped)?.send(()).map_err(|_| stopped())?;
        self.pending = Some(point);
        Ok(())
    }

    /// The submitted point with its test loss and accuracy, and the seconds its evaluation
    /// took (waiting for it if it still runs); None when nothing is pending.
    pub fn take(&mut self) -> Result<Option<(EvalPoint, f64)>> {
        let Some(mut point) = self.pending.take() else { return Ok(None) };
        let (loss, accuracy, seconds) = self.results.recv().map_err(|_| anyhow!("the evaluation thread stopped"))?.map_err(|e| anyhow!(e))?;
        point.test_loss = loss;
        point.test_accuracy = accuracy;
        Ok(Some((point, seconds)))
    }
}

impl Drop for OverlappedEval {
    fn drop(&mut self) {
        // Closing the queue ends the worker after its current evaluation.
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        tch::set_num_threads(self.threads);
    }
}
