#!/usr/bin/env python3
"""Summarises an `ncu --csv --metrics gpu__time_duration.sum` kernel list of a short eager
training run (scripts/gpu-profile.sh makes them): the run is cut into training steps at each
step's first kernel (the gather of its batch images, `index_select`), and one typical step is
printed kernel by kernel with each kernel's time (ncu times each kernel alone, so the sum is the
step's kernel time without launch gaps).

    ncu_steps.py LIST.csv [--step K] [--all]
"""
import argparse
import csv
import re
import statistics

UNITS_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}


def kernels(path):
    with open(path) as f:
        rows = list(csv.reader(line for line in f if line.startswith('"')))
    head, rows = rows[0], rows[1:]
    name, value, unit, grid = (head.index(k) for k in ("Kernel Name", "Metric Value", "Metric Unit", "Grid Size"))
    return [(r[name], float(r[value].replace(",", "")) * UNITS_US[r[unit]], r[grid]) for r in rows]


def short(name):
    name = re.sub(r"\(.*$", "", name).replace("void ", "").replace("at::<unnamed>::", "").replace("at::", "")
    return name[:100]


def steps(seq):
    """Spans from one batch gather to the next, the usual length only (an evaluation or the
    start-up makes a longer one)."""
    starts = [i for i, (n, _, _) in enumerate(seq) if "vectorized_gather_kernel" in n or "indexSelect" in n]
    spans = list(zip(starts, starts[1:]))
    usual = statistics.median(b - a for a, b in spans)
    return [(a, b) for a, b in spans if b - a == usual]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--step", type=int, default=-2, help="which of the usual steps to print (default: the last but one)")
    ap.add_argument("--all", action="store_true", help="print every kernel of the run, not one step")
    a = ap.parse_args()
    seq = kernels(a.csv)
    if a.all:
        for n, us, g in seq:
            print(f"{us:8.2f} us  grid {g:>14}  {short(n)}")
        return
    spans = steps(seq)
    if not spans:
        raise SystemExit(f"{a.csv}: no training steps found ({len(seq)} kernels)")
    totals = [sum(us for _, us, _ in seq[x:y]) for x, y in spans]
    x, y = spans[a.step]
    print(f"{a.csv}: {len(seq)} kernels; {len(spans)} steps of {y - x} kernels, kernel time per step "
          f"median {statistics.median(totals):.1f} us (min {min(totals):.1f}, max {max(totals):.1f}); one of them:")
    for n, us, g in seq[x:y]:
        print(f"  {us:8.2f} us  grid {g:>14}  {short(n)}")


if __name__ == "__main__":
    main()
