#!/usr/bin/env bash
# Kernel lists for the speed issue, for a CUDA machine with PyTorch 2.11 (python3), ncu and no
# Rust (build nndl elsewhere; carry the binary, its CUDA-graph shim and MNIST), then
#   scripts/gpu-profile.sh NNDL_BINARY MNIST_DIR OUT_DIR
# Separate from gpu-speed.sh, whose measurements fill one 10-minute device call: run it right
# after, while the machine is warm. ncu times each kernel of a short eager run alone
# (--clock-control none, one metric); ncu_steps.py prints one training step of each, kernel by
# kernel: the faithful MLP and CNN of nndl and of PyTorch eager (the CUDA-graph peer replays the
# same kernels), and a pack of 10 MLP seeds. The lists go to ncu.tar.gz, the summaries to
# steps.txt.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/gpu-common.sh"
mkdir -p "$work/ncu"
ncu_list() {
  local name=$1; shift
  timeout 100 ncu --clock-control none --metrics gpu__time_duration.sum --csv "$@" > "$work/ncu/$name.csv" 2> "$work/ncu/$name.err" \
    || { echo "ncu $name failed:"; tail -3 "$work/ncu/$name.err"; }
  python3 "$here/ncu_steps.py" "$work/ncu/$name.csv"
}
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
