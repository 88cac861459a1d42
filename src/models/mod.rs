//! The two MNIST networks, built with tch's `nn::seq` / `nn::seq_t`.
pub mod cnn;
pub mod conv_block;
pub mod init;
pub mod mlp;

use crate::config::{ModelKind, TrainConfig};
use tch::{nn, Device};

/// Trainable parameters (weights and biases) of each network.
pub fn parameter_count(model: ModelKind) -> u64 {
    match model {
        ModelKind::Mlp => 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
        ModelKind::Cnn => 5 * 5 * 32 + 32 + 5 * 5 * 32 * 64 + 64 + 3136 * 1024 + 1024 + 1024 * 10 + 10,
    }
}

/// Builds the configured network; its variables live in `vs`.
pub fn build(vs: &nn::Path, cfg: &TrainConfig) -> nn::SequentialT {
    build_to_run_on(vs, cfg, vs.device())
}

/// `build`, with the CNN's activations laid out as they are on `device`: a network built on the
/// CPU, to be moved to `device`.
pub fn build_to_run_on(vs: &nn::Path, cfg: &TrainConfig, device: Device) -> nn::SequentialT {
    match cfg.model {
        ModelKind::Mlp => mlp::mlp(vs, cfg.init),
        ModelKind::Cnn => cnn::cnn(vs, cfg.init, cfg.dropout, conv_block::ConvPlan::for_device(device)),
    }
}
