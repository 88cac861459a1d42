//! The defects a review found (issue: layout and code health), each with the test that holds now.
use crate::util::{assert_one_line_error, json, mnist_dir, nndl, tempdir, train};

#[test]
fn xor_final_loss_is_after_the_last_epoch() {
    let dir = tempdir("xor10");
    let dump = dir.join("dump.json");
    let out = nndl().args(["xor", "--epochs", "10", "--seed", "2", "--json", "--quiet", "--out"]).arg(dir.join("run"))
        .arg("--dump").arg(&dump).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(&out);
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();
    let losses = d["losses"].as_array().unwrap();
    assert_eq!(losses.last().unwrap()[0], 9, "the last epoch's loss is recorded");
    assert_eq!(s["final_loss"], losses.last().unwrap()[1]);
    assert_ne!(s["final_loss"], losses[0][1], "not epoch 0's loss");
}

#[test]
fn no_note_before_a_bad_input_error() {
    // Without --quiet: a missing data folder is the only line, even on a machine without CUDA
    // where `auto` would otherwise print its CPU note first.
    let dir = tempdir("nonote");
    let out = nndl().args(["mlp", "--device", "auto", "--data"]).arg(dir.join("missing")).arg("--out").arg(dir.join("run")).output().unwrap();
    assert_one_line_error(&out, "train-images-idx3-ubyte not found");
    let out = nndl().args(["mlp", "--device", "auto", "--data"]).arg(mnist_dir()).arg("--out").arg(dir.join("run")).args(["--batch-size", "0"]).output().unwrap();
    assert_one_line_error(&out, "invalid --batch-size 0");
}

#[test]
fn repeated_reproduce_stages_run_once_in_order() {
    let dir = tempdir("dedupe");
    let s = json(&train(&["reproduce", "--only", "xor,bptt,xor", "--quick", "--json", "--out", dir.to_str().unwrap()]));
    let settings: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("reproduce.json")).unwrap()).unwrap();
    assert_eq!(settings["stages"], serde_json::json!(["bptt", "xor"]));
    assert!(s["xor"].is_object() && s["bptt"].is_object());
}

#[test]
fn bptt_checks_each_problem_once_against_everything() {
    let out = nndl().args(["bptt", "--trials", "3", "--json", "--quiet"]).output().unwrap();
    let s = json(&out);
    assert_eq!(s["problems"], 9, "3 problems for each of the 3 activations");
    assert!(s["max_rel_error_autograd"].as_f64().unwrap() < 1e-10, "autograd saw the same problems: {s}");
}

#[test]
fn xor_runs_writes_its_statistics_where_out_says() {
    let dir = tempdir("xorout");
    let out = nndl().args(["xor", "--runs", "20", "--quiet", "--out"]).arg(dir.join("stats")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("stats/summary.json")).unwrap()).unwrap();
    assert_eq!(s["runs"], 20);
    // And a second time refuses to overwrite it without --force.
    let again = nndl().args(["xor", "--runs", "20", "--quiet", "--out"]).arg(dir.join("stats")).output().unwrap();
    assert_one_line_error(&again, "already holds a run");
}

#[test]
fn a_closed_stdout_is_no_panic() {
    let cmd = format!("'{}' xor --runs 300 --json 2>&1 >/dev/null | head -c 1; '{}' xor --runs 300 --json | head -c 10 >/dev/null", env!("CARGO_BIN_EXE_nndl"), env!("CARGO_BIN_EXE_nndl"));
    let out = std::process::Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}

#[test]
fn every_training_flag_names_its_default() {
    let help = String::from_utf8(nndl().args(["mlp", "--help"]).output().unwrap().stdout).unwrap();
    for needle in ["[default: faithful 0.005 (MLP) / 0.01 (CNN); modern 2e-3 peak]", "[default: 100, both presets]",
        "[default: 4001, both presets]", "[default: 50, both presets]", "Random seed of the initialisation, batch order and dropout [default: 0]",
        "[default: auto]", "[default: off for faithful, on for modern]"] {
        assert!(help.contains(needle), "--help lacks '{needle}':\n{help}");
    }
}

#[test]
fn homework_preset_keeps_seed_as_an_alias() {
    let a = json(&nndl().args(["xor", "--runs", "5", "--preset", "seed", "--json", "--quiet"]).output().unwrap());
    let b = json(&nndl().args(["xor", "--runs", "5", "--preset", "homework", "--json", "--quiet"]).output().unwrap());
    assert_eq!(a["preset"], "homework");
    assert_eq!(a["final_loss_quantiles"], b["final_loss_quantiles"]);
}

/// On a CUDA machine: `cargo test --release -- --ignored cuda_graph`.
#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_graph_and_eager_steps_agree() {
    let dir = tempdir("graph");
    let run = |name: &str, extra: &[&str]| {
        let out = nndl().args(["mlp", "--device", "cuda", "--iterations", "200", "--eval-every", "50", "--quiet", "--data"]).arg(mnist_dir())
            .arg("--out").arg(dir.join(name)).args(extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        crate::util::metrics(&dir.join(name))
    };
    let (graph, eager) = (run("graph", &[]), run("eager", &["--no-cuda-graph"]));
    assert_eq!(graph.len(), eager.len());
    for (g, e) in graph.iter().zip(&eager) {
        for (a, b) in [(g.2, e.2), (g.3, e.3)] {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "graph {g:?} vs eager {e:?}");
        }
    }
}
