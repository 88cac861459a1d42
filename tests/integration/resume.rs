//! Runs that survive: weights, checkpoints and exact resume, SIGINT, --force, eval.
use crate::util::{json, metrics, mnist_dir, nndl, tempdir, train};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(args: &[&str], out: &Path) -> Child {
    nndl().args(args).args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir()).arg("--out").arg(out)
        .stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until `file` exists (the run reached that point), at most a minute.
fn wait_for(file: &Path) {
    let start = Instant::now();
    while !file.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "{} never appeared", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn same_files(a: &Path, b: &Path) {
    for f in ["metrics.csv", "model.safetensors"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs between {} and {}", a.display(), b.display());
    }
}

fn resume(dir: &Path) -> std::process::Output {
    let out = nndl().arg("resume").arg(dir).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    assert!(out.status.success(), "resume failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn killed_modern_cnn_resumes_bit_for_bit() {
    // Adam's moments, the CPU generator (dropout, random shifts) and the batch order all
    // come back from the checkpoint.
    let dir = tempdir("kill-cnn");
    let args = ["cnn", "--preset", "modern", "--iterations", "30", "--eval-every", "10", "--checkpoint-every", "4"];
    train(&[&args[..], &["--out", dir.join("whole").to_str().unwrap()]].concat());
    let mut child = start(&args, &dir.join("cut"));
    wait_for(&dir.join("cut/checkpoint.safetensors"));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("cut/summary.json").exists(), "killed before the end");
    resume(&dir.join("cut"));
    same_files(&dir.join("whole"), &dir.join("cut"));
}

#[test]
fn sigint_checkpoints_exits_130_and_resumes_identically() {
    let dir = tempdir("sigint");
    let args = ["mlp", "--iterations", "2500", "--eval-every", "100"];
    train(&[&args[..], &["--out", dir.join("whole").to_str().unwrap()]].concat());
    let child = start(&args, &dir.join("cut"));
    wait_for(&dir.join("cut/metrics.csv"));
    while metrics(&dir.join("cut")).len() < 4 {
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY-free: kill(1) from the shell, like a user's Ctrl-C.
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains(&format!("continue with `nndl resume {}`", dir.join("cut").display())), "{err}");
    assert!(dir.join("cut/checkpoint.safetensors").is_file() && dir.join("cut/mlp-loss.png").is_file());
    assert!(!dir.join("cut/summary.json").exists());
    // A plain rerun is pointed at resume.
    let again = start(&args, &dir.join("cut")).wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("holds an unfinished run; resume it with"));
    resume(&dir.join("cut"));
    same_files(&dir.join("whole"), &dir.join("cut"));
}

#[test]
fn force_moves_the_old_run_aside_before_writing() {
    let dir = tempdir("force");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--out", run.to_str().unwrap()]);
    std::fs::write(run.join("notes.txt"), "old").unwrap();
    train(&["mlp", "--iterations", "30", "--eval-every", "10", "--seed", "5", "--force", "--out", run.to_str().unwrap()]);
    assert!(!run.join("notes.txt").exists(), "nothing of the old run is mixed in");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["seed"], 5);
    assert_eq!(metrics(&run).last().unwrap().0, 29);
    // Nothing is left beside it either.
    let names: Vec<String> = std::fs::read_dir(&*dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["run".to_string()]);
    // Paths through `.` and `..`, even through the folder itself: it is moved by its real path.
    for (k, out) in ["./run/", "run/.", "run/../run"].into_iter().enumerate() {
        let again = nndl().current_dir(&*dir).args(["mlp", "--iterations", &(k + 2).to_string(), "--force", "--out", out, "--threads", "1", "--device", "cpu", "--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
        assert!(again.status.success(), "{out}: {}", String::from_utf8_lossy(&again.stderr));
        assert_eq!(metrics(&run).last().unwrap().0, k + 1, "{out}");
        let names: Vec<String> = std::fs::read_dir(&*dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["run".to_string()], "{out}");
    }
}

#[test]
fn config_json_holds_threads_and_device_and_reruns_identically() {
    let dir = tempdir("cfg-threads");
    let first = dir.join("a");
    train(&["mlp", "--iterations", "40", "--eval-every", "20", "--out", first.to_str().unwrap()]);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(first.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["threads"], 1);
    assert_eq!(cfg["device"], "cpu");
    // No --threads or --device: both come from the file.
    let out = nndl().args(["mlp", "--quiet", "--config"]).arg(first.join("config.json")).arg("--data").arg(mnist_dir())
        .arg("--out").arg(dir.join("b")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    same_files(&first, &dir.join("b"));
}

#[test]
fn a_run_from_a_bigger_machine_is_reported_and_evaluated_here() {
    // A 64-core Slurm node records 64 threads; this machine allows fewer from its flags, but
    // its saved runs stay readable.
    let dir = tempdir("threads-64");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--out", run.to_str().unwrap()]);
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    cfg["threads"] = 4096.into();
    std::fs::write(run.join("config.json"), cfg.to_string()).unwrap();
    let report = nndl().arg("report").arg(&run).arg("--out").arg(dir.join("report")).args(["--json", "--quiet"]).output().unwrap();
    assert_eq!(json(&report)["runs"], 1, "{}", String::from_utf8_lossy(&report.stderr));
    let eval = nndl().args(["eval", "--device", "cpu", "--quiet", "--data"]).arg(mnist_dir()).arg(&run).output().unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    // Nonsense is still refused, naming the file.
    cfg["threads"] = 4097.into();
    std::fs::write(run.join("config.json"), cfg.to_string()).unwrap();
    let eval = nndl().args(["eval", "--device", "cpu", "--quiet", "--data"]).arg(mnist_dir()).arg(&run).output().unwrap();
    crate::util::assert_one_line_error(&eval, "config.json: threads 4097: must be between 1 and 4096");
}

#[test]
fn a_resumed_run_writes_its_export_final_too() {
    // --export-final is written when the run finishes, which may be in `nndl resume`, started
    // from another folder: the run keeps the export's absolute path (export.json).
    let dir = tempdir("resume-export");
    let out = nndl().current_dir(&*dir).args(["mlp", "--iterations", "20", "--eval-every", "10", "--export-final", "final", "--out", "run"])
        .args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = std::fs::read(dir.join("final/w1.npy")).unwrap();
    // As if interrupted after the last checkpoint: no summary, no export yet.
    std::fs::remove_dir_all(dir.join("final")).unwrap();
    std::fs::remove_file(dir.join("run/summary.json")).unwrap();
    resume(&dir.join("run"));
    assert!(std::fs::read(dir.join("final/w1.npy")).unwrap() == first, "the resumed run's export is the run's final weights");
    // Killed while exporting, after summary.json: the finished run's resume writes the export
    // from model.safetensors, and clears the killed export's temporary file.
    std::fs::remove_file(dir.join("final/b2.npy")).unwrap();
    std::fs::write(dir.join("final/.partial-4194999-b2.npy"), b"cut").unwrap();
    resume(&dir.join("run"));
    assert!(dir.join("final/b2.npy").is_file() && !dir.join("final/.partial-4194999-b2.npy").exists());
    assert!(std::fs::read(dir.join("final/w1.npy")).unwrap() == first);
    // Killed after summary.json, before its export replaced an earlier run's whole one in the
    // same folder: export.json says this run's is not written, and the resume writes it.
    let saved = std::fs::read_to_string(dir.join("run/export.json")).unwrap();
    assert!(saved.contains("\"written\": true"), "{saved}");
    std::fs::write(dir.join("run/export.json"), saved.replace("\"written\": true", "\"written\": false")).unwrap();
    std::fs::write(dir.join("final/w1.npy"), b"an earlier run's").unwrap();
    resume(&dir.join("run"));
    assert!(std::fs::read(dir.join("final/w1.npy")).unwrap() == first);
    let again = nndl().arg("resume").arg(dir.join("run")).arg("--quiet").output().unwrap();
    crate::util::assert_one_line_error(&again, "is finished (it has summary.json); nothing to resume");
    // --export-init and --export-final into one folder would mix the start with the end.
    let both = nndl().args(["mlp", "--iterations", "2", "--export-init"]).arg(dir.join("x")).arg("--export-final").arg(dir.join("x"))
        .args(["--device", "cpu", "--quiet", "--out"]).arg(dir.join("run2")).output().unwrap();
    crate::util::assert_one_line_error(&both, "--export-init and --export-final name the same folder");
}

#[test]
fn a_session_on_another_thread_count_still_resumes() {
    // A sweep or `--seeds` rerun may continue a run on another thread count (other --jobs):
    // its checkpoints then name that count, and config.json the first session's.
    let dir = tempdir("threads-changed");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--out", run.to_str().unwrap()]);
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    cfg["threads"] = 2.into();
    std::fs::write(run.join("config.json"), cfg.to_string()).unwrap();
    resume(&run);
    assert!(run.join("summary.json").is_file());
}

#[test]
fn eval_reproduces_the_runs_own_final_evaluation() {
    let dir = tempdir("eval");
    for (model, iters) in [("mlp", "60"), ("cnn", "10")] {
        let run = dir.join(model);
        let s = json(&train(&[model, "--iterations", iters, "--eval-every", "30", "--json", "--out", run.to_str().unwrap()]));
        let out = nndl().arg("eval").arg(&run).args(["--json", "--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let e = json(&out);
        if model == "mlp" {
            assert_eq!(e["test_accuracy"], s["final_test_accuracy"], "no dropout: exactly the run's figure");
        } else {
            // Through the faithful dropout: a fresh draw of masks, same distribution.
            assert!((e["test_accuracy"].as_f64().unwrap() - s["final_test_accuracy"].as_f64().unwrap()).abs() < 0.05, "{e} vs {s}");
        }
        let confusion = e["confusion"].as_array().unwrap();
        let total: u64 = confusion.iter().flat_map(|r| r.as_array().unwrap()).map(|c| c.as_u64().unwrap()).sum();
        assert_eq!((confusion.len(), total), (10, 10_000));
        assert!(run.join("confusion.png").is_file() && run.join("eval.json").is_file());
    }
    // The test set's two files are all an evaluation reads.
    let test_only = dir.join("t10k");
    std::fs::create_dir(&test_only).unwrap();
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(mnist_dir().join(f), test_only.join(f)).unwrap();
    }
    let out = nndl().arg("eval").arg(dir.join("mlp")).args(["--json", "--quiet", "--data"]).arg(&test_only).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("mlp/summary.json")).unwrap()).unwrap();
    assert_eq!(json(&out)["test_accuracy"], s["final_test_accuracy"]);
    // Weights of another model: one line naming both shapes.
    std::fs::copy(dir.join("mlp/model.safetensors"), dir.join("cnn/model.safetensors")).unwrap();
    let out = nndl().arg("eval").arg(dir.join("cnn")).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    crate::util::assert_one_line_error(&out, "model.safetensors lacks conv1.bias [32] that the cnn needs (are these weights of another model?)");
}

#[test]
fn diverging_run_stops_with_one_line_and_keeps_its_metrics() {
    let dir = tempdir("nan");
    // At lr 100 the test loss overflows first (at iteration 4), after 4 finite evaluations.
    let out = nndl().args(["mlp", "--lr", "100", "--iterations", "200", "--eval-every", "1", "--device", "cpu", "--threads", "1", "--quiet", "--data"])
        .arg(mnist_dir()).arg("--out").arg(dir.join("run")).output().unwrap();
    crate::util::assert_one_line_error(&out, "training diverged: the test loss became NaN or infinite at iteration ");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("try a lower --lr (now 100), or --allow-nan to go on as TF would"), "{err}");
    assert!(!metrics(&dir.join("run")).is_empty(), "the metrics written before are kept");
    // The folder records why it stopped, for `report` and for the next command given it.
    let recorded = std::fs::read_to_string(dir.join("run/failed.txt")).unwrap();
    assert!(recorded.starts_with("training diverged: the test loss became NaN or infinite at iteration "), "{recorded}");
    let again = nndl().args(["mlp", "--iterations", "30", "--device", "cpu", "--quiet", "--data"]).arg(mnist_dir()).arg("--out").arg(dir.join("run")).output().unwrap();
    // Resumed from its checkpoint it would diverge again: a rerun does not offer that.
    crate::util::assert_one_line_error(&again, "holds a run that diverged (training diverged: ");
    assert!(String::from_utf8_lossy(&again.stderr).trim_end().ends_with("; pass --force to start it again"), "{}", String::from_utf8_lossy(&again.stderr));
    let resumed = nndl().args(["resume", "--data"]).arg(mnist_dir()).arg(dir.join("run")).output().unwrap();
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success() && err.contains("failed before (training diverged: "), "{err}");
    let eval = nndl().arg("eval").arg(dir.join("run")).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    crate::util::assert_one_line_error(&eval, "has no model.safetensors: the run failed (training diverged: ");
    let report = nndl().arg("report").arg(dir.join("run")).output().unwrap();
    crate::util::assert_one_line_error(&report, "no finished runs under ");
    assert!(String::from_utf8_lossy(&report.stderr).contains(": 1 failed ("), "{}", String::from_utf8_lossy(&report.stderr));
    // Its tables still say which run failed and why.
    let md = std::fs::read_to_string(dir.join("run/report.md")).unwrap();
    assert!(md.contains("training diverged"), "{md}");
    // --allow-nan goes on to the end, as TF would.
    let out = nndl().args(["mlp", "--lr", "1e10", "--iterations", "30", "--eval-every", "10", "--allow-nan", "--device", "cpu", "--threads", "1", "--quiet", "--data"])
        .arg(mnist_dir()).arg("--out").arg(dir.join("nan")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_nan_test_loss_stops_the_run_though_the_training_loss_is_finite() {
    // At lr 1e3 the logits of the last step's evaluation overflow while every training loss is
    // finite: such a run used to finish, exit 0, with a NaN final test loss.
    let dir = tempdir("nan-test");
    let run = |out: &str, extra: &[&str]| {
        nndl().args(["mlp", "--lr", "1e3", "--iterations", "5", "--eval-every", "10", "--device", "cpu", "--quiet", "--data"])
            .arg(mnist_dir()).args(extra).arg("--out").arg(dir.join(out)).output().unwrap()
    };
    let expected = "training diverged: the test loss became NaN or infinite at iteration 4's evaluation, the training loss still finite";
    // One thread evaluates inline; two evaluate beside the steps (the point is settled later).
    for (out, threads) in [("one", "1"), ("two", "2")] {
        crate::util::assert_one_line_error(&run(out, &["--threads", threads]), expected);
        assert!(std::fs::read_to_string(dir.join(out).join("failed.txt")).unwrap().starts_with(expected));
        assert!(!dir.join(out).join("summary.json").exists(), "{out}: a diverged run has no summary");
    }
    let packed = run("pack", &["--threads", "1", "--seeds", "0..1"]);
    assert!(String::from_utf8_lossy(&packed.stderr).contains(&format!("seed 0: {expected}")), "{}", String::from_utf8_lossy(&packed.stderr));
    assert!(!packed.status.success());
    let out = run("allowed", &["--threads", "1", "--allow-nan"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn model_safetensors_holds_every_parameter() {
    let dir = tempdir("weights");
    train(&["cnn", "--iterations", "2", "--eval-every", "2", "--out", dir.to_str().unwrap()]);
    let tensors = tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap();
    let mut names: Vec<(String, Vec<i64>)> = tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect();
    names.sort();
    assert_eq!(names, vec![
        ("conv1.bias".into(), vec![32]), ("conv1.weight".into(), vec![32, 1, 5, 5]),
        ("conv2.bias".into(), vec![64]), ("conv2.weight".into(), vec![64, 32, 5, 5]),
        ("fc1.bias".into(), vec![1024]), ("fc1.weight".into(), vec![1024, 3136]),
        ("fc2.bias".into(), vec![10]), ("fc2.weight".into(), vec![10, 1024]),
    ]);
}

#[test]
fn reproduce_resumes_without_redoing_finished_parts() {
    let dir = tempdir("repro-resume");
    let root = dir.join("r");
    json(&train(&["reproduce", "--only", "bptt,mlp", "--quick", "--json", "--out", root.to_str().unwrap()]));
    // Make it look interrupted in the MLP stage: no report, no MLP result; BPTT's result stays.
    for f in ["summary.json", "report.md"] {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    let bptt_before = std::fs::read(root.join("bptt.json")).unwrap();
    std::fs::remove_file(root.join("mlp/summary.json")).unwrap();
    // Moved before it is resumed: the finished parts are read where they are now.
    let moved = dir.join("moved");
    std::fs::rename(&root, &moved).unwrap();
    let root = moved;
    let out = resume(&root);
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["mlp"]["out_dir"].as_str(), Some(root.join("mlp").to_str().unwrap()));
    assert!(root.join("report.md").is_file());
    assert_eq!(std::fs::read(root.join("bptt.json")).unwrap(), bptt_before, "BPTT was not redone");
    assert!(out.status.success());
    let report = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(report.contains("s training, over its sessions") && report.contains("resumed: the earlier sessions are not counted"), "{report}");
    // Finished now: nothing to resume, and the report is left as it is.
    let again = nndl().arg("resume").arg(&root).arg("--quiet").output().unwrap();
    crate::util::assert_one_line_error(&again, "is finished (it has summary.json); nothing to resume");
    assert_eq!(std::fs::read_to_string(root.join("report.md")).unwrap(), report);
}

#[test]
fn a_failed_bptt_check_fails_the_reproduction() {
    let dir = tempdir("repro-bptt-fail");
    let root = dir.join("r");
    json(&train(&["reproduce", "--only", "bptt", "--quick", "--json", "--out", root.to_str().unwrap()]));
    assert!(std::fs::read_to_string(root.join("report.md")).unwrap().contains("| BPTT dL/dU formula | **pass**"));
    // As if the check had failed in an earlier session.
    let mut bptt: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("bptt.json")).unwrap()).unwrap();
    bptt["passed"] = false.into();
    std::fs::write(root.join("bptt.json"), bptt.to_string()).unwrap();
    for f in ["summary.json", "report.md"] {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    let out = nndl().arg("resume").arg(&root).arg("--quiet").output().unwrap();
    crate::util::assert_one_line_error(&out, "the BPTT check failed its targets");
    assert!(std::fs::read_to_string(root.join("report.md")).unwrap().contains("**FAIL**"));
}

#[test]
fn sigterm_in_reproduces_short_stages_stops_between_them() {
    let dir = tempdir("repro-term");
    let root = dir.join("r");
    let child = nndl().args(["reproduce", "--only", "bptt,xor", "--threads", "1", "--out"]).arg(&root)
        .stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&root.join(".nndl-run"));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.trim_end().lines().last().unwrap().contains("; continue with `nndl resume "), "{err}");
    assert!(!root.join(".nndl.lock").exists(), "the lock is released");
    resume(&root);
    assert!(root.join("report.md").is_file() && root.join("xor.json").is_file());
}

#[test]
fn an_inherited_ignored_sigint_stays_ignored() {
    // A background job of a non-interactive shell starts with SIGINT ignored: nndl keeps it so.
    let dir = tempdir("sigign");
    let cmd = format!("trap '' INT; exec '{}' mlp --iterations 1500 --eval-every 500 --device cpu --threads 1 --quiet --data '{}' --out '{}'",
        env!("CARGO_BIN_EXE_nndl"), mnist_dir().display(), dir.join("run").display());
    let child = Command::new("sh").arg("-c").arg(&cmd).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&dir.join("run/metrics.csv"));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ignored SIGINT stopped the run: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("run/summary.json").is_file());
}

#[test]
fn a_second_sigint_exits_at_once() {
    let dir = tempdir("sigint2");
    let child = start(&["cnn", "--iterations", "4001", "--eval-every", "4001"], &dir.join("run"));
    wait_for(&dir.join("run/config.json"));
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..2 {
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        // Two SIGINTs pending at once are one: the second goes once the first is delivered,
        // and over half a second later (sooner, it is the same stop: a group's and a driver's).
        sigint_delivered(child.id());
        std::thread::sleep(Duration::from_millis(700));
    }
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // At once: not through the orderly stop, which would have said how to resume.
    assert!(!err.contains("continue with"), "{err}");
}

/// Waits (up to 10 s) until process `pid` has no SIGINT pending: the kernel delivered it.
fn sigint_delivered(pid: u32) {
    let pending = |line: &str| u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap_or(0) & 0x2 != 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return };
        if !status.lines().filter(|l| l.starts_with("ShdPnd:") || l.starts_with("SigPnd:")).any(pending) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// On two CPU threads the MLP evaluates beside its steps, one thread each, so its files are a
/// one-thread run's byte for byte: with checkpoints and evaluations interleaved, interrupted
/// and resumed, and diverging (the evaluation in flight is kept); with the steps taking the idle
/// worker's thread, and at a batch size where two threads would round otherwise (the check
/// at start keeps the steps to their half there).
#[test]
fn evaluations_beside_the_steps_give_the_one_thread_run() {
    let dir = tempdir("overlap");
    let args = ["mlp", "--iterations", "1200", "--eval-every", "30", "--checkpoint-every", "45"];
    let on_two_threads = |out: &Path, overlap: &str, args: &[&str]| {
        let mut cmd = nndl();
        cmd.args(args).args(["--device", "cpu", "--threads", "2", "--quiet", "--json", "--data"]).arg(mnist_dir()).arg("--out").arg(out);
        cmd.env("NNDL_EVAL_OVERLAP", overlap).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    };
    let one = dir.join("one");
    assert_eq!(json(&train(&[&args[..], &["--json", "--out", one.to_str().unwrap()]].concat()))["eval_overlap"], false);

    let out = on_two_threads(&dir.join("two"), "on", &args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = json(&out);
    assert_eq!((summary["eval_overlap"].as_bool(), summary["threads"].as_i64()), (Some(true), Some(2)));
    // On this CPU a 100-image step computes the same bits on one and two threads, so the steps
    // take the worker's thread whenever it waits: the files must still be the one-thread run's.
    assert_eq!(summary["eval_threads_lent"], true, "the steps take the idle worker's thread");
    same_files(&one, &dir.join("two"));
    let fixed = on_two_threads(&dir.join("fixed"), "fixed", &args).output().unwrap();
    assert_eq!((json(&fixed)["eval_overlap"].as_bool(), json(&fixed)["eval_threads_lent"].as_bool()), (Some(true), Some(false)));
    same_files(&one, &dir.join("fixed"));

    // 1000 images a step: two threads sum them otherwise here, so lending would make the
    // files depend on timing; the check at start keeps each side to its half.
    let wide = ["mlp", "--iterations", "40", "--eval-every", "8", "--batch-size", "1000"];
    let wide_one = dir.join("wide-one");
    train(&[&wide[..], &["--out", wide_one.to_str().unwrap()]].concat());
    let out = on_two_threads(&dir.join("wide-two"), "on", &wide).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    same_files(&wide_one, &dir.join("wide-two"));

    let inline = json(&on_two_threads(&dir.join("inline"), "off", &args).output().unwrap());
    assert_eq!(inline["eval_overlap"], false, "NNDL_EVAL_OVERLAP=off evaluates inline");

    let child = on_two_threads(&dir.join("cut"), "on", &args).spawn().unwrap();
    wait_for(&dir.join("cut/metrics.csv"));
    while metrics(&dir.join("cut")).len() < 6 {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    resume(&dir.join("cut"));
    same_files(&one, &dir.join("cut"));

    // Diverging between two evaluations: the one in flight is still recorded. (At lr 30 the
    // training loss overflows at iteration 6, between the evaluations after 3 and 7, whose test
    // losses are finite; at higher rates an evaluation's test loss overflows first.)
    let nan = ["mlp", "--iterations", "100", "--eval-every", "4", "--lr", "30"];
    let out = nndl().args(nan).args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir()).arg("--out").arg(dir.join("nan-one")).output().unwrap();
    assert!(!out.status.success(), "diverges");
    let out = on_two_threads(&dir.join("nan-two"), "on", &nan).output().unwrap();
    assert!(!out.status.success(), "diverges");
    assert!(!metrics(&dir.join("nan-one")).is_empty());
    assert_eq!(metrics(&dir.join("nan-two")), metrics(&dir.join("nan-one")));
}

#[test]
fn hand_edited_checkpoints_are_refused_in_one_line() {
    use nndl::checkpoint::{Checkpoint, FILE};
    let dir = tempdir("ck-edited");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--out", run.to_str().unwrap()]);
    // Without its summary the run is unfinished, and resume reads its last checkpoint.
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let original = Checkpoint::load(&run.join(FILE)).unwrap();
    type Edit = fn(&mut Checkpoint);
    let edits: [(&str, Edit); 6] = [
        ("batcher.order has 10 entries, the training set 55000", |ck| {
            let cut = ck.tensors["batcher.order"].narrow(0, 0, 10);
            ck.tensors.insert("batcher.order".into(), cut);
        }),
        ("since_eval 1000000 where 0 steps followed the last evaluation", |ck| ck.meta.since_eval = 1_000_000),
        ("its 4 evaluation points are not the ones due before iteration 20", |ck| {
            let extra = nndl::metrics::EvalPoint { iteration: 5, ..ck.meta.points[0].clone() };
            ck.meta.points.push(extra);
        }),
        ("checkpoint's fc1.bias is Double [256], the model's Float [256]", |ck| {
            let wide = ck.tensors["param.fc1.bias"].to_kind(tch::Kind::Double);
            ck.tensors.insert("param.fc1.bias".into(), wide);
        }),
        // Same sizes, other types: read as the loop's, their bytes would be other numbers.
        ("its sums.loss is Int, not Float", |ck| {
            let int = ck.tensors["sums.loss"].to_kind(tch::Kind::Int);
            ck.tensors.insert("sums.loss".into(), int);
        }),
        ("its rng.cpu is Int8, not Uint8", |ck| {
            let signed = ck.tensors["rng.cpu"].to_kind(tch::Kind::Int8);
            ck.tensors.insert("rng.cpu".into(), signed);
        }),
    ];
    for (why, edit) in edits {
        let mut ck = Checkpoint { meta: original.meta.clone(), tensors: original.tensors.iter().map(|(k, t)| (k.clone(), t.copy())).collect() };
        edit(&mut ck);
        ck.save(&run.join(FILE)).unwrap();
        let out = nndl().arg("resume").arg(&run).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
        crate::util::assert_one_line_error(&out, why);
    }
    // The checkpoint as it was still resumes (to its end, with nothing left to train).
    original.save(&run.join(FILE)).unwrap();
    resume(&run);
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over_with_a_note_that_quiet_keeps() {
    let dir = tempdir("dead-lock");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "3", "--out", run.to_str().unwrap()]);
    for quiet in [false, true] {
        // Unfinished again, locked by a pid past the kernel's limit (never alive).
        std::fs::remove_file(run.join("summary.json")).unwrap();
        std::fs::write(run.join(".nndl.lock"), r#"{"pid": 4194999, "host": "elsewhere"}"#).unwrap();
        let mut cmd = nndl();
        cmd.arg("resume").arg(&run).arg("--data").arg(mnist_dir());
        if quiet {
            cmd.arg("--quiet");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(err.contains("was locked by pid 4194999 on elsewhere, which is gone; taking it over"), !quiet, "{err}");
    }
}

#[test]
fn a_stop_before_the_training_starts_exits_at_once() {
    // A start-up blocked on a file (here a FIFO nobody writes; a hung network mount alike) never
    // reaches a step boundary; there is nothing to save yet, so the first SIGTERM ends it.
    let dir = tempdir("stop-at-start");
    let fifo = dir.join("config.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut child = nndl().args(["mlp", "--device", "cpu", "--config"]).arg(&fifo).arg("--out").arg(dir.join("run"))
        .stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    crate::util::wait_for_sigterm_handler(child.id());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let waited = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if waited.elapsed().as_secs() > 10 {
            let _ = child.kill();
            panic!("SIGTERM did not end a start-up blocked on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let end = child.wait_with_output().unwrap();
    assert_eq!(end.status.code(), Some(143));
    assert!(String::from_utf8_lossy(&end.stderr).contains("stopped before the training started"), "{}", String::from_utf8_lossy(&end.stderr));
}

#[test]
fn a_moved_project_resumes_its_export_into_its_new_place() {
    let dir = tempdir("export-moved");
    let proj = dir.join("proj");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--out", proj.join("run").to_str().unwrap(), "--export-final", proj.join("exp").to_str().unwrap()]);
    // As if interrupted before the end, then the whole project moved elsewhere.
    std::fs::remove_file(proj.join("run/summary.json")).unwrap();
    std::fs::remove_dir_all(proj.join("exp")).unwrap();
    std::fs::rename(&proj, dir.join("moved")).unwrap();
    resume(&dir.join("moved/run"));
    assert!(dir.join("moved/exp/w1.npy").is_file(), "the export went beside the moved run");
    assert!(!proj.exists(), "the old tree is not made again");
    // A copy of the project, its export folder copied with it (made when the run started):
    // the copy's resume writes into the copy, not into the original.
    std::fs::remove_file(dir.join("moved/run/summary.json")).unwrap();
    std::fs::remove_dir_all(dir.join("moved/exp")).unwrap();
    std::fs::create_dir(dir.join("moved/exp")).unwrap();
    assert!(std::process::Command::new("cp").arg("-a").arg(dir.join("moved")).arg(dir.join("copy")).status().unwrap().success());
    resume(&dir.join("copy/run"));
    assert!(dir.join("copy/exp/w1.npy").is_file() && !dir.join("moved/exp/w1.npy").exists());
}

#[test]
fn a_stop_before_the_training_leaves_no_lock_file() {
    // A resume holds its folder's lock while it loads MNIST (a few tenths of a second) and
    // builds its network; a SIGTERM then ends it at once, and takes the lock file with it: the
    // next command finds no dead process's lock to take over.
    let dir = tempdir("stop-holding-lock");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--checkpoint-every", "10", "--out", run.to_str().unwrap()]);
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let child = nndl().arg("resume").arg(&run).arg("--data").arg(mnist_dir())
        .stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Locked once the lock file names its holder (the file itself appears a moment earlier,
    // when it is opened to be locked, and a process stopped then leaves it for the next).
    let holder = format!("\"pid\":{}", child.id());
    let locked = || std::fs::read_to_string(run.join(".nndl.lock")).is_ok_and(|t| t.contains(&holder));
    let waited = std::time::Instant::now();
    while !locked() && waited.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(locked(), "the resume took the folder's lock");
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let end = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&end.stderr);
    assert_eq!(end.status.code(), Some(143), "{err}");
    assert!(err.contains("stopped before the training started"), "{err}");
    assert!(!run.join(".nndl.lock").exists(), "the lock file was left behind");
    let again = nndl().arg("resume").arg(&run).arg("--data").arg(mnist_dir()).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && !err.contains("taking it over"), "{err}");
}

#[test]
fn a_finished_run_whose_weights_were_removed_writes_them_again() {
    // Its final checkpoint holds them: `nndl eval` says how to get them back, and `nndl resume`
    // and a rerun of `--seeds` write them again as they were, where they counted it done.
    let dir = tempdir("lost-weights");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--out", run.to_str().unwrap()]);
    let weights = std::fs::read(run.join("model.safetensors")).unwrap();
    std::fs::remove_file(run.join("model.safetensors")).unwrap();
    let eval = nndl().arg("eval").arg(&run).arg("--data").arg(mnist_dir()).output().unwrap();
    let err = String::from_utf8_lossy(&eval.stderr);
    assert!(!eval.status.success() && err.contains("writes it again from the final checkpoint"), "{err}");
    assert!(resume(&run).status.success());
    assert!(std::fs::read(run.join("model.safetensors")).unwrap() == weights);
    let seeds = dir.join("seeds");
    let args = ["mlp", "--seeds", "0..1", "--iterations", "20", "--eval-every", "10", "--json", "--out", seeds.to_str().unwrap()];
    train(&args);
    let weights = std::fs::read(seeds.join("seed-1/model.safetensors")).unwrap();
    std::fs::remove_file(seeds.join("seed-1/model.safetensors")).unwrap();
    let states: Vec<String> = json(&train(&args))["runs"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, ["already_done", "done"]);
    assert!(std::fs::read(seeds.join("seed-1/model.safetensors")).unwrap() == weights);
}

#[test]
fn a_divergence_after_a_resume_names_the_last_finite_loss_as_before() {
    // Checkpointed every 2 steps, it diverges right after its last checkpoint: the resumed
    // session's first step diverges again, and still names the loss before it (the checkpoint
    // keeps it), not a shorter line that replaces the first in failed.txt.
    let dir = tempdir("nan-resumed");
    let run = dir.join("run");
    let first = nndl().args(["mlp", "--lr", "100", "--checkpoint-every", "2", "--eval-every", "2", "--iterations", "50", "--device", "cpu", "--threads", "1", "--quiet", "--data"])
        .arg(mnist_dir()).arg("--out").arg(&run).output().unwrap();
    let line = String::from_utf8_lossy(&first.stderr).trim().to_string();
    assert!(line.contains("(last finite loss "), "{line}");
    let again = nndl().arg("resume").arg(&run).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stderr).trim(), line);
    assert_eq!(std::fs::read_to_string(run.join("failed.txt")).unwrap().trim(), line.trim_start_matches("nndl: error: "));
}

#[test]
fn a_run_that_lost_its_config_json_gets_it_back_from_its_checkpoint() {
    // Resumed by `nndl resume` or by rerunning a sweep: either way the finished run has its
    // config.json again (eval and --config read it), the one its checkpoint holds.
    let dir = tempdir("lost-config");
    let run = dir.join("run");
    let out = train(&["mlp", "--iterations", "20", "--eval-every", "10", "--checkpoint-every", "10", "--out", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read(run.join("config.json")).unwrap();
    for f in ["summary.json", "model.safetensors", "config.json"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    resume(&run);
    assert_eq!(std::fs::read(run.join("config.json")).unwrap(), config);
    let eval = nndl().arg("eval").arg(&run).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    // And through a sweep's rerun, which resumes its trial in place.
    let spec = dir.join("spec.toml");
    std::fs::write(&spec, "model = \"mlp\"\niterations = 20\neval_every = 10\ncheckpoint_every = 10\nseed = [0]\n").unwrap();
    let sweep = |spec: &Path| nndl().arg("sweep").arg(spec).arg("--out").arg(dir.join("sweep")).args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    assert!(sweep(&spec).status.success());
    let trial = dir.join("sweep/trial");
    let config = std::fs::read(trial.join("config.json")).unwrap();
    for f in ["summary.json", "model.safetensors", "config.json"] {
        std::fs::remove_file(trial.join(f)).unwrap();
    }
    assert!(sweep(&spec).status.success());
    assert_eq!(std::fs::read(trial.join("config.json")).unwrap(), config);
}

#[test]
fn eval_of_a_folder_it_cannot_write_prints_its_figures_all_the_same() {
    // A run on read-only media (here a read-only bind mount: root writes anywhere else).
    let dir = tempdir("eval-read-only");
    let run = dir.join("runs/run");
    train(&["mlp", "--iterations", "3", "--eval-every", "3", "--out", run.to_str().unwrap()]);
    let mount = |args: &[&str]| assert!(Command::new("mount").args(args).arg(&run).arg(&run).status().unwrap().success());
    mount(&["--bind"]);
    mount(&["-o", "remount,ro,bind"]);
    let out = nndl().arg("eval").arg(&run).args(["--json", "--data"]).arg(mnist_dir()).output().unwrap();
    let _ = Command::new("umount").arg(&run).status();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("eval.json and confusion.png are not written"), "{err}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json(&out)["test_accuracy"], s["final_test_accuracy"]);
    assert!(!run.join("eval.json").exists() && !run.join(".nndl.lock").exists());
    // Its parent holds one run: named as that, not as "1 runs".
    let parent = nndl().arg("eval").arg(dir.join("runs")).args(["--data"]).arg(mnist_dir()).output().unwrap();
    crate::util::assert_one_line_error(&parent, &format!("holds a run in a folder of its own: evaluate it, as `nndl eval {}`", run.display()));
}

#[test]
fn a_failure_writing_the_end_of_a_run_is_recorded_in_failed_txt() {
    // Its last checkpoint is in place; the weights cannot be written (a folder holds their
    // name): the error is the command's, and failed.txt keeps it for `report` and a rerun.
    let dir = tempdir("end-write-fails");
    let run = dir.join("run");
    train(&["mlp", "--iterations", "20", "--eval-every", "10", "--out", run.to_str().unwrap()]);
    std::fs::remove_file(run.join("summary.json")).unwrap();
    std::fs::remove_file(run.join("model.safetensors")).unwrap();
    std::fs::create_dir_all(run.join("model.safetensors/in-the-way")).unwrap();
    let out = nndl().arg("resume").arg(&run).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("cannot write {}", run.join("model.safetensors").display())), "{err}");
    let recorded = std::fs::read_to_string(run.join("failed.txt")).expect("failed.txt written");
    assert!(err.trim_end().ends_with(recorded.trim_end()), "recorded {recorded:?}, said {err:?}");
}
