//! M networks of one architecture as one model with one autograd graph.
//!
//! Stacked (the MLP on CUDA): each parameter is one leaf, its members' values stacked on a new
//! first axis; linear layers are batched matrix products and the CNN's convolutions grouped
//! convolutions (member m's channels are group m), so a step launches one kernel per layer for
//! all members.
//!
//! Member by member (the CPU, and the CNN on CUDA, each member on a stream of its own: see
//! `super::stacked_on`): each member keeps its own leaves and runs the single network's own
//! ops. Measured on this 2-core CPU, libtorch's batched products run their members one after
//! another and slower than plain products (the backward's transposed operands: a packed step of 5
//! MLP members took 1.82 ms a member against 1.65 ms for a single step, one thread), and for the
//! CNN the batched kernels' different rounding is amplified by its large early gradients (a
//! 1-ulp difference at step 2 is 5e-5 at step 3 and 3e-3 by step 5). Member by member, each
//! member's arithmetic is its single run's.
//!
//! Inputs either differ per member ([M, B, 784], training) or are shared ([B, 784], evaluation:
//! stacked, the first linear layer is then one wide product).
//!
//! Stacked, the members may also be split into stacks of a few (`split_stacks`,
//! NNDL_PACK_STACK=N): each stack is a batched model of its own, and on CUDA each steps on a
//! stream of its own, so that one stack's kernels run in the gaps between another's.
//!
//! Stacked, a linear layer's weights are [M, out, in] as each member's are, or, with
//! NNDL_PACK_WEIGHTS=in-out (`store_weights_in_out`), [M, in, out]: the batched products in the
//! other orientation, for cuBLAS to pick other kernels (an A/B route for CUDA). A member's
//! value is then its slice transposed, so checkpoints and weights keep a single run's shapes.
use crate::config::ModelKind;
use crate::models::cnn::flatten_nhwc;
use crate::models::conv_block::{conv_relu_pool, ConvPlan, Layout};
use crate::run::Network;
use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

pub enum Input<'a> {
    /// [M, B, 784]: each member's own batch.
    PerMember(&'a Tensor),
    /// [B, 784]: the same images for every member.
    Shared(&'a Tensor),
}

/// Members `first..first + count`: the members a leaf holds, or that train as one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub first: i64,
    pub count: i64,
}

impl Span {
    fn holds(self, m: i64) -> bool {
        (self.first..self.first + self.count).contains(&m)
    }
}

/// A trainable tensor: one parameter of the members in `span`, stacked on a leading axis, or one
/// member's own (`stacked` false, shaped as a single run's).
pub struct Leaf {
    pub name: String,
    pub span: Span,
    pub stacked: bool,
    pub tensor: Tensor,
    /// A stacked linear weight kept [M, in, out]: each member's value is its slice transposed.
    pub transposed: bool,
}

impl Leaf {
    /// Whether this leaf holds member m's values (stacked, or its own).
    fn holds(&self, m: i64) -> bool {
        self.span.holds(m)
    }

    /// Member m's part of `t` (this leaf, or a tensor shaped like it, such as Adam's moments),
    /// shaped as the member's own parameter; the leaf must hold member m.
    fn part(&self, t: &Tensor, m: i64) -> Tensor {
        match (self.stacked, self.transposed) {
            (false, _) => t.shallow_clone(),
            (true, true) => t.get(m - self.span.first).transpose(0, 1),
            (true, false) => t.get(m - self.span.first),
        }
    }

    /// `part`, or None if the leaf is another member's.
    pub fn member_part(&self, t: &Tensor, m: i64) -> Option<Tensor> {
        self.holds(m).then(|| self.part(t, m))
    }
}

pub struct PackedNet {
    pub model: ModelKind,
    pub members: i64,
    /// Stacked leaves and batched kernels (else member by member).
    pub stacked: bool,
    /// The units a step trains, in member order: each member (member by member), or each stack.
    pub spans: Vec<Span>,
    /// Name order; each name's members or stacks in order.
    pub leaves: Vec<Leaf>,
    /// The CNN's convolution blocks, as the single CNN computes them on this device.
    pub plan: ConvPlan,
}

impl PackedNet {
    /// Stacks the members' parameters (each network as a single run with its seed built it).
    pub fn stack(model: ModelKind, networks: &[Network], stacked: bool) -> Result<PackedNet> {
        PackedNet::from_members(model, networks.iter().map(|n| crate::run::parameters(&n.vs)).collect(), stacked)
    }

    /// Packs the members' parameter lists (`run::parameters`: by name, sorted), copied.
    pub fn from_members(model: ModelKind, each: Vec<Vec<(String, Tensor)>>, stacked: bool) -> Result<PackedNet> {
        ensure!(!each.is_empty() && !each[0].is_empty(), "a pack needs at least one member with parameters");
        let plan = ConvPlan::for_device(each[0][0].1.device());
        let members = each.len() as i64;
        let spans: Vec<Span> = match stacked {
            true => vec![Span { first: 0, count: members }],
            false => (0..members).map(|first| Span { first, count: 1 }).collect(),
        };
        let mut leaves = Vec::new();
        for (k, (name, _)) in each[0].iter().enumerate() {
            for &span in &spans {
                let parts: Vec<Tensor> = each[span.first as usize..][..span.count as usize].iter().map(|p| p[k].1.detach()).collect();
                let tensor = if stacked { Tensor::stack(&parts, 0) } else { parts[0].copy() };
                leaves.push(Leaf { name: name.clone(), span, stacked, tensor: tensor.set_requires_grad(true), transposed: false });
            }
        }
        Ok(PackedNet { model, members, stacked, spans, leaves, plan })
    }

    /// Splits a stacked pack into stacks of `size` members (the last one may be smaller), each
    /// a batched model of its own (NNDL_PACK_STACK; stacked only). The values are the members'.
    pub fn split_stacks(&mut self, size: i64) {
        if !self.stacked || size >= self.members {
            return;
        }
        self.spans = (0..self.members).step_by(size as usize).map(|first| Span { first, count: size.min(self.members - first) }).collect();
        let whole = std::mem::take(&mut self.leaves);
        for leaf in whole {
            for &span in &self.spans {
                let tensor = leaf.tensor.detach().narrow(0, span.first, span.count).contiguous().set_requires_grad(true);
                self.leaves.push(Leaf { name: leaf.name.clone(), span, stacked: true, tensor, transposed: leaf.transposed });
            }
        }
    }

    /// Keeps the stacked linear weights [M, in, out] (NNDL_PACK_WEIGHTS=in-out; stacked only).
    pub fn store_weights_in_out(&mut self) {
        for leaf in self.leaves.iter_mut().filter(|l| l.stacked && l.tensor.dim() == 3 && l.name.ends_with(".weight")) {
            leaf.tensor = leaf.tensor.detach().transpose(1, 2).contiguous().set_requires_grad(true);
            leaf.transposed = true;
        }
    }

    /// Whether the stacked linear weights are kept [M, in, out].
    pub fn weights_in_out(&self) -> bool {
        self.leaves.iter().any(|l| l.transposed)
    }

    /// The stacked leaf of `name` for the stack `span`.
    fn leaf(&self, name: &str, span: Span) -> &Leaf {
        self.leaves.iter().find(|l| l.name == name && l.span == span).unwrap_or_else(|| panic!("packed net has no {name} for {span:?}"))
    }

    fn p(&self, name: &str, span: Span) -> &Tensor {
        &self.leaf(name, span).tensor
    }

    /// Member `m`'s value of parameter `name` (a view into a stacked leaf, or its own leaf).
    pub fn param(&self, name: &str, m: i64) -> Tensor {
        let leaf = self.leaves.iter().find(|l| l.name == name && l.holds(m)).unwrap_or_else(|| panic!("packed net has no {name}"));
        leaf.part(&leaf.tensor, m)
    }

    /// Layer `layer`'s stacked weights as [M, in, out], for products `h @ w`, and its bias.
    fn weights_in_out_of(&self, layer: &str, span: Span) -> (Tensor, &Tensor) {
        let w = self.leaf(&format!("{layer}.weight"), span);
        let w_in_out = if w.transposed { w.tensor.shallow_clone() } else { w.tensor.transpose(1, 2) };
        (w_in_out, self.p(&format!("{layer}.bias"), span))
    }

    /// Member `m`'s parameters (detached views), under the names a single run's VarStore uses.
    pub fn member(&self, m: i64) -> Vec<(String, Tensor)> {
        let mut names: Vec<&str> = self.leaves.iter().map(|l| l.name.as_str()).collect();
        names.dedup();
        names.into_iter().map(|n| (n.to_string(), self.param(n, m).detach())).collect()
    }

    /// Logits [M, B, 10]. `noise` [M, B, 1024] is the CNN's dropout multiplier (already
    /// scaled by 1/keep_prob), drawn by the caller per member; None: no dropout.
    pub fn forward(&self, x: Input, noise: Option<&Tensor>) -> Tensor {
        let mut parts: Vec<Tensor> = self.spans.iter().map(|&span| self.unit_logits(span, &x, noise)).collect();
        match parts.len() {
            1 => parts.remove(0),
            _ => Tensor::cat(&parts, 0),
        }
    }

    /// Logits [count, B, 10] of the members of `span`, one of `spans`: the stack's batched
    /// model, or (member by member) the member's own network. `x` and `noise` hold every member's.
    pub fn unit_logits(&self, span: Span, x: &Input, noise: Option<&Tensor>) -> Tensor {
        if !self.stacked {
            return self.member_logits(span.first, x, noise).unsqueeze(0);
        }
        let own;
        let x = match x {
            Input::PerMember(x) => {
                own = x.narrow(0, span.first, span.count);
                Input::PerMember(&own)
            }
            Input::Shared(x) => Input::Shared(x),
        };
        match self.model {
            ModelKind::Mlp => {
                let h = self.first_linear(x, "fc1", span).relu();
                let h = self.linear(&h, "fc2", span).relu();
                self.linear(&h, "fc3", span)
            }
            ModelKind::Cnn => {
                let h = self.linear(&self.features(x, span), "fc1", span).relu();
                let h = match noise {
                    Some(n) => h * n.narrow(0, span.first, span.count),
                    None => h,
                };
                self.linear(&h, "fc2", span)
            }
        }
    }

    /// [M, B, in] -> [M, B, out]: each member's batch through its own layer.
    fn linear(&self, h: &Tensor, layer: &str, span: Span) -> Tensor {
        let (w, b) = self.weights_in_out_of(layer, span);
        b.unsqueeze(1).baddbmm(h, &w, 1.0, 1.0)
    }

    /// The first linear layer; shared inputs go through all the stack's weights in one product.
    fn first_linear(&self, x: Input, layer: &str, span: Span) -> Tensor {
        match x {
            Input::PerMember(h) => self.linear(h, layer, span),
            Input::Shared(h) => {
                let w = self.leaf(&format!("{layer}.weight"), span);
                let b = self.p(&format!("{layer}.bias"), span);
                let (m, out) = (span.count, b.size()[1]);
                let wide = if w.transposed {
                    // [M, in, out] -> [in, M * out]: a copy of the weights, once an evaluation chunk.
                    b.view([m * out]).addmm(h, &w.tensor.permute([1, 0, 2]).reshape([-1, m * out]))
                } else {
                    h.linear(&w.tensor.view([m * out, -1]), Some(b.view([m * out])))
                };
                wide.view([-1, m, out]).transpose(0, 1)
            }
        }
    }

    /// Member k's logits [B, 10] from its own leaves (member by member only).
    fn member_logits(&self, k: i64, x: &Input, noise: Option<&Tensor>) -> Tensor {
        match self.model {
            ModelKind::Mlp => self.mlp_member(k, x),
            ModelKind::Cnn => self.cnn_member(k, x, noise),
        }
    }

    /// The indices in `leaves` of the leaves of `span`, one of `spans`.
    pub fn unit_leaves(&self, span: Span) -> Vec<usize> {
        self.leaves.iter().enumerate().filter(|(_, l)| l.span == span).map(|(i, _)| i).collect()
    }

    /// Member k's logits [B, 10], op for op as `models::mlp` computes them.
    fn mlp_member(&self, k: i64, x: &Input) -> Tensor {
        let linear = |h: &Tensor, layer: &str| h.linear(&self.param(&format!("{layer}.weight"), k), Some(self.param(&format!("{layer}.bias"), k)));
        let h = linear(&member_input(x, k), "fc1").relu();
        let h = linear(&h, "fc2").relu();
        linear(&h, "fc3")
    }

    /// Member k's logits [B, 10], op for op as `models::cnn` computes them.
    fn cnn_member(&self, k: i64, x: &Input, noise: Option<&Tensor>) -> Tensor {
        let images = member_input(x, k);
        let w = |layer: &str| self.param(&format!("{layer}.weight"), k);
        let b = |layer: &str| self.param(&format!("{layer}.bias"), k);
        let block = |h: &Tensor, layer: &str| conv_relu_pool(h, &w(layer), &b(layer), 1, self.plan.bias_at);
        let h = block(&self.plan.layout.images(&images), "conv1");
        let h = flatten_nhwc(&block(&h, "conv2"));
        let h = h.linear(&w("fc1"), Some(b("fc1"))).relu();
        let h = match noise {
            Some(n) => h * n.get(k),
            None => h,
        };
        h.linear(&w("fc2"), Some(b("fc2")))
    }

    /// The CNN's grouped convolutions: [M, B, 784] or [B, 784] -> [M, B, 7*7*64] in TF's NHWC order.
    fn features(&self, x: Input, span: Span) -> Tensor {
        let m = span.count;
        let block = |h: &Tensor, layer: &str, groups: i64| {
            let (w, b) = (self.p(&format!("{layer}.weight"), span), self.p(&format!("{layer}.bias"), span));
            let s = w.size();
            conv_relu_pool(h, &w.view([m * s[1], s[2], s[3], s[4]]), &b.view([-1]), groups, self.plan.bias_at)
        };
        let h = match x {
            Input::Shared(x) => block(&self.plan.layout.images(x), "conv1", 1),
            Input::PerMember(x) => {
                // [M, B, 784] -> [B, M, 28, 28]: member m's images are input channel m.
                let b = x.size()[1];
                let images = x.view([m, b, 28, 28]);
                let images = match self.plan.layout {
                    Layout::ChannelsLast => images.permute([1, 2, 3, 0]).contiguous().permute([0, 3, 1, 2]),
                    Layout::Nchw => images.transpose(0, 1).contiguous(),
                };
                block(&images, "conv1", m)
            }
        };
        let h = block(&h, "conv2", m);
        let b = h.size()[0];
        // [B, M*64, 7, 7] -> [M, B, 7, 7, 64] -> [M, B, 3136].
        h.view([b, m, 64, 7, 7]).permute([1, 0, 3, 4, 2]).reshape([m, b, 7 * 7 * 64])
    }
}

/// Member k's images.
fn member_input(x: &Input, k: i64) -> Tensor {
    match x {
        Input::PerMember(x) => x.get(k),
        Input::Shared(x) => x.shallow_clone(),
    }
}

/// Per-member summed log-likelihood [M] of logits [M, B, C] against labels [M, B] (or [B],
/// shared), the cross-entropy's sum negated, and which predictions are correct [M, B] (bool).
/// Callers fold the negation into their division or sum: one kernel less, forward and backward,
/// and the same values (IEEE arithmetic is symmetric in the sign).
///
/// `alone`: each member's sum by the single run's own kernel (`nll_loss`, which sums in an order
/// of its own), so that a member-by-member pack's training and test losses are its single runs'
/// bit for bit, as its weights are; else one gather and one sum for all members (a stacked
/// pack's, one kernel for all). The gradients are the same either way.
pub fn log_likelihood_and_hits(logits: &Tensor, labels: &Tensor, alone: bool) -> (Tensor, Tensor) {
    let labels = labels.expand([logits.size()[0], logits.size()[1]], false);
    let log_p = logits.log_softmax(-1, Kind::Float);
    let hits = logits.argmax(-1, false).eq_tensor(&labels);
    let likelihood = if alone {
        let sums: Vec<Tensor> = (0..logits.size()[0]).map(|k| log_p.get(k).nll_loss_nd(&labels.get(k), None::<Tensor>, tch::Reduction::Sum, -100)).collect();
        -Tensor::stack(&sums, 0)
    } else {
        log_p.gather(2, &labels.unsqueeze(2), false).squeeze_dim(2).sum_dim_intlist(1, false, Kind::Float)
    };
    (likelihood, hits)
}
