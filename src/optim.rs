//! The optimizers. SGD is tch's (it has no state). Adam is written here on tch tensors because
//! tch keeps libtorch's Adam state out of reach and checkpoints must hold it (moments and step);
//! it follows libtorch's C++ `torch::optim::Adam` step for step.
use crate::config::{Optimizer, TrainConfig};
use anyhow::Result;
use tch::nn::{self, OptimizerConfig};
use tch::Tensor;

pub enum Optim {
    Sgd(nn::Optimizer),
    Adam(Adam),
}

pub struct Adam {
    /// (name, parameter, first moment, second moment), in the VarStore's name order.
    slots: Vec<(String, Tensor, Tensor, Tensor)>,
    pub step: i64,
    lr: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl Optim {
    pub fn new(cfg: &TrainConfig, vs: &nn::VarStore) -> Result<Optim> {
        Ok(match cfg.optimizer {
            Optimizer::Sgd => Optim::Sgd(nn::Sgd::default().build(vs, cfg.lr)?),
            Optimizer::Adam => {
                let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
                vars.sort_by(|a, b| a.0.cmp(&b.0));
                let slots = vars.into_iter().map(|(n, p)| {
                    let (m, v) = (p.zeros_like(), p.zeros_like());
                    (n, p, m, v)
                }).collect();
                Optim::Adam(Adam { slots, step: 0, lr: cfg.lr })
            }
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Optim::Sgd(o) => o.set_lr(lr),
            Optim::Adam(a) => a.lr = lr,
        }
    }

    /// Clears the gradients. tch's SGD sets them to None (libtorch's zero_grad), which the
    /// CUDA-graph capture relies on: the captured backward then writes fresh gradients.
    pub fn zero_grad(&mut self) {
        match self {
            Optim::Sgd(o) => o.zero_grad(),
            Optim::Adam(a) => a.slots.iter_mut().for_each(|(_, p, _, _)| p.zero_grad()),
        }
    }

    pub fn step(&mut self) {
        match self {
            Optim::Sgd(o) => o.step(),
            Optim::Adam(a) => a.step(),
        }
    }

    /// The state a checkpoint keeps: Adam's moments by parameter name, and its step.
    pub fn state(&self) -> (Vec<(String, Tensor)>, Option<i64>) {
        match self {
            Optim::Sgd(_) => (vec![], None),
            Optim::Adam(a) => {
                let tensors = a.slots.iter().flat_map(|(n, _, m, v)| {
                    [(format!("adam.m.{n}"), m.shallow_clone()), (format!("adam.v.{n}"), v.shallow_clone())]
                }).collect();
                (tensors, Some(a.step))
            }
        }
    }

    /// Restores what `state` returned; every moment must be there with its parameter's shape.
    pub fn restore(&mut self, tensors: &std::collections::HashMap<String, Tensor>, step: Option<i64>) -> Result<()> {
        let Optim::Adam(a) = self else { return Ok(()) };
        a.step = step.ok_or_else(|| anyhow::anyhow!("checkpoint lacks Adam's step"))?;
        tch::no_grad(|| -> Result<()> {
            for (n, p, m, v) in a.slots.iter_mut() {
                for (key, dst) in [(format!("adam.m.{n}"), m), (format!("adam.v.{n}"), v)] {
                    let src = tensors.get(&key).ok_or_else(|| anyhow::anyhow!("checkpoint lacks {key}"))?;
                    anyhow::ensure!(src.size() == p.size() && src.kind() == p.kind(), "checkpoint's {key} is {:?} {:?}, the model's {n} {:?} {:?}", src.kind(), src.size(), p.kind(), p.size());
                    dst.copy_(src);
                }
            }
            Ok(())
        })
    }
}

impl Adam {
    /// libtorch's Adam (no weight decay, no amsgrad):
    /// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g²; p -= lr/(1 - b1^t) · m / (sqrt(v)/sqrt(1 - b2^t) + eps).
    fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        let step_size = self.lr / bc1;
        tch::no_grad(|| {
            for (_, p, m, v) in self.slots.iter_mut() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(BETA1).g_add_(&(&g * (1.0 - BETA1)));
                let _ = v.g_mul_scalar_(BETA2).addcmul_(&g, &(&g * (1.0 - BETA2)));
                let denom = v.sqrt() / bc2.sqrt() + EPS;
                let _ = p.addcdiv_(&(&*m * -step_size), &denom);
            }
        });
    }
}
