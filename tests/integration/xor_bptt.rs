//! `nndl xor` and `nndl bptt` from the command line.
use crate::util::{json, nndl, tempdir};

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = nndl().args(args).args(["--json", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

#[test]
fn single_xor_run_writes_figure_and_dump() {
    let dir = tempdir("xor");
    let dump = dir.join("dump.json");
    let s = run_json(&["xor", "--seed", "3", "--out", dir.join("run").to_str().unwrap(), "--dump", dump.to_str().unwrap()]);
    for key in ["seed", "epochs", "final_loss", "converged", "wall_seconds"] {
        assert!(s.get(key).is_some(), "--json lacks {key}");
    }
    assert_eq!(s["epochs"], 3001);
    assert_eq!(s["preset"], "homework");
    assert!(dir.join("run/mlp-xor-loss.png").is_file());
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    assert_eq!(d["orders"].as_array().unwrap().len(), 3001);
    assert_eq!(d["initial"].as_array().unwrap().len(), 3);
    assert_eq!(d["losses"].as_array().unwrap().len(), 61);
    let last = d["losses"][60][1].as_f64().unwrap();
    assert_eq!(last, s["final_loss"].as_f64().unwrap());
    // The homework's printout, also kept in summary.json.
    assert_eq!(s["losses"], d["losses"]);
    let out = crate::util::nndl().args(["xor", "--seed", "3", "--out"]).arg(dir.join("loud")).output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("Epoch: ")).map(String::from).collect();
    assert_eq!(lines.len(), 61);
    assert_eq!(lines[60], format!("Epoch: 3000, loss: {last}"));
}

#[test]
fn many_seeds_report_convergence() {
    let s = run_json(&["xor", "--runs", "100"]);
    assert_eq!(s["runs"], 100);
    let converged = s["converged"].as_u64().unwrap();
    // The seed's network converges from only some initialisations (its Python: 37 of 100).
    assert!((20..=60).contains(&converged), "{converged} of 100 converged");
    assert_eq!(s["convergence_rate"].as_f64().unwrap(), converged as f64 / 100.0);
    let stuck = s["stuck_near_0_167"].as_u64().unwrap() + s["stuck_near_0_25"].as_u64().unwrap();
    assert!(stuck > 30, "most others stick near 1/6 or 1/4: {s}");
}

#[test]
fn robust_preset_converges_far_more_often() {
    let s = run_json(&["xor", "--runs", "1000", "--preset", "robust"]);
    let rate = s["convergence_rate"].as_f64().unwrap();
    assert!(rate >= 0.99, "robust preset converged on {rate}");
}

#[test]
fn bptt_meets_its_targets() {
    let s = run_json(&["bptt", "--trials", "20"]);
    assert!(s["max_rel_error_finite_diff"].as_f64().unwrap() <= 1e-7, "{s}");
    assert!(s["max_rel_error_autograd"].as_f64().unwrap() <= 1e-10, "{s}");
    assert_eq!(s["passed"], true);
}

#[test]
fn bptt_autograd_computes_the_same_softplus_above_20() {
    // libtorch's softplus returns s itself above 20; seeds 2, 3 and 13 have such states and
    // failed the 1e-10 target by that difference alone.
    for seed in ["2", "3", "13"] {
        let s = run_json(&["bptt", "--trials", "100", "--seed", seed]);
        assert!(s["max_rel_error_autograd"].as_f64().unwrap() <= 1e-12, "seed {seed}: {s}");
        assert_eq!(s["passed"], true, "seed {seed}: {s}");
    }
}

#[test]
fn xor_dump_replaces_an_earlier_dump_and_nothing_else() {
    let dir = tempdir("xor-dump");
    let dump = dir.join("dump.json");
    for run in ["a", "b"] {
        run_json(&["xor", "--out", dir.join(run).to_str().unwrap(), "--dump", dump.to_str().unwrap()]);
    }
    // Any other file keeps its bytes: an MNIST file given by mistake, say.
    let other = dir.join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&other, b"not a dump").unwrap();
    let out = crate::util::nndl().args(["xor", "--quiet", "--out"]).arg(dir.join("c")).arg("--dump").arg(&other).output().unwrap();
    crate::util::assert_one_line_error(&out, "a file of that name exists and is not an earlier dump; remove it or choose another name");
    assert_eq!(std::fs::read(&other).unwrap(), b"not a dump");
    assert!(!dir.join("c").exists(), "refused before its run folder is made");
}
