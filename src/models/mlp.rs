//! The homework's MLP: 784-256-256-10, ReLU on the hidden layers, linear logits.
use super::init::linear;
use crate::config::Init;
use tch::nn;

pub fn mlp(vs: &nn::Path, init: Init) -> nn::SequentialT {
    nn::seq_t()
        .add(linear(vs / "fc1", 784, 256, init))
        .add_fn(|x| x.relu())
        .add(linear(vs / "fc2", 256, 256, init))
        .add_fn(|x| x.relu())
        .add(linear(vs / "fc3", 256, 10, init))
}
