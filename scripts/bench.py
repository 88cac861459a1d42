#!/usr/bin/env python3
"""Benchmarks nndl against its peers, one after the other in one invocation, same machine,
same torch and thread count, and prints wall times and ratios (medians of --repeats runs,
alternating the two programs so that machine noise hits both alike).

  MLP and CNN: nndl vs PyTorch eager (scripts/bench_torch.py) on the same schedule.
  XOR: nndl vs the seed's own Python (one 3001-epoch run), and nndl's 1000 seeds.

    scripts/bench                                   # CPU, full MLP, CNN shortened to 300 iterations
    scripts/bench.py --device cuda --cnn-iterations 4001 --nndl PATH --python python3

For a shortened CNN schedule it reports time per training iteration and per full-test
evaluation separately, and extrapolates to the seed's 4001 iterations and 81 evaluations.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FULL_ITERATIONS, FULL_EVALS = 4001, 81


def run_json(cmd, env=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:3])} failed: {out.stderr.strip().splitlines()[-1:]}")
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    result = json.loads(line)
    result["process_seconds"] = wall
    return result


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def bench_model(a, model, iterations, tmp):
    common = ["--iterations", str(iterations), "--eval-every", "50", "--device", a.device]
    threads = ["--threads", str(a.threads)] if a.threads else []
    nndl_cmd = [a.nndl, model, *common, *threads, "--data", a.data, "--json", "--quiet", "--force", "--out", os.path.join(tmp, model)]
    torch_cmd = [a.python, os.path.join(HERE, "bench_torch.py"), "--model", model, *common, *threads, "--data", a.data]
    ours, theirs = [], []
    for _ in range(a.repeats):
        ours.append(run_json(nndl_cmd))
        theirs.append(run_json(torch_cmd))
    rows = []
    for name, runs in (("nndl", ours), ("pytorch-eager", theirs)):
        loop, ev, n_ev = median(runs, "train_seconds"), median(runs, "eval_seconds"), runs[0]["evaluations"]
        per_iter, per_eval = (loop - ev) / iterations, ev / n_ev
        rows.append({
            "impl": name, "model": model, "iterations": iterations, "evaluations": n_ev,
            "process_seconds": median(runs, "process_seconds"), "loop_seconds": loop,
            "ms_per_iteration": 1e3 * per_iter, "ms_per_evaluation": 1e3 * per_eval,
            "full_schedule_seconds": FULL_ITERATIONS * per_iter + FULL_EVALS * per_eval,
            "final_test_accuracy": runs[0]["final_test_accuracy"], "cuda_graph": runs[0].get("cuda_graph", False), "loop_runs": [round(r["train_seconds"], 3) for r in runs],
        })
    return rows


def seed_python_xor_seconds(repeats):
    """One run of the seed's XOR code as written (random init, shuffle), timed."""
    sys.path.insert(0, HERE)
    import random
    import xor_parity as seed

    def one():
        random.seed(0)
        net = seed.Network()
        for n_in, n_out in ((2, 2), (2, 2), (2, 1)):
            net.append_dumped_layer([{"weights": [random.random() for _ in range(n_in)], "bias": random.random()} for _ in range(n_out)])
        dataset = [list(s) for s in seed.SAMPLES]
        for epoch in range(3001):
            random.shuffle(dataset)
            for x, y in dataset:
                net.feedforward(x)
                net.feedback(y)
                net.update(x, 0.3)
            if epoch % 50 == 0:
                net.get_loss(dataset)

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_xor(a, tmp):
    single = [run_json([a.nndl, "xor", "--json", "--quiet", "--force", "--out", os.path.join(tmp, "xor")])["wall_seconds"] for _ in range(5)]
    many = [run_json(["taskset", "-c", "0", a.nndl, "xor", "--runs", "1000", "--json", "--quiet"])["wall_seconds"] for _ in range(3)]
    return {"nndl_one_run_seconds": statistics.median(single), "seed_python_one_run_seconds": seed_python_xor_seconds(3),
            "nndl_1000_seeds_one_core_seconds": statistics.median(many)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nndl", default=os.path.join(ROOT, "target/release/nndl"))
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv/bin/python"), help="a Python with torch 2.11.0")
    ap.add_argument("--data", default=os.environ.get("MNIST_DIR") or os.path.join(ROOT, "data/mnist"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="libtorch threads for both (0: their default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mlp-iterations", type=int, default=FULL_ITERATIONS)
    ap.add_argument("--cnn-iterations", type=int, default=300)
    ap.add_argument("--only", default="mlp,cnn,xor")
    ap.add_argument("--json", action="store_true", help="one JSON object at the end")
    a = ap.parse_args()
    parts = a.only.split(",")
    results = {"device": a.device, "threads": a.threads, "repeats": a.repeats, "models": [], "xor": None}
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("mlp", "cnn"):
            if model in parts:
                its = a.mlp_iterations if model == "mlp" else a.cnn_iterations
                rows = bench_model(a, model, its, tmp)
                results["models"] += rows
                ours, theirs = rows
                print(f"{model.upper()} on {a.device}, {a.threads or 'default'} threads, {its} iterations + {ours['evaluations']} evaluations, median of {a.repeats}:")
                for r in rows:
                    print(f"  {r['impl']:>14}: loop {r['loop_seconds']:7.2f} s (runs {r['loop_runs']}), process {r['process_seconds']:7.2f} s, "
                          f"{r['ms_per_iteration']:7.3f} ms/iteration, {r['ms_per_evaluation']:7.2f} ms/evaluation, test acc {r['final_test_accuracy']:.4f}")
                print(f"  ratio nndl/pytorch: loop {ours['loop_seconds'] / theirs['loop_seconds']:.3f}, process {ours['process_seconds'] / theirs['process_seconds']:.3f}")
                if its != FULL_ITERATIONS:
                    print(f"  extrapolated to {FULL_ITERATIONS} iterations + {FULL_EVALS} evaluations: nndl {ours['full_schedule_seconds']:.1f} s, "
                          f"pytorch {theirs['full_schedule_seconds']:.1f} s, ratio {ours['full_schedule_seconds'] / theirs['full_schedule_seconds']:.3f}")
        if "xor" in parts:
            x = bench_xor(a, tmp)
            results["xor"] = x
            print(f"XOR: one 3001-epoch run: nndl {1e3 * x['nndl_one_run_seconds']:.2f} ms, the seed's Python {1e3 * x['seed_python_one_run_seconds']:.1f} ms "
                  f"(ratio {x['nndl_one_run_seconds'] / x['seed_python_one_run_seconds']:.4f}); 1000 seeds on one core: nndl {x['nndl_1000_seeds_one_core_seconds']:.3f} s")
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
