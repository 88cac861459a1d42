#!/usr/bin/env bash
# Every GPU measurement in one go, for a CUDA machine that has PyTorch 2.11 (python3) but no Rust
# toolchain: build nndl elsewhere, copy the binary and the MNIST files over, then
#   scripts/gpu-bench.sh NNDL_BINARY MNIST_DIR OUT_DIR
# It writes gpu.txt (GPU, nndl info), bench.txt (nndl vs PyTorch eager, full faithful schedules),
# eager.jsonl (faithful runs without CUDA graphs), modern.jsonl (modern presets, 3 seeds each;
# MODERN=0 skips them), reproduce.json and results.tar.gz (all run folders).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/gpu-common.sh"
python3 "$here/bench.py" --nndl "$nndl" --python python3 --data "$data" --device cuda --threads 0 --repeats 3 \
  --mlp-iterations 4001 --cnn-iterations 4001 --only mlp,cnn --json 2>&1 | grep -v UserWarning | tee "$out/bench.txt"
# The same faithful runs with the steps launched one by one (no CUDA graph), for the A/B.
for m in mlp cnn; do
  for r in 1 2; do
    "$nndl" "$m" --no-cuda-graph --device cuda --data "$data" --out "$work/$m-eager-$r" --json --quiet
  done
done 2>&1 | tee "$out/eager.jsonl"
if [ "${MODERN:-1}" = 1 ]; then
  for m in mlp cnn; do
    for s in 0 1 2; do
      "$nndl" "$m" --preset modern --seed "$s" --device cuda --data "$data" --out "$work/$m-modern-$s" --json --quiet
    done
  done 2>&1 | tee "$out/modern.jsonl"
fi
"$nndl" reproduce --device cuda --data "$data" --out "$work/reproduce" --json --quiet 2>&1 | tee "$out/reproduce.json"
tar -czf "$out/results.tar.gz" -C "$work" .
