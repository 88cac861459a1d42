//! Where and how a run executes: libtorch's threads, the device, and the numerics switches
//! (deterministic algorithms, cuDNN benchmark, TF32), set once before any work.
use crate::config::{Origin, TrainConfig};
use anyhow::Result;
use tch::Device;

pub struct Runtime {
    pub device: Device,
    pub quiet: bool,
    /// Replay the training step as a CUDA graph where the run allows it.
    pub allow_graph: bool,
    /// `--profile-steps`: record this many training steps with libtorch's profiler.
    pub profile_steps: Option<usize>,
    /// The CPU fall-back note, printed by `say_note` once everything else is validated.
    note: Option<String>,
}

impl Runtime {
    /// Applies the config's device, threads and numerics. Nothing is printed yet. `origin` says
    /// where the device came from, for the error when the machine lacks it.
    pub fn new(cfg: &TrainConfig, origin: &Origin, quiet: bool, allow_graph: bool) -> Result<Runtime> {
        if cfg.deterministic {
            // cuBLAS reads this when it creates its first handle, which has not happened yet.
            std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
        }
        let mut notes = Vec::new();
        if let Some(n) = cfg.threads {
            // A saved run from a bigger machine (a 64-core node's, resumed or evaluated here).
            let most = crate::config::max_threads();
            if n > most {
                notes.push(format!("the run's {n} threads are more than this machine takes (4 per core); using {most}"));
            }
            tch::set_num_threads(n.min(most) as i32);
        }
        let (device, device_note) = crate::device::resolve(&cfg.device, &origin.name("device"))?;
        notes.extend(device_note);
        let note = (!notes.is_empty()).then(|| notes.join("\nnote: "));
        crate::torch_extras::set_deterministic(cfg.deterministic)?;
        // Fixed shapes: unless determinism is asked for, let cuDNN pick the fastest convolution.
        crate::torch_extras::set_cudnn_benchmark(device.is_cuda() && !cfg.deterministic)?;
        crate::torch_extras::set_tf32(cfg.tf32)?;
        Ok(Runtime { device, quiet, allow_graph, profile_steps: None, note })
    }

    /// For commands without a TrainConfig (reproduce's settings): device and threads only.
    pub fn for_device(device: &str, threads: Option<usize>, origin: &Origin, quiet: bool) -> Result<Runtime> {
        let mut cfg = TrainConfig::preset(crate::config::ModelKind::Mlp, crate::config::Preset::Faithful);
        cfg.device = device.to_string();
        cfg.threads = threads;
        Runtime::new(&cfg, origin, quiet, true)
    }

    /// Prints the CPU fall-back note (once), after every input was found good.
    pub fn say_note(&mut self) {
        if let (Some(note), false) = (self.note.take(), self.quiet) {
            crate::say!("note: {note}");
        }
    }
}
