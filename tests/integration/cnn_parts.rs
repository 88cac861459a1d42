//! The CNN's pieces: SAME padding, TF's flatten order, the truncated normal, both dropouts.
use nndl::config::{Dropout, Init};
use nndl::models::{cnn, conv_block, init};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

fn one_thread() {
    tch::set_num_threads(1);
}

#[test]
fn same_padding_gives_3136_features() {
    let _rng = crate::util::rng_lock();
    one_thread();
    let vs = nn::VarStore::new(Device::Cpu);
    let features = cnn::features(&vs.root(), Init::TruncatedNormal, conv_block::ConvPlan::for_device(Device::Cpu));
    let out = features.forward_t(&Tensor::zeros([3, 784], (Kind::Float, Device::Cpu)), false);
    assert_eq!(out.size(), vec![3, 7 * 7 * 64]);
    let net = cnn::cnn(&vs.root(), Init::TruncatedNormal, Dropout::None {}, conv_block::ConvPlan::for_device(Device::Cpu));
    assert_eq!(net.forward_t(&Tensor::zeros([2, 784], (Kind::Float, Device::Cpu)), false).size(), vec![2, 10]);
}

#[test]
fn flatten_uses_tf_nhwc_order() {
    // Value = c + 100 h + 10000 w at NCHW position (c, h, w); TF's reshape puts (h, w, c) at
    // h*7*64 + w*64 + c.
    let c = Tensor::arange(64, (Kind::Float, Device::Cpu)).view([1, 64, 1, 1]);
    let h = Tensor::arange(7, (Kind::Float, Device::Cpu)).view([1, 1, 7, 1]) * 100.0;
    let w = Tensor::arange(7, (Kind::Float, Device::Cpu)).view([1, 1, 1, 7]) * 10000.0;
    let x = c + h + w;
    let flat = cnn::flatten_nhwc(&x);
    for (hh, ww, cc) in [(0, 0, 5), (3, 2, 17), (6, 6, 63)] {
        let idx = hh * 7 * 64 + ww * 64 + cc;
        assert_eq!(flat.double_value(&[0, idx]), (cc + 100 * hh + 10000 * ww) as f64);
    }
}

#[test]
fn truncated_normal_stays_within_two_sigma() {
    let _rng = crate::util::rng_lock();
    one_thread();
    tch::manual_seed(1);
    let t = init::truncated_normal(&[200_000], 0.1, Device::Cpu);
    let max = t.abs().max().double_value(&[]);
    assert!(max <= 0.2 + 1e-7, "value beyond 2 sigma: {max}");
    let std = t.std(true).double_value(&[]);
    // Truncating N(0,1) at +-2 leaves a standard deviation of 0.8796.
    assert!((std / 0.1 - 0.8796).abs() < 0.01, "std {std}");
    assert!(t.mean(Kind::Float).double_value(&[]).abs() < 1e-3);
}

#[test]
fn faithful_dropout_keeps_a_quarter_scaled_by_four_in_training_and_evaluation() {
    let _rng = crate::util::rng_lock();
    one_thread();
    tch::manual_seed(2);
    let x = Tensor::ones([100_000], (Kind::Float, Device::Cpu));
    let mode = Dropout::KeepProb { keep_prob: 0.25, in_eval: true };
    for train in [true, false] {
        let y = cnn::dropout(&x, train, mode);
        let kept = y.ne(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((kept - 0.25).abs() < 0.01, "train={train}: kept {kept}");
        let values = y.masked_select(&y.ne(0.0));
        assert_eq!(values.min().double_value(&[]), 4.0);
        assert_eq!(values.max().double_value(&[]), 4.0);
    }
}

#[test]
fn modern_dropout_is_off_in_evaluation() {
    let _rng = crate::util::rng_lock();
    one_thread();
    let x = Tensor::ones([10_000], (Kind::Float, Device::Cpu));
    let mode = Dropout::KeepProb { keep_prob: 0.75, in_eval: false };
    assert!(cnn::dropout(&x, false, mode).equal(&x));
    let y = cnn::dropout(&x, true, mode);
    let kept = y.ne(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
}

#[test]
fn faithful_mlp_init_is_standard_normal() {
    let _rng = crate::util::rng_lock();
    one_thread();
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = nndl::models::mlp::mlp(&vs.root(), Init::RandomNormal);
    let vars = vs.variables();
    let w = &vars["fc1.weight"];
    assert_eq!(w.size(), vec![256, 784]);
    assert!((w.std(true).double_value(&[]) - 1.0).abs() < 0.01);
    assert!((vars["fc1.bias"].std(true).double_value(&[]) - 1.0).abs() < 0.2);
}

#[test]
fn recorded_dropout_draws_what_libtorch_draws() {
    let _rng = crate::util::rng_lock();
    // The explicit dropout behind --export-steps must be libtorch's, draw for draw.
    one_thread();
    let x = Tensor::randn([64, 1024], (Kind::Float, Device::Cpu));
    let mode = Dropout::KeepProb { keep_prob: 0.25, in_eval: true };
    tch::manual_seed(9);
    let plain = cnn::dropout(&x, true, mode);
    tch::manual_seed(9);
    cnn::record_masks();
    let recorded = cnn::dropout(&x, true, mode);
    let masks = cnn::take_masks();
    assert!(plain.equal(&recorded), "same draws, same values");
    assert_eq!(masks.len(), 1);
    assert!(masks[0].1.ne(0).equal(&plain.ne(0.0).logical_or(&x.eq(0.0))));
}
