//! `nndl reproduce --quick` writes every figure and the report.
use crate::util::{json, tempdir, train};

#[test]
fn quick_reproduce_writes_every_figure_and_the_report() {
    let dir = tempdir("reproduce");
    let s = json(&train(&["reproduce", "--quick", "--json", "--out", dir.to_str().unwrap()]));
    for f in ["mlp-loss.png", "mlp-accuracy.png", "cnn-loss.png", "cnn-accuracy.png", "mlp-xor-loss.png", "report.md", "summary.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in ["BPTT", "XOR", "MLP on MNIST", "CNN on MNIST", "9.964", "95.7%", "7.513e-6", "![cnn-loss.png](cnn-loss.png)"] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    assert_eq!(s["mlp"]["iterations"], 300);
    assert_eq!(s["cnn"]["iterations"], 100);
    assert_eq!(s["bptt"]["passed"], true);
    assert!(s["mlp"]["final_test_accuracy"].as_f64().unwrap() > 0.8);
    assert_eq!(s["mlp"]["homework_test_loss"], 9.964);
}

#[test]
fn only_selects_parts() {
    let dir = tempdir("reproduce-only");
    let s = json(&train(&["reproduce", "--only", "xor,bptt", "--json", "--out", dir.to_str().unwrap()]));
    assert!(s["mlp"].is_null() && s["cnn"].is_null());
    assert!(dir.join("mlp-xor-loss.png").is_file());
    assert!(!dir.join("mlp-loss.png").exists());
}
