//! Numerics switches that change how a run computes: denormal floats flushed to zero (as TF
//! does) or kept, recorded in config.json, and in force exactly while a run trains.
use crate::util::{json, rng_lock, small_mnist, tempdir, train, PerStep};
use nndl::config::{ModelKind, Preset, TrainConfig};
use nndl::packed::net::PackedNet;
use nndl::packed::trainer::{train_packed, MemberStart, PackContext};
use nndl::torch_extras::flush_denormal_enabled;
use nndl::trainer::{self, Observer, TrainContext};
use tch::Device;

fn mlp(flush: bool) -> TrainConfig {
    TrainConfig { iterations: 3, flush_denormals: flush, ..TrainConfig::preset(ModelKind::Mlp, Preset::Faithful) }
}

#[test]
fn a_run_trains_in_its_denormal_mode_and_leaves_the_thread_as_it_was() {
    let _rng = rng_lock();
    let data = small_mnist();
    for flush in [true, false] {
        let cfg = mlp(flush);
        let network = nndl::run::build_network(&cfg, Device::Cpu);
        let ctx = TrainContext { net: &network.net, vs: &network.vs, cfg: &cfg, data: &data, allow_graph: false, quiet: true, profile_steps: None };
        let mut seen = PerStep::new(|_| flush_denormal_enabled());
        trainer::train(&ctx, None, &mut seen).unwrap();
        assert_eq!(seen.seen, vec![flush; 3], "single run, flush_denormals {flush}");
        assert!(!flush_denormal_enabled(), "the thread keeps denormals again after the run");
    }
    // A pack, likewise.
    let cfgs = [mlp(true), TrainConfig { seed: 1, ..mlp(true) }];
    let networks: Vec<_> = cfgs.iter().map(|c| nndl::run::build_network(c, Device::Cpu)).collect();
    let starts: Vec<_> = cfgs.iter().map(|_| MemberStart::Fresh { rng: nndl::torch_extras::cpu_rng_state() }).collect();
    let net = PackedNet::stack(ModelKind::Mlp, &networks, false).unwrap();
    let ctx = PackContext { net: &net, cfgs: &cfgs, data: &data, allow_graph: false, quiet: true, profile_steps: None };
    let mut seen: Vec<PerStep<bool>> = cfgs.iter().map(|_| PerStep::new(|_| flush_denormal_enabled())).collect();
    let mut obs: Vec<&mut dyn Observer> = seen.iter_mut().map(|o| o as &mut dyn Observer).collect();
    train_packed(&ctx, &starts, &mut obs).unwrap();
    assert!(seen.iter().all(|m| m.seen == vec![true; 3]), "packed members: {:?}", seen.iter().map(|m| &m.seen).collect::<Vec<_>>());
    assert!(!flush_denormal_enabled());
}

#[test]
fn the_denormal_switch_is_recorded_and_old_configs_keep_denormals() {
    let read = |path: &std::path::Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() };
    let default = tempdir("flush-default");
    let s = json(&train(&["mlp", "--iterations", "2", "--json", "--out", default.to_str().unwrap()]));
    assert_eq!(s["flush_denormals"], true, "flushed by default, as TF");
    assert_eq!(read(&default.join("config.json"))["flush_denormals"], true);

    let kept = tempdir("flush-off");
    let s = json(&train(&["mlp", "--iterations", "2", "--flush-denormals", "off", "--json", "--out", kept.to_str().unwrap()]));
    assert_eq!(s["flush_denormals"], false);
    assert_eq!(read(&kept.join("config.json"))["flush_denormals"], false);

    // A config.json from before the switch existed reruns as it ran: denormals kept.
    let mut old = read(&default.join("config.json"));
    old.as_object_mut().unwrap().remove("flush_denormals");
    let old_path = default.join("old-config.json");
    std::fs::write(&old_path, serde_json::to_string(&old).unwrap()).unwrap();
    let rerun = tempdir("flush-old");
    let s = json(&train(&["mlp", "--config", old_path.to_str().unwrap(), "--json", "--out", rerun.to_str().unwrap()]));
    assert_eq!(s["flush_denormals"], false);
}

#[test]
fn a_rerun_in_another_denormal_mode_names_the_difference_instead_of_mixing_modes() {
    let out = tempdir("flush-rerun");
    let dir = out.to_str().unwrap();
    train(&["mlp", "--seeds", "0..1", "--iterations", "2", "--out", dir]);
    // Seed 0 unfinished, as a stop would leave it; seed 1 finished.
    std::fs::remove_file(out.join("seed-0/summary.json")).unwrap();
    let rerun = crate::util::nndl()
        .args(["mlp", "--seeds", "0..1", "--iterations", "2", "--flush-denormals", "off", "--out", dir])
        .args(["--threads", "1", "--device", "cpu", "--quiet", "--data"]).arg(crate::util::mnist_dir())
        .output().unwrap();
    crate::util::assert_one_line_error(&rerun, "seed 0: ");
    let err = String::from_utf8_lossy(&rerun.stderr);
    assert!(err.contains("(flush_denormals true there, false here)") && err.contains("nndl resume"), "{err}");
    assert!(!out.join("seed-0/summary.json").exists(), "the unfinished run is left as it was");
}

#[test]
fn a_config_rerun_under_other_convolution_switches_says_its_bits_differ() {
    // NNDL_CNN_BIAS is the environment's, not config.json's; summary.json records it.
    let dir = tempdir("conv-plan-rerun");
    let cnn = |out: &str, config: Option<&str>, bias: &str| {
        let mut cmd = crate::util::nndl();
        cmd.args(["cnn", "--threads", "1", "--device", "cpu", "--data"]).arg(crate::util::mnist_dir()).env("NNDL_CNN_BIAS", bias);
        match config {
            Some(c) => cmd.arg("--config").arg(dir.join(c)),
            None => cmd.args(["--iterations", "2", "--eval-every", "2"]),
        };
        let out = cmd.arg("--out").arg(dir.join(out)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    cnn("pool", None, "pool");
    let other = cnn("other", Some("pool/config.json"), "conv");
    assert!(other.contains("computed its convolutions otherwise: channels-last layout, bias at the pool before and channels-last layout, bias at the conv now"), "{other}");
    let same = cnn("same", Some("pool/config.json"), "pool");
    assert!(!same.contains("convolutions otherwise"), "{same}");
    assert_eq!(std::fs::read(dir.join("same/model.safetensors")).unwrap(), std::fs::read(dir.join("pool/model.safetensors")).unwrap());
}

#[test]
fn switches_a_config_turned_on_can_be_turned_off_by_flags() {
    let dir = tempdir("switch-off");
    let saved = |run: &str| -> serde_json::Value { serde_json::from_slice(&std::fs::read(dir.join(run).join("config.json")).unwrap()).unwrap() };
    train(&["mlp", "--iterations", "2", "--allow-nan", "--deterministic", "--out", dir.join("on").to_str().unwrap()]);
    assert_eq!((saved("on")["allow_nan"].clone(), saved("on")["deterministic"].clone()), (true.into(), true.into()));
    let config = dir.join("on/config.json");
    train(&["mlp", "--config", config.to_str().unwrap(), "--allow-nan", "off", "--deterministic=off", "--out", dir.join("off").to_str().unwrap()]);
    assert_eq!((saved("off")["allow_nan"].clone(), saved("off")["deterministic"].clone()), (false.into(), false.into()));
}

#[test]
fn cuda_only_flags_on_the_cpu_get_a_note() {
    let dir = tempdir("cuda-only-flags");
    let stderr = |out: &str, flags: &[&str]| {
        let out = crate::util::nndl().args(["mlp", "--iterations", "2", "--threads", "1", "--device", "cpu", "--data"]).arg(crate::util::mnist_dir())
            .args(flags).arg("--out").arg(dir.join(out)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let both = stderr("both", &["--tf32", "on", "--deterministic"]);
    assert!(both.contains("note: --tf32 on and --deterministic act on CUDA only: this run is on the CPU, where they change nothing"), "{both}");
    let one = stderr("one", &["--deterministic"]);
    assert!(one.contains("note: --deterministic acts on CUDA only: this run is on the CPU, where it changes nothing"), "{one}");
    assert!(!stderr("none", &["--tf32", "off"]).contains("on CUDA only"));
}
