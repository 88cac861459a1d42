//! The typed configuration of a training run: preset defaults, user overrides, validation.
//! Saved as config.json next to the results; `--config FILE` reruns it.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Mlp,
    Cnn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The homework's settings, as TF1 ran them.
    Faithful,
    /// What a practitioner would use today (He init, Adam, cosine schedule, eval without dropout).
    Modern,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Faithful => "faithful",
            Preset::Modern => "modern",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adam,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// tf.random_normal: weights and biases N(0, 1).
    RandomNormal,
    /// tf.truncated_normal(stddev=0.1) weights (redrawn beyond 2 sigma), biases 0.1.
    TruncatedNormal,
    /// He (Kaiming) normal weights for ReLU, zero biases.
    He,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Dropout {
    /// (Empty braces, not a unit variant: serde refuses unknown keys only in struct variants.)
    None {},
    /// TF1's tf.nn.dropout(x, keep_prob): keep with probability keep_prob, scale by 1/keep_prob.
    /// `in_eval`: the homework's evaluation runs through the same dropout layer.
    KeepProb { keep_prob: f64, in_eval: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Schedule {
    /// (Empty braces, as `Dropout::None`.)
    Constant {},
    /// Linear warm-up to `lr`, then cosine decay to zero at the last iteration.
    WarmupCosine { warmup: usize },
}

/// Everything a run computes from: saved as config.json, read back by `--config` and `resume`.
/// Unknown keys are refused, so a misspelt setting cannot be silently ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub preset: Preset,
    pub seed: u64,
    pub lr: f64,
    pub batch_size: usize,
    pub iterations: usize,
    pub eval_every: usize,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub init: Init,
    pub dropout: Dropout,
    /// Random translation of training images by up to this many pixels (0: none).
    pub augment_shift: i64,
    /// Why the non-faithful choices were made, for whoever reads config.json.
    pub notes: Vec<String>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`, as asked; summary.json says what it resolved to.
    #[serde(default = "default_device")]
    pub device: String,
    /// libtorch intra-op threads; results are bitwise reproducible for the same count.
    #[serde(default)]
    pub threads: Option<usize>,
    /// CUDA: deterministic algorithms, cuDNN benchmark off (no effect on CPU, already deterministic).
    #[serde(default)]
    pub deterministic: bool,
    /// CUDA on Ampere and later: TF32 in float32 matmuls and convolutions.
    #[serde(default)]
    pub tf32: bool,
    /// CPU: flush denormal floats to zero, as TF's kernels do (PyTorch keeps them, at a cost:
    /// the faithful MLP's saturated softmax makes denormal gradients). Absent in configs
    /// written before the switch existed, whose runs kept them.
    #[serde(default)]
    pub flush_denormals: bool,
    /// Checkpoint every this many iterations; None: about every 60 s of training.
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
    /// Go on through a NaN or infinite training loss, as TF would, instead of stopping.
    #[serde(default)]
    pub allow_nan: bool,
}

fn default_device() -> String {
    "auto".into()
}

/// Where a setting came from, so an error names it the way the user wrote it.
#[derive(Clone, Debug)]
pub enum Origin {
    Flags,
    File(std::path::PathBuf),
    /// A config file with flags over it: the flags set these keys, the file the rest.
    FileAndFlags(std::path::PathBuf, Vec<&'static str>),
}

impl Origin {
    /// `--batch-size` for flags, `runs/x/config.json: batch_size` for a file.
    pub fn name(&self, key: &str) -> String {
        match self {
            Origin::FileAndFlags(_, flags) if flags.contains(&key) => Origin::Flags.name(key),
            Origin::Flags => format!("--{}", key.replace('_', "-")),
            Origin::File(path) | Origin::FileAndFlags(path, _) => format!("{}: {key}", path.display()),
        }
    }
}

/// A number as a person would write it: 0.005, 1e39, 1e-9.
pub fn number(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-4..1e6).contains(&x.abs()) { format!("{x:e}") } else { format!("{x}") }
}

/// The most libtorch threads that make sense: beyond a few per core they only contend.
pub fn max_threads() -> usize {
    4 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A thread count asked for here, `what` (a flag), between 1 and `max_threads()`.
pub fn check_threads(n: usize, what: &str) -> Result<()> {
    let max = max_threads();
    if n == 0 || n > max {
        bail!("invalid {what} {n}: must be between 1 and {max} (4 per core)");
    }
    Ok(())
}

/// A thread count a saved file recorded, `what` (its key): it may come from a bigger machine
/// (a 64-core Slurm node's run reported or resumed on a laptop), so only nonsense is refused.
pub fn check_saved_threads(n: usize, what: &str) -> Result<()> {
    const MOST: usize = 4096;
    if n == 0 || n > MOST {
        bail!("invalid {what} {n}: must be between 1 and {MOST}");
    }
    Ok(())
}

pub const TRAIN_SIZE: usize = 55_000;
/// A bound on --iterations that keeps every count in range (a billion steps is years on a CPU).
pub const MAX_ITERATIONS: usize = 1_000_000_000;

impl TrainConfig {
    pub fn preset(model: ModelKind, preset: Preset) -> TrainConfig {
        let base = TrainConfig {
            model,
            preset,
            seed: 0,
            lr: 0.005,
            batch_size: 100,
            iterations: 4001,
            eval_every: 50,
            optimizer: Optimizer::Sgd,
            schedule: Schedule::Constant {},
            init: Init::RandomNormal,
            dropout: Dropout::None {},
            augment_shift: 0,
            notes: vec![],
            device: default_device(),
            threads: None,
            deterministic: false,
            tf32: false,
            flush_denormals: true,
            checkpoint_every: None,
            allow_nan: false,
        };
        match (model, preset) {
            (ModelKind::Mlp, Preset::Faithful) => base,
            (ModelKind::Cnn, Preset::Faithful) => TrainConfig {
                lr: 0.01,
                init: Init::TruncatedNormal,
                dropout: Dropout::KeepProb { keep_prob: 0.25, in_eval: true },
                ..base
            },
            (ModelKind::Mlp, Preset::Modern) => TrainConfig {
                lr: 2e-3,
                optimizer: Optimizer::Adam,
                schedule: Schedule::WarmupCosine { warmup: 200 },
                init: Init::He,
                tf32: true,
                notes: vec![
                    "He init and Adam: the plain modern recipe (about 97.9% at 4001 batches)".into(),
                    "peak lr 2e-3 with 200 warm-up steps and cosine decay to 0: the small final steps settle the last 0.2-0.3%".into(),
                ],
                ..base
            },
            (ModelKind::Cnn, Preset::Modern) => TrainConfig {
                lr: 2e-3,
                optimizer: Optimizer::Adam,
                schedule: Schedule::WarmupCosine { warmup: 200 },
                init: Init::He,
                dropout: Dropout::KeepProb { keep_prob: 0.75, in_eval: false },
                augment_shift: 2,
                tf32: true,
                notes: vec![
                    "He init, Adam, dropout rate 0.25 in training only: the plain modern recipe (about 99.1%)".into(),
                    "peak lr 2e-3, 200 warm-up steps, cosine decay to 0: larger early steps, fine late ones".into(),
                    "random shifts of up to 2 pixels: cheap augmentation that narrows the train/test gap".into(),
                ],
                ..base
            },
        }
    }

    /// Whether `other` configures the same run as `self`: equal but for the device and the
    /// thread count, which may change between the sessions of one run (a sweep rerun with
    /// other --jobs, a pack's member resumed alone).
    pub fn same_run(&self, other: &TrainConfig) -> bool {
        self.on_machine_of(other) == *other
    }

    /// What `same_run` compares, as one string: equal for two configs exactly when they
    /// configure the same run (a key to find a run among many folders).
    pub fn run_key(&self) -> String {
        serde_json::to_string(&TrainConfig { device: String::new(), threads: None, ..self.clone() }).unwrap_or_default()
    }

    /// `self` with `other`'s device and thread count.
    fn on_machine_of(&self, other: &TrainConfig) -> TrainConfig {
        TrainConfig { device: other.device.clone(), threads: other.threads, ..self.clone() }
    }

    /// The settings in which `self` (a saved run's) and `other` differ, device and thread count
    /// aside (as in `same_run`), as `key X there, Y here` (keys in alphabetical order), for an
    /// error that says what differs.
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let (a, b) = (serde_json::to_value(self.on_machine_of(other)), serde_json::to_value(other));
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else { return vec![] };
        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| {
            let here = b.get(k).map_or("absent".to_string(), |w| w.to_string());
            format!("{k} {v} there, {here} here")
        }).collect()
    }

    /// Reads a config.json and checks its values, naming the file in any error.
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let cfg = TrainConfig::read(path)?;
        cfg.validate(&Origin::File(path.to_path_buf()))?;
        Ok(cfg)
    }

    /// Reads a config.json without checking its values (flags may still replace them).
    pub fn read(path: &Path) -> Result<TrainConfig> {
        let name = path.display();
        // A config.json is about 1 KB.
        let text = crate::run_dir::read_small_text(path, 1 << 20, "a config")?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("config {name} is not a valid nndl config: {e}"))
    }

    /// Rejects values that cannot train, naming the setting as `origin` spells it.
    pub fn validate(&self, origin: &Origin) -> Result<()> {
        let name = |key: &str| origin.name(key);
        // The optimizer runs in float32: a learning rate beyond its range would become inf.
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= f32::MAX as f64 && (self.lr as f32) > 0.0) {
            bail!("invalid {} {}: must be a finite number > 0 that float32 can hold (at most {:e})", name("lr"), number(self.lr), f32::MAX as f64);
        }
        if self.batch_size == 0 || self.batch_size > TRAIN_SIZE {
            bail!("invalid {} {}: must be between 1 and {TRAIN_SIZE}", name("batch_size"), self.batch_size);
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            bail!("invalid {} {}: must be between 1 and {MAX_ITERATIONS}", name("iterations"), self.iterations);
        }
        if self.eval_every == 0 {
            bail!("invalid {} 0: must be at least 1", name("eval_every"));
        }
        if self.checkpoint_every == Some(0) {
            bail!("invalid {} 0: must be at least 1", name("checkpoint_every"));
        }
        if let Some(n) = self.threads {
            match origin {
                Origin::File(_) => check_saved_threads(n, &name("threads"))?,
                Origin::FileAndFlags(_, flags) if !flags.contains(&"threads") => check_saved_threads(n, &name("threads"))?,
                _ => check_threads(n, &name("threads"))?,
            }
        }
        crate::device::DeviceSpec::parse(&self.device).map_err(|_| {
            anyhow::anyhow!("invalid {} '{}': expected auto, cpu, cuda or cuda:N", name("device"), self.device)
        })?;
        if let Dropout::KeepProb { keep_prob, .. } = self.dropout {
            // float32's, as the net keeps it: 1e-300 would become 0 and keep nothing.
            if !(keep_prob > 0.0 && keep_prob <= 1.0 && (keep_prob as f32) > 0.0) {
                bail!("invalid {} {keep_prob}: must be in (0, 1]", name("keep_prob"));
            }
        }
        if self.model == ModelKind::Mlp && self.dropout != (Dropout::None {}) {
            bail!("invalid {}: the MLP has no dropout layer (the CNN's fc1 has); use {{\"kind\": \"none\"}}", name("dropout"));
        }
        if !(0..=8).contains(&self.augment_shift) {
            bail!("invalid {} {}: must be between 0 and 8", name("augment_shift"), self.augment_shift);
        }
        if let Schedule::WarmupCosine { warmup } = self.schedule {
            if warmup == 0 {
                bail!("invalid {} 0: must be at least 1", name("warmup"));
            }
        }
        Ok(())
    }

    /// A note for a run shorter than its warm-up (the modern preset's 200 steps in a quick
    /// comparison), said where training starts.
    pub fn warmup_note(&self) -> Option<String> {
        match self.schedule {
            Schedule::WarmupCosine { warmup } if warmup > self.iterations => Some(format!(
                "the learning rate warms up over {warmup} iterations, more than this run's {}: it never reaches its peak {} nor decays (a --config file's schedule.warmup sets the warm-up)",
                self.iterations, number(self.lr))),
            _ => None,
        }
    }

    /// Learning rate at iteration `i` (0-based).
    pub fn lr_at(&self, i: usize) -> f64 {
        match self.schedule {
            Schedule::Constant {} => self.lr,
            Schedule::WarmupCosine { warmup } => {
                if i < warmup {
                    self.lr * (i + 1) as f64 / warmup as f64
                } else {
                    let span = (self.iterations - warmup).max(1) as f64;
                    let t = (i - warmup) as f64 / span;
                    self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
        }
    }

    /// Test rows per evaluation forward pass. On the CPU, 2000 MLP rows: against 500, an
    /// evaluation took 0.85x the time on one thread (a pack's sub-packs) and about 0.9x on two
    /// (alternating runs, `--eval-every 5`); 200 CNN rows keep each activation under glibc's
    /// 32 MB mmap threshold, so memory is reused instead of page-faulted in afresh each chunk.
    /// On a GPU, large chunks keep the device busy.
    pub fn eval_chunk(&self, device: tch::Device) -> i64 {
        match (self.model, device.is_cuda()) {
            (_, true) => 5000,
            (ModelKind::Mlp, false) => 2000,
            (ModelKind::Cnn, false) => 200,
        }
    }

    /// Evaluation points: every `eval_every` iterations, and always the last one.
    pub fn is_eval_point(&self, i: usize) -> bool {
        i.is_multiple_of(self.eval_every) || i + 1 == self.iterations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modern_mlp() -> TrainConfig {
        TrainConfig::preset(ModelKind::Mlp, Preset::Modern)
    }

    #[test]
    fn an_mlp_config_with_dropout_is_refused() {
        let mut cfg = TrainConfig::preset(ModelKind::Mlp, Preset::Faithful);
        cfg.dropout = Dropout::KeepProb { keep_prob: 0.5, in_eval: true };
        let e = cfg.validate(&Origin::File("c.json".into())).unwrap_err().to_string();
        assert!(e.starts_with("invalid c.json: dropout: the MLP has no dropout layer"), "{e}");
        assert!(TrainConfig::preset(ModelKind::Cnn, Preset::Faithful).validate(&Origin::Flags).is_ok());
    }

    #[test]
    fn warmup_peaks_at_its_last_step_and_cosine_ends_near_zero() {
        let cfg = modern_mlp();
        let Schedule::WarmupCosine { warmup } = cfg.schedule else { panic!("modern uses warm-up") };
        assert_eq!(cfg.lr_at(0), cfg.lr / warmup as f64);
        assert!(cfg.lr_at(warmup / 2) < cfg.lr);
        assert_eq!(cfg.lr_at(warmup - 1), cfg.lr, "the peak is reached at the end of the warm-up");
        assert_eq!(cfg.lr_at(warmup), cfg.lr, "cosine starts at the peak");
        let last = cfg.lr_at(cfg.iterations - 1);
        assert!(last > 0.0 && last < 1e-3 * cfg.lr, "final lr {last}");
        let mid = cfg.lr_at(warmup + (cfg.iterations - warmup) / 2);
        assert!((mid / cfg.lr - 0.5).abs() < 1e-3, "halfway through the cosine: {mid}");
        // Monotone decay after the warm-up.
        assert!((warmup..cfg.iterations - 1).all(|i| cfg.lr_at(i + 1) <= cfg.lr_at(i)));
    }

    #[test]
    fn constant_schedule_is_constant() {
        let cfg = TrainConfig::preset(ModelKind::Cnn, Preset::Faithful);
        assert!((0..cfg.iterations).step_by(97).all(|i| cfg.lr_at(i) == 0.01));
    }

    #[test]
    fn errors_name_the_flag_or_the_file() {
        let mut cfg = modern_mlp();
        cfg.lr = 1e39;
        let flag = cfg.validate(&Origin::Flags).unwrap_err().to_string();
        assert!(flag.starts_with("invalid --lr 1e39"), "{flag}");
        let file = cfg.validate(&Origin::File("runs/x/config.json".into())).unwrap_err().to_string();
        assert!(file.starts_with("invalid runs/x/config.json: lr 1e39"), "{file}");
        let both = Origin::FileAndFlags("runs/x/config.json".into(), vec!["batch_size"]);
        assert!(cfg.validate(&both).unwrap_err().to_string().starts_with("invalid runs/x/config.json: lr 1e39"));
        cfg.lr = 0.1;
        cfg.batch_size = 0;
        assert!(cfg.validate(&both).unwrap_err().to_string().starts_with("invalid --batch-size 0"));
    }

    #[test]
    fn unknown_keys_inside_tagged_settings_are_refused() {
        // Found by the config fuzzer: unit variants let these through.
        for (key, value) in [("schedule", serde_json::json!({"kind": "constant", "warmup": 200})),
            ("dropout", serde_json::json!({"kind": "none", "keep_prob": 0.5}))] {
            let mut v = serde_json::to_value(TrainConfig::preset(ModelKind::Mlp, Preset::Faithful)).unwrap();
            v[key] = value;
            let err = serde_json::from_value::<TrainConfig>(v).unwrap_err().to_string();
            assert!(err.contains("unknown field"), "{key}: {err}");
        }
    }

    #[test]
    fn every_float_reads_back_as_written() {
        // Found by the config fuzzer: f32::MAX as an lr did not survive config.json.
        let mut cfg = TrainConfig::preset(ModelKind::Mlp, Preset::Faithful);
        cfg.lr = f32::MAX as f64;
        cfg.validate(&Origin::Flags).unwrap();
        let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back.lr.to_bits(), cfg.lr.to_bits());
        back.validate(&Origin::Flags).unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let mut value = serde_json::to_value(modern_mlp()).unwrap();
        value["learning_rate"] = serde_json::json!(0.1);
        let err = serde_json::from_value::<TrainConfig>(value).unwrap_err().to_string();
        assert!(err.contains("unknown field `learning_rate`"), "{err}");
    }
}
