#!/usr/bin/env bash
# nndl's faithful CNN against the PyTorch eager peer with the same semantics
# (scripts/bench_torch.py: the homework's init, TF1 batch order, keep-0.25 dropout also at test
# time), full schedule, seeds 0..N-1 interleaved, on a CUDA machine with PyTorch 2.11:
#   scripts/gpu-seeds.sh NNDL_BINARY MNIST_DIR OUT_DIR [N]
# Writes OUT_DIR/seeds.jsonl (one line per run, as it goes) and prints the statistics.
set -uo pipefail
nndl=$(realpath "$1") data=$(realpath "$2") out=$(realpath "$3") n=${4:-10}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
export LD_LIBRARY_PATH=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$out/gpu.txt"
for s in $(seq 0 $((n - 1))); do
  "$nndl" cnn --seed "$s" --device cuda --data "$data" --out "$work/nndl-$s" --quiet --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'impl':'nndl','seed':$s,'acc':d['final_test_accuracy'],'loss':d['final_test_loss'],'train_s':d['train_seconds']}))" >> "$out/seeds.jsonl"
  python3 "$here/bench_torch.py" --model cnn --seed "$s" --device cuda --data "$data" 2>/dev/null | python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(json.dumps({'impl':'torch','seed':$s,'acc':d['final_test_accuracy'],'loss':d['final_test_loss'],'train_s':d['train_seconds']}))" >> "$out/seeds.jsonl"
  tail -2 "$out/seeds.jsonl"
done
python3 - "$out/seeds.jsonl" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
for impl in ("nndl", "torch"):
    a = [r["acc"] for r in rows if r["impl"] == impl]; l = [r["loss"] for r in rows if r["impl"] == impl]
    if len(a) > 1:
        print(f"{impl}: {len(a)} seeds, accuracy {100*st.mean(a):.2f}% ± {100*st.stdev(a):.2f} ({100*min(a):.2f}-{100*max(a):.2f}), loss {st.mean(l):.4f} ± {st.stdev(l):.4f}")
PY
