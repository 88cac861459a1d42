//! config.json reader: UTF-8 -> TrainConfig (serde) -> validate; a valid config's schedule and
//! evaluation points are then queried across the run.
//! Properties: no panic (no overflow, no division by zero); a valid config's learning rate is
//! finite, non-negative and at most its peak at every iteration; the last iteration is an
//! evaluation point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nndl::config::{Origin, TrainConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = serde_json::from_str::<TrainConfig>(text) else { return };
    let flags = cfg.validate(&Origin::Flags);
    let file = cfg.validate(&Origin::File("runs/x/config.json".into()));
    assert_eq!(flags.is_ok(), file.is_ok());
    if flags.is_err() {
        return;
    }
    let n = cfg.iterations;
    let mut probes = vec![0, 1, 2, n / 3, n / 2, n.saturating_sub(2), n - 1];
    if let nndl::config::Schedule::WarmupCosine { warmup } = cfg.schedule {
        probes.extend([warmup.saturating_sub(1), warmup, warmup + 1]);
    }
    for i in probes.into_iter().filter(|&i| i < n) {
        let lr = cfg.lr_at(i);
        assert!(lr.is_finite() && lr >= 0.0 && lr <= cfg.lr * (1.0 + 1e-12), "lr_at({i}) = {lr} for peak {}", cfg.lr);
        let _ = cfg.is_eval_point(i);
    }
    assert!(cfg.is_eval_point(n - 1));
    assert!(cfg.is_eval_point(0));
});
