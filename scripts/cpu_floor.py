#!/usr/bin/env python3
"""This machine's sgemm rate, the FLOP floor of nndl's MLP and CNN schedules, and where one
training step's time goes, for each net (the libtorch ops nndl issues, in the same order, timed by
torch.profiler: nndl calls the same kernels through tch, which has no profiler of its own).

    scripts/cpu_floor.py [--threads 2] [--data DIR] [--flush-denormals on|off] [--json]

The floor counts the multiply-adds of the products and convolutions (2 FLOPs each): forward,
weight gradients, and the input gradients of every layer but the first, for each training step;
the forward pass over the 10,000 test images at each evaluation. At the sgemm rate measured on
large matrices, that is the least time any implementation of the schedule can take here.
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from bench_torch import load  # MNIST as nndl trains on it (this script's folder is on sys.path)

ITERATIONS, EVALS, BATCH, TEST = 4001, 81, 100, 10_000


def shape_rate(m, k, n, reps=2000):
    """FLOP/s of an [m, k] x [k, n] float32 product, warm."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - start)


def mlp_flops():
    """(one training step, one evaluation) of the MLP."""
    layers = [(784, 256), (256, 256), (256, 10)]
    fwd = sum(2 * BATCH * i * o for i, o in layers)
    dx = sum(2 * BATCH * i * o for i, o in layers[1:])  # no input gradient for the first layer
    return 2 * fwd + dx, sum(2 * TEST * i * o for i, o in layers)


def cnn_flops():
    """(one training step, one evaluation) of the CNN."""
    conv1 = 2 * 28 * 28 * 32 * 5 * 5 * 1
    conv2 = 2 * 14 * 14 * 64 * 5 * 5 * 32
    fc = 2 * 3136 * 1024 + 2 * 1024 * 10
    fwd = conv1 + conv2 + fc
    dx = conv2 + fc  # no input gradient for the first convolution
    return BATCH * (2 * fwd + dx), TEST * fwd


def floor(parts, rate, iterations=ITERATIONS, evals=EVALS):
    step, evaluation = parts
    return (iterations * step + evals * evaluation) / rate


def profile_mlp_step(x, y, members=0, steps=200):
    """One faithful MLP step as nndl issues it, on MNIST (the saturated softmax of its N(0, 1)
    start is part of the cost): a single run's ops (members 0), or a pack's (stacked parameters,
    baddbmm, per-member losses, autograd.grad, one addcmul per tensor)."""
    torch.manual_seed(0)
    m = max(members, 1)
    shape = (lambda o, i: (m, o, i)) if members else (lambda o, i: (o, i))
    ws = [torch.randn(*shape(o, i), requires_grad=True) for i, o in [(784, 256), (256, 256), (256, 10)]]
    bs = [torch.randn(*((m, o) if members else (o,)), requires_grad=True) for o in (256, 256, 10)]
    idx = torch.randint(55_000, (steps + 20, m * BATCH))
    loss_sum, correct = torch.zeros(m), torch.zeros(m, dtype=torch.long)
    neg_lr = torch.full((m,), -0.005)

    def single(i):
        xs, ys = x.index_select(0, idx[i]), y.index_select(0, idx[i])
        h = F.relu(F.linear(xs, ws[0], bs[0]))
        h = F.relu(F.linear(h, ws[1], bs[1]))
        logits = F.linear(h, ws[2], bs[2])
        loss = F.cross_entropy(logits, ys)
        for p in ws + bs:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in ws + bs:
                p.add_(p.grad, alpha=-0.005)
            loss_sum.add_(loss.detach())
            correct.add_((logits.argmax(-1) == ys).sum())

    def packed(i):
        xs = x.index_select(0, idx[i]).view(m, BATCH, 784)
        ys = y.index_select(0, idx[i]).view(m, BATCH)
        h = torch.baddbmm(bs[0].unsqueeze(1), xs, ws[0].transpose(1, 2)).relu()
        h = torch.baddbmm(bs[1].unsqueeze(1), h, ws[1].transpose(1, 2)).relu()
        logits = torch.baddbmm(bs[2].unsqueeze(1), h, ws[2].transpose(1, 2))
        nll = -logits.log_softmax(-1).gather(2, ys.unsqueeze(2)).squeeze(2).sum(1)
        losses = nll / BATCH
        grads = torch.autograd.grad(losses.sum(), ws + bs)
        with torch.no_grad():
            for p, g in zip(ws + bs, grads):
                p.addcmul_(g, neg_lr.view(-1, *([1] * (p.dim() - 1))))
            loss_sum.add_(losses)
            correct.add_((logits.argmax(-1) == ys).sum(1))

    return time_and_profile(packed if members else single, steps)


def profile_cnn_step(x, y, steps=40):
    """One faithful CNN step as nndl issues it: channels-last convolutions, max-pool before ReLU
    (`models::cnn::relu_pool`), TF's NHWC flatten, dropout at keep_prob 0.25, SGD 0.01."""
    torch.manual_seed(0)
    shapes = [(32, 1, 5, 5), (32,), (64, 32, 5, 5), (64,), (1024, 3136), (1024,), (10, 1024), (10,)]
    ps = [(torch.randn(*s) * 0.1).requires_grad_() for s in shapes]
    idx = torch.randint(55_000, (steps + 5, BATCH))

    def step(i):
        xs, ys = x.index_select(0, idx[i]), y.index_select(0, idx[i])
        h = xs.view(-1, 28, 28, 1).permute(0, 3, 1, 2)
        h = F.max_pool2d(F.conv2d(h, ps[0], ps[1], padding=2), 2).relu()
        h = F.max_pool2d(F.conv2d(h, ps[2], ps[3], padding=2), 2).relu()
        h = F.linear(h.permute(0, 2, 3, 1).flatten(1), ps[4], ps[5]).relu()
        logits = F.linear(F.dropout(h, 0.75, True), ps[6], ps[7])
        loss = F.cross_entropy(logits, ys)
        for p in ps:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in ps:
                p.add_(p.grad, alpha=-0.01)

    return time_and_profile(step, steps, warmup=5)


def time_and_profile(step, steps, warmup=20):
    """(seconds per step unprofiled, [(op, self microseconds per step, calls per step)] slowest
    first) of step(i) over `steps` steps after `warmup`."""
    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    wall = (time.perf_counter() - start) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(warmup + i)
    rows = [(e.key, e.self_cpu_time_total / steps, e.count // steps) for e in prof.key_averages()]
    rows = [r for r in rows if r[1] > 0]
    rows.sort(key=lambda r: -r[1])
    return wall, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--members", type=int, default=0, help="also profile a pack of M members' step")
    ap.add_argument("--data", default=os.environ.get("MNIST_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "mnist"))
    ap.add_argument("--flush-denormals", choices=["on", "off"], default="on", help="as nndl's switch (default on, as TF)")
    ap.add_argument("--rate-only", action="store_true", help="print only the sgemm rate (GFLOP/s), for bracketing one run")
    a = ap.parse_args()
    # Per thread: set before any parallel op, so that the intra-op threads inherit it.
    torch.set_flush_denormal(a.flush_denormals == "on")
    torch.set_num_threads(a.threads)
    rate = max(shape_rate(2048, 2048, 2048, 10) for _ in range(3))
    if a.rate_only:
        print(f"{rate / 1e9:.1f}")
        return
    shapes = {f"{m}x{k}x{n}": shape_rate(m, k, n) for m, k, n in [(100, 784, 256), (784, 100, 256), (100, 256, 256), (2000, 784, 256)]}
    floors = {"mlp": floor(mlp_flops(), rate), "cnn": floor(cnn_flops(), rate)}
    per = {m: {"step_seconds": f()[0] / rate, "evaluation_seconds": f()[1] / rate} for m, f in (("mlp", mlp_flops), ("cnn", cnn_flops))}
    x, y, _, _ = load(a.data, torch.device("cpu"))
    wall, rows = profile_mlp_step(x, y)
    packed = profile_mlp_step(x, y, a.members) if a.members else None
    cnn_wall, cnn_rows = profile_cnn_step(x, y)
    out = {"threads": a.threads, "sgemm_gflops": rate / 1e9, "shape_gflops": {k: v / 1e9 for k, v in shapes.items()},
           "mlp_tflop": floor(mlp_flops(), 1e12), "cnn_tflop": floor(cnn_flops(), 1e12), "floor_seconds": floors, "floor_parts": per,
           "mlp_step_ms": wall * 1e3, "mlp_step_ops_us": {k: round(t, 1) for k, t, _ in rows[:15]},
           "cnn_step_ms": cnn_wall * 1e3, "cnn_step_floor_ms": per["cnn"]["step_seconds"] * 1e3,
           "cnn_step_ops_us": {k: round(t, 1) for k, t, _ in cnn_rows[:15]}}
    print(f"sgemm 2048^3 at {a.threads} threads: {rate / 1e9:.0f} GFLOP/s; the MLP's product shapes (MxKxN): "
          + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in shapes.items()))
    print(f"floor: MLP schedule {floor(mlp_flops(), 1e12):.3f} TFLOP -> {floors['mlp']:.2f} s; CNN {floor(cnn_flops(), 1e12):.2f} TFLOP -> {floors['cnn']:.1f} s")
    print(f"one faithful MLP step: {wall * 1e3:.3f} ms (unprofiled); per-op self time (us per step, calls):")
    for k, t, n in rows[:15]:
        print(f"  {k:<40} {t:8.1f}  x{n}")
    print(f"one faithful CNN step: {cnn_wall * 1e3:.2f} ms (unprofiled; its floor {per['cnn']['step_seconds'] * 1e3:.2f} ms); per-op self time (us per step, calls):")
    for k, t, n in cnn_rows[:15]:
        print(f"  {k:<40} {t:8.1f}  x{n}")
    if packed:
        print(f"one packed step of {a.members} members: {packed[0] * 1e3:.3f} ms ({packed[0] * 1e3 / a.members:.3f} ms a member); per-op self time (us per step, calls):")
        for k, t, n in packed[1][:15]:
            print(f"  {k:<40} {t:8.1f}  x{n}")
        out["packed_step_ms"] = packed[0] * 1e3
        out["packed_step_ops_us"] = {k: round(t, 1) for k, t, _ in packed[1][:15]}
    if a.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
