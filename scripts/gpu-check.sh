#!/usr/bin/env bash
# The GPU checks of the runs-that-survive and numerics work, in one go, for a CUDA machine with
# PyTorch 2.11 (python3) but no Rust: build here, carry the binary, its CUDA-graph shim and MNIST.
#   scripts/gpu-check.sh NNDL_BINARY MNIST_DIR OUT_DIR
# Prints and writes checks.txt: --deterministic CNN twice (identical metrics.csv?), the default
# (cuDNN benchmark) CNN twice, CUDA graph vs eager MLP (1e-5), TF32 on vs off, a killed and
# resumed CUDA run, a small sweep over the GPU, and nndl eval on CUDA.
set -uo pipefail
nndl=$(realpath "$1") data=$(realpath "$2") out=$(realpath "$3")
work=$(mktemp -d)
torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec > >(tee "$out/checks.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$nndl" info
run() { local name=$1; shift; "$nndl" "$@" --device cuda --data "$data" --out "$work/$name" --quiet --json > "$work/$name.json" || echo "FAILED: $name"; 
  python3 -c "import json,sys; d=json.load(open('$work/$name.json')); print('$name', 'acc', d['final_test_accuracy'], 'loss', round(d['final_test_loss'],5), 'train_s', round(d['train_seconds'],3), 'graph', d['cuda_graph'], 'tf32', d['tf32'], 'det', d['deterministic'], 'gpu', d['environment']['gpu'])"; }
echo "== faithful CNN, --deterministic, twice"
run cnn-det-1 cnn --deterministic
run cnn-det-2 cnn --deterministic
cmp -s "$work/cnn-det-1/metrics.csv" "$work/cnn-det-2/metrics.csv" && echo "deterministic: metrics.csv IDENTICAL" || echo "deterministic: metrics.csv DIFFER"
echo "== faithful CNN, default (cuDNN benchmark), twice"
run cnn-bench-1 cnn
run cnn-bench-2 cnn
cmp -s "$work/cnn-bench-1/metrics.csv" "$work/cnn-bench-2/metrics.csv" && echo "benchmark mode: metrics.csv IDENTICAL" || echo "benchmark mode: metrics.csv DIFFER ($(diff "$work/cnn-bench-1/metrics.csv" "$work/cnn-bench-2/metrics.csv" | grep -c '^<') rows)"
echo "== faithful CNN, --tf32 on"
run cnn-tf32 cnn --tf32 on
echo "== MLP: CUDA graph vs eager, 200 iterations"
run mlp-graph mlp --iterations 200 --eval-every 50
run mlp-eager mlp --iterations 200 --eval-every 50 --no-cuda-graph
python3 - "$work/mlp-graph/metrics.csv" "$work/mlp-eager/metrics.csv" <<'PY'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
worst = max(abs(float(x[k]) - float(y[k])) / max(abs(float(y[k])), 1.0) for x, y in zip(a, b) for k in ("loss", "accuracy"))
print(f"graph vs eager: {len(a)} rows, largest relative difference {worst:.2e}: {'PASS' if worst <= 1e-5 and len(a) == len(b) else 'FAIL'} (1e-5)")
PY
echo "== full faithful MLP"
run mlp-full mlp
echo "== CNN killed at 2 s, resumed"
"$nndl" cnn --device cuda --data "$data" --out "$work/cnn-cut" --checkpoint-every 500 --quiet & pid=$!
sleep 2; kill -9 $pid; wait $pid 2>/dev/null
ls "$work/cnn-cut"
"$nndl" resume "$work/cnn-cut" --data "$data" --json --quiet > "$work/cnn-cut.json" && python3 -c "import json; d=json.load(open('$work/cnn-cut.json')); print('resumed CNN: acc', d['final_test_accuracy'], 'resumed', d['resumed'])"
echo "== eval on CUDA"
"$nndl" eval "$work/cnn-det-1" --data "$data" --quiet --json | python3 -c "import json,sys; d=json.load(sys.stdin); print('eval', d['device'], d['test_accuracy'], 'run', d['run_final_test_accuracy'])"
echo "== sweep: 6 faithful MLP seeds on the GPU, --jobs 2"
printf 'model = "mlp"\nseed = { from = 0, to = 5 }\n' > "$work/spec.toml"
/usr/bin/time -f "sweep wall %e s" "$nndl" sweep "$work/spec.toml" --out "$work/sweep" --device cuda --jobs 2 --threads 2 --data "$data" --quiet --json
"$nndl" report "$work/sweep" --quiet && sed -n 5,7p "$work/sweep/report.md"
cp "$work"/cnn-det-1/metrics.csv "$out/cnn-det-1.csv"; cp "$work"/cnn-det-2/metrics.csv "$out/cnn-det-2.csv"
echo "done"
