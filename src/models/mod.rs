//! The two MNIST networks, built with tch's `nn::seq` / `nn::seq_t`.
pub mod cnn;
pub mod init;
pub mod mlp;

use crate::config::{ModelKind, TrainConfig};
use tch::nn;

/// Builds the configured network; its variables live in `vs`.
pub fn build(vs: &nn::Path, cfg: &TrainConfig) -> nn::SequentialT {
    match cfg.model {
        ModelKind::Mlp => mlp::mlp(vs, cfg.init),
        ModelKind::Cnn => cnn::cnn(vs, cfg.init, cfg.dropout),
    }
}
