#!/usr/bin/env bash
# One task of an nndl sweep run as a Slurm job array. Copy it and adjust the #SBATCH lines.
#
#   sbatch --array=0-15 scripts/slurm-sweep.sh SPEC.toml OUT_DIR [extra nndl sweep flags]
#
# Each array task runs `nndl sweep SPEC --out OUT_DIR`; nndl reads SLURM_ARRAY_TASK_ID and
# SLURM_ARRAY_TASK_COUNT (or _MIN/_MAX) and runs only its shard: trial k belongs to task k mod N,
# so the tasks partition the trials. An array of N tasks runs about trials/N trials a task; more
# tasks than trials leaves the extra tasks with nothing to do (they exit 0 at once).
#
# - OUT_DIR must be on a file system that every node shares (home, NFS, Lustre, BeeGFS...),
#   never node-local /tmp: all tasks write their trial folders into it, and `nndl report OUT_DIR`
#   reads them all afterwards.
# - Rerunning the same array (same SPEC, same OUT_DIR, any array size) resumes: finished trials
#   are skipped, interrupted ones resume from their checkpoints, and a trial another task is
#   still training is left to it (each trial folder is locked while it trains).
# - libtorch gets --threads $SLURM_CPUS_PER_TASK (1 when unset); pass --threads yourself to
#   override it. Extra flags go to nndl as they are: --device cuda (with --gres=gpu:1), --data
#   DIR (or export MNIST_DIR), --json, --quiet, --jobs N...
# - The binary is $NNDL if set, else `nndl` on PATH, else target/release/nndl under the folder
#   sbatch was called from. sbatch passes the submitting shell's environment on (NNDL,
#   MNIST_DIR) unless --export says otherwise.
# - The task exits with nndl's status: 0 when its trials finished (or were already done), 1 when
#   some failed (listed in OUT_DIR/failures.json), 128+N when stopped by signal N (a rerun
#   continues).
#
#SBATCH --job-name=nndl-sweep
#SBATCH --cpus-per-task=2
#SBATCH --mem-per-cpu=2G
#SBATCH --time=01:00:00
#SBATCH --output=slurm-%A_%a.out
# For GPUs (one per task), add:  #SBATCH --gres=gpu:1   and pass --device cuda.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: sbatch --array=0-15 $0 SPEC.toml OUT_DIR [extra nndl sweep flags]" >&2
    exit 2
fi
SPEC=$1
OUT=$2
shift 2

nndl=${NNDL:-}
if [ -z "$nndl" ]; then
    if command -v nndl >/dev/null 2>&1; then
        nndl=nndl
    elif [ -x "${SLURM_SUBMIT_DIR:-.}/target/release/nndl" ]; then
        nndl=${SLURM_SUBMIT_DIR:-.}/target/release/nndl
    else
        nndl=nndl # not found: the exec below says so
    fi
fi

# --threads once only (nndl refuses it twice): ours unless the caller passed one.
threads=(--threads "${SLURM_CPUS_PER_TASK:-1}")
for arg in "$@"; do
    case $arg in --threads | --threads=*) threads=() ;; esac
done

echo "nndl-sweep: job ${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-?}} task ${SLURM_ARRAY_TASK_ID:-none} of ${SLURM_ARRAY_TASK_COUNT:-?} on $(hostname -s): $nndl sweep $SPEC --out $OUT ${threads[*]} $*" >&2
exec "$nndl" sweep "$SPEC" --out "$OUT" "${threads[@]}" "$@"
