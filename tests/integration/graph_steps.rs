//! Blocks of training steps (on CUDA, several steps per graph replay). Without a GPU their
//! bookkeeping (where blocks fit, the running sums counted once a block, evaluations and
//! checkpoints at block ends) is checked on the CPU, where NNDL_GRAPH_STEPS makes blocks that
//! run eagerly: the same metrics and weights as one step at a time, bit for bit.
use crate::util::{mnist_dir, nndl, tempdir};
use std::path::Path;

/// Runs `nndl <args>` on the CPU, one thread, with `NNDL_GRAPH_STEPS` set to `block` if given.
fn run(args: &[&str], out: &Path, block: Option<&str>) {
    let mut cmd = nndl();
    cmd.args(args).args(["--threads", "1", "--device", "cpu", "--quiet", "--force", "--data"]).arg(mnist_dir()).arg("--out").arg(out);
    cmd.env_remove("NNDL_GRAPH_STEPS");
    if let Some(k) = block {
        cmd.env("NNDL_GRAPH_STEPS", k);
    }
    let done = cmd.output().unwrap();
    assert!(done.status.success(), "nndl {args:?} failed: {}", String::from_utf8_lossy(&done.stderr));
}

fn same_files(a: &Path, b: &Path, files: &[&str]) {
    for f in files {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
fn blocks_of_steps_train_as_single_steps_do() {
    let dir = tempdir("blocks");
    // 25-step blocks where they fit: not across the evaluations every 50 steps, nor across a
    // checkpoint every 40 (so some intervals run step by step), nor past the end.
    for (model, iterations) in [("mlp", "230"), ("cnn", "130")] {
        let args = [model, "--iterations", iterations, "--eval-every", "50", "--checkpoint-every", "40"];
        run(&args, &dir.join(format!("{model}-steps")), None);
        run(&args, &dir.join(format!("{model}-blocks")), Some("25"));
        same_files(&dir.join(format!("{model}-steps")), &dir.join(format!("{model}-blocks")), &["metrics.csv", "model.safetensors"]);
    }
}

#[test]
fn packed_blocks_train_as_packed_steps_do() {
    let dir = tempdir("packed-blocks");
    let args = ["mlp", "--seeds", "0..2", "--iterations", "120", "--eval-every", "30"];
    run(&args, &dir.join("steps"), None);
    run(&args, &dir.join("blocks"), Some("10"));
    for seed in 0..=2 {
        let member = format!("seed-{seed}");
        same_files(&dir.join("steps").join(&member), &dir.join("blocks").join(&member), &["metrics.csv", "model.safetensors"]);
    }
}
