//! SGD and Adam over a pack's leaves, each member at its own learning rate (a [M] tensor on the
//! device, so a captured CUDA graph reads the current values). The arithmetic is the single
//! run's (`crate::optim`), member by member.
//!
//! With SGD a stacked leaf's rates are kept expanded to its whole shape: with a rate broadcast
//! over each member's slice, CUDA's `addcmul` takes its unvectorised kernel (27 us of the MLP
//! pack's 190 us step on an H200), and with all operands contiguous its vectorised one. The
//! values, and each element's arithmetic, are the same. Adam's rates change every step (its
//! bias correction), where a refresh would cost a copy a leaf, on steps no graph replays; they
//! stay broadcast.
use super::net::{Leaf, Span};
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
    /// Per leaf, the rates that apply to it (`rate_for`), and the members it holds.
    rates: Vec<(Tensor, Span)>,
    /// Adam's (first, second) moments, one pair per leaf and shaped like it.
    moments: Vec<(Tensor, Tensor)>,
    pub adam_step: i64,
}

/// Whether a stacked leaf's rates are a copy expanded to its shape, which `set_lrs` refreshes
/// (SGD; see the module's comment).
fn expands(kind: Optimizer) -> bool {
    kind == Optimizer::Sgd
}

/// The rates that apply to `leaf`: its member's (a 0-dim view), or, for a stacked [M, ...]
/// leaf, its members': `expanded`, in a tensor of its shape (filled by `set_lrs`), else viewed
/// to broadcast over it.
fn rate_for(rate: &Tensor, leaf: &Leaf, expanded: bool) -> Tensor {
    match (leaf.stacked, expanded) {
        (false, _) => rate.get(leaf.span.first),
        (true, true) => leaf.tensor.zeros_like().detach(),
        (true, false) => members_rates(rate, leaf.span, leaf.tensor.dim()),
    }
}

/// The rates of `span`'s members, shaped [-1, 1, 1, ...] over `dim` dimensions: one value per
/// member, broadcast over the rest.
fn members_rates(rate: &Tensor, span: Span, dim: usize) -> Tensor {
    let mut shape = vec![1i64; dim];
    shape[0] = -1;
    rate.narrow(0, span.first, span.count).view(shape.as_slice())
}

impl PackedOptim {
    pub fn new(kind: Optimizer, leaves: &[Leaf], members: i64, device: Device) -> PackedOptim {
        let moments = match kind {
            Optimizer::Sgd => vec![],
            Optimizer::Adam => leaves.iter().map(|l| (l.tensor.zeros_like().detach(), l.tensor.zeros_like().detach())).collect(),
        };
        let neg_rate = Tensor::zeros([members], (Kind::Float, device));
        let rates = leaves.iter().map(|l| (rate_for(&neg_rate, l, expands(kind)), l.span)).collect();
        PackedOptim { kind, neg_rate, rates, moments, adam_step: 0 }
    }

    /// This step's learning rates, one per member (a stopped member's is 0).
    pub fn set_lrs(&mut self, lrs: &[f64]) {
        let divisor = match self.kind {
            Optimizer::Sgd => 1.0,
            Optimizer::Adam => 1.0 - BETA1.powi(self.adam_step as i32 + 1),
        };
        let values: Vec<f32> = lrs.iter().map(|lr| (-(lr / divisor)) as f32).collect();
        self.neg_rate.copy_(&Tensor::from_slice(&values));
        // Expanded, a stacked leaf's rates are a copy (a member's own leaf's: a 0-dim view).
        let expanded = expands(self.kind);
        for (rates, span) in self.rates.iter_mut().filter(|(r, _)| expanded && r.dim() > 0) {
            rates.copy_(&members_rates(&self.neg_rate, *span, rates.dim()).expand_as(rates));
        }
    }

    /// Starts a step: Adam counts it (before `update`, after `set_lrs`).
    pub fn begin_step(&mut self) {
        if self.kind == Optimizer::Adam {
            self.adam_step += 1;
        }
    }

    /// p -= lr g (SGD) or Adam's update for the leaves `which` (indices into `leaves`), whose
    /// gradients `grads` are, in that order.
    pub fn update(&mut self, leaves: &[Leaf], which: &[usize], grads: &[Tensor]) {
        let bc2 = (1.0 - BETA2.powi(self.adam_step as i32)).sqrt();
        tch::no_grad(|| {
            for (&k, g) in which.iter().zip(grads) {
                let leaf = &leaves[k];
                let mut p = leaf.tensor.shallow_clone();
                let rate = &self.rates[k].0;
                match self.kind {
                    Optimizer::Sgd => {
                        let _ = p.addcmul_(g, rate);
                    }
                    Optimizer::Adam => {
                        let (m, v) = &mut self.moments[k];
                        let _ = m.g_mul_scalar_(BETA1).g_add_(&(g * (1.0 - BETA1)));
                        let _ = v.g_mul_scalar_(BETA2).addcmul_(g, &(g * (1.0 - BETA2)));
                        let denom = v.sqrt() / bc2 + EPS;
                        let _ = p.addcdiv_(&(&*m * rate), &denom);
                    }
                }
            }
        });
    }

    /// Member `m`'s optimizer state under a single run's checkpoint keys.
    pub fn member_state(&self, leaves: &[Leaf], m: i64) -> (Vec<(String, Tensor)>, Option<i64>) {
        match self.kind {
            Optimizer::Sgd => (vec![], None),
            Optimizer::Adam => {
                let tensors = leaves.iter().zip(&self.moments).flat_map(|(l, (mo, v))| {
                    let (mo, v) = (l.member_part(mo, m), l.member_part(v, m));
                    [mo.map(|t| (format!("adam.m.{}", l.name), t)), v.map(|t| (format!("adam.v.{}", l.name), t))]
                }).flatten().collect();
                (tensors, Some(self.adam_step))
            }
        }
    }

    /// Puts a member's moments (from its checkpoint's tensors) into slot `m`.
    pub fn restore_member(&mut self, leaves: &[Leaf], m: i64, find: impl Fn(&str) -> Result<Tensor>, step: Option<i64>) -> Result<()> {
        if self.kind == Optimizer::Sgd {
            return Ok(());
        }
        self.adam_step = step.ok_or_else(|| anyhow::anyhow!("checkpoint lacks Adam's step"))?;
        tch::no_grad(|| -> Result<()> {
            for (l, (mo, v)) in leaves.iter().zip(&self.moments) {
                for (key, dst) in [(format!("adam.m.{}", l.name), mo), (format!("adam.v.{}", l.name), v)] {
                    let Some(mut dst) = l.member_part(dst, m) else { continue };
                    let src = find(&key)?;
                    ensure!(src.size() == dst.size() && src.kind() == dst.kind(), "checkpoint's {key} is {:?} {:?}, the model's {} {:?} {:?}", src.kind(), src.size(), l.name, dst.kind(), dst.size());
                    dst.copy_(&src);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PackedOptim;
    use crate::config::Optimizer;
    use crate::packed::net::{Leaf, Span};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_stacked_leaf_takes_each_members_current_rate() {
        // The expanded rates are a copy: every set_lrs must refresh them, or a stopped member
        // (rate 0) would go on stepping at its old rate.
        let leaf = Leaf { name: "w".into(), span: Span { first: 0, count: 2 }, stacked: true, tensor: Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), transposed: false };
        let leaves = [leaf];
        let grad = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let mut opt = PackedOptim::new(Optimizer::Sgd, &leaves, 2, Device::Cpu);
        let row = |m: i64| Vec::<f32>::try_from(leaves[0].tensor.get(m)).unwrap();
        opt.set_lrs(&[0.5, 0.25]);
        opt.update(&leaves, &[0], &[grad.shallow_clone()]);
        assert_eq!((row(0), row(1)), (vec![-0.5; 3], vec![-0.25; 3]));
        opt.set_lrs(&[0.0, 1.0]);
        opt.update(&leaves, &[0], &[grad]);
        assert_eq!((row(0), row(1)), (vec![-0.5; 3], vec![-1.25; 3]));
    }
}
