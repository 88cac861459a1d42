#!/usr/bin/env bash
# One task of an nndl sweep run as a Slurm job array. Copy it and adjust the #SBATCH lines.
#
#   sbatch --array=0-15 scripts/slurm-sweep.sh SPEC.toml OUT_DIR [extra nndl sweep flags]
#
# Each array task runs `nndl sweep SPEC --out OUT_DIR`; nndl reads SLURM_ARRAY_TASK_ID and
# SLURM_ARRAY_TASK_COUNT (or _MIN/_MAX) and runs only its shard: trial k belongs to task k mod N,
# so the tasks partition the trials. An array of N tasks runs about trials/N trials a task; more
# tasks than trials leaves the extra tasks with nothing to do (they exit 0 at once). Use a range
# (0-15), a throttled one (0-15%4) or a stepped one (0-30:2): the k-th id of the range runs shard
# k. A list of ids (--array=1,3, to redo two tasks of a 4-task array) says nothing about the
# array it came from: add --shards 4 after the arguments, and each id is the 0-based shard of 4
# (without it, a list's tasks fail at once, saying so). See docs/slurm.md.
# (`nndl sweep SPEC --out OUT_DIR --dry-run --shard 1/1` lists the trials and what is done.)
#
# - OUT_DIR must be on a file system that every node shares (home, NFS, Lustre, BeeGFS...),
#   never node-local /tmp: all tasks write their trial folders into it, and `nndl report OUT_DIR`
#   reads them all afterwards.
# - Rerunning the same array (same SPEC, same OUT_DIR, any array size) resumes: finished trials
#   are skipped, interrupted ones resume from their checkpoints, and a trial another task is
#   still training is left to it (each trial folder is locked while it trains). At the --time
#   limit Slurm sends SIGTERM to every process of the task: nndl checkpoints and exits 143
#   (state TIMEOUT); resubmit to continue. --signal=B:TERM@60 (a warning before the limit) works
#   too: the sweep passes the signal on to its trials, which checkpoint and stop.
# - Each trial gets --threads $SLURM_CPUS_PER_TASK (1 when unset), divided by --jobs N when you
#   pass it (N trials at once in one task); pass --threads yourself to override it.
# - Extra flags go to nndl as they are: --device cuda (with --gres=gpu:1), --data DIR (or
#   export MNIST_DIR), --json (the task's summary as the last line starting with "{" in its
#   slurm-%A_%a.out), --quiet, --jobs N.
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

# libtorch threads per trial: the task's CPUs shared among its --jobs trials at once. Given once
# only (nndl refuses --threads twice), so not at all when the caller passed --threads.
cpus=${SLURM_CPUS_PER_TASK:-1}
jobs=1
prev=""
for arg in "$@"; do
    case $prev in --jobs) jobs=$arg ;; esac
    case $arg in --jobs=*) jobs=${arg#--jobs=} ;; esac
    prev=$arg
done
case $jobs in '' | *[!0-9]* | 0) jobs=1 ;; esac # nndl itself reports a bad --jobs
per_trial=$((cpus / jobs))
threads=(--threads "$((per_trial > 0 ? per_trial : 1))")
for arg in "$@"; do
    case $arg in --threads | --threads=*) threads=() ;; esac
done

# The task's id as Slurm gave it (nndl names the shard it takes in its own lines: a stepped
# range's id 6 of 4 tasks is shard 4/4).
echo "nndl-sweep: job ${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-?}} array id ${SLURM_ARRAY_TASK_ID:-none} (${SLURM_ARRAY_TASK_COUNT:-?} tasks) on $(hostname -s): $nndl sweep $SPEC --out $OUT ${threads[*]} $*" >&2
exec "$nndl" sweep "$SPEC" --out "$OUT" "${threads[@]}" "$@"
