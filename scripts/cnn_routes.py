#!/usr/bin/env python3
"""Routes for the single faithful CNN's step on CUDA, in PyTorch, before one is built into nndl.

On an H200 nndl's faithful CNN took 0.96x the CUDA-graph peer's loop (the speed issue asks for
0.9x); both are bound by the same cuDNN and cuBLAS kernels (docs/gpu/h200-profile-2.txt). This
script issues nndl's step (route `baseline`: NCHW, each convolution with its bias, max-pool
before the ReLU, TF's NHWC flatten, fc1's weights [out, in], dropout with keep_prob 0.25, SGD)
and variants, checks that each computes the baseline's losses, and times each as CUDA-graph
replays with cuDNN's benchmark mode on, as nndl runs:

  before            nndl's step as build 69e484e issued it: the labels gathered in the step
                    and the correct predictions summed every step (now: the labels planned with
                    the indices, the correct predictions added by batch position)
  bias-after-pool   each convolution's bias added after its pooling (NNDL_CNN_BIAS=pool in
                    nndl, built and timed by gpu-speed.sh): a quarter of the elements for the
                    bias's add and its gradient's sum
  fc1-in-out        fc1's weights stored [in, out]: its three products in the other
                    orientation (on the H200 the step's largest kernel, 86 us, was a split-K
                    `sgemm_largek` product)
  fc1-transposed    fc1's weights kept [out, in], its output computed transposed (W @ h^T):
                    the products in another orientation, the checkpoints as they are
  both              bias-after-pool + fc1-in-out

    scripts/cnn_routes.py [--device cuda] [--steps 1000] [--data DIR] [--json]

On the CPU (no CUDA graphs) it runs the steps eagerly: a check of the routes, not a timing.
"""
import json

import torch
import torch.nn.functional as F

from bench_torch import load
from pack_routes import agreement, heading, route_args, single_plan, single_sums, single_update, time_route

BATCH, LR, KEEP, CHECK_STEPS = 100, 0.01, 0.25, 3
ROUTES = {
    "baseline": {},
    "before": {"labels_in_step": True, "hits_summed": True},
    "bias-after-pool": {"bias_after_pool": True},
    "fc1-in-out": {"fc1_in_out": True},
    "fc1-transposed": {"fc1_transposed": True},
    "both": {"bias_after_pool": True, "fc1_in_out": True},
}


def initial(device):
    """The faithful start: truncated normal weights (std 0.1), biases 0.1."""
    gen = torch.Generator().manual_seed(0)
    def tn(*shape):
        return torch.randn(*shape, generator=gen).clamp_(-2, 2).mul_(0.1).to(device)
    shapes = [((32, 1, 5, 5), 32), ((64, 32, 5, 5), 64), ((1024, 3136), 1024), ((10, 1024), 10)]
    return [(tn(*w), torch.full((b,), 0.1, device=device)) for w, b in shapes]


class CnnStep:
    """One route's leaves and step (the ops nndl's single CNN issues, or a variant)."""

    def __init__(self, route, start, x, y):
        self.r, self.x, self.y = route, x, y
        self.leaves = []
        for k, (w, b) in enumerate(start):
            w = w.t().contiguous() if k == 2 and route.get("fc1_in_out") else w.clone()
            self.leaves += [w.requires_grad_(True), b.clone().requires_grad_(True)]
        self.sums = single_sums(x.device, route)

    def block(self, h, w, b):
        if self.r.get("bias_after_pool"):
            return (F.max_pool2d(F.conv2d(h, w, None, padding=2), 2) + b.view(1, -1, 1, 1)).relu()
        return F.max_pool2d(F.conv2d(h, w, b, padding=2), 2).relu()

    def step(self, planned, noise=None):
        """planned: `plan`'s batch; noise: the dropout multiplier [B, 1024] (for the check),
        None draws it here."""
        w1, b1, w2, b2, w3, b3, w4, b4 = self.leaves
        idx, ys = (planned, self.y.index_select(0, planned)) if self.r.get("labels_in_step") else (planned[0], planned[1])
        h = self.block(self.x.index_select(0, idx).view(-1, 1, 28, 28), w1, b1)
        h = self.block(h, w2, b2).permute(0, 2, 3, 1).reshape(-1, 3136)
        if self.r.get("fc1_in_out"):
            h = torch.addmm(b3, h, w3)
        elif self.r.get("fc1_transposed"):
            h = torch.addmm(b3.unsqueeze(1), w3, h.t()).t()
        else:
            h = F.linear(h, w3, b3)
        h = h.relu()
        if noise is None:
            noise = torch.empty_like(h).bernoulli_(KEEP).div_(KEEP)
        logits = F.linear(h * noise, w4, b4)
        return single_update(self.leaves, F.cross_entropy(logits, ys), logits, ys, self.sums, LR)

    def plan(self, indices, y):
        return single_plan(indices, y, self.r)


def check(start, x, y, batches, noises):
    """(relative difference at step 1, largest over the steps) of each route's loss against the
    baseline's, the same dropout masks in all."""
    base = CnnStep({}, start, x, y)
    want = [float(base.step(base.plan(b, y), n)) for b, n in zip(batches, noises)]
    out = {}
    for name, route in ROUTES.items():
        step = CnnStep(route, start, x, y)
        apart = [abs(float(step.step(step.plan(b, y), n)) - w) / abs(w) for b, n, w in zip(batches, noises, want)]
        out[name] = (apart[0], max(apart))
    return out


def main():
    a, device, graphs, steps = route_args(__doc__, 1000, 5)
    # As nndl's faithful CNN on CUDA: cuDNN's benchmark mode picks the convolutions.
    torch.backends.cudnn.benchmark = True
    x, y, _, _ = load(a.data, device)
    start = initial(device)
    gen = torch.Generator().manual_seed(1)
    indices = torch.randint(len(x), (steps, BATCH), generator=gen).to(device)
    noises = [(torch.rand(BATCH, 1024, generator=gen) < KEEP).float().div_(KEEP).to(device) for _ in range(CHECK_STEPS)]
    errors = check(start, x, y, list(indices[:CHECK_STEPS]), noises)
    times = {name: [] for name in ROUTES}
    for _ in range(a.rounds):
        for name, route in ROUTES.items():
            plans = [single_plan(i, y, route) for i in indices]
            times[name].append(time_route(lambda r=route: CnnStep(r, start, x, y), plans, device, graphs))
    best = {name: min(t) for name, t in times.items()}
    print(heading("faithful CNN, one run", device, graphs, steps, a.rounds))
    for name, us in best.items():
        print(f"  {name:>16}: {us:8.1f} us a step, {us / best['baseline']:.3f}x the baseline; {agreement(*errors[name], CHECK_STEPS)}")
    if a.json:
        print(json.dumps({"device": str(device), "steps": steps, "us_per_step": times, "check_relative_error": errors}))


if __name__ == "__main__":
    main()
