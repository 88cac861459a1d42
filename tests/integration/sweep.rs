//! `nndl sweep` and `nndl report`: resumable, idempotent, sharded, failure-isolated sweeps, and
//! the report's numbers against a hand computation.
use crate::util::{json, mnist_dir, nndl, tempdir, train};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn spec(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sweep(spec: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = nndl();
    cmd.arg("sweep").arg(spec).arg("--out").arg(out).args(["--device", "cpu", "--threads", "1", "--quiet", "--json", "--data"]).arg(mnist_dir()).args(extra);
    cmd
}

fn ok(out: Output) -> serde_json::Value {
    assert!(out.status.success(), "sweep failed: {}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

/// Every trial folder holds exactly one finished run whose metrics cover the whole schedule once.
fn all_done_once(out: &Path, trials: usize, last_iteration: usize) {
    let dirs: Vec<_> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), trials);
    for d in dirs {
        assert!(d.join("summary.json").is_file(), "{} unfinished", d.display());
        let rows = crate::util::metrics(&d);
        let iterations: Vec<usize> = rows.iter().filter(|r| r.1 == "test").map(|r| r.0).collect();
        let mut sorted = iterations.clone();
        sorted.dedup();
        assert_eq!(iterations, sorted, "{}: a row twice", d.display());
        assert_eq!(*iterations.last().unwrap(), last_iteration);
    }
}

const EIGHT: &str = "model = \"mlp\"\niterations = 120\neval_every = 40\ncheckpoint_every = 20\nseed = { from = 0, to = 3 }\nlr = [0.005, 0.01]\n";

#[test]
fn killed_sweep_reruns_to_every_trial_once() {
    let dir = tempdir("sweep-kill");
    let (spec, out) = (spec(&dir, EIGHT), dir.join("sweep"));
    let mut child = sweep(&spec, &out, &["--jobs", "2"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Half-way: once some trials are done.
    let start = std::time::Instant::now();
    while std::fs::read_dir(&out).map(|d| d.flatten().filter(|e| e.path().join("summary.json").exists()).count()).unwrap_or(0) < 3 {
        assert!(start.elapsed().as_secs() < 120, "the sweep made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let s = ok(sweep(&spec, &out, &["--jobs", "2"]).output().unwrap());
    assert_eq!(s["trials"], 8);
    assert_eq!(s["done"].as_u64().unwrap() + s["skipped"].as_u64().unwrap(), 8, "{s}");
    assert!(s["skipped"].as_u64().unwrap() >= 3, "finished trials are not run again: {s}");
    all_done_once(&out, 8, 119);
    // And once more: nothing left to do.
    let again = ok(sweep(&spec, &out, &[]).output().unwrap());
    assert_eq!((again["done"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(8)));
}

#[test]
fn two_sweeps_on_one_folder_run_each_trial_once() {
    let dir = tempdir("sweep-two");
    let (spec, out) = (spec(&dir, EIGHT), dir.join("sweep"));
    let a = sweep(&spec, &out, &[]).stdout(Stdio::piped()).spawn().unwrap();
    let b = sweep(&spec, &out, &[]).stdout(Stdio::piped()).spawn().unwrap();
    let (a, b) = (ok(a.wait_with_output().unwrap()), ok(b.wait_with_output().unwrap()));
    let done = a["done"].as_u64().unwrap() + b["done"].as_u64().unwrap();
    assert_eq!(done, 8, "each trial trained by exactly one of the two: {a} {b}");
    all_done_once(&out, 8, 119);
}

#[test]
fn shards_together_run_every_trial_once() {
    let dir = tempdir("sweep-shards");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 20\neval_every = 10\nseed = { from = 0, to = 6 }\n"), dir.join("sweep"));
    let mut total = 0;
    for i in 1..=3 {
        let s = ok(sweep(&spec, &out, &["--shard", &format!("{i}/3")]).output().unwrap());
        assert_eq!(s["skipped"], 0, "shard {i} found none of its trials done by another shard");
        total += s["done"].as_u64().unwrap();
    }
    assert_eq!(total, 7);
    all_done_once(&out, 7, 19);
    // Slurm's variables pick the same partition.
    let listed: Vec<String> = (0..3).map(|id| {
        let out = nndl().arg("sweep").arg(&spec).arg("--out").arg(&out).arg("--list")
            .env("SLURM_ARRAY_TASK_ID", id.to_string()).env("SLURM_ARRAY_TASK_COUNT", "3").output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }).collect();
    let lines: Vec<&str> = listed.iter().flat_map(|l| l.lines()).collect();
    assert_eq!(lines.len(), 7);
    assert!(lines.iter().all(|l| l.contains(" --trial seed=")));
}

#[test]
fn a_failed_trial_is_recorded_and_the_others_go_on() {
    let dir = tempdir("sweep-fail");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 60\neval_every = 20\nlr = [0.005, 1e10]\n"), dir.join("sweep"));
    let run = sweep(&spec, &out, &[]).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("1 of 2 trials failed: lr=1e10 (training diverged"), "{err}");
    let failures: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("failures.json")).unwrap()).unwrap();
    assert_eq!(failures[0]["trial"], "lr=1e10");
    assert!(out.join("lr=0.005/summary.json").is_file());
    let listed = ok(sweep(&spec, &out, &["--dry-run"]).output().unwrap())["trials"].clone();
    let states: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["done", "failed"]);
    assert!(listed[1]["error"].as_str().unwrap().starts_with("training diverged"), "{listed}");
    // The report counts the diverged trial in its configuration's row and says why it failed.
    let r = ok(nndl().arg("report").arg(&out).arg("--json").output().unwrap());
    assert_eq!((r["runs"].as_u64(), r["failed"].as_u64()), (Some(1), Some(1)));
    let last = &r["configurations"][1];
    assert_eq!((last["label"].as_str(), last["test_accuracy"].is_null()), (Some("lr=1e10"), true));
    assert!(last["failed"][0]["reason"].as_str().unwrap().starts_with("training diverged"), "{last}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| lr=1e10 | 0 | 1 | — | — |") && md.contains("lr=1e10: training diverged"), "{md}");
    assert!(!md.contains("unfinished"), "{md}");
}

#[test]
fn bad_spec_is_one_line_before_anything_runs() {
    let dir = tempdir("sweep-bad");
    let spec = spec(&dir, "model = \"mlp\"\nseed = [0, 1]\nlr = [0.01, 0]\n");
    let out = sweep(&spec, &dir.join("sweep"), &[]).output().unwrap();
    crate::util::assert_one_line_error(&out, &format!("trial lr=0,seed=0: invalid {}: lr 0: must be a finite number > 0", spec.display()));
    assert!(!dir.join("sweep").exists());
}

#[test]
fn dry_run_and_list_run_nothing() {
    let dir = tempdir("sweep-dry");
    let (spec, out) = (spec(&dir, EIGHT), dir.join("sweep"));
    let d = ok(sweep(&spec, &out, &["--dry-run"]).output().unwrap());
    assert_eq!((d["shard"].as_str(), d["trials"].as_array().unwrap().len()), (Some("1/1"), 8));
    assert_eq!(d["trials"][0]["state"], "new");
    assert!(!out.exists());
    // --list --json: one object, the commands and the trials each runs.
    let l = ok(sweep(&spec, &out, &["--list", "--pack", "2"]).output().unwrap());
    assert_eq!((l["commands"].as_array().unwrap().len(), l["trials"][0].as_array().unwrap().len()), (4, 2), "{l}");
}

/// A finished run folder as `report` reads it, with the numbers the test chooses.
fn fake_run(dir: &Path, lr: f64, seed: u64, acc: f64, loss: f64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(".nndl-run"), "{}").unwrap();
    let mut cfg = fake_config();
    cfg["lr"] = lr.into();
    cfg["seed"] = seed.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let summary = serde_json::json!({ "final_test_accuracy": acc, "final_test_loss": loss, "best_test_accuracy": acc + 0.001, "train_seconds": 2.0 });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    std::fs::write(dir.join("metrics.csv"), format!("iteration,split,loss,accuracy\n0,train,1,0.5\n0,test,{loss},{acc}\n")).unwrap();
}

fn fake_config() -> serde_json::Value {
    let d = tempdir("cfg");
    let out = nndl().args(["mlp", "--iterations", "1", "--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir()).arg("--out").arg(d.join("r")).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&std::fs::read(d.join("r/config.json")).unwrap()).unwrap()
}

#[test]
fn report_numbers_match_a_hand_computation() {
    let dir = tempdir("report");
    for (seed, acc, loss) in [(0, 0.90, 0.30), (1, 0.92, 0.20), (2, 0.94, 0.10)] {
        fake_run(&dir.join(format!("lr=0.01,seed={seed}")), 0.01, seed, acc, loss);
    }
    fake_run(&dir.join("lr=0.1,seed=0"), 0.1, 0, 0.50, 2.0);
    // A trial that never finished: named in a warning, the report goes on.
    std::fs::create_dir_all(dir.join("lr=0.1,seed=1")).unwrap();
    std::fs::write(dir.join("lr=0.1,seed=1/.nndl-run"), "{}").unwrap();
    std::fs::write(dir.join("lr=0.1,seed=1/config.json"), fake_config().to_string()).unwrap();
    // A trial that failed: counted in its configuration's row, not in its statistics.
    fake_run(&dir.join("lr=0.1,seed=2"), 0.1, 2, 0.0, 0.0);
    std::fs::remove_file(dir.join("lr=0.1,seed=2/summary.json")).unwrap();
    std::fs::write(dir.join("lr=0.1,seed=2/failed.txt"), "training diverged: (the test's words)\n").unwrap();
    let out = nndl().arg("report").arg(&*dir).args(["--json"]).output().unwrap();
    let r = ok(out.clone());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning:") && err.contains("lr=0.1,seed=1: no summary.json"), "{err}");
    let best = &r["configurations"][0];
    assert_eq!(best["label"], "lr=0.01");
    assert_eq!(best["seeds"], serde_json::json!([0, 1, 2]));
    let a = &best["test_accuracy"];
    assert!((a["mean"].as_f64().unwrap() - 0.92).abs() < 1e-12);
    // Sample std of 0.90, 0.92, 0.94: sqrt((0.02² + 0 + 0.02²) / 2) = 0.02.
    assert!((a["std"].as_f64().unwrap() - 0.02).abs() < 1e-12);
    assert_eq!((a["min"].as_f64().unwrap(), a["max"].as_f64().unwrap()), (0.90, 0.94));
    let l = &best["test_loss"];
    assert!((l["mean"].as_f64().unwrap() - 0.2).abs() < 1e-12 && (l["std"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert!((best["best_test_accuracy"].as_f64().unwrap() - 0.941).abs() < 1e-12);
    let second = &r["configurations"][1];
    assert_eq!((second["label"].as_str(), &second["seeds"], second["failed"][0]["seed"].as_u64()), (Some("lr=0.1"), &serde_json::json!([0]), Some(2)));
    assert_eq!(second["test_accuracy"]["mean"].as_f64(), Some(0.5));
    // One finished seed has no spread to estimate: null, and no "± 0.00".
    assert!(second["test_accuracy"]["std"].is_null());
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| lr=0.1 | 1 | 1 | 50.00% | 50.00% |") && md.contains("lr=0.1,seed=2: training diverged: (the test's words)"), "{md}");
    assert!(md.contains("| lr=0.01 | 3 | 0 | 92.00% ± 2.00 | 90.00% | 94.00% | 0.2000 ± 0.1000 | 0.1000 | 0.3000 | 94.10% | 2.0 |"), "{md}");
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(&row[..2], ["\"lr=0.01\"", "3"]);
    assert!((row[2].parse::<f64>().unwrap() - 0.92).abs() < 1e-12 && (row[3].parse::<f64>().unwrap() - 0.02).abs() < 1e-12, "{csv}");
    assert_eq!(csv.lines().nth(2).unwrap().split(',').nth(3), Some(""), "one seed's std is left empty: {csv}");
    for f in ["report-accuracy.png", "report-loss.png", "report-lr.png"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
}

#[test]
fn sigterm_to_the_sweep_stops_its_trials_at_a_checkpoint() {
    // As Slurm's `--signal=B:TERM` does: only the sweep's own process is signalled.
    let dir = tempdir("sweep-term");
    // Four trials on two jobs, unpacked: two wait in the queue.
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 100000\ncheckpoint_every = 50\nseed = [0, 1, 2, 3]\n"), dir.join("sweep"));
    let child = sweep(&spec, &out, &["--jobs", "2", "--pack", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    while !(out.join("seed=0/checkpoint.safetensors").exists() && out.join("seed=1/checkpoint.safetensors").exists()) {
        assert!(start.elapsed().as_secs() < 120, "no checkpoints");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let stopped = std::time::Instant::now();
    let end = child.wait_with_output().unwrap();
    assert_eq!(end.status.code(), Some(143), "{}", String::from_utf8_lossy(&end.stderr));
    assert!(stopped.elapsed().as_secs() < 30, "the trials stopped at once instead of running on");
    // Every trial of the shard is counted: two interrupted, the queued two not started.
    let counts = json(&end);
    assert_eq!((&counts["interrupted"], &counts["not_started"], &counts["done"], &counts["failed"]), (&2.into(), &2.into(), &0.into(), &0.into()), "{counts}");
    // Nothing left running, and the rerun's dry run finds both trials resumable.
    let d = ok(sweep(&spec, &out, &["--dry-run"]).output().unwrap());
    assert_eq!(d["trials"][0]["state"], "unfinished");
    assert_eq!(d["trials"][1]["state"], "unfinished");
}

#[test]
fn a_signal_to_the_whole_group_stops_each_worker_once() {
    // Ctrl-C in a terminal, or Slurm signalling every process of a step: each worker gets the
    // signal itself and again from its driver, within milliseconds. That is one stop, not the
    // second signal that exits at once: the worker checkpoints and leaves no lock or partial file.
    use std::os::unix::process::CommandExt;
    let dir = tempdir("sweep-group");
    let (spec, out) = (spec(&dir, "model = \"cnn\"\niterations = 100000\neval_every = 100000\ncheckpoint_every = 5\nseed = [0]\n"), dir.join("sweep"));
    let child = sweep(&spec, &out, &[]).process_group(0).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let trial = out.join("trial");
    let start = std::time::Instant::now();
    while !trial.join("checkpoint.safetensors").exists() {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill").args(["-TERM", "--", &format!("-{}", child.id())]).status().unwrap();
    let end = child.wait_with_output().unwrap();
    assert_eq!(end.status.code(), Some(143), "{}", String::from_utf8_lossy(&end.stderr));
    let left: Vec<String> = std::fs::read_dir(&trial).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n == ".nndl.lock" || n.starts_with(".partial")).collect();
    assert!(left.is_empty(), "the worker was cut short: {left:?}");
    let d = ok(sweep(&spec, &out, &["--dry-run"]).output().unwrap());
    assert_eq!(d["trials"][0]["state"], "unfinished");
}

#[test]
fn a_hand_edited_sweep_json_is_checked_before_its_trials_run() {
    let dir = tempdir("sweep-json-edited");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 3\nseed = [0, 1]\n"), dir.join("sweep"));
    ok(sweep(&spec, &out, &["--list"]).output().unwrap());
    let original = std::fs::read_to_string(out.join("sweep.json")).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        f(&mut v);
        std::fs::write(out.join("sweep.json"), v.to_string()).unwrap();
    };
    edit(&|v| v["trials"][0]["config"]["batch_size"] = 0.into());
    let worker = sweep(&spec, &out, &["--trial", "seed=0"]).output().unwrap();
    crate::util::assert_one_line_error(&worker, "trial seed=0: invalid");
    assert!(String::from_utf8_lossy(&worker.stderr).contains("sweep.json: batch_size 0"), "{}", String::from_utf8_lossy(&worker.stderr));
    edit(&|v| v["trials"][0]["name"] = "../escaped".into());
    let worker = sweep(&spec, &out, &["--trial", "../escaped"]).output().unwrap();
    crate::util::assert_one_line_error(&worker, "trial name \"../escaped\" is not one folder name inside the sweep");
    assert!(!dir.join("escaped").exists() && !out.join("seed=0").exists());
}

#[test]
fn packed_trials_match_unpacked_ones() {
    // The default packs these four MLP trials (seeds and learning rates) into one worker;
    // --pack 1 trains each alone.
    let dir = tempdir("sweep-pack");
    let spec = spec(&dir, "model = \"mlp\"\niterations = 30\neval_every = 10\nseed = [0, 1]\nlr = [0.005, 0.01]\n");
    let (packed, alone) = (dir.join("packed"), dir.join("alone"));
    ok(sweep(&spec, &packed, &[]).output().unwrap());
    ok(sweep(&spec, &alone, &["--pack", "1"]).output().unwrap());
    for trial in ["lr=0.005,seed=0", "lr=0.005,seed=1", "lr=0.01,seed=0", "lr=0.01,seed=1"] {
        let summary = |d: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(d.join(trial).join("summary.json")).unwrap()).unwrap() };
        let (a, b) = (summary(&packed), summary(&alone));
        assert_eq!((&a["seed"], &a["lr"]), (&b["seed"], &b["lr"]));
        let (la, lb) = (a["final_train_loss"].as_f64().unwrap(), b["final_train_loss"].as_f64().unwrap());
        assert!(((la - lb) / lb).abs() < 1e-4, "{trial}: packed {la} vs alone {lb}");
        assert!((a["final_test_accuracy"].as_f64().unwrap() - b["final_test_accuracy"].as_f64().unwrap()).abs() <= 2e-4, "{trial}: {a} vs {b}");
    }
}

#[test]
fn listed_packs_cover_every_trial_once_and_run_as_workers() {
    let dir = tempdir("sweep-list-packs");
    let spec = spec(&dir, "model = \"mlp\"\niterations = 20\neval_every = 10\nbatch_size = [50, 100]\nseed = [0, 1]\nlr = [0.005, 0.01]\n");
    let out = dir.join("sweep");
    let listed = nndl().arg("sweep").arg(&spec).arg("--out").arg(&out).args(["--list", "--pack", "3", "--device", "cpu", "--threads", "1", "--data"])
        .arg(mnist_dir()).output().unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let text = String::from_utf8(listed.stdout).unwrap();
    let packs: Vec<Vec<&str>> = text.lines().map(|l| l.split(" --trial ").skip(1).map(|w| w.split(' ').next().unwrap()).collect()).collect();
    // Four trials of each batch size, packs of at most three that never mix batch sizes.
    assert_eq!(packs.iter().map(Vec::len).collect::<Vec<_>>(), [3, 1, 3, 1], "{text}");
    for pack in &packs {
        assert!(pack.iter().all(|t| t.starts_with(&pack[0][..pack[0].find(',').unwrap()])), "{pack:?}");
    }
    let mut names: Vec<&str> = packs.concat();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8);
    assert!(text.lines().all(|l| l.contains(" --device cpu") && l.contains(" --data ")), "{text}");
    // Another driver runs the listed workers; the sweep then finds every trial done.
    for line in text.lines() {
        assert!(Command::new("sh").arg("-c").arg(line).status().unwrap().success(), "{line}");
    }
    let summary = ok(sweep(&spec, &out, &[]).output().unwrap());
    assert_eq!((summary["skipped"].as_u64(), summary["done"].as_u64()), (Some(8), Some(0)), "{summary}");
}

/// `cmd`'s output, or a failed test when it has not ended within `seconds`.
fn output_within(mut cmd: Command, seconds: u64) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() > seconds {
            child.kill().unwrap();
            panic!("still running after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_pack_whose_json_outgrows_a_pipe_still_ends() {
    // About 1.5 KB of JSON a member: 48 members are more than a pipe's 64 KB, which the worker
    // can only write if its driver reads while it runs.
    let dir = tempdir("sweep-pipe");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 2\neval_every = 2\nseed = { from = 0, to = 47 }\n"), dir.join("sweep"));
    let s = ok(output_within(sweep(&spec, &out, &["--pack", "48"]), 120));
    assert_eq!((s["done"].as_u64(), s["failed"].as_u64()), (Some(48), Some(0)), "{s}");
}

#[test]
fn a_changed_spec_does_not_take_the_old_trials_as_done() {
    let dir = tempdir("sweep-changed");
    let out = dir.join("sweep");
    // spec() writes one file: each text is written again where it is used.
    let (first, changed) = ("model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1]\n", "model = \"mlp\"\niterations = 4\neval_every = 3\nseed = [0, 1]\n");
    let dry_run = |text: &str| ok(sweep(&spec(&dir, text), &out, &["--dry-run"]).output().unwrap());
    ok(sweep(&spec(&dir, first), &out, &[]).output().unwrap());
    let rows = dry_run(changed);
    assert!(rows["trials"].as_array().unwrap().iter().all(|r| r["state"] == "other-config"), "{rows}");
    // A summary that no longer reads: the trial's own run, damaged; another configuration's
    // run all the same, as a rerun refuses it.
    let summary = std::fs::read(out.join("seed=1/summary.json")).unwrap();
    std::fs::write(out.join("seed=1/summary.json"), b"{").unwrap();
    assert_eq!(dry_run(first)["trials"][1]["state"], "damaged");
    assert_eq!(dry_run(changed)["trials"][1]["state"], "other-config");
    std::fs::write(out.join("seed=1/summary.json"), summary).unwrap();
    // And an unfinished run of another configuration (no summary), which a rerun refuses too.
    let seed0 = out.join("seed=0/summary.json");
    let summary = std::fs::read(&seed0).unwrap();
    std::fs::remove_file(&seed0).unwrap();
    assert_eq!(dry_run(changed)["trials"][0]["state"], "other-config");
    std::fs::write(&seed0, summary).unwrap();
    let run = sweep(&spec(&dir, changed), &out, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("2 of 2 trials failed: seed=0 (") && err.contains("holds a finished run of another configuration (iterations 3 there, 4 here)"), "{err}");
    // The old runs are kept as they were.
    assert_eq!(crate::util::metrics(&out.join("seed=0")).last().unwrap().0, 2);
}

#[test]
fn a_spec_whose_trials_were_named_otherwise_keeps_their_runs() {
    // seed = 0 named the trials by their lr alone; seed = [0, 1] names them lr=...,seed=...: the
    // runs of seed 0 are renamed to their new names, not trained again, and a report counts
    // each run once.
    let dir = tempdir("sweep-renamed");
    let out = dir.join("sweep");
    let one = spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = 0\nlr = [0.005, 0.01]\n");
    ok(sweep(&one, &out, &[]).output().unwrap());
    let model = std::fs::read(out.join("lr=0.01/model.safetensors")).unwrap();
    let two = spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1]\nlr = [0.005, 0.01]\n");
    let rows = ok(sweep(&two, &out, &["--dry-run"]).output().unwrap());
    let row = rows["trials"].as_array().unwrap().iter().find(|r| r["trial"] == "lr=0.01,seed=0").unwrap().clone();
    assert_eq!((&row["state"], row["now_in"].as_str().map(|d| d.ends_with("/lr=0.01"))), (&"done".into(), Some(true)), "{rows}");
    assert!(out.join("lr=0.01").is_dir(), "a dry run renames nothing");
    let s = ok(sweep(&two, &out, &[]).output().unwrap());
    assert_eq!((s["done"].as_u64(), s["skipped"].as_u64()), (Some(2), Some(2)), "{s}");
    assert!(!out.join("lr=0.01").exists() && !out.join("lr=0.005").exists());
    assert_eq!(std::fs::read(out.join("lr=0.01,seed=0/model.safetensors")).unwrap(), model, "the same run, renamed");
    let report = nndl().arg("report").arg(&out).arg("--json").output().unwrap();
    assert!(!String::from_utf8_lossy(&report.stderr).contains("warning"), "{}", String::from_utf8_lossy(&report.stderr));
    assert_eq!(ok(report)["runs"], 4);
    // An old-named folder that another process holds (an old spec's sweep still training it)
    // is left to it: counted as running elsewhere, not renamed, and not trained again.
    let three = spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1]\nlr = [0.005, 0.01]\nbatch_size = [100]\n");
    let held = out.join("lr=0.01,seed=1");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(held.join(".nndl.lock"), serde_json::json!({ "pid": std::process::id(), "host": host.trim() }).to_string()).unwrap();
    let lock = std::fs::File::open(held.join(".nndl.lock")).unwrap();
    lock.lock().unwrap();
    std::fs::rename(&held, out.join("old-name")).unwrap();
    let rows = ok(sweep(&three, &out, &["--dry-run"]).output().unwrap());
    let row = rows["trials"].as_array().unwrap().iter().find(|r| r["trial"] == "lr=0.01,seed=1").unwrap().clone();
    assert_eq!((&row["state"], row["now_in"].as_str().map(|d| d.ends_with("/old-name"))), (&"training".into(), Some(true)), "{rows}");
    let s = ok(sweep(&three, &out, &["--jobs", "2"]).output().unwrap());
    assert_eq!((s["skipped"].as_u64(), s["busy_elsewhere"].as_u64(), s["done"].as_u64()), (Some(3), Some(1), Some(0)), "{s}");
    assert!(out.join("old-name").is_dir() && !held.exists());
    std::fs::remove_file(out.join("old-name/.nndl.lock")).unwrap();
    drop(lock);
    let s = ok(sweep(&three, &out, &[]).output().unwrap());
    assert_eq!((s["skipped"].as_u64(), s["done"].as_u64()), (Some(4), Some(0)), "{s}");
    assert!(held.join("summary.json").is_file() && !out.join("old-name").exists());
}

#[test]
fn workers_train_the_trials_their_driver_expanded() {
    // The spec through a pipe: only the driver can read it; its workers read sweep.json.
    let dir = tempdir("sweep-pipe-spec");
    let text = "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1]\n";
    let mut cmd = sweep(Path::new("/dev/stdin"), &dir.join("sweep"), &[]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let s = ok(child.wait_with_output().unwrap());
    assert_eq!(s["done"], 2, "{s}");
}

#[test]
fn a_trial_that_trained_on_through_nan_finishes_and_is_reported_as_diverged() {
    let dir = tempdir("sweep-nan");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nallow_nan = true\nlr = [0.005, 1e30]\n"), dir.join("sweep"));
    let s = ok(sweep(&spec, &out, &["--pack", "2"]).output().unwrap());
    assert_eq!(s["done"], 2, "{s}");
    assert_eq!(ok(sweep(&spec, &out, &[]).output().unwrap())["skipped"], 2);
    let r = ok(nndl().arg("report").arg(&out).arg("--json").output().unwrap());
    assert_eq!((r["runs"].as_u64(), r["failed"].as_u64()), (Some(1), Some(1)), "{r}");
}

#[test]
fn a_report_shows_no_figures_of_other_runs() {
    // An all-failed report draws nothing: report.md links no figure, and those an earlier report
    // drew into the same --out go, as does an earlier report's error-bar figure of a setting
    // that no longer varies.
    let dir = tempdir("report-stale-figures");
    for (lr, seed) in [(0.01, 0), (0.1, 0)] {
        fake_run(&dir.join(format!("ok/lr={lr}")), lr, seed, 0.9, 0.3);
    }
    fake_run(&dir.join("failed/a"), 0.01, 0, 0.0, 0.0);
    std::fs::remove_file(dir.join("failed/a/summary.json")).unwrap();
    std::fs::write(dir.join("failed/a/failed.txt"), "training diverged: (the test's words)\n").unwrap();
    let report = |runs: &str| nndl().arg("report").arg(dir.join(runs)).arg("--out").arg(dir.join("r")).arg("--quiet").output().unwrap();
    assert!(report("ok").status.success());
    assert!(dir.join("r/report-lr.png").is_file() && dir.join("r/report-accuracy.png").is_file());
    assert_eq!(report("failed").status.code(), Some(1));
    let md = std::fs::read_to_string(dir.join("r/report.md")).unwrap();
    assert!(!md.contains(".png"), "{md}");
    let pngs: Vec<_> = std::fs::read_dir(dir.join("r")).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "png")).map(|e| e.path()).collect();
    assert!(pngs.is_empty(), "{pngs:?}");
    assert!(report("ok").status.success());
    std::fs::remove_dir_all(dir.join("ok/lr=0.1")).unwrap();
    assert!(report("ok").status.success());
    assert!(!dir.join("r/report-lr.png").exists() && dir.join("r/report-accuracy.png").is_file());
}

#[test]
fn report_counts_a_run_reached_twice_once() {
    let dir = tempdir("report-twice");
    for seed in [0, 1] {
        fake_run(&dir.join(format!("lr=0.01,seed={seed}")), 0.01, seed, 0.9, 0.3);
    }
    let out = nndl().arg("report").arg(&*dir).arg(&*dir).arg(dir.join("lr=0.01,seed=0")).args(["--json"]).output().unwrap();
    let r = ok(out.clone());
    assert_eq!(r["configurations"][0]["seeds"], serde_json::json!([0, 1]), "{r}");
    // One line per folder reached twice, not one per run.
    let err = String::from_utf8_lossy(&out.stderr);
    let twice: Vec<&str> = err.lines().filter(|l| l.contains("reached twice; counted once")).collect();
    assert_eq!(twice, [format!("warning: {}: reached twice; counted once", dir.display()), format!("warning: {}: reached twice; counted once", dir.join("lr=0.01,seed=0").display())], "{err}");
}

#[test]
fn report_names_the_folders_that_gave_no_run() {
    // An empty folder, one of other files, and one whose runs lie deeper than the report looks
    // (a sweep copied three levels down): each named in a warning, the last with where its
    // runs are, also in the error when no other folder has runs.
    let dir = tempdir("report-no-runs");
    fake_run(&dir.join("sweep/lr=0.01,seed=0"), 0.01, 0, 0.9, 0.3);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::create_dir_all(dir.join("foreign")).unwrap();
    std::fs::write(dir.join("foreign/notes.txt"), "not a run").unwrap();
    fake_run(&dir.join("nest/level1/x/lr=0.01,seed=1"), 0.01, 1, 0.9, 0.3);
    let named = ["sweep", "empty", "foreign", "nest"].map(|d| dir.join(d));
    let out = nndl().arg("report").args(&named).arg("--json").output().unwrap();
    let r = ok(out.clone());
    assert_eq!(r["runs"], 1, "{r}");
    let err = String::from_utf8_lossy(&out.stderr);
    for d in &named[1..] {
        let d = d.display();
        assert!(err.contains(&format!("warning: {d}: no runs at the depths searched ({d}, {d}/*, {d}/*/*)")), "{err}");
    }
    let deeper = format!("runs lie deeper, in {}: name that folder", dir.join("nest/level1/x").display());
    assert!(err.contains(&deeper) && !err.contains(&format!("{}: no runs", named[0].display())), "{err}");
    let out = nndl().arg("report").arg(&named[3]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(!out.status.success() && last.contains("no finished runs under") && last.contains(&deeper), "{err}");
}

#[test]
fn a_figure_whose_last_write_fails_is_an_error_not_a_truncated_file() {
    // A file-size limit a few bytes short of report-accuracy.png fails only its last write,
    // which plotters' own file writing lost: the figure was renamed into place truncated and
    // the report exited 0.
    use std::os::unix::process::CommandExt;
    let dir = tempdir("report-last-write");
    for seed in [0, 1] {
        fake_run(&dir.join(format!("runs/seed={seed}")), 0.01, seed, 0.9 + 0.01 * seed as f64, 0.3);
    }
    let report = |out: &str| {
        let mut cmd = nndl();
        cmd.arg("report").arg(dir.join("runs")).arg("--out").arg(dir.join(out)).arg("--quiet");
        cmd
    };
    assert!(report("roomy").status().unwrap().success());
    let size = std::fs::metadata(dir.join("roomy/report-accuracy.png")).unwrap().len();
    let limit = libc::rlimit { rlim_cur: size - 5, rlim_max: size - 5 };
    let mut limited = report("limited");
    // SAFETY: between fork and exec, only async-signal-safe calls (setrlimit, signal).
    unsafe {
        limited.pre_exec(move || {
            // Ignored, a write past the limit fails with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = limited.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("report-accuracy.png: File too large"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.join("limited")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "no figure, whole or cut, and no temporary file: {left:?}");
}

#[test]
fn report_reads_reproductions_side_by_side_and_names_repeated_seeds() {
    // Two reproduce folders of the same seed in one folder: their runs are found one level
    // down, and the seed they share is named rather than counted as two independent seeds.
    let dir = tempdir("report-reproductions");
    for r in ["r1", "r2"] {
        std::fs::create_dir_all(dir.join(r)).unwrap();
        std::fs::write(dir.join(r).join(".nndl-run"), "{}").unwrap();
        std::fs::write(dir.join(r).join("reproduce.json"), "{}").unwrap();
        fake_run(&dir.join(r).join("mlp"), 0.005, 0, 0.92, 0.3);
    }
    let out = nndl().arg("report").arg(&*dir).args(["--json"]).output().unwrap();
    let r = ok(out.clone());
    assert_eq!(r["runs"], 2, "{r}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seed 0 is in 2 runs") && err.contains("r1/mlp") && err.contains("r2/mlp"), "{err}");
    assert!(err.contains("over 2 runs (1 seed)"), "the headline counts seeds once: {err}");
    // Two runs of one seed are no sample of the spread over seeds: no std, not ± 0.00.
    assert!(r["configurations"][0]["test_accuracy"]["std"].is_null() && !err.contains('±'), "{r}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| 2 runs of 1 | 0 |"), "the table too: {md}");
    // A warning, not a run left out: both count in the statistics.
    assert!(md.contains("\nWarnings:\n- ") && !md.contains("Left out"), "{md}");
    // report.csv: one seed (its `seeds`), two runs (its last column, `runs`).
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    let (head, row) = (csv.lines().next().unwrap(), csv.lines().nth(1).unwrap());
    assert!(head.starts_with("configuration,seeds,") && head.ends_with(",failed,runs"), "{csv}");
    assert!(row.split(',').nth(1) == Some("1") && row.ends_with(",0,2"), "{csv}");
    assert_eq!(row.split(',').nth(3), Some(""), "no std for one seed: {csv}");
    assert!(!md.contains("packed run"), "no run trained in a pack: {md}");
    // A packed member's training time is its pack's, and report.md says so.
    let summary = dir.join("r2/mlp/summary.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    s["pack"] = serde_json::json!({ "members": 4, "arrangement": "in-turn" });
    std::fs::write(&summary, s.to_string()).unwrap();
    let r = ok(nndl().arg("report").arg(&*dir).args(["--json", "--quiet"]).output().unwrap());
    assert_eq!(r["configurations"][0]["packed_runs"], 1, "{r}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("train s: a packed run's time is its whole pack's (1 of the 2 runs trained in packs)."), "{md}");
    // A `--seeds` folder beside them (runs two levels down, no settings file) is read too.
    fake_run(&dir.join("seeds/seed-3"), 0.005, 3, 0.91, 0.3);
    let r = ok(nndl().arg("report").arg(&*dir).args(["--json", "--quiet"]).output().unwrap());
    assert_eq!(r["runs"], 3, "{r}");
    // Nothing finished: the reason comes with the error, not only "no finished runs".
    std::fs::remove_file(dir.join("r1/mlp/summary.json")).unwrap();
    let out = nndl().arg("report").arg(dir.join("r1")).arg("--out").arg(dir.join("rep")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap();
    assert!(!out.status.success() && last.contains("no finished runs under") && last.contains("no summary.json"), "{err}");
}

#[test]
fn a_preset_comparison_is_labelled_by_its_presets() {
    // The modern preset changes a dozen settings; the labels name the preset, not each of them.
    let dir = tempdir("report-presets");
    let modern_dir = dir.join("modern-source");
    train(&["mlp", "--preset", "modern", "--iterations", "1", "--out", modern_dir.to_str().unwrap()]);
    fake_run(&dir.join("runs/faithful"), 0.005, 0, 0.92, 0.3);
    fake_run(&dir.join("runs/modern"), 0.005, 0, 0.98, 0.1);
    let mut modern: serde_json::Value = serde_json::from_slice(&std::fs::read(modern_dir.join("config.json")).unwrap()).unwrap();
    modern["iterations"] = 1.into();
    std::fs::write(dir.join("runs/modern/config.json"), modern.to_string()).unwrap();
    let r = ok(nndl().arg("report").arg(dir.join("runs")).args(["--json", "--quiet"]).output().unwrap());
    let labels: Vec<&str> = r["configurations"].as_array().unwrap().iter().map(|g| g["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["preset=modern", "preset=faithful"], "{r}");
}

#[test]
fn a_list_array_given_its_shards_runs_its_shard_in_its_workers() {
    // `sbatch --array=1,3 ... --shards 4`: task 3 is shard 4 of 4. Its workers, which see the same
    // Slurm variables, train the trials they are named.
    let dir = tempdir("sweep-list-array");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = { from = 0, to = 7 }\n"), dir.join("sweep"));
    let mut cmd = sweep(&spec, &out, &["--shards", "4", "--pack", "1"]);
    for (k, v) in [("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "3"), ("SLURM_ARRAY_TASK_COUNT", "2"), ("SLURM_ARRAY_TASK_STEP", "1")] {
        cmd.env(k, v);
    }
    let s = ok(cmd.output().unwrap());
    assert_eq!((s["shard"].as_str(), s["done"].as_u64()), (Some("4/4"), Some(2)), "{s}");
    assert!(out.join("seed=3/summary.json").is_file() && out.join("seed=7/summary.json").is_file());
}

#[test]
fn a_worker_stopped_alone_leaves_the_sweep_unfinished_and_failing() {
    // An OOM killer's SIGTERM, or a `kill` of one worker: the driver itself got no signal, but
    // the trial is not done, and the sweep must not end as if it were.
    let dir = tempdir("sweep-worker-term");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 100000\ncheckpoint_every = 50\nseed = [0]\n"), dir.join("sweep"));
    let child = sweep(&spec, &out, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    // One value of each setting: the trial's folder is "trial".
    while !out.join("trial/checkpoint.safetensors").exists() {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let worker = String::from_utf8(Command::new("pgrep").args(["-P", &child.id().to_string()]).output().unwrap().stdout).unwrap();
    assert!(Command::new("kill").args(["-TERM", worker.trim()]).status().unwrap().success(), "worker {worker:?}");
    let end = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&end.stderr);
    assert_eq!(end.status.code(), Some(1), "{err}");
    assert!(err.trim_end().ends_with("error: 1 trial interrupted by a signal to its worker alone; rerun the same command to continue it"), "{err}");
    let d = ok(sweep(&spec, &out, &["--dry-run"]).output().unwrap());
    assert_eq!(d["trials"][0]["state"], "unfinished");
}

#[test]
fn a_listed_worker_refuses_a_spec_edited_since() {
    // --list (or a second driver) with an edited spec rewrites sweep.json; a worker listed before
    // would otherwise train the edited configuration under the old name and count as done.
    let dir = tempdir("sweep-digest");
    let out = dir.join("sweep");
    let first = spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1]\n");
    let listed = ok(sweep(&first, &out, &["--list"]).output().unwrap());
    let listed = listed["commands"][0].as_str().unwrap();
    let edited = spec(&dir, "model = \"mlp\"\niterations = 4\neval_every = 3\nseed = [0, 1]\n");
    ok(sweep(&edited, &out, &["--list"]).output().unwrap());
    let worker = Command::new("sh").arg("-c").arg(listed).output().unwrap();
    crate::util::assert_one_line_error(&worker, "sweep.json no longer holds the configuration this worker was started for");
    assert!(!out.join("seed=0").exists(), "nothing trained");
    // A spec that only adds trials leaves the listed ones' configurations, and their workers run.
    let more = spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1, 2]\n");
    ok(sweep(&more, &out, &["--list"]).output().unwrap());
    assert!(Command::new("sh").arg("-c").arg(listed).status().unwrap().success());
    assert!(out.join("seed=0/summary.json").is_file());
}

#[test]
fn failures_json_names_trials_refused_their_folder_without_marking_the_folder() {
    let dir = tempdir("sweep-refused");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1]\n"), dir.join("sweep"));
    ok(sweep(&spec, &out, &["--list"]).output().unwrap());
    std::fs::create_dir_all(out.join("seed=1")).unwrap();
    std::fs::write(out.join("seed=1/notes.txt"), "mine").unwrap();
    let run = sweep(&spec, &out, &[]).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stderr));
    let failures: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("failures.json")).unwrap()).unwrap();
    assert_eq!(failures.as_array().unwrap().len(), 1, "{failures}");
    assert_eq!(failures[0]["trial"], "seed=1");
    assert!(failures[0]["error"].as_str().unwrap().contains("holds files nndl did not write"), "{failures}");
    let names: Vec<String> = std::fs::read_dir(out.join("seed=1")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["notes.txt"], "the refused folder is left as it was");
    // Another shard's driver (seed=0's, done) keeps what the file says of the trials it does not run.
    ok(sweep(&spec, &out, &["--shard", "1/2"]).output().unwrap());
    let failures: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("failures.json")).unwrap()).unwrap();
    assert_eq!(failures[0]["trial"], "seed=1", "{failures}");
}

#[test]
fn a_pack_worker_exits_as_a_single_trial_worker_would() {
    // Drivers other than nndl's (GNU parallel, xargs over --list) read only the exit status.
    let dir = tempdir("sweep-pack-status");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 40\neval_every = 20\nseed = [0, 1]\nlr = [0.005, 1e10]\n"), dir.join("sweep"));
    let pack = sweep(&spec, &out, &["--trial", "lr=0.005,seed=0", "--trial", "lr=1e10,seed=0"]).output().unwrap();
    let err = String::from_utf8_lossy(&pack.stderr);
    assert_eq!(pack.status.code(), Some(1), "{err}");
    assert!(err.contains("1 of the pack's 2 trials failed: lr=1e10,seed=0 (training diverged"), "{err}");
    assert!(out.join("lr=0.005,seed=0/summary.json").is_file());
}

#[test]
fn listed_commands_run_from_any_folder() {
    let dir = tempdir("sweep-list-absolute");
    spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0]\n");
    let listed = nndl().current_dir(&*dir).args(["sweep", "spec.toml", "--out", "sweep", "--list", "--device", "cpu", "--threads", "1"]).output().unwrap();
    let line = String::from_utf8(listed.stdout).unwrap();
    let line = line.trim();
    assert!(line.contains(&format!(" {} --out {} ", dir.join("spec.toml").display(), dir.join("sweep").display())), "{line}");
    let elsewhere = tempdir("sweep-list-elsewhere");
    let run = Command::new("sh").arg("-c").arg(line).current_dir(&*elsewhere).env("MNIST_DIR", mnist_dir()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(dir.join("sweep/trial/summary.json").is_file());
}

#[test]
fn a_report_of_a_sweep_under_way_names_the_trials_not_started() {
    let dir = tempdir("report-unstarted");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0, 1, 2]\n"), dir.join("sweep"));
    ok(sweep(&spec, &out, &["--shard", "1/3"]).output().unwrap());
    let report = nndl().arg("report").arg(&out).arg("--json").output().unwrap();
    let r = ok(report.clone());
    assert_eq!(r["runs"], 1, "{r}");
    let err = String::from_utf8_lossy(&report.stderr);
    assert!(err.contains("2 of its 3 trials have not started (the first: seed=1); this report covers the others"), "{err}");
}

#[test]
fn a_trial_folder_held_by_a_run_of_another_configuration_fails_not_waits() {
    // Another spec's run, still training in this trial's folder (its lock held, here by the
    // test), would never train this trial: a failure naming the conflict, not `busy_elsewhere`
    // with exit 0 (a Slurm task COMPLETED whose trial no one trains). Packed and alone.
    let dir = tempdir("sweep-held-other");
    for (pack, out) in [("1", dir.join("alone")), ("2", dir.join("packed"))] {
        let spec = spec(&dir, "model = \"mlp\"\niterations = 2\nseed = [0, 1]\n");
        ok(sweep(&spec, &out, &["--pack", pack]).output().unwrap());
        // seed=0 now holds another configuration's unfinished run, training; seed=1 lost its
        // summary, so that both trials go to the worker (one pack with --pack 2).
        let held = out.join("seed=0");
        std::fs::remove_file(held.join("summary.json")).unwrap();
        std::fs::remove_file(out.join("seed=1/summary.json")).unwrap();
        let mut other = fake_config();
        other["iterations"] = 3.into();
        std::fs::write(held.join("config.json"), other.to_string()).unwrap();
        let lock = std::fs::File::create(held.join(".nndl.lock")).unwrap();
        lock.lock().unwrap();
        let out = sweep(&spec, &out, &["--pack", pack]).output().unwrap();
        drop(lock);
        let counts = json(&out);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!((&counts["done"], &counts["failed"], &counts["busy_elsewhere"]), (&1.into(), &1.into(), &0.into()), "{counts}");
        let error = counts["failures"][0]["error"].as_str().unwrap();
        assert!(error.contains("is in use by an nndl run of another configuration (iterations"), "{error}");
    }
}

#[test]
fn a_failure_before_a_trial_is_taken_leaves_the_run_training_there_unmarked() {
    // A second sweep given broken MNIST files fails before it takes any trial's folder: the run
    // another process trains there (its lock held, here by the test) is not its to mark failed,
    // and the dry run and the report name that run as training.
    let dir = tempdir("sweep-failure-before-claim");
    let (spec, out) = (spec(&dir, "model = \"mlp\"\niterations = 3\neval_every = 3\nseed = [0]\n"), dir.join("sweep"));
    ok(sweep(&spec, &out, &[]).output().unwrap());
    let held = out.join("trial");
    std::fs::remove_file(held.join("summary.json")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(held.join(".nndl.lock"), serde_json::json!({ "pid": std::process::id(), "host": host.trim() }).to_string()).unwrap();
    let lock = std::fs::File::open(held.join(".nndl.lock")).unwrap();
    lock.lock().unwrap();
    let broken = dir.join("broken-mnist");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::write(broken.join(f), "x\n").unwrap();
    }
    let failing = nndl().arg("sweep").arg(&spec).arg("--out").arg(&out).args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(&broken).output().unwrap();
    assert_eq!(failing.status.code(), Some(1), "{}", String::from_utf8_lossy(&failing.stderr));
    assert!(!held.join("failed.txt").exists(), "{}", std::fs::read_to_string(held.join("failed.txt")).unwrap());
    let state = |out: &Path| ok(sweep(&spec, out, &["--dry-run"]).output().unwrap())["trials"][0]["state"].clone();
    assert_eq!(state(&out), "training");
    let report = nndl().arg("report").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&report.stderr);
    assert!(err.contains("still training (pid"), "{err}");
    // Released as nndl releases it.
    std::fs::remove_file(held.join(".nndl.lock")).unwrap();
    drop(lock);
    assert_eq!(state(&out), "unfinished");
}
