#!/usr/bin/env python3
"""The seed's MLP and CNN in PyTorch eager, same schedule and strategy as nndl: data resident on
the device, TF1-style batch order computed on the host, loss/accuracy read only at evaluation
points. Used by scripts/bench as the peer; prints one JSON line.

    bench_torch.py --model mlp|cnn --data DIR [--iterations N] [--eval-every N] [--threads N] [--device cpu|cuda]
                   [--cuda-graph] [--members M] [--tf32 on|off] [--profile-steps N --trace FILE]

--cuda-graph: each training step is captured once in a CUDA graph and replayed, the batch
indices copied into a static buffer from a plan already on the device (the best a PyTorch user
gets without writing kernels). --members M: M seeds at once, PyTorch's model-ensembling recipe
(torch.func.stack_module_state + functional_call + vmap), each member on its own batches.
--profile-steps N --trace FILE: torch.profiler over the same window as nndl's --profile-steps (N
steps after the warm-up, none with an evaluation after it), its Chrome trace written to FILE;
scripts/trace_table.py summarises either program's trace the same way.
"""
import argparse
import gzip
import json
import os
import random
import time

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap


def read_idx(data, stem, kind):
    for name in (f"{stem}-{kind}-ubyte.gz", f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte.gz", f"{stem}.{kind}-ubyte"):
        path = os.path.join(data, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                raw = f.read()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    raise SystemExit(f"{stem} not found in {data}")


def load(data, device):
    ti = read_idx(data, "train-images", "idx3")
    tl = read_idx(data, "train-labels", "idx1")
    vi = read_idx(data, "t10k-images", "idx3")
    vl = read_idx(data, "t10k-labels", "idx1")
    def images(b):
        return torch.frombuffer(bytearray(b[16:]), dtype=torch.uint8).view(-1, 784).float() * (1.0 / 255.0)
    def labels(b):
        return torch.frombuffer(bytearray(b[8:]), dtype=torch.uint8).long()
    x, y = images(ti)[5000:], labels(tl)[5000:]
    return x.to(device), y.to(device), images(vi).to(device), labels(vl).to(device)


class TfBatcher:
    """DataSet.next_batch of TF1: shuffle first; at an epoch boundary, rest + fresh shuffle."""

    def __init__(self, n, seed):
        self.order = list(range(n))
        self.index = 0
        self.epochs = 0
        self.rng = random.Random(seed)

    def next_batch(self, size):
        n = len(self.order)
        start = self.index
        if self.epochs == 0 and start == 0:
            self.rng.shuffle(self.order)
        if start + size > n:
            self.epochs += 1
            rest = self.order[start:]
            self.rng.shuffle(self.order)
            self.index = size - len(rest)
            return rest + self.order[: self.index]
        self.index += size
        return self.order[start : self.index]


def profile_window(a):
    """[from, to) as nndl's --profile-steps picks it: after 3 warm-up steps and the graph's
    capture, moved past an evaluation point, ended by the step before the next evaluation."""
    is_eval = lambda i: i % a.eval_every == 0 or i + 1 == a.iterations
    start = 4
    while start < a.iterations and is_eval(start) and start + 1 < a.iterations:
        start += 1
    assert start < a.iterations, "--profile-steps: no step left after the warm-up"
    nxt = next((i for i in range(start, a.iterations) if is_eval(i)), a.iterations - 1)
    return start, min(start + a.profile_steps, nxt + 1)


def truncated_normal_(t, std):
    with torch.no_grad():
        nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(3136, 1024)
        self.fc2 = nn.Linear(1024, 10)
        for m in (self.conv1, self.conv2, self.fc1, self.fc2):
            truncated_normal_(m.weight, 0.1)
            nn.init.constant_(m.bias, 0.1)

    def forward(self, x):
        x = x.view(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.permute(0, 2, 3, 1).flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, 0.75, True)  # TF1 keep_prob 0.25, also at test time as in the seed
        return self.fc2(x)


def mlp():
    net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    return net


def eval_chunk(model, device):
    """Test rows per forward pass: nndl's (`TrainConfig::eval_chunk`), so both programs evaluate alike."""
    return 5000 if device.type == "cuda" else {"mlp": 2000, "cnn": 200}[model]


def evaluate(net, x, y, chunk):
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            logits = net(x[s : s + chunk])
            loss += F.cross_entropy(logits, y[s : s + chunk], reduction="sum")
            correct += (logits.argmax(1) == y[s : s + chunk]).sum()
    return loss.item() / x.shape[0], correct.item() / x.shape[0]


def train_members(a, device, x, y, tx, ty):
    """--members M: the vmap ensemble. Returns (train_seconds, eval_seconds, evaluations, last)."""
    models = []
    for k in range(a.members):
        torch.manual_seed(a.seed + k)
        models.append((mlp() if a.model == "mlp" else Cnn()).to(device))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    lr = 0.005 if a.model == "mlp" else 0.01

    def fmodel(p, b, xs):
        return functional_call(base, (p, b), (xs,))

    ensemble = vmap(fmodel, randomness="different")
    shared = vmap(fmodel, in_dims=(0, 0, None), randomness="different")
    batchers = [TfBatcher(x.shape[0], a.seed + k) for k in range(a.members)]
    bs, m = a.batch_size, a.members
    # Test rows per pass, all members at once: on CUDA 500 (as the earlier GPU tables measured it);
    # on the CPU nndl's single-run chunk, which its packs there take member by member.
    chunk = 500 if device.type == "cuda" else eval_chunk(a.model, device)
    eval_seconds, evaluations, last = 0.0, 0, None
    train_start = time.perf_counter()
    for i in range(a.iterations):
        idx = torch.tensor([b.next_batch(bs) for b in batchers], dtype=torch.long).to(device)
        xs, ys = x[idx], y[idx]
        logits = ensemble(params, buffers, xs)
        loss = F.cross_entropy(logits.reshape(m * bs, 10), ys.reshape(-1), reduction="sum") / bs
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for p, g in zip(params.values(), grads):
                p.add_(g, alpha=-lr)
        if i % a.eval_every == 0 or i + 1 == a.iterations:
            if device.type == "cuda":
                torch.cuda.synchronize()
            eval_start = time.perf_counter()
            with torch.no_grad():
                correct = torch.zeros(m, dtype=torch.long, device=device)
                for s in range(0, tx.shape[0], chunk):
                    out = shared(params, buffers, tx[s : s + chunk])
                    correct += (out.argmax(-1) == ty[s : s + chunk]).sum(-1)
            eval_seconds += time.perf_counter() - eval_start
            evaluations += 1
            last = (correct.float() / tx.shape[0]).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - train_start, eval_seconds, evaluations, last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "cnn"], required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--iterations", type=int, default=4001)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cuda-graph", action="store_true")
    ap.add_argument("--members", type=int, default=0)
    ap.add_argument("--tf32", choices=["on", "off"], default="off", help="CUDA: TF32 in matmuls and convolutions (default off, as nndl's faithful preset)")
    ap.add_argument("--flush-denormals", choices=["on", "off"], default="on", help="CPU: as nndl's switch (default on, as TF)")
    ap.add_argument("--profile-steps", type=int, default=0, help="profile this many steps (with --trace)")
    ap.add_argument("--trace", help="where --profile-steps writes its Chrome trace")
    a = ap.parse_args()
    if bool(a.profile_steps) != bool(a.trace):
        ap.error("--profile-steps and --trace go together")
    if a.profile_steps and a.members:
        ap.error("--profile-steps profiles a single run: drop --members")
    started = time.perf_counter()
    # Per thread: set before any parallel op, so that the intra-op threads inherit it.
    torch.set_flush_denormal(a.flush_denormals == "on")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "auto":  # as nndl's default: CUDA when there is a GPU
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # PyTorch allows TF32 in convolutions by default; nndl's faithful runs do not.
        torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
    torch.manual_seed(a.seed)
    x, y, tx, ty = load(a.data, device)
    if a.members:
        train_seconds, eval_seconds, evaluations, accs = train_members(a, device, x, y, tx, ty)
        print(json.dumps({
            "impl": "pytorch-vmap", "model": a.model, "device": a.device, "torch": torch.__version__, "members": a.members,
            "threads": torch.get_num_threads(), "iterations": a.iterations, "final_test_accuracies": accs,
            "train_seconds": train_seconds, "eval_seconds": eval_seconds, "evaluations": evaluations,
            "wall_seconds": time.perf_counter() - started,
        }))
        return
    graph = None
    if a.cuda_graph:
        assert device.type == "cuda", "--cuda-graph needs --device cuda"
    net = (mlp() if a.model == "mlp" else Cnn()).to(device)
    lr = 0.005 if a.model == "mlp" else 0.01
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    batcher = TfBatcher(x.shape[0], a.seed)
    bs = a.batch_size
    chunk_iters = max(1, (1 << 20) // bs)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    since = 0
    eval_seconds = 0.0
    evaluations = 0
    static_idx = torch.zeros(bs, dtype=torch.long, device=device)

    def step():
        xs, ys = x.index_select(0, static_idx), y.index_select(0, static_idx)
        logits = net(xs)
        loss = F.cross_entropy(logits, ys)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum.add_(loss.detach())
            correct.add_((logits.argmax(1) == ys).sum())

    window = profile_window(a) if a.profile_steps else None
    prof = None
    train_start = time.perf_counter()
    last = None
    for i in range(a.iterations):
        if window and i == window[0]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
            prof = torch.profiler.profile(activities=acts)
            prof.start()
        slot = i % chunk_iters
        if slot == 0:
            n = min(chunk_iters, a.iterations - i)
            plan = torch.tensor([j for _ in range(n) for j in batcher.next_batch(bs)], dtype=torch.long).to(device)
        static_idx.copy_(plan[slot * bs : (slot + 1) * bs])
        if a.cuda_graph and i >= 3:
            if graph is None:
                # As PyTorch's docs capture a whole step: warmed up (3 eager steps, on a side
                # stream for the first), grads set to None so the captured backward allocates
                # them from the graph's pool.
                opt.zero_grad(set_to_none=True)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    step()
            graph.replay()
        elif a.cuda_graph and i == 0:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                opt.zero_grad(set_to_none=True)
                step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            opt.zero_grad(set_to_none=True)
            step()
        if prof and i + 1 == window[1]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            prof.stop()
            prof.export_chrome_trace(a.trace)
            prof = None
        since += 1
        if i % a.eval_every == 0 or i + 1 == a.iterations:
            if device.type == "cuda":
                torch.cuda.synchronize()
            eval_start = time.perf_counter()
            test_loss, test_acc = evaluate(net, tx, ty, eval_chunk(a.model, device))
            eval_seconds += time.perf_counter() - eval_start
            evaluations += 1
            last = (loss_sum.item() / since, correct.item() / (since * bs), test_loss, test_acc)
            loss_sum.zero_()
            correct.zero_()
            since = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    print(json.dumps({
        "impl": "pytorch-cuda-graph" if a.cuda_graph else "pytorch-eager", "model": a.model, "device": a.device, "torch": torch.__version__, "tf32": a.tf32,
        "threads": torch.get_num_threads(), "iterations": a.iterations,
        "final_test_loss": last[2], "final_test_accuracy": last[3],
        "train_seconds": end - train_start, "eval_seconds": eval_seconds, "evaluations": evaluations, "wall_seconds": end - started,
    }))


if __name__ == "__main__":
    main()
