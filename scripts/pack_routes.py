#!/usr/bin/env python3
"""Routes for the packed MLP's step, in PyTorch, before one is built into nndl.

nndl's CUDA pack of M faithful MLP members stacks each parameter (src/packed/net.rs) and replays
its step as one CUDA graph (src/packed/trainer.rs, optim.rs). On an H200 the pack of 10 took
1.86x one single run's loop (the speed issue asks for 1.5x): 190 us of kernels a step in 44
kernels, and about 100 us of gaps between them. This script issues the same ops as nndl's step
(route `baseline`) and variants of them, checks that each variant computes the baseline's
losses, captures each in a CUDA graph as nndl does, and times its replays, so that a GPU session
learns in about a minute which routes are worth building:

  baseline          nndl's step: baddbmm with the weights [M, out, in] transposed, log_softmax
                    and gather, argmax and the running sums (the correct predictions added by
                    batch position), addcmul with each member's rate expanded to its leaf's
                    shape (vectorised), the labels gathered when the plan is made, the loss's
                    negation folded into its division
  before            nndl's step before those four (build 69e484e): each member's rate
                    broadcast over its slice (the unvectorised elementwise kernel), the labels
                    gathered in the step, the correct predictions summed every step, the
                    summed log-likelihood negated, then divided
  bias-in-product   each layer's bias as a last row of its weights [M, in + 1, out] and a column
                    of ones beside its inputs: no bias add and no bias-gradient sums
  weights-in-out    the weights stored [M, in, out]: the products' other orientation
  feature-major     the weights kept [M, out, in] (checkpoints as they are), the activations
                    [M, features, B]: each layer W @ h, its products in yet another orientation
  groups-of-5       the baseline's step for two stacks of 5 members, each on a CUDA stream of
  groups-of-2       its own inside the one graph (five stacks of 2): each stack's kernels fill
                    the gaps between the other's, with half the members per batched product
                    (ten members on streams of their own took 1.31x the stack on the H200)
  single            one member, a single run's ops (F.linear, cross-entropy, SGD): the 1x

It also times one evaluation of the pack (10,000 test images in nndl's CUDA chunks of 5000, the
first layer one wide product for all members), for the share of the loop its 81 evaluations take.

    scripts/pack_routes.py [--device cuda] [--members 10] [--steps 2000] [--data DIR] [--json]

On the CPU (no CUDA graphs) it runs the steps eagerly: a check of the routes, not a timing.
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from bench_torch import load

LAYERS = [(784, 256), (256, 256), (256, 10)]
BATCH, LR, CHECK_STEPS = 100, 0.005, 5
ROUTES = {
    "baseline": {},
    "before": {"rate_broadcast": True, "labels_in_step": True, "hits_summed": True, "negate_apart": True},
    "bias-in-product": {"bias_in_product": True},
    "weights-in-out": {"weights_in_out": True},
    "feature-major": {"feature_major": True},
}
# Stacks of this many members, each stepping on a stream of its own (GroupedStep).
GROUPED = {"groups-of-5": 5, "groups-of-2": 2}


def initial(members, device):
    """Each member's N(0, 1) weights [out, in] and biases [out], stacked: the faithful start."""
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(members, o, i, generator=gen).to(device), torch.randn(members, o, generator=gen).to(device)) for i, o in LAYERS]


class PackStep:
    """One route's leaves, its step (the ops nndl's stacked pack issues, or a variant) and its sums."""

    def __init__(self, route, start, x, y, members):
        self.r, self.m, self.y = route, members, y
        self.bias_in_product = route.get("bias_in_product", False)
        self.x = torch.cat([x, torch.ones(len(x), 1, device=x.device)], 1) if self.bias_in_product else x
        if self.bias_in_product:
            self.leaves = [torch.cat([w.transpose(1, 2), b.unsqueeze(1)], 1).contiguous() for w, b in start]
        elif route.get("weights_in_out"):
            self.leaves = [t for w, b in start for t in (w.transpose(1, 2).contiguous(), b.clone())]
        else:
            self.leaves = [t.clone() for w, b in start for t in (w, b)]
        for p in self.leaves:
            p.requires_grad_(True)
        neg_rate = torch.full((members,), -LR, device=x.device)
        shaped = [neg_rate.view(-1, *([1] * (p.dim() - 1))) for p in self.leaves]
        self.rates = shaped if route.get("rate_broadcast") else [r.expand_as(p).contiguous() for r, p in zip(shaped, self.leaves)]
        hits_shape = (members,) if route.get("hits_summed") else (members, BATCH)
        self.sums = (torch.zeros(members, device=x.device), torch.zeros(hits_shape, dtype=torch.long, device=x.device))

    def logits(self, xs):
        if self.bias_in_product:
            h = xs
            for k, w in enumerate(self.leaves):
                h = torch.bmm(h, w)
                if k < len(self.leaves) - 1:
                    h = F.pad(h.relu(), (0, 1), value=1.0)
            return h
        if self.r.get("feature_major"):
            # Activations [M, features, B]: each layer W @ h, the weights' gradients W-shaped.
            h = xs.transpose(1, 2)
            for k in range(len(LAYERS)):
                h = torch.baddbmm(self.leaves[2 * k + 1].unsqueeze(2), self.leaves[2 * k], h)
                if k < len(LAYERS) - 1:
                    h = h.relu()
            return h.transpose(1, 2)
        h = xs
        for k in range(len(LAYERS)):
            w, b = self.leaves[2 * k], self.leaves[2 * k + 1]
            h = torch.baddbmm(b.unsqueeze(1), h, w if self.r.get("weights_in_out") else w.transpose(1, 2))
            if k < len(LAYERS) - 1:
                h = h.relu()
        return h

    def step(self, planned):
        """planned: [2, M * B] indices and their labels, or [M * B] indices (labels in the step)."""
        idx = planned if self.r.get("labels_in_step") else planned[0]
        ys = (self.y.index_select(0, idx) if self.r.get("labels_in_step") else planned[1]).view(self.m, BATCH)
        logits = self.logits(self.x.index_select(0, idx).view(self.m, BATCH, -1))
        picked = logits.log_softmax(-1).gather(2, ys.unsqueeze(2)).squeeze(2)
        hits = logits.argmax(-1).eq(ys)
        losses = -picked.sum(1) / BATCH if self.r.get("negate_apart") else picked.sum(1) / -BATCH
        grads = torch.autograd.grad(losses.sum(), self.leaves)
        with torch.no_grad():
            for p, g, r in zip(self.leaves, grads, self.rates):
                p.addcmul_(g, r)
            self.sums[0].add_(losses.detach())
            self.sums[1].add_(hits.sum(1) if self.r.get("hits_summed") else hits)
        return losses.detach()

    def plan(self, indices, y):
        return indices if self.r.get("labels_in_step") else torch.stack([indices, y[indices]], 0)


class GroupedStep:
    """The baseline's step for stacks of `size` members, each stack forked onto a CUDA stream of
    its own and joined before the losses are returned (one after another on the CPU)."""

    def __init__(self, size, start, x, y, members):
        assert members % size == 0, f"{members} members do not split into stacks of {size}"
        self.width = size * BATCH
        self.stacks = [PackStep({}, [(w[a:a + size], b[a:a + size]) for w, b in start], x, y, size) for a in range(0, members, size)]
        self.streams = [torch.cuda.Stream() for _ in self.stacks] if x.device.type == "cuda" else None

    def step(self, planned):
        parts = [planned[:, k * self.width:(k + 1) * self.width] for k in range(len(self.stacks))]
        if self.streams is None:
            return torch.cat([s.step(p) for s, p in zip(self.stacks, parts)])
        here = torch.cuda.current_stream()
        losses = []
        for stack, part, stream in zip(self.stacks, parts, self.streams):
            stream.wait_stream(here)
            with torch.cuda.stream(stream):
                losses.append(stack.step(part))
        for stream in self.streams:
            here.wait_stream(stream)
        return torch.cat(losses)

    def plan(self, indices, y):
        return torch.stack([indices, y[indices]], 0)


class SingleStep:
    """One member as a single run steps: F.linear layers, cross-entropy, SGD, the running sums."""

    def __init__(self, start, x, y):
        self.x, self.y = x, y
        self.leaves = [t[0].clone().requires_grad_(True) for w, b in start for t in (w, b)]
        self.sums = single_sums(x.device, {})

    def step(self, planned):
        xs, ys = self.x.index_select(0, planned[0]), planned[1]
        h = xs
        for k in range(len(LAYERS)):
            h = F.linear(h, self.leaves[2 * k], self.leaves[2 * k + 1])
            if k < len(LAYERS) - 1:
                h = h.relu()
        return single_update(self.leaves, F.cross_entropy(h, ys), h, ys, self.sums, LR)

    def plan(self, indices, y):
        return single_plan(indices[:BATCH], y, {})


def single_plan(indices, y, route):
    """A single run's batch: its indices and their labels, as nndl plans them (or the indices
    alone, the labels gathered in the step: route `before`)."""
    return indices if route.get("labels_in_step") else torch.stack([indices, y[indices]], 0)


def single_sums(device, route):
    """The running loss, and the correct predictions by batch position (summed every step:
    route `before`)."""
    return (torch.zeros((), device=device), torch.zeros(() if route.get("hits_summed") else BATCH, dtype=torch.long, device=device))


def single_update(leaves, loss, logits, ys, sums, lr):
    """What a single run does after its forward: the gradients, SGD, the running sums."""
    grads = torch.autograd.grad(loss, leaves)
    with torch.no_grad():
        for p, g in zip(leaves, grads):
            p.add_(g, alpha=-lr)
        sums[0].add_(loss.detach())
        hits = logits.argmax(-1).eq(ys)
        sums[1].add_(hits.sum() if sums[1].dim() == 0 else hits)
    return loss.detach()


def check(start, x, y, members, batches):
    """Each route's per-member losses over the first steps against the baseline's (eager), as
    (largest relative difference at step 1, over all the steps). A route that computes the same
    step differs by rounding at step 1 (about 1e-7); the faithful MLP's N(0, 1) start amplifies
    that to about 1e-4 by step 5. A route that computes something else (a bias left out: 4e-2)
    differs at step 1."""
    out = {}
    base = PackStep({}, start, x, y, members)
    want = [base.step(base.plan(b, y)).cpu() for b in batches]
    for name, make in route_makers(start, x, y, members).items():
        step = make()
        got = [step.step(step.plan(b, y)).cpu() for b in batches]
        apart = [float(((g - w).abs() / w.abs()).max()) for g, w in zip(got, want)]
        out[name] = (apart[0], max(apart))
    return out


def route_makers(start, x, y, members):
    """Each pack route's constructor, by name: the stacked variants, then the grouped ones that
    split the members evenly."""
    makes = {name: (lambda r=route: PackStep(r, start, x, y, members)) for name, route in ROUTES.items()}
    for name, size in GROUPED.items():
        if members % size == 0 and size < members:
            makes[name] = lambda size=size: GroupedStep(size, start, x, y, members)
    return makes


def time_route(make, plans, device, graphs):
    """Microseconds a step: graph replays (CUDA) or eager steps, the batch copied in first."""
    step = make()
    static = plans[0].clone()
    if graphs:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step.step(static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step.step(static)
        run = graph.replay
    else:
        run = lambda: step.step(static)
    for p in plans[:10]:
        static.copy_(p)
        run()
    sync(device)
    started = time.perf_counter()
    for p in plans:
        static.copy_(p)
        run()
    sync(device)
    return (time.perf_counter() - started) / len(plans) * 1e6


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_evaluation(start, tx, members, chunk, device, repeats=5):
    """Milliseconds of one pack evaluation as nndl's stacked pack makes it (Input::Shared)."""
    w = [(a.clone(), b.clone()) for a, b in start]
    def evaluate():
        with torch.no_grad():
            for s in range(0, len(tx), chunk):
                h = F.linear(tx[s:s + chunk], w[0][0].reshape(members * 256, -1), w[0][1].reshape(-1)).view(-1, members, 256).transpose(0, 1).relu()
                h = torch.baddbmm(w[1][1].unsqueeze(1), h, w[1][0].transpose(1, 2)).relu()
                logits = torch.baddbmm(w[2][1].unsqueeze(1), h, w[2][0].transpose(1, 2))
                logits.log_softmax(-1).sum(), logits.argmax(-1).sum()
    evaluate()
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        evaluate()
    sync(device)
    return (time.perf_counter() - started) / repeats * 1e3


def route_args(doc, steps, cpu_steps, more=None):
    """The route scripts' command line; sets the faithful numerics (float32 products without
    TF32, denormals flushed on the CPU). Returns (args, device, graph replays?, timed steps)."""
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=steps, help=f"timed steps a route and round (default {steps}; {cpu_steps} on the CPU)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the routes, alternating (default 2)")
    ap.add_argument("--data", default=os.environ.get("MNIST_DIR") or os.path.join(here, "..", "data", "mnist"))
    ap.add_argument("--json", action="store_true")
    if more:
        more(ap)
    a = ap.parse_args()
    device = torch.device(a.device)
    graphs = device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_flush_denormal(True)
    return a, device, graphs, a.steps if graphs else min(a.steps, cpu_steps)


def heading(what, device, graphs, steps, rounds):
    machine = torch.cuda.get_device_name(device) if graphs else "CPU, eager: a check, not a timing"
    replays = "CUDA graph replays" if graphs else "eager steps"
    return f"{what}, {device} ({machine}), torch {torch.__version__}, {replays}, {steps} steps a route, best of {rounds} rounds:"


def agreement(first, most, steps):
    """A route's losses against the baseline's, as `check` measured them."""
    verdict = "the same step" if first < 1e-5 and most < 1e-3 else "NOT THE SAME STEP"
    return f"losses vs baseline: {first:.1e} at step 1, {most:.1e} over {steps} steps ({verdict})"


def main():
    a, device, graphs, steps = route_args(__doc__, 2000, 20, lambda ap: ap.add_argument("--members", type=int, default=10))
    x, y, tx, _ = load(a.data, device)
    m = a.members
    start = initial(m, device)
    gen = torch.Generator().manual_seed(1)
    indices = torch.randint(len(x), (steps, m * BATCH), generator=gen).to(device)
    errors = check(start, x, y, m, list(indices[:CHECK_STEPS]))
    makes = route_makers(start, x, y, m)
    makes["single"] = lambda: SingleStep(start, x, y)
    times = {name: [] for name in makes}
    for _ in range(a.rounds):
        for name, make in makes.items():
            probe = make()
            plans = [probe.plan(i, y) for i in indices]
            times[name].append(time_route(make, plans, device, graphs))
    chunk = 5000 if graphs else 2000
    eval_ms = time_evaluation(start, tx, m, chunk, device)
    best = {name: min(t) for name, t in times.items()}
    print(heading(f"pack of {m} faithful MLP members", device, graphs, steps, a.rounds))
    for name, us in best.items():
        error = agreement(*errors[name], CHECK_STEPS) if name in errors else "one member: the single run's step"
        print(f"  {name:>16}: {us:8.1f} us a step, {us / best['baseline']:.3f}x the baseline, {us / best['single']:.2f}x a single run's step; {error}")
    print(f"  one evaluation of the pack ({len(tx)} images in chunks of {chunk}): {eval_ms:.2f} ms; 81 of them {81 * eval_ms / 1e3:.3f} s "
          f"beside 4001 baseline steps' {4001 * best['baseline'] / 1e6:.3f} s")
    if a.json:
        print(json.dumps({"device": str(device), "members": m, "steps": steps, "us_per_step": times, "check_relative_error": errors, "evaluation_ms": eval_ms}))


if __name__ == "__main__":
    main()
