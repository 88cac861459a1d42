#!/usr/bin/env bash
# The speed issue's GPU measurements in one go (meant to fit one device call of under 10
# minutes), for a CUDA machine with PyTorch 2.11 (python3) but no Rust: build nndl elsewhere,
# carry the binary, its CUDA-graph shim and MNIST, then
#   scripts/gpu-speed.sh NNDL_BINARY MNIST_DIR OUT_DIR
# Most important first, each part written as it ends: bench.txt (single faithful runs, nndl vs
# PyTorch eager vs the CUDA-graph PyTorch peer, median of 2, TF32 off in all), variants.txt
# (nndl with each speed route off in turn, the CNN's bias after the pooling on, and whether the
# metrics stay the same), checks.txt
# (eager and checkpointed runs against the default's metrics; a CNN pack's deterministic runs
# against each other), packed.txt (10 seeds packed vs 10 single runs vs one run vs PyTorch's
# vmap ensemble; the CNN at 1001 iterations; each pack also in its other arrangement, stacked
# or on streams, the CNN's also channels-last and with its bias after the pooling).
# scripts/gpu-profile.sh makes the kernel lists, in a second call.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/gpu-common.sh"
# A short run of each net first: stop here, cheaply, if the CUDA path is broken.
for m in mlp cnn; do
  if ! "$nndl" $m --iterations 120 --eval-every 50 --device cuda --data "$data" --out "$work/smoke-$m" --quiet --json > "$work/smoke-$m.json" 2> "$work/smoke-$m.err"; then
    { echo "smoke $m FAILED:"; cat "$work/smoke-$m.err"; } | tee -a "$out/gpu.txt"
    exit 1
  fi
  python3 -c "import json; d=json.load(open('$work/smoke-$m.json')); print('smoke $m', d['final_test_accuracy'], 'graph', d['cuda_graph'], 'loop', round(d['train_seconds'], 3), d['environment']['gpu'])" | tee -a "$out/gpu.txt"
done
# --run-timeout: a route that hangs fails alone (the longest program here, a 10-seed CNN pack,
# took 11 s on the H200).
bench() { timeout "$1" python3 "$here/bench.py" --nndl "$nndl" --python python3 --data "$data" --device cuda --threads 0 --run-timeout 60 "${@:2}" 2>&1 | grep -v Warning; }
# On an H200 the Python peers took 10-19 s a process (most of it start-up); from the processes'
# times, 2 repeats of the six programs come to about 130 s.
bench 200 --repeats 2 --mlp-iterations 4001 --cnn-iterations 4001 --only mlp,cnn | tee "$out/bench.txt"
bench 200 --repeats 2 --mlp-iterations 4001 --cnn-iterations 4001 --only variants --packed-models mlp,cnn | tee "$out/variants.txt"
{
  run() { timeout 60 "$nndl" mlp --device cuda --data "$data" --quiet --json --out "$work/$1" "${@:2}" >/dev/null || echo "FAILED: $1"; }
  run mlp-default
  run mlp-eager --no-cuda-graph
  run mlp-checkpoint-75 --checkpoint-every 75
  for v in eager checkpoint-75; do
    cmp -s "$work/mlp-default/metrics.csv" "$work/mlp-$v/metrics.csv" && echo "MLP $v: metrics.csv identical to the default run's" || echo "MLP $v: metrics.csv DIFFER"
    cmp -s "$work/mlp-default/model.safetensors" "$work/mlp-$v/model.safetensors" && echo "MLP $v: model.safetensors identical" || echo "MLP $v: model.safetensors DIFFER"
  done
  # A CNN pack on streams moved its accuracies between two runs; with cuDNN's algorithms fixed
  # (--deterministic), two runs should give the same metrics.
  for k in 1 2; do
    timeout 60 "$nndl" cnn --seeds 0..3 --iterations 200 --eval-every 100 --deterministic --device cuda --data "$data" --quiet --out "$work/cnn-pack-det-$k" >/dev/null || echo "FAILED: cnn-pack-det-$k"
  done
  for seed in 0 1 2 3; do
    cmp -s "$work/cnn-pack-det-1/seed-$seed/metrics.csv" "$work/cnn-pack-det-2/seed-$seed/metrics.csv" && echo "CNN pack on streams, --deterministic, seed $seed: metrics.csv identical in two runs" || echo "CNN pack on streams, --deterministic, seed $seed: metrics.csv DIFFER between two runs"
  done
} 2>&1 | tee "$out/checks.txt"
bench 210 --repeats 1 --mlp-iterations 4001 --cnn-iterations 1001 --only packed --packed-models mlp,cnn --members 10 | tee "$out/packed.txt"
tar -czf "$out/results.tar.gz" -C "$work" --exclude='*.safetensors' --exclude='*.png' .
