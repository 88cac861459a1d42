//! Short real-MNIST runs: they learn, they are deterministic, and they write their run folder.
use crate::util::{json, mnist_dir, nndl, tempdir, train};

#[test]
fn short_mlp_run_learns_and_writes_its_folder() {
    let dir = tempdir("mlp300");
    let out = train(&["mlp", "--iterations", "300", "--json", "--out", dir.to_str().unwrap()]);
    let s = json(&out);
    let acc = s["final_test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.85, "300 iterations reached only {acc}");
    for key in ["model", "preset", "device", "seed", "iterations", "final_test_loss", "wall_seconds", "out_dir"] {
        assert!(s.get(key).is_some(), "--json lacks {key}");
    }
    assert_eq!(s["model"], "mlp");
    assert_eq!(s["iterations"], 300);
    for f in ["config.json", "metrics.csv", "summary.json", "mlp-loss.png", "mlp-accuracy.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "iteration,split,loss,accuracy");
    // Evaluations at 0, 50, ..., 250 and the last iteration (299), each for train and test.
    assert_eq!(csv.lines().count(), 1 + 2 * 7);
    assert!(csv.contains("\n299,test,"));
    let png = std::fs::read(dir.join("mlp-loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // No temporary files or lock are left behind: only nndl's marker is hidden.
    let hidden: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.')).collect();
    assert_eq!(hidden, vec![".nndl-run".to_string()]);
    for f in ["model.safetensors", "checkpoint.safetensors"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn same_seed_gives_identical_metrics() {
    let run = |name: &str, seed: &str| {
        let dir = tempdir(name);
        train(&["mlp", "--iterations", "120", "--eval-every", "40", "--seed", seed, "--out", dir.to_str().unwrap()]);
        std::fs::read_to_string(dir.join("metrics.csv")).unwrap()
    };
    let a = run("det-a", "7");
    assert_eq!(a, run("det-b", "7"));
    assert_ne!(a, run("det-c", "8"), "another seed must change the run");
}

#[test]
fn config_json_reruns_the_same_run() {
    let first = tempdir("cfg-a");
    train(&["mlp", "--iterations", "60", "--eval-every", "30", "--lr", "0.01", "--seed", "3", "--out", first.to_str().unwrap()]);
    let second = tempdir("cfg-b");
    let cfg = first.join("config.json");
    train(&["mlp", "--config", cfg.to_str().unwrap(), "--out", second.to_str().unwrap()]);
    let read = |d: &std::path::Path| std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    assert_eq!(read(&first), read(&second));
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    assert_eq!(saved["lr"], 0.01);
    assert_eq!(saved["optimizer"], "sgd");
}

#[test]
fn short_cnn_run_learns() {
    let dir = tempdir("cnn300");
    let s = json(&train(&["cnn", "--iterations", "300", "--eval-every", "300", "--json", "--out", dir.to_str().unwrap()]));
    let acc = s["final_test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.70, "faithful CNN after 300 iterations: {acc}");
    assert!(dir.join("cnn-loss.png").is_file() && dir.join("cnn-accuracy.png").is_file());
}

#[test]
fn summary_says_how_the_cnn_convolved() {
    // The speed switches that change how the CNN's convolution blocks round reach the run, and
    // summary.json says what ran (the MLP's says null: tests/integration/packed.rs).
    let dir = tempdir("convolutions");
    let run = |bias: &str, layout: &str| {
        let out = nndl().args(["cnn", "--iterations", "1", "--threads", "1", "--device", "cpu", "--quiet", "--json", "--data"]).arg(mnist_dir())
            .arg("--out").arg(dir.join(bias)).env("NNDL_CNN_BIAS", bias).env("NNDL_CNN_LAYOUT", layout).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out)["convolutions"].clone()
    };
    assert_eq!(run("conv", "nhwc"), serde_json::json!({ "layout": "channels-last", "bias_at": "conv" }));
    assert_eq!(run("pool", "nchw"), serde_json::json!({ "layout": "nchw", "bias_at": "pool" }));
}

#[test]
fn export_init_writes_tf_layout_npy_files() {
    let dir = tempdir("export");
    train(&["cnn", "--iterations", "3", "--eval-every", "3", "--export-init", dir.join("init").to_str().unwrap(), "--out", dir.join("run").to_str().unwrap()]);
    let shape = |name: &str| {
        let bytes = std::fs::read(dir.join("init").join(format!("{name}.npy"))).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let header = String::from_utf8_lossy(&bytes[10..10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize]).to_string();
        let dims = header.split("'shape': ").nth(1).unwrap().split(')').next().unwrap().trim_start_matches('(');
        dims.split(',').map(str::trim).filter(|d| !d.is_empty()).collect::<Vec<_>>().join(",")
    };
    // TF's layouts: conv [kh, kw, in, out], dense [in, out].
    assert_eq!(shape("w1"), "5,5,1,32");
    assert_eq!(shape("w2"), "5,5,32,64");
    assert_eq!(shape("w3"), "3136,1024");
    assert_eq!(shape("w4"), "1024,10");
    assert_eq!(shape("b3"), "1024");
    assert_eq!(shape("batches"), "3,100");
    // The CNN's losses, masks and step folders; then an MLP exported into the same folder
    // leaves none of them, nor the CNN's fourth layer, for a comparison to read as its own.
    train(&["cnn", "--iterations", "3", "--eval-every", "3", "--export-init", dir.join("init").to_str().unwrap(),
        "--export-steps", "2", "--out", dir.join("run2").to_str().unwrap()]);
    for f in ["losses.npy", "masks_train.npy", "step-1/w4.npy", "step-2/w1.npy"] {
        assert!(dir.join("init").join(f).is_file(), "{f} missing");
    }
    std::fs::write(dir.join("init/step-1/notes.txt"), "mine").unwrap();
    train(&["mlp", "--iterations", "3", "--eval-every", "3", "--export-init", dir.join("init").to_str().unwrap(), "--out", dir.join("run3").to_str().unwrap()]);
    let mut left: Vec<String> = walk(&dir.join("init"));
    left.sort();
    assert_eq!(left, ["b1.npy", "b2.npy", "b3.npy", "batches.npy", "step-1/notes.txt", "w1.npy", "w2.npy", "w3.npy"]);
    assert_eq!(shape("w1"), "784,256");
}

/// The files under `dir`, as paths relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flat_map(|e| {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() { walk(&e.path()).into_iter().map(|f| format!("{name}/{f}")).collect() } else { vec![name] }
    }).collect()
}

#[test]
fn cpu_runs_never_load_the_cuda_library() {
    // glibc's loader names every library it looks for; `--device cpu` skips libtorch_cuda.so,
    // a tenth of a second of start-up or more, while `info` (which reports on CUDA) looks for it.
    let dir = tempdir("no-cuda-lib");
    let cpu = crate::util::nndl().args(["mlp", "--iterations", "1", "--threads", "1", "--device", "cpu", "--quiet", "--out"]).arg(&dir)
        .arg("--data").arg(crate::util::mnist_dir()).env("LD_DEBUG", "libs").output().unwrap();
    assert!(cpu.status.success());
    assert!(!String::from_utf8_lossy(&cpu.stderr).contains("libtorch_cuda"));
    let info = crate::util::nndl().arg("info").env("LD_DEBUG", "libs").output().unwrap();
    assert!(String::from_utf8_lossy(&info.stderr).contains("find library=libtorch_cuda.so"));
    // Nor does `auto` (no --device) on a machine with no NVIDIA driver: it tells from the
    // driver's paths, and says so.
    if !nndl::device::nvidia_driver_present() {
        let dir = tempdir("auto-no-driver");
        let auto = crate::util::nndl().args(["mlp", "--iterations", "1", "--threads", "1", "--out"]).arg(&dir)
            .arg("--data").arg(crate::util::mnist_dir()).env("LD_DEBUG", "libs").output().unwrap();
        assert!(auto.status.success());
        let stderr = String::from_utf8_lossy(&auto.stderr);
        assert!(stderr.contains("note: no CUDA, running on CPU: no NVIDIA driver on this machine"), "{stderr}");
        assert!(!stderr.contains("libtorch_cuda"), "auto loaded the CUDA library without a driver");
    }
}

#[test]
fn a_run_shorter_than_its_warm_up_says_so() {
    let dir = tempdir("short-warmup");
    let out = nndl().args(["mlp", "--preset", "modern", "--iterations", "3", "--device", "cpu", "--threads", "1", "--data"]).arg(mnist_dir())
        .arg("--out").arg(dir.join("run")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.lines().any(|l| l.starts_with("note: the learning rate warms up over 200 iterations, more than this run's 3")), "{err}");
    // As long as the warm-up, the run reaches its peak at its last step: no note.
    let out = nndl().args(["mlp", "--preset", "modern", "--iterations", "200", "--eval-every", "100", "--device", "cpu", "--threads", "1", "--data"]).arg(mnist_dir())
        .arg("--out").arg(dir.join("run200")).output().unwrap();
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("warms up"), "{}", String::from_utf8_lossy(&out.stderr));
}
