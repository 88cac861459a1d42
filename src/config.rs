//! The typed configuration of a training run: preset defaults, user overrides, validation.
//! Saved as config.json next to the results; `--config FILE` reruns it.
use anyhow::{bail, Context, Result};
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
    /// The seed's settings, as TF1 ran them.
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

    /// The homework's reported final test loss and accuracy.
    pub fn seed_result(self) -> (f64, f64) {
        match self {
            ModelKind::Mlp => (9.964, 0.926),
            ModelKind::Cnn => (0.139, 0.957),
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
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Dropout {
    None,
    /// TF1's tf.nn.dropout(x, keep_prob): keep with probability keep_prob, scale by 1/keep_prob.
    /// `in_eval`: the seed's evaluation runs through the same dropout layer.
    KeepProb { keep_prob: f64, in_eval: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    Constant,
    /// Linear warm-up to `lr`, then cosine decay to zero at the last iteration.
    WarmupCosine { warmup: usize },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

pub const TRAIN_SIZE: usize = 55_000;

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
            schedule: Schedule::Constant,
            init: Init::RandomNormal,
            dropout: Dropout::None,
            augment_shift: 0,
            notes: vec![],
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
                notes: vec![
                    "He init, Adam, dropout rate 0.25 in training only: the plain modern recipe (about 99.1%)".into(),
                    "peak lr 2e-3, 200 warm-up steps, cosine decay to 0: larger early steps, fine late ones".into(),
                    "random shifts of up to 2 pixels: cheap augmentation that narrows the train/test gap".into(),
                ],
                ..base
            },
        }
    }

    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("config {} is not a valid nndl config", path.display()))
    }

    /// Rejects values that cannot train, with the flag's name.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("invalid --lr {}: must be a finite number > 0", self.lr);
        }
        if self.batch_size == 0 || self.batch_size > TRAIN_SIZE {
            bail!("invalid --batch-size {}: must be between 1 and {TRAIN_SIZE}", self.batch_size);
        }
        if self.iterations == 0 {
            bail!("invalid --iterations 0: must be at least 1");
        }
        if self.eval_every == 0 {
            bail!("invalid --eval-every 0: must be at least 1");
        }
        if let Dropout::KeepProb { keep_prob, .. } = self.dropout {
            if !(keep_prob > 0.0 && keep_prob <= 1.0) {
                bail!("invalid keep_prob {keep_prob}: must be in (0, 1]");
            }
        }
        if !(0..=8).contains(&self.augment_shift) {
            bail!("invalid augment_shift {}: must be between 0 and 8", self.augment_shift);
        }
        Ok(())
    }

    /// Learning rate at iteration `i` (0-based).
    pub fn lr_at(&self, i: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
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

    /// Test rows per evaluation forward pass. Measured on 2 CPU threads: 500 MLP rows keep the
    /// GEMMs in cache (10000 was slower); 200 CNN rows keep each activation under glibc's
    /// 32 MB mmap threshold, so memory is reused instead of page-faulted in afresh each chunk.
    /// On a GPU, large chunks keep the device busy.
    pub fn eval_chunk(&self, device: tch::Device) -> i64 {
        match (self.model, device.is_cuda()) {
            (_, true) => 5000,
            (ModelKind::Mlp, false) => 500,
            (ModelKind::Cnn, false) => 200,
        }
    }

    /// Evaluation points: every `eval_every` iterations, and always the last one.
    pub fn is_eval_point(&self, i: usize) -> bool {
        i.is_multiple_of(self.eval_every) || i + 1 == self.iterations
    }
}
