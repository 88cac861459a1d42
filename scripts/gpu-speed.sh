#!/usr/bin/env bash
# The speed issue's GPU measurements in one go (not yet run on a GPU; meant to fit one 10-minute
# device call), for a CUDA machine
# with PyTorch 2.11 (python3) but no Rust: build nndl elsewhere, carry the binary and MNIST, then
#   scripts/gpu-speed.sh NNDL_BINARY MNIST_DIR OUT_DIR
# bench.txt: single faithful runs, nndl vs PyTorch eager vs the CUDA-graph PyTorch peer (median
# of 3); packed.txt: 10 seeds packed vs 10 single runs vs one run vs PyTorch's vmap ensemble, for
# the MLP and the CNN; packed-check.jsonl: four CNN seeds in one pack (grouped convolutions).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/gpu-common.sh"
python3 "$here/bench.py" --nndl "$nndl" --python python3 --data "$data" --device cuda --threads 0 --repeats 3 \
  --mlp-iterations 4001 --cnn-iterations 4001 --only mlp,cnn --json 2>&1 | grep -v UserWarning | tee "$out/bench.txt"
python3 "$here/bench.py" --nndl "$nndl" --python python3 --data "$data" --device cuda --threads 0 --repeats 1 \
  --mlp-iterations 4001 --cnn-iterations 4001 --only packed --packed-models mlp,cnn --members 10 --json 2>&1 | grep -v UserWarning | tee "$out/packed.txt"
"$nndl" cnn --seeds 0..3 --device cuda --data "$data" --out "$work/cnn-seeds" --json --quiet 2>&1 | tee "$out/packed-check.jsonl"
tar -czf "$out/results.tar.gz" -C "$work" .
