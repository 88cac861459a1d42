//! Every bad flag value ends in one line on stderr and a non-zero exit, before any work, and
//! leaves what was already written untouched.
use crate::util::{assert_one_line_error, nndl};

fn mlp_with(args: &[&str]) -> std::process::Output {
    let out = crate::util::tempdir(&format!("bad{}", args.join("_").replace(['-', '/', '.'], "")));
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
    let max = 4 * std::thread::available_parallelism().unwrap().get();
    assert_one_line_error(&mlp_with(&["--threads", "100000"]), &format!("invalid --threads 100000: must be between 1 and {max} (4 per core)"));
}

#[test]
fn unwritable_out() {
    let dir = crate::util::tempdir("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"keep me").unwrap();
    let out = nndl().args(["mlp", "--device", "cpu", "--quiet", "--data"]).arg(crate::util::mnist_dir())
        .arg("--out").arg(file.join("run")).output().unwrap();
    assert_one_line_error(&out, "cannot create output folder");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn foreign_files_are_not_overwritten() {
    let dir = crate::util::tempdir("earlier");
    std::fs::write(dir.join("config.json"), b"{\"earlier\": true}").unwrap();
    let out = nndl().args(["mlp", "--device", "cpu", "--quiet", "--data"]).arg(crate::util::mnist_dir())
        .arg("--out").arg(&dir).output().unwrap();
    assert_one_line_error(&out, "holds files nndl did not write; choose another --out or pass --force to replace them");
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), b"{\"earlier\": true}");
}

#[test]
fn missing_data_names_the_file_and_the_fix() {
    let dir = crate::util::tempdir("nodata");
    let out = nndl().args(["mlp", "--device", "cpu", "--quiet", "--data"]).arg(&dir).arg("--out").arg(dir.join("run")).output().unwrap();
    assert_one_line_error(&out, "train-images-idx3-ubyte not found");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nndl data fetch"));
    assert!(!dir.join("run").exists(), "no run folder is left behind");
}

#[test]
fn bad_devices_are_one_line() {
    // Checked on every machine, CUDA or not.
    let out = nndl().args(["mlp", "--device", "tpu", "--quiet"]).output().unwrap();
    assert_one_line_error(&out, "invalid --device 'tpu': expected auto, cpu, cuda or cuda:N");
    let out = nndl().args(["mlp", "--device", "cuda:x", "--quiet"]).output().unwrap();
    assert_one_line_error(&out, "invalid --device 'cuda:x'");
    let info: serde_json::Value = serde_json::from_slice(&nndl().args(["info", "--json"]).output().unwrap().stdout).unwrap();
    let missing = if info["cuda_available"] == true { "only" } else { "CUDA is not available" };
    let out = nndl().args(["mlp", "--device", "cuda:64", "--quiet"]).output().unwrap();
    assert_one_line_error(&out, &format!("--device cuda:64: {missing}"));
    // A sweep too, before its folder is made (each trial used to fail alike in it).
    let sweep_dir = crate::util::tempdir("device-sweep");
    std::fs::write(sweep_dir.join("spec.toml"), "model = \"mlp\"\niterations = 2\nseed = [0, 1]\n").unwrap();
    let out = nndl().arg("sweep").arg(sweep_dir.join("spec.toml")).args(["--device", "cuda:64", "--quiet", "--out"]).arg(sweep_dir.join("sweep")).output().unwrap();
    assert_one_line_error(&out, &format!("--device cuda:64: {missing}"));
    assert!(!sweep_dir.join("sweep").exists());
    // A device from a file is blamed on the file, not on a flag the user never gave.
    let dir = crate::util::tempdir("device-from-file");
    let config = dir.join("config.json");
    let mut cfg = nndl::config::TrainConfig::preset(nndl::config::ModelKind::Mlp, nndl::config::Preset::Faithful);
    cfg.device = "cuda:64".into();
    std::fs::write(&config, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = nndl().args(["mlp", "--quiet", "--config"]).arg(&config).arg("--out").arg(dir.join("run")).output().unwrap();
    assert_one_line_error(&out, &format!("{}: device cuda:64: {missing}", config.display()));
    let out = nndl().args(["mlp", "--quiet", "--device", "cuda:63", "--config"]).arg(&config).arg("--out").arg(dir.join("run")).output().unwrap();
    assert_one_line_error(&out, &format!("--device cuda:63: {missing}"));
    // A run started on a GPU, resumed where there is none.
    let run = dir.join("gpu-run");
    assert!(nndl().args(["mlp", "--iterations", "2", "--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(crate::util::mnist_dir()).arg("--out").arg(&run).status().unwrap().success());
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let saved = std::fs::read_to_string(run.join("config.json")).unwrap().replace("\"device\": \"cpu\"", "\"device\": \"cuda:64\"");
    std::fs::write(run.join("config.json"), saved).unwrap();
    let out = nndl().args(["resume", "--quiet"]).arg(&run).output().unwrap();
    assert_one_line_error(&out, &format!("{}: device cuda:64: {missing}", run.join("config.json").display()));
}

#[test]
fn bad_subcommand_values() {
    assert_one_line_error(&nndl().args(["xor", "--runs", "0", "--quiet"]).output().unwrap(), "invalid --runs 0");
    assert_one_line_error(&nndl().args(["xor", "--lr", "nan", "--quiet"]).output().unwrap(), "invalid --lr NaN");
    assert_one_line_error(&nndl().args(["bptt", "--trials", "0"]).output().unwrap(), "invalid --trials 0");
    assert_one_line_error(&nndl().args(["xor", "--epochs", "0", "--quiet"]).output().unwrap(), "invalid --epochs 0");
    assert_one_line_error(&nndl().args(["cnn", "--preset", "ancient"]).output().unwrap(), "invalid value 'ancient'");
    assert_one_line_error(&nndl().args(["cnn", "--config", "/nonexistent.json"]).output().unwrap(), "cannot read /nonexistent.json: No such file or directory");
}

#[test]
fn bad_seeds_and_packs() {
    assert_one_line_error(&mlp_with(&["--seeds", "9..0"]), "invalid --seeds \"9..0\": the range is empty");
    assert_one_line_error(&mlp_with(&["--seeds", "1,1"]), "a seed is named twice");
    assert_one_line_error(&mlp_with(&["--seeds", "a..b"]), "expected a range such as 0..9");
    assert_one_line_error(&mlp_with(&["--seeds", "0..99999"]), "at most 10000 seeds");
    assert_one_line_error(&mlp_with(&["--seeds", "0..3", "--pack", "0"]), "invalid --pack 0");
    assert_one_line_error(&mlp_with(&["--seeds", "0..3", "--seed", "2"]), "--seed");
    assert_one_line_error(&mlp_with(&["--pack", "2"]), "--seeds");
    assert_one_line_error(&mlp_with(&["--seeds", "0..1", "--export-init", "x", "--export-steps", "2"]), "--export-init");
}

#[test]
fn a_mistyped_speed_switch_is_named_not_ignored() {
    let out = crate::util::tempdir("badswitch");
    let run = nndl().args(["mlp", "--device", "cpu", "--quiet", "--out"]).arg(out.join("run")).env("NNDL_PACK_STREAMS", "yes").output().unwrap();
    assert_one_line_error(&run, "NNDL_PACK_STREAMS=\"yes\": expected on or off");
    assert!(!out.join("run").exists(), "nothing is written before the switches are checked");
}

#[test]
fn arguments_that_are_not_utf8_are_refused_before_any_work() {
    use std::os::unix::ffi::OsStrExt;
    let dir = crate::util::tempdir("not-utf8");
    let bad = dir.join(std::ffi::OsStr::from_bytes(b"m\xffm"));
    let out = nndl().args(["xor", "--quiet", "--out"]).arg(&bad).output().unwrap();
    assert_one_line_error(&out, "is not valid UTF-8; nndl takes UTF-8 paths and values");
    assert!(!bad.exists(), "nothing is made");
    let out = nndl().args(["data", "verify"]).env("MNIST_DIR", std::ffi::OsStr::from_bytes(b"d\xff")).output().unwrap();
    assert_one_line_error(&out, "MNIST_DIR is not valid UTF-8");
}

#[test]
fn dumps_replace_files_but_never_devices() {
    let dir = crate::util::tempdir("dump-device");
    let out = nndl().args(["xor", "--quiet", "--dump", "/dev/null", "--out"]).arg(dir.join("run")).output().unwrap();
    assert_one_line_error(&out, "--dump /dev/null: not a regular file");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
}

#[test]
fn lost_output_fails_and_lost_logs_do_not() {
    let dev_full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    // stdout on a full disk: the output is lost, so the command fails, in one line.
    let out = nndl().args(["info", "--json"]).stdout(dev_full()).output().unwrap();
    assert_one_line_error(&out, "cannot write the output to stdout");
    // stderr on a full disk (a Slurm log on a full file system): the run goes on and finishes.
    let dir = crate::util::tempdir("stderr-full");
    let status = nndl().args(["xor", "--out"]).arg(dir.join("run")).stderr(dev_full()).status().unwrap();
    assert!(status.success(), "{status}");
    assert!(dir.join("run/summary.json").is_file());
}

#[test]
fn reproduce_checks_its_thread_count() {
    let dir = crate::util::tempdir("reproduce-threads");
    let out = nndl().args(["reproduce", "--quick", "--only", "bptt", "--threads", "0", "--quiet", "--out"]).arg(dir.join("r")).output().unwrap();
    assert_one_line_error(&out, "invalid --threads 0: must be between 1 and");
    assert!(!dir.join("r").exists());
}

#[test]
fn with_json_an_error_is_an_object_on_stdout_too() {
    // A script reading stdout gets one object whatever happens: the error's line, as on stderr.
    let out = mlp_with(&["--lr", "0", "--json"]);
    assert_one_line_error(&out, "invalid --lr 0");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().starts_with("invalid --lr 0: must be"), "{v}");
    let out = nndl().args(["mlp", "--no-such-flag", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("--no-such-flag"), "{v}");
    // Without --json, stdout stays empty.
    assert!(mlp_with(&["--lr", "0"]).stdout.is_empty());
}
