//! Training steps on CUDA as replayed graphs, several steps per replay. A step of these small
//! nets is dozens of tiny kernels: a graph launches them at once, and a graph of a whole block of
//! steps (an evaluation interval, or a divisor of it) also saves the per-replay work of each
//! step (the launch, the copy of its batch indices, the generator's bookkeeping). Both trainers
//! (single and packed) drive it; elsewhere (the CPU, a changing learning rate) steps run eagerly.
use crate::config::{Optimizer, Schedule, TrainConfig};
use crate::cuda_graph::StepGraph;
use anyhow::Result;
use tch::{Device, Tensor};

/// Eager steps before the first capture: cuDNN picks its algorithms and the allocator settles.
pub(crate) const GRAPH_WARMUP: usize = 3;

/// The most steps one replay runs. The graph grows with it (about 40 kernels a step for the MLP,
/// 60 for the CNN) and so do its capture time and memory; the per-replay saving is already
/// spread thin at this length.
const MAX_BLOCK: usize = 50;

/// NNDL_GRAPH_STEPS, when set: the steps per block (1 turns blocks off, for A/B measurements).
/// On the CPU it makes blocks of steps that run eagerly, one after another, through the same
/// bookkeeping as a graph's, so tests can check that bookkeeping without a GPU.
fn block_len_override() -> Option<usize> {
    std::env::var("NNDL_GRAPH_STEPS").ok().and_then(|v| v.parse::<usize>().ok()).map(|k| k.max(1))
}

/// Steps per block: the override, else the largest divisor of the evaluation interval up to
/// MAX_BLOCK, so that blocks tile it.
pub(crate) fn block_len(cfg: &TrainConfig) -> usize {
    block_len_override().unwrap_or_else(|| (1..=MAX_BLOCK.min(cfg.eval_every)).rev().find(|k| cfg.eval_every.is_multiple_of(*k)).unwrap_or(1))
}

/// Whether steps i..i+k can run as one replay: inside the run and inside one uploaded chunk of
/// the batch plan, with no evaluation point but maybe the last, and no checkpoint due (`due(n)`,
/// `n` the next iteration) after any step but the last.
pub(crate) fn block_fits(i: usize, k: usize, cfg: &TrainConfig, per_chunk: usize, mut due: impl FnMut(usize) -> bool) -> bool {
    i + k <= cfg.iterations
        && i % per_chunk + k <= per_chunk
        && !(i..i + k - 1).any(|j| cfg.is_eval_point(j))
        && !(i + 1..i + k).any(&mut due)
}

/// Why this run's steps cannot be graphs, if they cannot. A graph replays the captured kernels
/// with the captured scalars, so only steps whose host-side values never change qualify: plain
/// SGD at a constant learning rate.
fn why_no_graph(cfg: &TrainConfig, allow: bool, remaining: usize) -> Option<String> {
    if !allow {
        Some("--no-cuda-graph".to_string())
    } else if cfg.optimizer != Optimizer::Sgd || !matches!(cfg.schedule, Schedule::Constant {}) {
        Some("its learning rate or optimizer state changes on the host every step".into())
    } else if remaining <= GRAPH_WARMUP {
        Some("too few steps to be worth capturing".into())
    } else {
        None
    }
}

/// Runs a loop's steps: eagerly, or as replays of a one-step graph and of a block graph, each
/// captured the first time it is needed after the warm-up.
pub(crate) struct GraphSteps {
    one: Option<StepGraph>,
    block: Option<StepGraph>,
    /// Steps per block; 1 where there are no blocks.
    block_len: usize,
    capture_at: usize,
    /// The batch indices (one row) the one-step graph and an eager step read, and a block's.
    idx: Tensor,
    window: Option<Tensor>,
}

impl GraphSteps {
    /// For a loop starting at step `first`, whose steps read batch-index rows shaped like
    /// `row`. Also says, once, why steps run eagerly where CUDA is there but a graph is not.
    pub(crate) fn new(cfg: &TrainConfig, device: Device, allow: bool, first: usize, row: &Tensor) -> (GraphSteps, Option<String>) {
        let idx = row.zeros_like().unsqueeze(0);
        let mut steps = GraphSteps { one: None, block: None, block_len: 1, capture_at: first + GRAPH_WARMUP, idx, window: None };
        let Device::Cuda(index) = device else {
            steps.block_len = block_len_override().unwrap_or(1);
            return (steps, None);
        };
        if let Some(why) = why_no_graph(cfg, allow, cfg.iterations - first) {
            return (steps, Some(why));
        }
        // Each graph keeps a side stream current while it lives (capture needs one).
        match StepGraph::new(index) {
            Ok(g) => steps.one = Some(g),
            Err(e) => return (steps, Some(format!("{e:#}"))),
        }
        let len = block_len(cfg);
        if len > 1 {
            match StepGraph::new(index) {
                Ok(g) => (steps.block, steps.block_len) = (Some(g), len),
                Err(e) => return (steps, Some(format!("one step per replay: {e:#}"))),
            }
        }
        (steps, None)
    }

    /// Steps per block (1 where there are no blocks).
    pub(crate) fn block_len(&self) -> usize {
        self.block_len
    }

    /// How many steps to run from step `i`: a whole block where one fits, else one.
    pub(crate) fn steps_from(&self, i: usize, cfg: &TrainConfig, per_chunk: usize, due: impl FnMut(usize) -> bool) -> usize {
        let fits = self.block_len > 1 && i >= self.capture_at && block_fits(i, self.block_len, cfg, per_chunk, due);
        if fits { self.block_len } else { 1 }
    }

    /// Runs steps i..i+n, n the rows of `rows` (each row one step's batch indices), with
    /// `step(rows, k)` doing one whole step on row k of the rows it is given (their copy the
    /// graphs read). Returns the loss of an eager step; a replayed one's stays on the device.
    pub(crate) fn run(&mut self, i: usize, rows: &Tensor, mut step: impl FnMut(&Tensor, i64) -> Result<Tensor>) -> Result<Option<Tensor>> {
        let n = rows.size()[0];
        if n > 1 {
            let window = self.window.get_or_insert_with(|| rows.zeros_like());
            window.copy_(rows);
            let Some(graph) = self.block.as_mut() else {
                // Blocks without a graph (the CPU with the override): their losses go unread.
                for k in 0..n {
                    let _ = step(window, k)?;
                }
                return Ok(None);
            };
            if !graph.is_captured() {
                let mut failed = None;
                graph.capture(|| {
                    for k in 0..n {
                        if let Err(e) = step(window, k) {
                            failed.get_or_insert(e);
                        }
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            graph.replay()?;
            return Ok(None);
        }
        self.idx.copy_(rows);
        match self.one.as_mut() {
            Some(graph) if i >= self.capture_at => {
                if !graph.is_captured() {
                    let mut failed = None;
                    graph.capture(|| failed = step(&self.idx, 0).err())?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
                graph.replay()?;
                Ok(None)
            }
            _ => step(&self.idx, 0).map(Some),
        }
    }

    /// Whether any steps ran as replays.
    pub(crate) fn replayed(&self) -> bool {
        self.one.iter().chain(&self.block).any(StepGraph::is_captured)
    }
}

impl Drop for GraphSteps {
    fn drop(&mut self) {
        // The block graph's side stream was entered last, so it is left first.
        self.block.take();
        self.one.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelKind, Preset};

    fn faithful(iterations: usize, eval_every: usize) -> TrainConfig {
        let mut cfg = TrainConfig::preset(ModelKind::Mlp, Preset::Faithful);
        (cfg.iterations, cfg.eval_every) = (iterations, eval_every);
        cfg
    }

    #[test]
    fn blocks_tile_the_evaluation_interval() {
        let len = |e| (1..=MAX_BLOCK.min(e)).rev().find(|k| e % k == 0).unwrap();
        assert_eq!(len(50), 50);
        assert_eq!(len(1000), 50);
        assert_eq!(len(60), 30);
        assert_eq!(len(97), 1);
        if std::env::var("NNDL_GRAPH_STEPS").is_err() {
            assert_eq!(block_len(&faithful(4001, 50)), 50);
        }
    }

    #[test]
    fn a_block_ends_at_an_evaluation_point_never_before_it() {
        let cfg = faithful(4001, 50);
        let never = |_| false;
        // Step 0 is an evaluation point; then 1..=50, 51..=100, ...
        assert!(!block_fits(0, 50, &cfg, 10485, never));
        assert!(block_fits(1, 50, &cfg, 10485, never));
        assert!(block_fits(3951, 50, &cfg, 10485, never));
        assert!(!block_fits(2, 50, &cfg, 10485, never), "would run past the evaluation at 50");
        // The last step, 4000, is an evaluation point; 4001 would be past the end.
        assert!(!block_fits(3952, 50, &cfg, 10485, never));
        let short = faithful(120, 50);
        assert!(!block_fits(101, 50, &short, 10485, never), "past the last iteration");
        assert!(!block_fits(71, 10, &faithful(80, 100), 10485, never), "the last step is an evaluation point");
        assert!(block_fits(70, 10, &faithful(80, 100), 10485, never));
    }

    #[test]
    fn a_block_stays_in_its_chunk_and_before_any_checkpoint() {
        let cfg = faithful(4001, 50);
        assert!(!block_fits(1001, 50, &cfg, 1040, |_| false), "1040 is a chunk boundary");
        assert!(block_fits(951, 50, &cfg, 1040, |_| false));
        assert!(!block_fits(1, 50, &cfg, 10485, |n| n == 30), "a checkpoint after step 29");
        assert!(block_fits(1, 50, &cfg, 10485, |n| n == 51), "one after the block's last step is the loop's to take");
    }

    #[test]
    fn without_cuda_every_step_runs_eagerly() {
        if block_len_override().is_some() {
            return;
        }
        let cfg = faithful(4001, 50);
        let (steps, note) = GraphSteps::new(&cfg, Device::Cpu, true, 0, &Tensor::zeros([100], (tch::Kind::Int64, Device::Cpu)));
        assert!(note.is_none());
        assert_eq!(steps.steps_from(51, &cfg, 10485, |_| false), 1);
        assert!(!steps.replayed());
    }
}
