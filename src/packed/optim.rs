//! SGD and Adam over packed parameters, each member at its own learning rate (a [M] tensor on
//! the device, so a captured CUDA graph reads the current values). The arithmetic is the single
//! run's (`crate::optim`), member by member.
use crate::config::Optimizer;
use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

pub struct PackedOptim {
    kind: Optimizer,
    /// Per member: the learning rate (SGD) or Adam's step size lr / (1 - beta1^t), negated.
    neg_rate: Tensor,
    /// Adam's (first, second) moments per parameter, [M, ...] like the parameters.
    moments: Vec<(Tensor, Tensor)>,
    pub adam_step: i64,
}

/// `rate` [M] viewed to broadcast over a [M, ...] parameter.
fn per_member(rate: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![1i64; like.dim()];
    shape[0] = -1;
    rate.view(shape.as_slice())
}

impl PackedOptim {
    pub fn new(kind: Optimizer, params: &[(String, Tensor)], members: i64, device: Device) -> PackedOptim {
        let moments = match kind {
            Optimizer::Sgd => vec![],
            Optimizer::Adam => params.iter().map(|(_, p)| (p.zeros_like().detach(), p.zeros_like().detach())).collect(),
        };
        PackedOptim { kind, neg_rate: Tensor::zeros([members], (Kind::Float, device)), moments, adam_step: 0 }
    }

    /// This step's learning rates, one per member (a stopped member's is 0).
    pub fn set_lrs(&mut self, lrs: &[f64]) {
        let divisor = match self.kind {
            Optimizer::Sgd => 1.0,
            Optimizer::Adam => 1.0 - BETA1.powi(self.adam_step as i32 + 1),
        };
        let values: Vec<f32> = lrs.iter().map(|lr| (-(lr / divisor)) as f32).collect();
        self.neg_rate.copy_(&Tensor::from_slice(&values));
    }

    /// p -= lr g (SGD) or Adam's step, for every member at once. `grads` match `params`.
    pub fn step(&mut self, params: &[(String, Tensor)], grads: &[Tensor]) {
        if self.kind == Optimizer::Adam {
            self.adam_step += 1;
        }
        let bc2 = (1.0 - BETA2.powi(self.adam_step as i32)).sqrt();
        tch::no_grad(|| {
            for (k, ((_, p), g)) in params.iter().zip(grads).enumerate() {
                let mut p = p.shallow_clone();
                let rate = per_member(&self.neg_rate, &p);
                match self.kind {
                    Optimizer::Sgd => {
                        let _ = p.addcmul_(g, &rate);
                    }
                    Optimizer::Adam => {
                        let (m, v) = &mut self.moments[k];
                        let _ = m.g_mul_scalar_(BETA1).g_add_(&(g * (1.0 - BETA1)));
                        let _ = v.g_mul_scalar_(BETA2).addcmul_(g, &(g * (1.0 - BETA2)));
                        let denom = v.sqrt() / bc2 + EPS;
                        let _ = p.addcdiv_(&(&*m * &rate), &denom);
                    }
                }
            }
        });
    }

    /// Member `m`'s optimizer state under a single run's checkpoint keys.
    pub fn member_state(&self, params: &[(String, Tensor)], m: i64) -> (Vec<(String, Tensor)>, Option<i64>) {
        match self.kind {
            Optimizer::Sgd => (vec![], None),
            Optimizer::Adam => {
                let tensors = params.iter().zip(&self.moments).flat_map(|((n, _), (mo, v))| {
                    [(format!("adam.m.{n}"), mo.get(m)), (format!("adam.v.{n}"), v.get(m))]
                }).collect();
                (tensors, Some(self.adam_step))
            }
        }
    }

    /// Puts a member's moments (from its checkpoint's tensors) into slot `m`.
    pub fn restore_member(&mut self, params: &[(String, Tensor)], m: i64, find: impl Fn(&str) -> Result<Tensor>, step: Option<i64>) -> Result<()> {
        if self.kind == Optimizer::Sgd {
            return Ok(());
        }
        self.adam_step = step.ok_or_else(|| anyhow::anyhow!("checkpoint lacks Adam's step"))?;
        tch::no_grad(|| -> Result<()> {
            for ((n, p), (mo, v)) in params.iter().zip(&self.moments) {
                for (key, dst) in [(format!("adam.m.{n}"), mo), (format!("adam.v.{n}"), v)] {
                    let src = find(&key)?;
                    ensure!(src.size()[..] == p.size()[1..], "checkpoint's {key} has shape {:?}, the model's {n} {:?}", src.size(), &p.size()[1..]);
                    dst.get(m).copy_(&src);
                }
            }
            Ok(())
        })
    }
}
