//! The two MNIST networks, built with tch's `nn::seq` / `nn::seq_t`.
pub mod cnn;
pub mod init;
pub mod mlp;

use crate::config::{ModelKind, TrainConfig};
use tch::nn;

/// Trainable parameters (weights and biases) of each network.
pub fn parameter_count(model: ModelKind) -> u64 {
    match model {
        ModelKind::Mlp => 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
        ModelKind::Cnn => 5 * 5 * 32 + 32 + 5 * 5 * 32 * 64 + 64 + 3136 * 1024 + 1024 + 1024 * 10 + 10,
    }
}

/// Builds the configured network; its variables live in `vs`.
pub fn build(vs: &nn::Path, cfg: &TrainConfig) -> nn::SequentialT {
    match cfg.model {
        ModelKind::Mlp => mlp::mlp(vs, cfg.init),
        ModelKind::Cnn => cnn::cnn(vs, cfg.init, cfg.dropout),
    }
}
