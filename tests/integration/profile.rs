//! `--profile-steps`: libtorch's profiler records a window of training steps, evaluations
//! excluded, without changing what the run computes.
use crate::util::{assert_one_line_error, nndl, tempdir, train};
use std::path::Path;

/// profile.txt's host table as (name, us per step, calls per step).
fn host_rows(run: &Path) -> Vec<(String, f64, f64)> {
    let text = std::fs::read_to_string(run.join("profile.txt")).unwrap();
    let table = text.split("\nhost: ").nth(1).expect("a host table").split("\n\n").next().unwrap();
    table.lines().skip(1).map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[3..].join(" "), f[0].parse().unwrap(), f[1].parse().unwrap())
    }).collect()
}

fn calls(rows: &[(String, f64, f64)], name: &str) -> f64 {
    rows.iter().find(|r| r.0 == name).unwrap_or_else(|| panic!("no {name} in {rows:?}")).2
}

#[test]
fn a_window_of_steps_without_evaluations_and_the_same_results() {
    let dir = tempdir("profile");
    let (profiled, plain) = (dir.join("profiled"), dir.join("plain"));
    train(&["mlp", "--iterations", "60", "--profile-steps", "100", "--out", profiled.to_str().unwrap()]);
    train(&["mlp", "--iterations", "60", "--out", plain.to_str().unwrap()]);
    let text = std::fs::read_to_string(profiled.join("profile.txt")).unwrap();
    assert!(text.starts_with("nndl profile: mlp faithful, cpu, 1 thread\n"), "{text}");
    // After the warm-up (4 steps), up to and with the step before the evaluation at 50.
    assert!(text.contains("iterations 4..50 (47 steps"), "{text}");
    assert!(text.contains("100 steps asked; the evaluation after iteration 50 ends the window at 47 steps"), "{text}");
    // A training step makes 3 forward products (addmm) and 5 backward ones (mm); one evaluation
    // in the window would add 15 addmm calls (5 chunks of 2000 images), 3.3 a step.
    let rows = host_rows(&profiled);
    assert_eq!(calls(&rows, "aten::addmm"), 3.0);
    assert_eq!(calls(&rows, "aten::mm"), 5.0);
    assert!(rows.windows(2).all(|w| w[0].1 >= w[1].1), "slowest first: {rows:?}");
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(profiled.join("profile-trace.json")).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().expect("a Chrome trace");
    assert!(events.iter().any(|e| e["name"] == "aten::addmm"), "the trace holds the operators");
    // Recording changes nothing the run computes.
    for f in ["metrics.csv", "model.safetensors"] {
        assert_eq!(std::fs::read(profiled.join(f)).unwrap(), std::fs::read(plain.join(f)).unwrap(), "{f} differs with --profile-steps");
    }
}

#[test]
fn a_pack_records_all_its_members_steps() {
    let dir = tempdir("profile-pack");
    train(&["mlp", "--seeds", "0..1", "--iterations", "20", "--profile-steps", "5", "--out", dir.join("pack").to_str().unwrap()]);
    for seed in [0, 1] {
        let run = dir.join(format!("pack/seed-{seed}"));
        let text = std::fs::read_to_string(run.join("profile.txt")).unwrap();
        assert!(text.starts_with("nndl profile: mlp faithful, cpu, 1 thread, a pack of 2 members\n"), "{text}");
        assert!(text.contains("iterations 4..8 (5 steps"), "{text}");
        assert_eq!(calls(&host_rows(&run), "aten::addmm"), 6.0, "both members' forward products");
    }
}

#[test]
fn bad_step_counts_are_one_line_errors() {
    for (n, needle) in [("0", "invalid --profile-steps 0"), ("1001", "invalid --profile-steps 1001"), ("x", "invalid value 'x'")] {
        let dir = tempdir("profile-bad");
        let out = nndl().args(["mlp", "--profile-steps", n, "--device", "cpu", "--quiet", "--out"]).arg(dir.join("run")).output().unwrap();
        assert_one_line_error(&out, needle);
        assert!(!dir.join("run").exists(), "nothing written for a bad flag");
    }
}

#[test]
fn a_trace_the_temporary_folder_cannot_hold_is_a_warning_naming_it_and_leaves_nothing() {
    // TMPDIR a 4 KB file system: libtorch's trace does not fit there. The run finishes without
    // a profile, the warning names the folder, and no file of the trace stays in it.
    let dir = tempdir("profile-tmpdir");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"]).arg(&tmp).status().unwrap().success());
    let run = dir.join("run");
    let out = nndl().args(["mlp", "--iterations", "20", "--profile-steps", "3", "--device", "cpu", "--threads", "1", "--quiet", "--data"])
        .arg(crate::util::mnist_dir()).arg("--out").arg(&run).env("TMPDIR", &tmp).output().unwrap();
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name()).collect();
    let _ = std::process::Command::new("umount").arg(&tmp).status();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim_end().starts_with(&format!("warning: --profile-steps: libtorch could not write its trace in {} (the temporary folder, TMPDIR: full or read-only?)", tmp.display())), "{err}");
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    assert!(run.join("summary.json").is_file() && !run.join("profile-trace.json").exists() && !run.join("profile.txt").exists());
}
