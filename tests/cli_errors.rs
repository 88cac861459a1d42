//! Every bad flag value ends in one line on stderr and a non-zero exit, before any work, and
//! leaves what was already written untouched.
mod common;
use common::{assert_one_line_error, nndl};

fn mlp_with(args: &[&str]) -> std::process::Output {
    let out = common::tempdir(&format!("bad{}", args.join("_").replace(['-', '/', '.'], "")));
    nndl().arg("mlp").args(args).args(["--device", "cpu", "--quiet", "--out"]).arg(out.join("run")).output().unwrap()
}

#[test]
fn bad_learning_rates() {
    assert_one_line_error(&mlp_with(&["--lr", "0"]), "invalid --lr 0");
    assert_one_line_error(&mlp_with(&["--lr", "-0.1"]), "invalid --lr -0.1");
    assert_one_line_error(&mlp_with(&["--lr", "NaN"]), "invalid --lr NaN");
    assert_one_line_error(&mlp_with(&["--lr", "inf"]), "invalid --lr inf");
    assert_one_line_error(&mlp_with(&["--lr", "fast"]), "invalid value 'fast'");
}

#[test]
fn bad_batch_sizes() {
    assert_one_line_error(&mlp_with(&["--batch-size", "0"]), "invalid --batch-size 0");
    assert_one_line_error(&mlp_with(&["--batch-size", "55001"]), "invalid --batch-size 55001");
    assert_one_line_error(&mlp_with(&["--batch-size", "-3"]), "--batch-size");
}

#[test]
fn bad_iterations_and_eval_every() {
    assert_one_line_error(&mlp_with(&["--iterations", "0"]), "invalid --iterations 0");
    assert_one_line_error(&mlp_with(&["--eval-every", "0"]), "invalid --eval-every 0");
    assert_one_line_error(&mlp_with(&["--threads", "0"]), "invalid --threads 0");
}

#[test]
fn unwritable_out() {
    let dir = common::tempdir("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"keep me").unwrap();
    let out = nndl().args(["mlp", "--device", "cpu", "--quiet", "--data"]).arg(common::mnist_dir())
        .arg("--out").arg(file.join("run")).output().unwrap();
    assert_one_line_error(&out, "cannot create output folder");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn earlier_run_is_not_overwritten() {
    let dir = common::tempdir("earlier");
    std::fs::write(dir.join("config.json"), b"{\"earlier\": true}").unwrap();
    let out = nndl().args(["mlp", "--device", "cpu", "--quiet", "--data"]).arg(common::mnist_dir())
        .arg("--out").arg(&dir).output().unwrap();
    assert_one_line_error(&out, "already holds a run");
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), b"{\"earlier\": true}");
}

#[test]
fn missing_data_names_the_file_and_the_fix() {
    let dir = common::tempdir("nodata");
    let out = nndl().args(["mlp", "--device", "cpu", "--quiet", "--data"]).arg(&dir).arg("--out").arg(dir.join("run")).output().unwrap();
    assert_one_line_error(&out, "train-images-idx3-ubyte not found");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nndl data fetch"));
    assert!(!dir.join("run").exists(), "no run folder is left behind");
}

#[test]
fn cuda_without_cuda_is_one_line() {
    let info: serde_json::Value = serde_json::from_slice(&nndl().args(["info", "--json"]).output().unwrap().stdout).unwrap();
    if info["cuda_available"] == true {
        eprintln!("CUDA present: nothing to check");
        return;
    }
    let out = nndl().args(["mlp", "--device", "cuda", "--quiet"]).output().unwrap();
    assert_one_line_error(&out, "--device cuda: CUDA is not available");
    let out = nndl().args(["mlp", "--device", "tpu", "--quiet"]).output().unwrap();
    assert_one_line_error(&out, "invalid --device 'tpu'");
}

#[test]
fn bad_subcommand_values() {
    assert_one_line_error(&nndl().args(["xor", "--runs", "0", "--quiet"]).output().unwrap(), "invalid --runs 0");
    assert_one_line_error(&nndl().args(["xor", "--lr", "nan", "--quiet"]).output().unwrap(), "invalid --lr NaN");
    assert_one_line_error(&nndl().args(["bptt", "--trials", "0"]).output().unwrap(), "invalid --trials 0");
    assert_one_line_error(&nndl().args(["cnn", "--preset", "ancient"]).output().unwrap(), "invalid value 'ancient'");
    assert_one_line_error(&nndl().args(["cnn", "--config", "/nonexistent.json"]).output().unwrap(), "cannot read config");
}
