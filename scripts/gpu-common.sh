# Sourced by the GPU scripts: NNDL_BINARY MNIST_DIR OUT_DIR as $1 $2 $3; sets nndl, data, out,
# here, work (a scratch folder), libtorch from the machine's PyTorch, and writes gpu.txt.
nndl=$(realpath "$1") data=$(realpath "$2") out=$(realpath "$3")
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
work=$(mktemp -d)
torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; "$nndl" info; } 2>&1 | tee "$out/gpu.txt"
