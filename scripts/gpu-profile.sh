#!/usr/bin/env bash
# Kernel lists for the speed issue, for a CUDA machine with PyTorch 2.11 (python3), ncu and no
# Rust (build nndl elsewhere; carry the binary, its CUDA-graph shim and MNIST), then
#   scripts/gpu-profile.sh NNDL_BINARY MNIST_DIR OUT_DIR
# Separate from gpu-speed.sh, whose measurements take most of a 10-minute device call: run it
# right after, while the machine is warm (about 3.5 minutes on an H200; 4.5 with
# NNDL_BEFORE). First, in about a minute, pack_routes.py and cnn_routes.py: the MLP pack's step
# and the single CNN's, and variants of each in PyTorch, checked against them and timed as
# graph replays, into routes.txt. Then Kineto profiles of 40 steps each into kineto.txt (about
# two minutes): nndl's (--profile-steps) and the PyTorch peer's (bench_torch.py
# --profile-steps, summed by trace_table.py the same way), graph replays and eager steps of the
# MLP and CNN (nndl's CNN also with NNDL_CNN_BIAS=pool), and nndl's packs of 10 (each also in
# its other arrangement, stacked or on streams; the MLP's also with NNDL_PACK_WEIGHTS=in-out and
# in stacks of 5, NNDL_PACK_STACK=5).
# Then ncu times each kernel of a short eager run alone (--clock-control none, one metric);
# ncu_steps.py prints one training step of each, kernel by kernel: the faithful MLP and CNN of
# nndl and of PyTorch eager (the CUDA-graph peer replays the same kernels), and a pack of 10 MLP
# seeds. The lists go to ncu.tar.gz, the summaries to steps.txt; the Chrome traces of the MLP
# pack's and the CNN's profiled steps to traces.tar.gz.
# With NNDL_BEFORE=PATH (an earlier build, its CUDA-graph shim beside it), right after
# routes.txt: before.txt, that build against this one, alternating, 2 rounds (about 45 s): a
# faithful MLP run, a CNN run and a pack of 10 MLP seeds, each program's loop and accuracy.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/gpu-common.sh"
mkdir -p "$work/ncu"
ncu_list() {
  local name=$1; shift
  timeout 100 ncu --clock-control none --metrics gpu__time_duration.sum --csv "$@" > "$work/ncu/$name.csv" 2> "$work/ncu/$name.err" \
    || { echo "ncu $name failed:"; tail -3 "$work/ncu/$name.err"; }
  python3 "$here/ncu_steps.py" "$work/ncu/$name.csv"
}
profile() {
  local name=$1; shift
  if "$nndl" "$@" --iterations 60 --eval-every 1000 --profile-steps 40 --device cuda --data "$data" --out "$work/prof-$name" --quiet --force > /dev/null 2> "$work/prof-$name.err"; then
    echo "== $name: nndl $*"; cat "$(find "$work/prof-$name" -name profile.txt | sort | head -1)"
  else
    echo "== $name FAILED:"; tail -3 "$work/prof-$name.err"
  fi
}
peer() {
  local name=$1; shift
  if python3 "$here/bench_torch.py" "$@" --iterations 60 --eval-every 1000 --profile-steps 40 --trace "$work/$name.json" --device cuda --data "$data" > /dev/null 2> "$work/$name.err"; then
    python3 "$here/trace_table.py" "$work/$name.json" --steps 40 --title "== $name: bench_torch.py $*"
  else
    echo "== $name FAILED:"; tail -3 "$work/$name.err"
  fi
}
# Which formulations of the MLP pack's step (the speed issue's 1.5x) and of the single CNN's
# (its 0.9x) would gain, before nndl builds one.
for routes in pack_routes cnn_routes; do
  timeout 150 python3 "$here/$routes.py" --device cuda --data "$data" 2>&1 || echo "$routes.py FAILED (exit $?)"
done | tee "$out/routes.txt"
if [ -n "${NNDL_BEFORE:-}" ]; then
  for round in 1 2; do
    for build in before this; do
      bin=$nndl; [ $build = before ] && bin=$(realpath "$NNDL_BEFORE")
      for run in "mlp" "cnn" "mlp --seeds 0..9"; do
        if timeout 60 "$bin" $run --device cuda --data "$data" --quiet --json --force --out "$work/ab-$build" > "$work/ab.json" 2> "$work/ab.err"; then
          python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
runs = [r["summary"] for r in d["runs"]] if "runs" in d else [d]
print(sys.argv[2], "loop %.3f s;" % runs[0]["train_seconds"], "accuracy", " ".join("%.4f" % r["final_test_accuracy"] for r in runs))' "$work/ab.json" "round $round, $build build, nndl $run:"
        else
          echo "round $round, $build build, nndl $run: FAILED: $(tail -1 "$work/ab.err")"
        fi
      done
    done
  done 2>&1 | tee "$out/before.txt"
fi
{
  for m in mlp cnn; do
    profile $m-graph $m
    peer torch-$m-graph --model $m --cuda-graph
    profile $m-eager $m --no-cuda-graph
    peer torch-$m-eager --model $m
  done
  # The CNN with its bias after the pooling: its bias kernels on a quarter of the elements.
  NNDL_CNN_BIAS=pool profile cnn-graph-bias-pool cnn
  # Each pack in its default arrangement (the MLP's stacked, the CNN's members on streams of
  # their own, whose kernels may overlap in time), then in the other.
  profile mlp-pack10 mlp --seeds 0..9
  profile cnn-pack10 cnn --seeds 0..9
  NNDL_PACK_STREAMS=on profile mlp-pack10-streams mlp --seeds 0..9
  NNDL_PACK_WEIGHTS=in-out profile mlp-pack10-in-out mlp --seeds 0..9
  NNDL_PACK_STACK=5 profile mlp-pack10-stacks-of-5 mlp --seeds 0..9
  NNDL_PACK_STREAMS=off profile cnn-pack10-stacked cnn --seeds 0..9
} 2>&1 | tee "$out/kineto.txt"
# The Chrome traces behind four of those tables (for Perfetto: the gaps between kernels).
(cd "$work" && find prof-mlp-pack10 prof-mlp-pack10-stacks-of-5 prof-cnn-graph prof-cnn-graph-bias-pool -name profile-trace.json 2>/dev/null | tar -czf "$out/traces.tar.gz" -T -)
short=(--iterations 10 --eval-every 1000 --device cuda --data "$data")
"$nndl" mlp "${short[@]}" --out "$work/warm" --quiet --force --no-cuda-graph >/dev/null  # the page cache
{
  for m in mlp cnn; do
    ncu_list "nndl-$m" "$nndl" $m "${short[@]}" --out "$work/nndl-$m" --quiet --force --no-cuda-graph
    ncu_list "torch-$m" python3 "$here/bench_torch.py" --model $m "${short[@]}"
  done
  ncu_list nndl-mlp-pack10 "$nndl" mlp --seeds 0..9 "${short[@]}" --out "$work/nndl-pack" --quiet --force --no-cuda-graph
} 2>&1 | tee "$out/steps.txt"
tar -czf "$out/ncu.tar.gz" -C "$work/ncu" .
