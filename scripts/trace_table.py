#!/usr/bin/env python3
"""A Kineto Chrome trace as two tables per step, the way nndl's profile.txt has them: each host
operator's self time (its time less the calls it made on its thread), and each GPU kernel's or
copy's time. For comparing nndl (profile-trace.json of `--profile-steps N`) with the PyTorch
peer (`bench_torch.py --profile-steps N --trace FILE`): the same profiler, summed the same way.

    scripts/trace_table.py TRACE.json --steps N [--top 25] [--title TEXT]
"""
import argparse
import json
from collections import defaultdict

HOST = {"cpu_op", "cuda_runtime", "cuda_driver"}
GPU = {"kernel", "gpu_memcpy", "gpu_memset"}


def host_self_times(events):
    """{name: [calls, self microseconds]} over the host events, nested per thread."""
    rows = defaultdict(lambda: [0, 0.0])
    threads = defaultdict(list)
    for e in events:
        threads[(e.get("pid"), e.get("tid"))].append(e)
    for evs in threads.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        own = [e["dur"] for e in evs]
        stack = []
        for k, e in enumerate(evs):
            while stack and evs[stack[-1]]["ts"] + evs[stack[-1]]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                p = stack[-1]
                own[p] -= min(e["ts"] + e["dur"], evs[p]["ts"] + evs[p]["dur"]) - e["ts"]
            stack.append(k)
        for e, t in zip(evs, own):
            rows[e["name"]][0] += 1
            rows[e["name"]][1] += max(t, 0.0)
    return rows


def gpu_times(events):
    rows = defaultdict(lambda: [0, 0.0])
    for e in events:
        rows[e["name"]][0] += 1
        rows[e["name"]][1] += e["dur"]
    return rows


def table(title, rows, steps, top):
    total = sum(t for _, t in rows.values())
    lines = [f"{title}: {total / steps:.1f} us per step in all; slowest {min(top, len(rows))} of {len(rows)} names (us per step, calls per step, share)"]
    for name, (calls, t) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"  {t / steps:>10.1f}  {calls / steps:>6.1f}  {100 * t / total if total else 0:>5.1f}%  {name}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--steps", type=int, required=True, help="steps the trace holds")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    with open(a.trace) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X" and "dur" in e]
    host = [e for e in events if e.get("cat") in HOST]
    gpu = [e for e in events if e.get("cat") in GPU]
    print(f"{a.title or a.trace}: {a.steps} steps")
    print(table("host: self time by operator", host_self_times(host), a.steps, a.top))
    if gpu:
        print(table("GPU: time by kernel or copy", gpu_times(gpu), a.steps, a.top))


if __name__ == "__main__":
    main()
