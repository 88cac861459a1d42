#!/usr/bin/env python3
"""Benchmarks nndl against its peers, one after the other in one invocation, same machine,
same torch and thread count, and prints wall times and ratios (medians of --repeats runs,
alternating the two programs so that machine noise hits both alike).

  MLP and CNN: nndl vs PyTorch eager (scripts/bench_torch.py) on the same schedule.
  XOR: nndl vs the seed's own Python (one 3001-epoch run), and nndl's 1000 seeds.
  packed: M seeds in one `nndl mlp|cnn --seeds` vs M single runs (half before the pack, half
          after), vs one single run, and vs PyTorch's vmap ensemble (bench_torch.py --members M);
          on the CPU also about what such a pack takes (M one-thread runs split evenly);
          on CUDA also the pack's other arrangement (the MLP's members on streams of their own,
          the CNN's stacked), and the CNN's pack channels-last.
  denormals: the MLP with denormals flushed (as TF, nndl's default) and kept (PyTorch's default),
          nndl and PyTorch eager alike.
  variants: nndl's faithful MLP and CNN with each speed route switched off in turn (the CUDA
          graph, the device's convolution layout, the CPU's evaluations beside the steps), and
          the CNN's bias after the pooling switched on, alternating, with each variant's
          metrics compared to the default's.
  floor: this machine's sgemm rate and each schedule's FLOP floor (scripts/cpu_floor.py), beside
          nndl's single-run loop time, a one-thread run's time split evenly over the threads (about
          the least these ops could take), and where nndl's MLP and CNN steps spend it (libtorch's
          profiler on nndl's own steps: nndl --profile-steps).
  startup: whole processes of one MLP iteration and its one evaluation (what every short run of
          a sweep or a Slurm array pays around its training): nndl vs the PyTorch script, and vs
          another nndl build (--baseline-nndl) for A/B runs, alternating, median of --startup-runs;
          --device auto times what a run without --device does.
  On CUDA, the MLP and CNN rows also have the CUDA-graph PyTorch peer (bench_torch.py --cuda-graph).

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


# Seconds any one program may run (--run-timeout; None: no limit). A hung route then fails
# alone, as a route that exits with an error does, instead of taking the whole part with it.
RUN_TIMEOUT = None


def run_json(cmd, env=None):
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        sys.exit(f"bench: {' '.join(cmd[:3])} timed out after {RUN_TIMEOUT} s")
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:3])} failed: {out.stderr.strip().splitlines()[-1:]}")
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    result = json.loads(line)
    result["process_seconds"] = wall
    return result


def run_or_failure(cmd, env=None):
    """run_json's result and None, or None and the line saying why the program failed or hung:
    an A/B route that breaks is reported, and the other figures are still taken."""
    try:
        return run_json(cmd, env), None
    except SystemExit as e:
        return None, str(e)


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def cuda_flags(a):
    """On CUDA both programs get the same TF32 setting (PyTorch's own default allows it in
    convolutions; nndl's faithful preset does not)."""
    return ["--tf32", a.tf32] if a.device.startswith("cuda") else []


def bench_model(a, model, iterations, tmp):
    common = ["--iterations", str(iterations), "--eval-every", "50", "--device", a.device, "--flush-denormals", a.flush_denormals, *cuda_flags(a)]
    threads = ["--threads", str(a.threads)] if a.threads else []
    nndl_cmd = [a.nndl, model, *common, *threads, "--data", a.data, "--json", "--quiet", "--force", "--out", os.path.join(tmp, model)]
    torch_cmd = [a.python, os.path.join(HERE, "bench_torch.py"), "--model", model, *common, *threads, "--data", a.data]
    ours, theirs, graphed = [], [], []
    for _ in range(a.repeats):
        ours.append(run_json(nndl_cmd))
        theirs.append(run_json(torch_cmd))
        if a.device.startswith("cuda"):
            graphed.append(run_json(torch_cmd + ["--cuda-graph"]))
    rows = []
    for name, runs in (("nndl", ours), ("pytorch-eager", theirs), ("pytorch-cuda-graph", graphed)):
        if not runs:
            continue
        loop, ev, n_ev = median(runs, "train_seconds"), median(runs, "eval_seconds"), runs[0]["evaluations"]
        overlap = runs[0].get("eval_overlap", False)
        # Evaluations beside the steps (nndl's MLP on 2+ CPU threads) take nothing out of the loop.
        per_iter, per_eval = (loop / iterations, 0.0) if overlap else ((loop - ev) / iterations, ev / n_ev)
        rows.append({
            "impl": name, "model": model, "iterations": iterations, "evaluations": n_ev,
            "process_seconds": median(runs, "process_seconds"), "loop_seconds": loop,
            "ms_per_iteration": 1e3 * per_iter, "ms_per_evaluation": 1e3 * per_eval,
            "full_schedule_seconds": FULL_ITERATIONS * per_iter + FULL_EVALS * per_eval,
            "final_test_accuracy": runs[0]["final_test_accuracy"], "cuda_graph": runs[0].get("cuda_graph", False), "eval_overlap": overlap,
            "loop_runs": [round(r["train_seconds"], 3) for r in runs],
        })
    return rows


def bench_startup(a, tmp):
    common = ["--iterations", "1", "--eval-every", "50", "--device", a.device, *cuda_flags(a)]
    threads = ["--threads", str(a.threads)] if a.threads else []
    nndl = lambda exe, out: [exe, "mlp", *common, *threads, "--data", a.data, "--json", "--quiet", "--force", "--out", os.path.join(tmp, out)]
    programs = [("nndl", nndl(a.nndl, "startup"))]
    if a.baseline_nndl:
        programs.append(("nndl baseline", nndl(a.baseline_nndl, "startup-baseline")))
    programs.append(("pytorch-eager", [a.python, os.path.join(HERE, "bench_torch.py"), "--model", "mlp", *common, *threads, "--data", a.data]))
    times = {name: [] for name, _ in programs}
    for _ in range(a.startup_runs):
        for name, cmd in programs:
            times[name].append(run_json(cmd)["process_seconds"])
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    print(f"MLP on {a.device}, one iteration and one evaluation, whole processes, median of {a.startup_runs}, alternating:")
    for name, runs in times.items():
        print(f"  {name:>14}: {medians[name]:.3f} s (runs {sorted(round(t, 3) for t in runs)})")
    for name in medians:
        if name != "nndl":
            print(f"  ratio nndl/{name}: {medians['nndl'] / medians[name]:.3f}")
    return {"runs": times, "median_seconds": medians}


def seeds_loop(run):
    """The training loop of an `nndl --seeds` command: its packs run one after another (the
    members of one share its loop time), so the sum over packs of each one's time. A fresh
    command packs consecutive seeds, `pack` at a time."""
    times = [r["summary"]["train_seconds"] for r in run["runs"]]
    size = run.get("pack") or len(times)
    return sum(max(times[k:k + size]) for k in range(0, len(times), size))


def bench_packed(a, model, members, iterations, tmp):
    """M seeds packed vs the same M seeds one after another, one single run, and the vmap peer."""
    schedule = ["--iterations", str(iterations), "--device", a.device, "--flush-denormals", a.flush_denormals, *cuda_flags(a)]
    common = schedule + (["--threads", str(a.threads)] if a.threads else [])
    nndl = [a.nndl, model, *common, "--data", a.data, "--json", "--quiet", "--force"]
    single = lambda k: run_json(nndl + ["--seed", str(k), "--out", os.path.join(tmp, f"{model}-single-{k}")])
    # Half the single runs before the pack and half after, so that a slow or fast phase of a
    # shared machine weighs on both sides of the ratio alike.
    singles = [single(k) for k in range(members // 2)]
    packed = run_json(nndl + ["--seeds", f"0..{members - 1}", "--out", os.path.join(tmp, f"{model}-packed")])
    packed_loop = seeds_loop(packed)
    singles += [single(k) for k in range(members // 2, members)]
    # On the CPU a pack splits its members over the threads, each computing as a one-thread
    # single run does (bit for bit), so it takes about M one-thread runs split evenly over the
    # threads: what the ratio comes to while the members compute so (the median of 3 runs, as
    # one run's time varies by 20% here).
    n = a.threads or os.cpu_count()
    one_thread = None
    if a.device == "cpu" and n > 1:
        ones = [run_json([a.nndl, model, *schedule, "--threads", "1", "--data", a.data, "--json", "--quiet", "--force", "--seed", "0",
                          "--out", os.path.join(tmp, f"{model}-single-1-thread")])["train_seconds"] for _ in range(max(a.repeats, 3))]
        one_thread = sorted(ones)[len(ones) // 2]
    vmap = run_json([a.python, os.path.join(HERE, "bench_torch.py"), "--model", model, "--members", str(members), *common, "--data", a.data])
    # Other packs on CUDA, for A/B figures: the other arrangement of the members (the MLP's
    # default stacks them, the CNN's puts each on a stream of its own); the MLP's stacked
    # weights kept [M, in, out], and its members in stacks of 5 or 2 on streams; the CNN's convolutions channels-last (the default follows the
    # single CNN's layout, NCHW), and with their bias after the pooling. One that fails is
    # reported, and the rest still measured.
    others = []
    if a.device == "cuda":
        if model == "mlp":
            routes = [("members on streams of their own (NNDL_PACK_STREAMS=on)", {"NNDL_PACK_STREAMS": "on"}),
                      ("weights stored [M, in, out] (NNDL_PACK_WEIGHTS=in-out)", {"NNDL_PACK_WEIGHTS": "in-out"}),
                      ("stacks of 5 on streams of their own (NNDL_PACK_STACK=5)", {"NNDL_PACK_STACK": "5"}),
                      ("stacks of 2 on streams of their own (NNDL_PACK_STACK=2)", {"NNDL_PACK_STACK": "2"})]
        else:
            routes = [("members stacked, grouped convolutions (NNDL_PACK_STREAMS=off)", {"NNDL_PACK_STREAMS": "off"}),
                      ("channels-last (NNDL_CNN_LAYOUT=nhwc)", {"NNDL_CNN_LAYOUT": "nhwc"}),
                      ("bias after the pooling (NNDL_CNN_BIAS=pool)", {"NNDL_CNN_BIAS": "pool"})]
        for k, (label, env) in enumerate(routes):
            run, failure = run_or_failure(nndl + ["--seeds", f"0..{members - 1}", "--out", os.path.join(tmp, f"{model}-packed-{k}")], env={**os.environ, **env})
            if failure:
                others.append({"pack": label, "failed": failure})
            else:
                others.append({"pack": label, "loop_seconds": seeds_loop(run), "process_seconds": run["process_seconds"],
                               "accuracies": [r["summary"]["final_test_accuracy"] for r in run["runs"]]})
    row = {
        "model": model, "members": members, "iterations": iterations,
        "packed_process_seconds": packed["process_seconds"], "packed_loop_seconds": packed_loop,
        "singles_process_seconds": sum(r["process_seconds"] for r in singles), "singles_loop_seconds": sum(r["train_seconds"] for r in singles),
        "one_single_process_seconds": singles[0]["process_seconds"], "one_single_loop_seconds": singles[0]["train_seconds"],
        "vmap_process_seconds": vmap["process_seconds"], "vmap_loop_seconds": vmap["train_seconds"],
        "packed_accuracies": [r["summary"]["final_test_accuracy"] for r in packed["runs"]],
        "single_accuracies": [r["final_test_accuracy"] for r in singles],
    }
    row["other_packs"] = others
    if one_thread:
        row["one_thread_single_loop_seconds"] = one_thread
        row["even_split_ratio"] = members * one_thread / n / row["singles_loop_seconds"]
    print(f"{model.upper()} x{members} on {a.device}, {a.threads or 'default'} threads, {iterations} iterations:")
    print(f"  packed (--seeds): loop {packed_loop:.2f} s, process {packed['process_seconds']:.2f} s")
    print(f"  {members} single runs: loop {row['singles_loop_seconds']:.2f} s, process {row['singles_process_seconds']:.2f} s; one: loop {row['one_single_loop_seconds']:.2f} s")
    for o in others:
        if "failed" in o:
            print(f"  packed, {o['pack']}: FAILED: {o['failed']}")
            continue
        apart = max(abs(p - q) for p, q in zip(o["accuracies"], row["single_accuracies"]))
        print(f"  packed, {o['pack']}: loop {o['loop_seconds']:.2f} s, {o['loop_seconds'] / packed_loop:.3f}x the default pack's, "
              f"{o['loop_seconds'] / row['one_single_loop_seconds']:.2f}x one single; final accuracies vs single: largest difference {apart:.4f}")
    print(f"  pytorch vmap ensemble: loop {vmap['train_seconds']:.2f} s, process {vmap['process_seconds']:.2f} s")
    print(f"  ratios: packed/{members} singles loop {packed_loop / row['singles_loop_seconds']:.3f} process {packed['process_seconds'] / row['singles_process_seconds']:.3f}; "
          f"packed/one single loop {packed_loop / row['one_single_loop_seconds']:.2f} process {packed['process_seconds'] / row['one_single_process_seconds']:.2f}; "
          f"packed/vmap loop {packed_loop / vmap['train_seconds']:.3f}")
    if one_thread:
        print(f"  one single run on one thread: loop {one_thread:.2f} s (median of {', '.join(f'{t:.2f}' for t in ones)}); {members} of them split evenly over {n} threads "
              f"{members * one_thread / n:.2f} s, {row['even_split_ratio']:.3f}x the {members} single runs: about what a pack of such members takes")
    same = [abs(p - q) for p, q in zip(row["packed_accuracies"], row["single_accuracies"])]
    print(f"  final accuracies packed vs single: largest difference {max(same):.4f}")
    return row


# (name, environment, extra flags): nndl's default, and each speed route off in turn.
VARIANTS = {
    "mlp": [("default", {}, []), ("steps one by one, no CUDA graph", {}, ["--no-cuda-graph"]),
            ("CUDA context after the data", {"NNDL_OVERLAP_START": "off"}, []),
            ("evaluations inline (CPU)", {"NNDL_EVAL_OVERLAP": "off"}, []),
            ("evaluations beside, each side its half (CPU)", {"NNDL_EVAL_OVERLAP": "fixed"}, [])],
    "cnn": [("default", {}, []), ("steps one by one, no CUDA graph", {}, ["--no-cuda-graph"]),
            ("channels-last convolutions", {"NNDL_CNN_LAYOUT": "nhwc"}, []),
            # On, where the others are off: its metrics differ (the bias's gradient sums in another order).
            ("ON: bias after the pooling (any device)", {"NNDL_CNN_BIAS": "pool"}, [])],
}


def bench_variants(a, model, iterations, tmp):
    """nndl with each speed route off in turn, alternating, median of --repeats; then each
    variant's metrics.csv against the default's, from --deterministic runs (cuDNN's benchmark
    mode may pick other algorithms in another process)."""
    base = [a.nndl, model, "--iterations", str(iterations), "--device", a.device, *cuda_flags(a), "--data", a.data, "--json", "--quiet", "--force"]
    # Each route where it applies: the CUDA ones on CUDA, the CPU ones on the CPU, some on either.
    variants = [v for v in VARIANTS[model] if v[0] == "default" or "(any device)" in v[0] or ("(CPU)" in v[0]) == (a.device == "cpu")]
    runs = {name: [] for name, _, _ in variants}
    # A variant that fails is reported, and the others still measured (the default is needed).
    failed = {}
    def attempt(name, cmd, env):
        result, failure = (None, failed[name]) if name in failed else run_or_failure(cmd, {**os.environ, **env})
        if failure and name == "default":
            sys.exit(failure)
        if failure:
            failed[name] = failure
        return result
    for _ in range(a.repeats):
        for name, env, flags in variants:
            result = attempt(name, base + flags + ["--out", os.path.join(tmp, f"{model}-variant")], env)
            if result:
                runs[name].append(result)
    print(f"{model.upper()} on {a.device}, {iterations} iterations, nndl's speed routes, median of {a.repeats} (loop s, ratio to the default):")
    default = median(runs["default"], "train_seconds")
    rows = []
    for name, env, flags in variants:
        out = os.path.join(tmp, f"{model}-check-{len(rows)}")
        if not attempt(name, base + flags + ["--deterministic", "--out", out], env):
            print(f"  {name:>32}: FAILED: {failed[name]}")
            continue
        loop = median(runs[name], "train_seconds")
        with open(os.path.join(out, "metrics.csv")) as f:
            metrics = f.read()
        same = rows[0]["metrics"] == metrics if rows else True
        process = median(runs[name], "process_seconds")
        rows.append({"variant": name, "env": env, "flags": flags, "loop_seconds": loop, "ratio": loop / default, "loop_runs": [round(r["train_seconds"], 3) for r in runs[name]],
                     "process_seconds": process, "process_ratio": process / median(runs["default"], "process_seconds"),
                     "cuda_graph": runs[name][0].get("cuda_graph"), "metrics": metrics, "same_metrics_as_default": same})
        beside = ", evaluations beside the steps" if runs[name][0].get("eval_overlap") else ""
        print(f"  {name:>32}: loop {loop:6.3f} s (runs {rows[-1]['loop_runs']}), {loop / default:.3f}x; process {process:.2f} s, {rows[-1]['process_ratio']:.3f}x{beside}; --deterministic metrics "
              + ("identical to the default's" if same else "differ from the default's"))
    for r in rows:
        del r["metrics"]
    return rows


def bench_denormals(a, tmp):
    """The faithful MLP, denormals flushed and kept, nndl and PyTorch eager, alternating."""
    threads = ["--threads", str(a.threads)] if a.threads else []
    common = ["--iterations", str(a.mlp_iterations), "--device", a.device, *threads, "--data", a.data]
    runs = {}
    for _ in range(a.repeats):
        for mode in ("on", "off"):
            runs.setdefault(("nndl", mode), []).append(run_json([a.nndl, "mlp", *common, "--flush-denormals", mode, "--json", "--quiet", "--force", "--out", os.path.join(tmp, "mlp-denormals")]))
            runs.setdefault(("pytorch-eager", mode), []).append(run_json([a.python, os.path.join(HERE, "bench_torch.py"), "--model", "mlp", *common, "--flush-denormals", mode]))
    rows = []
    print(f"MLP on {a.device}, {a.threads or 'default'} threads, {a.mlp_iterations} iterations, median of {a.repeats}: denormals flushed vs kept")
    for impl in ("nndl", "pytorch-eager"):
        on, off = (median(runs[(impl, m)], "train_seconds") for m in ("on", "off"))
        ev_on, ev_off = (median(runs[(impl, m)], "eval_seconds") for m in ("on", "off"))
        rows.append({"impl": impl, "flushed_loop_seconds": on, "kept_loop_seconds": off, "flushed_eval_seconds": ev_on, "kept_eval_seconds": ev_off,
                     "flushed_accuracy": runs[(impl, "on")][0]["final_test_accuracy"], "kept_accuracy": runs[(impl, "off")][0]["final_test_accuracy"]})
        print(f"  {impl:>14}: flushed loop {on:6.2f} s (evaluations {ev_on:.2f}), kept {off:6.2f} s (evaluations {ev_off:.2f}): ratio {on / off:.3f}; "
              f"test acc {rows[-1]['flushed_accuracy']:.4f} / {rows[-1]['kept_accuracy']:.4f}")
    return rows


def bench_floor(a, tmp):
    floor = json.loads(subprocess.run([a.python, os.path.join(HERE, "cpu_floor.py"), "--threads", str(a.threads or 2), "--flush-denormals", a.flush_denormals, "--data", a.data, "--json"],
                                      capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    print(f"sgemm {floor['sgemm_gflops']:.0f} GFLOP/s at {floor['threads']} threads; MLP product shapes: "
          + ", ".join(f"{k} {v:.0f}" for k, v in floor["shape_gflops"].items()))
    threads = ["--threads", str(a.threads)] if a.threads else []
    rate_now = lambda: float(subprocess.run([a.python, os.path.join(HERE, "cpu_floor.py"), "--threads", str(a.threads or 2), "--rate-only"],
                                            capture_output=True, text=True, check=True).stdout.split()[-1])

    def bracketed_run(model, its, thread_flags, out):
        """One run, and the mean of the sgemm rates measured right before and right after it:
        this machine's rate drifts by 1.5x within minutes, so each run's floor is also taken
        at the rate around it."""
        before = rate_now()
        run = run_json([a.nndl, model, "--iterations", str(its), "--device", "cpu", "--flush-denormals", a.flush_denormals, *thread_flags, "--data", a.data,
                        "--json", "--quiet", "--force", "--out", os.path.join(tmp, out)])
        return run, (before + rate_now()) / 2

    rows = {}
    for model, its in (("mlp", a.mlp_iterations), ("cnn", a.cnn_iterations)):
        runs, ratios = [], []
        for _ in range(a.repeats):
            run, bracket = bracketed_run(model, its, threads, f"{model}-floor")
            runs.append(run)
            ratios.append((run["train_seconds"] * bracket / floor["sgemm_gflops"], bracket))
        loop, evals = median(runs, "train_seconds"), runs[0]["evaluations"]
        eval_seconds = median(runs, "eval_seconds")
        parts = floor["floor_parts"][model]
        f_steps, f_evals = its * parts["step_seconds"], evals * parts["evaluation_seconds"]
        f = f_steps + f_evals
        bracketed = sorted(t / f for t, _ in ratios)[len(ratios) // 2]
        rows[model] = {"iterations": its, "evaluations": evals, "loop_seconds": loop, "floor_seconds": f, "ratio": loop / f,
                       "eval_seconds": eval_seconds, "eval_floor_seconds": f_evals,
                       "bracketing_gflops": [r for _, r in ratios], "ratio_at_bracketing_rate": bracketed}
        if runs[0].get("eval_overlap"):
            # The evaluations ran on their own thread beside the steps: the loop is the steps'.
            shares = "the steps taking the evaluation's half while it waits" if runs[0].get("eval_threads_lent") else "half the threads each"
            split = f"evaluations beside the steps, {shares} (the evaluations' own time {eval_seconds:.2f} s; their floor {f_evals:.2f})"
        else:
            split = (f"steps {loop - eval_seconds:.2f} s vs {f_steps:.2f} ({(loop - eval_seconds) / f_steps:.2f}x), "
                     f"evaluations {eval_seconds:.2f} s vs {f_evals:.2f} ({eval_seconds / f_evals:.2f}x)")
        print(f"{model.upper()} ({its} iterations, {evals} evaluations): nndl loop {loop:.2f} s (median of {a.repeats}), floor {f:.2f} s: {loop / f:.2f}x the floor; {split}")
        print(f"  at the sgemm rate measured around each run ({', '.join(f'{r:.0f}' for _, r in ratios)} GFLOP/s): {bracketed:.2f}x the floor (median)")
        n = a.threads or 2
        if n > 1:
            # About the least time these same ops could take on n threads: a one-thread run's
            # time split evenly over them. No op here runs faster per core on two threads than on
            # one (the large products about as fast, the MLP's 100-row ones slower), so no
            # arrangement of nndl's libtorch ops gets much under it, up to the machine's noise.
            ones = [bracketed_run(model, its, ["--threads", "1"], f"{model}-floor-1") for _ in range(a.repeats)]
            one_seconds, bracket = sorted((run["train_seconds"], rate) for run, rate in ones)[len(ones) // 2]
            split = one_seconds / n
            split_ratio = split * bracket / floor["sgemm_gflops"] / f
            rows[model].update({"one_thread_seconds": one_seconds, "even_split_seconds": split, "even_split_ratio": split_ratio})
            print(f"  one thread {one_seconds:.2f} s (median of {a.repeats}), split evenly over {n} threads {split:.2f} s: {split_ratio:.2f}x the floor "
                  f"at the {bracket:.0f} GFLOP/s around it, about the least any arrangement of these ops could reach")
    # Where a step's time goes: nndl's own steps, recorded by libtorch's profiler.
    for model, its, steps in (("mlp", 60, 45), ("cnn", 12, 6)):
        out = os.path.join(tmp, f"{model}-profile")
        run_json([a.nndl, model, "--iterations", str(its), "--eval-every", "1000", "--profile-steps", str(steps), "--device", "cpu",
                  "--flush-denormals", a.flush_denormals, *threads, "--data", a.data, "--json", "--quiet", "--force", "--out", out])
        with open(os.path.join(out, "profile.txt")) as f:
            report = f.read()
        rows[model]["profile"] = report
        print("\n".join(report.splitlines()[:20]))
    return {"floor": floor, "runs": rows}


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
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto for the startup part (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="libtorch threads for both (0: their default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mlp-iterations", type=int, default=FULL_ITERATIONS)
    ap.add_argument("--cnn-iterations", type=int, default=300)
    ap.add_argument("--only", default="mlp,cnn,xor", help="any of mlp,cnn,xor,packed,variants,denormals,floor,startup")
    ap.add_argument("--startup-runs", type=int, default=10, help="processes of each program in the startup part (default 10)")
    ap.add_argument("--baseline-nndl", help="startup part: another nndl build to time beside this one (default none)")
    ap.add_argument("--tf32", choices=["on", "off"], default="off", help="CUDA: TF32 in both programs (default off, the faithful preset's)")
    ap.add_argument("--flush-denormals", choices=["on", "off"], default="on", help="for every run but the denormals part (default on, nndl's default)")
    ap.add_argument("--members", type=int, default=10, help="seeds in the packed benchmark")
    ap.add_argument("--packed-models", default="mlp", help="models of the packed benchmark (mlp,cnn)")
    ap.add_argument("--json", action="store_true", help="one JSON object at the end")
    ap.add_argument("--run-timeout", type=float, default=0, help="seconds any one program may run (0: no limit)")
    a = ap.parse_args()
    global RUN_TIMEOUT
    RUN_TIMEOUT = a.run_timeout or None
    parts = a.only.split(",")
    results = {"device": a.device, "threads": a.threads, "repeats": a.repeats, "models": [], "xor": None}
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("mlp", "cnn"):
            if model in parts:
                its = a.mlp_iterations if model == "mlp" else a.cnn_iterations
                rows = bench_model(a, model, its, tmp)
                results["models"] += rows
                ours, theirs = rows[0], rows[1]
                print(f"{model.upper()} on {a.device}, {a.threads or 'default'} threads, {its} iterations + {ours['evaluations']} evaluations, median of {a.repeats}:")
                for r in rows:
                    print(f"  {r['impl']:>14}: loop {r['loop_seconds']:7.2f} s (runs {r['loop_runs']}), process {r['process_seconds']:7.2f} s, "
                          f"{r['ms_per_iteration']:7.3f} ms/iteration, "
                          + ("evaluations beside the steps" if r["eval_overlap"] else f"{r['ms_per_evaluation']:7.2f} ms/evaluation")
                          + f", test acc {r['final_test_accuracy']:.4f}")
                print(f"  ratio nndl/pytorch: loop {ours['loop_seconds'] / theirs['loop_seconds']:.3f}, process {ours['process_seconds'] / theirs['process_seconds']:.3f}")
                if len(rows) > 2:
                    print(f"  ratio nndl/pytorch-cuda-graph: loop {ours['loop_seconds'] / rows[2]['loop_seconds']:.3f}")
                if its != FULL_ITERATIONS:
                    print(f"  extrapolated to {FULL_ITERATIONS} iterations + {FULL_EVALS} evaluations: nndl {ours['full_schedule_seconds']:.1f} s, "
                          f"pytorch {theirs['full_schedule_seconds']:.1f} s, ratio {ours['full_schedule_seconds'] / theirs['full_schedule_seconds']:.3f}")
        if "packed" in parts:
            results["packed"] = [bench_packed(a, m, a.members, a.mlp_iterations if m == "mlp" else a.cnn_iterations, tmp) for m in a.packed_models.split(",")]
        if "variants" in parts:
            results["variants"] = {m: bench_variants(a, m, a.mlp_iterations if m == "mlp" else a.cnn_iterations, tmp) for m in a.packed_models.split(",")}
        if "denormals" in parts:
            results["denormals"] = bench_denormals(a, tmp)
        if "floor" in parts:
            results["floor"] = bench_floor(a, tmp)
        if "startup" in parts:
            results["startup"] = bench_startup(a, tmp)
        if "xor" in parts:
            x = bench_xor(a, tmp)
            results["xor"] = x
            print(f"XOR: one 3001-epoch run: nndl {1e3 * x['nndl_one_run_seconds']:.2f} ms, the seed's Python {1e3 * x['seed_python_one_run_seconds']:.1f} ms "
                  f"(ratio {x['nndl_one_run_seconds'] / x['seed_python_one_run_seconds']:.4f}); 1000 seeds on one core: nndl {x['nndl_1000_seeds_one_core_seconds']:.3f} s")
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
