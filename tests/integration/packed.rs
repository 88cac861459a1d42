//! Packed runs (`--seeds`, `sweep --pack`) against single runs: each member's per-step training
//! loss, its folder, its resume, and a diverging member that stops alone.
use crate::util::{json, metrics, mnist_dir, nndl, rng_lock, small_mnist, tempdir, train, PerStep};
use nndl::config::{ModelKind, Preset, TrainConfig};
use nndl::data::DeviceData;
use nndl::models::conv_block::{BiasAt, ConvPlan, Layout};
use nndl::packed::net::{log_likelihood_and_hits, Input, PackedNet};
use nndl::packed::trainer::{train_packed, MemberStart, PackContext};
use nndl::packed::{Arrangement, PackInfo};
use nndl::trainer::{self, Ending, Observer, TrainContext};
use std::process::Stdio;
use std::time::Duration;
use tch::Device;

fn config(model: ModelKind, preset: Preset, seed: u64, lr: f64, iterations: usize) -> TrainConfig {
    TrainConfig { seed, lr, iterations, ..TrainConfig::preset(model, preset) }
}

/// Three members from seed `first` on, at 1, 2 and 3 times the preset's learning rate.
fn three_members(model: ModelKind, preset: Preset, first: u64, iterations: usize) -> Vec<TrainConfig> {
    let lr = TrainConfig::preset(model, preset).lr;
    (0..3).map(|k| config(model, preset, first + k, lr * (1.0 + k as f64), iterations)).collect()
}

fn single(cfg: &TrainConfig, data: &DeviceData) -> (Vec<f64>, Ending) {
    single_with(cfg, data, ConvPlan::for_device(Device::Cpu))
}

/// A single run whose CNN computes its convolution blocks as `plan` says.
fn single_with(cfg: &TrainConfig, data: &DeviceData, plan: ConvPlan) -> (Vec<f64>, Ending) {
    let network = match cfg.model {
        ModelKind::Mlp => nndl::run::build_network(cfg, Device::Cpu),
        // As build_network builds it, with the given plan.
        ModelKind::Cnn => {
            tch::manual_seed(cfg.seed as i64);
            let vs = tch::nn::VarStore::new(Device::Cpu);
            nndl::run::Network { net: nndl::models::cnn::cnn(&vs.root(), cfg.init, cfg.dropout, plan), vs }
        }
    };
    let ctx = TrainContext { net: &network.net, vs: &network.vs, cfg, data, allow_graph: false, quiet: true, profile_steps: None };
    let mut obs = PerStep::new(|loss| loss);
    let outcome = trainer::train(&ctx, None, &mut obs).unwrap();
    (obs.seen, outcome.ending)
}

fn packed(cfgs: &[TrainConfig], data: &DeviceData) -> Vec<(Vec<f64>, Ending)> {
    packed_as(cfgs, data, None)
}

/// `stacked`: CUDA's way (stacked leaves, batched products, grouped convolutions in the given
/// layout) instead of the CPU's member by member.
fn packed_as(cfgs: &[TrainConfig], data: &DeviceData, stacked: Option<Layout>) -> Vec<(Vec<f64>, Ending)> {
    packed_with(cfgs, data, stacked, BiasAt::Conv)
}

fn packed_with(cfgs: &[TrainConfig], data: &DeviceData, stacked: Option<Layout>, bias_at: BiasAt) -> Vec<(Vec<f64>, Ending)> {
    packed_outcomes(cfgs, data, stacked, bias_at).into_iter().map(|(losses, out)| (losses, out.ending)).collect()
}

/// Each member's per-step losses and outcome (its evaluations included).
fn packed_outcomes(cfgs: &[TrainConfig], data: &DeviceData, stacked: Option<Layout>, bias_at: BiasAt) -> Vec<(Vec<f64>, trainer::TrainOutcome)> {
    packed_kept(cfgs, data, stacked, bias_at, Stacking::default()).into_iter().map(|(k, out)| (k.losses, out)).collect()
}

/// What an observer of a packed member keeps: each step's loss and its last checkpoint's tensors.
#[derive(Default)]
struct Kept {
    losses: Vec<f64>,
    checkpoint: std::collections::HashMap<String, tch::Tensor>,
}

impl Observer for Kept {
    fn on_eval(&mut self, _: &nndl::metrics::EvalPoint) -> anyhow::Result<()> {
        Ok(())
    }
    fn checkpoint_due(&mut self, _: usize) -> bool {
        false
    }
    fn on_checkpoint(&mut self, ck: &nndl::checkpoint::Checkpoint) -> anyhow::Result<()> {
        self.checkpoint = ck.tensors.iter().map(|(k, t)| (k.clone(), t.copy())).collect();
        Ok(())
    }
    fn stop_requested(&self) -> Option<i32> {
        None
    }
    fn on_loss(&mut self, _: usize, loss: f64) {
        self.losses.push(loss);
    }
}

/// How a stacked pack holds its members, beyond the default one stack of [M, out, in] weights.
#[derive(Clone, Copy, Default)]
struct Stacking {
    /// Linear weights kept [M, in, out] (NNDL_PACK_WEIGHTS=in-out).
    in_out: bool,
    /// Stacks of this many members (NNDL_PACK_STACK).
    stack: Option<i64>,
}

/// `packed_outcomes`, keeping each member's last checkpoint too, stacked as `stacking` says.
fn packed_kept(cfgs: &[TrainConfig], data: &DeviceData, stacked: Option<Layout>, bias_at: BiasAt, stacking: Stacking) -> Vec<(Kept, trainer::TrainOutcome)> {
    let mut networks = vec![];
    let mut starts = vec![];
    for cfg in cfgs {
        networks.push(nndl::run::build_network(cfg, Device::Cpu));
        starts.push(MemberStart::Fresh { rng: nndl::torch_extras::cpu_rng_state() });
    }
    let mut net = PackedNet::stack(cfgs[0].model, &networks, stacked.is_some()).unwrap();
    net.plan = ConvPlan { layout: stacked.unwrap_or(net.plan.layout), bias_at };
    if let Some(size) = stacking.stack {
        net.split_stacks(size);
    }
    if stacking.in_out {
        net.store_weights_in_out();
    }
    let ctx = PackContext { net: &net, cfgs, data, allow_graph: false, quiet: true, profile_steps: None };
    let mut observers: Vec<Kept> = cfgs.iter().map(|_| Kept::default()).collect();
    let mut obs: Vec<&mut dyn Observer> = observers.iter_mut().map(|o| o as &mut dyn Observer).collect();
    let outcomes = train_packed(&ctx, &starts, &mut obs).unwrap();
    observers.into_iter().zip(outcomes).collect()
}

/// How far tensor `a` is from `b`, relative to `b`'s norm.
fn norm_apart(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-30)
}

/// Each member's per-step relative loss differences from its single run.
fn compare(cfgs: &[TrainConfig], data: &DeviceData) -> Vec<Vec<f64>> {
    compare_as(cfgs, data, None)
}

fn compare_as(cfgs: &[TrainConfig], data: &DeviceData, stacked: Option<Layout>) -> Vec<Vec<f64>> {
    let members = packed_as(cfgs, data, stacked);
    cfgs.iter().zip(members).map(|(cfg, (losses, _))| {
        let (alone, _) = single(cfg, data);
        assert_eq!(losses.len(), alone.len());
        losses.iter().zip(&alone).map(|(a, b)| ((a - b) / b).abs()).collect()
    }).collect()
}

#[test]
fn cnn_members_follow_their_single_runs_for_20_steps() {
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    // Faithful (dropout in training and evaluation) and modern (Adam, schedule, shifts), each
    // member with its own seed and learning rate.
    for (preset, lrs) in [(Preset::Faithful, [0.01, 0.02, 0.005]), (Preset::Modern, [2e-3, 1e-3, 3e-3])] {
        let cfgs: Vec<TrainConfig> = lrs.iter().enumerate().map(|(k, &lr)| config(ModelKind::Cnn, preset, 10 + k as u64, lr, 20)).collect();
        for (k, rel) in compare(&cfgs, &data).iter().enumerate() {
            let worst = rel.iter().cloned().fold(0.0, f64::max);
            assert!(worst <= 1e-5, "{preset:?} member {k}: relative loss differences {rel:?}");
        }
    }
}

#[test]
fn mlp_members_follow_their_single_runs_for_5_steps() {
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    for preset in [Preset::Faithful, Preset::Modern] {
        let cfgs: Vec<TrainConfig> = [0.005, 0.01, 0.002, 0.02].iter().enumerate().map(|(k, &lr)| {
            let lr = if preset == Preset::Modern { lr / 2.5 } else { lr };
            config(ModelKind::Mlp, preset, k as u64, lr, 60)
        }).collect();
        for (k, rel) in compare(&cfgs, &data).iter().enumerate() {
            assert!(rel[..5].iter().all(|&r| r <= 1e-5), "{preset:?} member {k}: {:?}", &rel[..5]);
            // Where it drifts (the faithful MLP's N(0,1) start amplifies any rounding): shown,
            // not asserted; on this CPU the batched products are the single ones bit for bit.
            let first = rel.iter().position(|&r| r > 1e-5);
            eprintln!("{preset:?} MLP member {k}: first step beyond 1e-5: {first:?}; at step 60: {:.1e}", rel[59]);
        }
    }
}

#[test]
fn the_stacked_layout_computes_the_same_steps() {
    // CUDA's way, run on the CPU: the same losses until rounding differences grow (the CNN's
    // batched kernels round differently from the plain ones, and its early steps amplify that).
    // The CNN in both layouts (NCHW is CUDA's default, channels-last the CPU's); against single
    // runs that convolve channels-last here, NCHW's other rounding grows sooner: 3e-5 by step 3.
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    let cnn = |preset| [(ModelKind::Cnn, preset, 2, Layout::Nchw), (ModelKind::Cnn, preset, 3, Layout::ChannelsLast)];
    let mlp = |preset| [(ModelKind::Mlp, preset, 5, Layout::Nchw)];
    let cases = [mlp(Preset::Faithful).as_slice(), &mlp(Preset::Modern), &cnn(Preset::Faithful), &cnn(Preset::Modern)].concat();
    for (model, preset, steps, layout) in cases {
        let cfgs = three_members(model, preset, 0, steps);
        for (k, rel) in compare_as(&cfgs, &data, Some(layout)).iter().enumerate() {
            assert!(rel.iter().all(|&r| r <= 1e-5), "{model:?} {preset:?} {layout:?} member {k}: {rel:?}");
        }
    }
}

#[test]
fn the_bias_after_pooling_keeps_packs_with_their_single_runs() {
    // NNDL_CNN_BIAS=pool: members (member by member, and stacked in grouped convolutions)
    // against single runs taking the same route; then the route against the homework's order,
    // whose first steps it follows until the early steps amplify its other rounding.
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    for (stacked, steps) in [(None, 20), (Some(Layout::Nchw), 3), (Some(Layout::ChannelsLast), 3)] {
        let cfgs = three_members(ModelKind::Cnn, Preset::Faithful, 30, steps);
        let members = packed_with(&cfgs, &data, stacked, BiasAt::Pool);
        let layout = stacked.unwrap_or(Layout::for_device(Device::Cpu));
        for (k, (cfg, (losses, _))) in cfgs.iter().zip(members).enumerate() {
            let (alone, _) = single_with(cfg, &data, ConvPlan { layout, bias_at: BiasAt::Pool });
            let rel: Vec<f64> = losses.iter().zip(&alone).map(|(a, b)| ((a - b) / b).abs()).collect();
            assert!(rel.len() == steps && rel.iter().all(|&r| r <= 1e-5), "{stacked:?} member {k}: {rel:?}");
        }
    }
    let cfg = config(ModelKind::Cnn, Preset::Faithful, 31, 0.01, 20);
    let (pool, _) = single_with(&cfg, &data, ConvPlan { bias_at: BiasAt::Pool, ..ConvPlan::for_device(Device::Cpu) });
    let (homework, _) = single(&cfg, &data);
    let rel: Vec<f64> = pool.iter().zip(&homework).map(|(a, b)| ((a - b) / b).abs()).collect();
    assert!(rel[..3].iter().all(|&r| r <= 1e-6), "{rel:?}");
    eprintln!("bias after pooling: first step beyond 1e-5: {:?}; at step 20: {:.1e}", rel.iter().position(|&r| r > 1e-5), rel[19]);
}

#[test]
fn each_arrangement_adds_the_bias_where_its_plan_says() {
    // Both places give the same values, so gradients tell them apart: a conv2 bias of 2^24 ties
    // every window's values at the convolution, whose gradient then goes to each window's first
    // element, where after the pooling it goes to the largest. Stacked and member by member,
    // the same place gives the same conv2 gradients (to the grouped convolutions' rounding).
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    let cfgs = three_members(ModelKind::Cnn, Preset::Faithful, 40, 1);
    let conv2_grads = |stacked: bool, bias_at: BiasAt| -> tch::Tensor {
        let networks: Vec<_> = cfgs.iter().map(|c| nndl::run::build_network(c, Device::Cpu)).collect();
        let mut net = PackedNet::stack(ModelKind::Cnn, &networks, stacked).unwrap();
        net.plan = ConvPlan { layout: Layout::Nchw, bias_at };
        tch::no_grad(|| net.leaves.iter().filter(|l| l.name == "conv2.bias").for_each(|l| {
            let _ = l.tensor.shallow_clone().fill_(16777216.0);
        }));
        let images = data.train.images.narrow(0, 0, 3 * 8).view([3, 8, 784]);
        let labels = data.train.labels.narrow(0, 0, 3 * 8).view([3, 8]);
        let (likelihood, _) = log_likelihood_and_hits(&net.forward(Input::PerMember(&images), None), &labels, !net.stacked);
        let weights: Vec<&tch::Tensor> = net.leaves.iter().filter(|l| l.name == "conv2.weight").map(|l| &l.tensor).collect();
        let grads = tch::Tensor::run_backward(&[-likelihood.sum(tch::Kind::Float)], &weights, false, false);
        tch::Tensor::stack(&grads, 0).view([3, -1])
    };
    let apart = conv2_grads(false, BiasAt::Pool);
    let rel = |g: &tch::Tensor| norm_apart(g, &apart);
    assert!(rel(&conv2_grads(true, BiasAt::Pool)) <= 1e-4, "stacked: {:e}", rel(&conv2_grads(true, BiasAt::Pool)));
    for stacked in [false, true] {
        assert!(rel(&conv2_grads(stacked, BiasAt::Conv)) > 0.1, "stacked {stacked}: the bias at the convolution should route elsewhere");
    }
}

#[test]
fn stacked_evaluations_are_the_members_own() {
    // Evaluation shares the test images among members: stacked, the first layer is one wide
    // product for all of them, the MLP's members take whole chunks and the CNN's sub-chunks.
    // Against member by member, after one step (whose rounding already differs a little).
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    for model in [ModelKind::Mlp, ModelKind::Cnn] {
        let cfgs = three_members(model, Preset::Faithful, 20, 1);
        let stacked = packed_outcomes(&cfgs, &data, Some(Layout::Nchw), BiasAt::Conv);
        let apart = packed_outcomes(&cfgs, &data, None, BiasAt::Conv);
        for (k, ((_, s), (_, a))) in stacked.iter().zip(&apart).enumerate() {
            // Each outcome says how its member trained.
            assert_eq!(s.pack, Some(PackInfo { members: 3, arrangement: Arrangement::Stacked, stack: None }));
            assert_eq!(a.pack, Some(PackInfo { members: 3, arrangement: Arrangement::InTurn, stack: None }));
            let (s, a) = (&s.points[0], &a.points[0]);
            let rel = ((s.test_loss - a.test_loss) / a.test_loss).abs();
            assert!(rel <= 1e-4, "{model:?} member {k}: test loss {} stacked, {} apart", s.test_loss, a.test_loss);
            assert!((s.test_accuracy - a.test_accuracy).abs() <= 1.0 / 200.0, "{model:?} member {k}: accuracy {} vs {}", s.test_accuracy, a.test_accuracy);
        }
    }
}

#[test]
fn weights_stored_in_out_train_and_checkpoint_as_the_members_own() {
    // NNDL_PACK_WEIGHTS=in-out: stacked linear weights kept [M, in, out]. Against the default
    // stacked pack: the same steps (step 1 to rounding; the MLP's chaotic start then amplifies
    // it), the same evaluations, and checkpoints in a single run's shapes with its values. fc2
    // of the MLP is square, so a member's weights left untransposed would keep their shape
    // and fail on their values; Adam's moments (modern) are checkpointed the same way.
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    for (model, preset, steps) in [(ModelKind::Mlp, Preset::Faithful, 5), (ModelKind::Mlp, Preset::Modern, 5), (ModelKind::Cnn, Preset::Faithful, 3)] {
        let cfgs = three_members(model, preset, 30, steps);
        let default = packed_kept(&cfgs, &data, Some(Layout::Nchw), BiasAt::Conv, Stacking::default());
        let in_out = packed_kept(&cfgs, &data, Some(Layout::Nchw), BiasAt::Conv, Stacking { in_out: true, stack: None });
        for (k, ((d, d_out), (io, io_out))) in default.iter().zip(&in_out).enumerate() {
            let about = format!("{model:?} {preset:?} member {k}");
            assert_eq!(io_out.pack, Some(PackInfo { members: 3, arrangement: Arrangement::StackedInOut, stack: None }), "{about}");
            let rel: Vec<f64> = io.losses.iter().zip(&d.losses).map(|(a, b)| ((a - b) / b).abs()).collect();
            assert!(rel.len() == steps && rel[0] <= 1e-5 && rel.iter().all(|&r| r <= 1e-3), "{about}: losses {rel:?}");
            let (p, q) = (&io_out.points[0], &d_out.points[0]);
            assert!(((p.test_loss - q.test_loss) / q.test_loss).abs() <= 1e-3, "{about}: test loss {} against {}", p.test_loss, q.test_loss);
            let mut keys: Vec<&String> = d.checkpoint.keys().collect();
            keys.sort();
            assert_eq!(keys, { let mut k: Vec<&String> = io.checkpoint.keys().collect(); k.sort(); k }, "{about}");
            for key in keys.into_iter().filter(|k| k.starts_with("param.") || k.starts_with("adam.")) {
                let (a, b) = (&io.checkpoint[key], &d.checkpoint[key]);
                assert_eq!(a.size(), b.size(), "{about}: {key}");
                let apart = norm_apart(a, b);
                assert!(apart <= 1e-3, "{about}: {key} {apart:e} from the default pack's");
            }
        }
    }
}

#[test]
fn stacks_of_a_few_members_train_as_the_one_stack_does() {
    // NNDL_PACK_STACK=2: three members in a stack of 2 and a stack of 1, each a batched model
    // of its own (on CUDA each on a stream of its own; here one after another). Against the
    // default single stack: every step's loss, the evaluations and every checkpoint tensor
    // equal, bit for bit (the CPU's batched kernels compute member by member, and each
    // member's learning rate, 1, 2 and 3 times the preset's, must reach its own stack's slot);
    // with the weights kept [M, in, out] too, the same values as in-out alone. One exception:
    // the CNN's stack of one member runs plain convolutions (one group), which round
    // differently (6e-8 at step 2 here): within 1e-5.
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    let stacks = |in_out| Stacking { in_out, stack: Some(2) };
    for (model, preset, steps, in_out) in [(ModelKind::Mlp, Preset::Faithful, 5, false), (ModelKind::Mlp, Preset::Modern, 5, true), (ModelKind::Cnn, Preset::Faithful, 3, false)] {
        let cfgs = three_members(model, preset, 40, steps);
        let one = packed_kept(&cfgs, &data, Some(Layout::Nchw), BiasAt::Conv, Stacking { in_out, stack: None });
        let split = packed_kept(&cfgs, &data, Some(Layout::Nchw), BiasAt::Conv, stacks(in_out));
        for (k, ((o, o_out), (s, s_out))) in one.iter().zip(&split).enumerate() {
            let about = format!("{model:?} {preset:?} member {k}");
            let arrangement = if in_out { Arrangement::StacksInOut } else { Arrangement::Stacks };
            assert_eq!(s_out.pack, Some(PackInfo { members: 3, arrangement, stack: Some(2) }), "{about}");
            assert!(!s.checkpoint.is_empty() && s.checkpoint.len() == o.checkpoint.len(), "{about}");
            if model == ModelKind::Cnn && k == 2 {
                let rel = |a: f64, b: f64| ((a - b) / b).abs();
                assert!(s.losses.len() == steps && s.losses.iter().zip(&o.losses).all(|(a, b)| rel(*a, *b) <= 1e-5), "{about}: {:?} against {:?}", s.losses, o.losses);
                assert!(rel(s_out.points[0].test_loss, o_out.points[0].test_loss) <= 1e-5, "{about}");
                for (key, a) in &s.checkpoint {
                    let b = &o.checkpoint[key];
                    if a.kind() != tch::Kind::Float {
                        assert!(a.equal(b), "{about}: {key} differs from the one stack's");
                        continue;
                    }
                    let apart = norm_apart(a, b);
                    assert!(apart <= 1e-5, "{about}: {key} {apart:e} from the one stack's");
                }
                continue;
            }
            assert_eq!((s.losses.len(), &s.losses), (steps, &o.losses), "{about}");
            assert_eq!((s_out.points[0].test_loss, s_out.points[0].test_accuracy), (o_out.points[0].test_loss, o_out.points[0].test_accuracy), "{about}");
            for (key, a) in &s.checkpoint {
                assert!(a.equal(&o.checkpoint[key]), "{about}: {key} differs from the one stack's");
            }
        }
    }
}

#[test]
fn sub_packs_side_by_side_draw_their_own_members_masks() {
    // A pack split over two threads: each sub-pack swaps its members' states in and out of
    // libtorch's one CPU generator while the other draws too. Every mask must still be the one
    // its member draws alone.
    use nndl::packed::rngs::MemberRngs;
    let _rng = rng_lock();
    let states: Vec<Vec<Vec<u8>>> = (0..2).map(|part| (0..2).map(|m| {
        tch::manual_seed(10 * part + m);
        nndl::torch_extras::cpu_rng_state()
    }).collect()).collect();
    let draw_all = |states: Vec<Vec<u8>>| -> Vec<tch::Tensor> {
        let mut rngs = MemberRngs::new(Device::Cpu, states);
        (0..30).map(|_| rngs.dropout_noise(2, 256, 1024, 0.25, Device::Cpu).unwrap()).collect()
    };
    let alone: Vec<Vec<tch::Tensor>> = states.iter().cloned().map(draw_all).collect();
    let side_by_side: Vec<Vec<tch::Tensor>> = std::thread::scope(|scope| {
        let parts: Vec<_> = states.iter().cloned().map(|s| scope.spawn(move || draw_all(s))).collect();
        parts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    for (part, (a, b)) in alone.iter().zip(&side_by_side).enumerate() {
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(x.equal(y), "sub-pack {part}, draw {k}: a mask differs from the member's own");
        }
    }
}

#[test]
fn a_diverging_member_stops_alone() {
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let data = small_mnist();
    let cfgs = [config(ModelKind::Mlp, Preset::Faithful, 0, 0.005, 40), config(ModelKind::Mlp, Preset::Faithful, 1, 1e6, 40)];
    let members = packed(&cfgs, &data);
    assert!(matches!(members[1].1, Ending::Diverged { exact: true, .. }), "{:?}", members[1].1);
    assert_eq!(members[0].1, Ending::Finished);
    let (alone, _) = single(&cfgs[0], &data);
    let rel = members[0].0.iter().zip(&alone).map(|(a, b)| ((a - b) / b).abs()).fold(0.0, f64::max);
    assert!(rel <= 1e-5, "the healthy member drifted from its single run: {rel:e}");
}

#[test]
fn seeds_write_ordinary_run_folders() {
    let dir = tempdir("seeds");
    let out = train(&["mlp", "--seeds", "3..5", "--iterations", "1", "--json", "--out", dir.join("pack").to_str().unwrap()]);
    let runs = json(&out)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 3);
    // The CPU's default pack for the MLP is 10; three seeds make a pack of three.
    assert_eq!(json(&out)["pack"], 3, "the most members a pack took");
    for (seed, row) in (3..=5).zip(&runs) {
        assert_eq!(row["state"], "done");
        assert_eq!(row["summary"]["pack"], serde_json::json!({ "members": 3, "arrangement": "in-turn" }), "how the member trained");
        let member = dir.join(format!("pack/seed-{seed}"));
        for f in ["config.json", "metrics.csv", "summary.json", "model.safetensors", "checkpoint.safetensors", "mlp-loss.png"] {
            assert!(member.join(f).is_file(), "{} lacks {f}", member.display());
        }
        // One step from the same start: the weights are the single run's.
        train(&["mlp", "--seed", &seed.to_string(), "--iterations", "1", "--out", dir.join(format!("alone-{seed}")).to_str().unwrap()]);
        let load = |d: &std::path::Path| {
            let mut tensors = tch::Tensor::read_safetensors(d.join("model.safetensors")).unwrap();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            tensors
        };
        for ((name, a), (other, b)) in load(&member).iter().zip(load(&dir.join(format!("alone-{seed}")))) {
            assert_eq!(name, &other);
            let diff = (a - &b).abs().max().double_value(&[]);
            assert!(diff <= 1e-6, "seed {seed}: {name} differs by {diff}");
        }
        assert_eq!(metrics(&member).len(), metrics(&dir.join(format!("alone-{seed}"))).len());
        let alone: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("alone-{seed}/summary.json"))).unwrap()).unwrap();
        assert!(alone["pack"].is_null(), "a single run was in no pack");
        assert!(alone["convolutions"].is_null(), "the MLP has no convolutions");
    }
    // Run again: every seed is already done.
    let again = train(&["mlp", "--seeds", "3..5", "--iterations", "1", "--json", "--out", dir.join("pack").to_str().unwrap()]);
    assert!(json(&again)["runs"].as_array().unwrap().iter().all(|r| r["state"] == "already_done"));
}

#[test]
fn packed_members_write_their_single_runs_files_byte_for_byte() {
    // On the CPU a member computes its single run's ops one thread wide, its losses by the
    // single run's own kernel too: a split pack's metrics (training sums, test losses) and
    // weights equal one-thread single runs' to the last bit. MLP and faithful CNN (dropout in
    // training and evaluation).
    let dir = tempdir("pack-bytes");
    for (model, iterations) in [("mlp", "40"), ("cnn", "6")] {
        let pack = dir.join(format!("{model}-pack"));
        let out = nndl().args([model, "--seeds", "0..2", "--iterations", iterations, "--eval-every", "3", "--threads", "2", "--device", "cpu", "--quiet", "--data"])
            .arg(mnist_dir()).arg("--out").arg(&pack).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for seed in 0..3 {
            let alone = dir.join(format!("{model}-{seed}"));
            train(&[model, "--seed", &seed.to_string(), "--iterations", iterations, "--eval-every", "3", "--out", alone.to_str().unwrap()]);
            for f in ["metrics.csv", "model.safetensors"] {
                let member = pack.join(format!("seed-{seed}")).join(f);
                assert!(std::fs::read(&member).unwrap() == std::fs::read(alone.join(f)).unwrap(), "{} differs from {}", member.display(), alone.join(f).display());
            }
        }
    }
}

#[test]
fn a_member_resumed_alone_computes_on_its_own_threads() {
    // A split pack's members compute one thread wide. Stopped at different steps (each
    // sub-pack checkpoints and stops on its own), they resume in smaller groups, here seed 0
    // alone (seed 1's folder removed: it starts again, a fresh run on both threads): on the one
    // thread it started on, not on the command's two, whose convolutions round otherwise. It
    // ends as the uninterrupted pack's seed 0.
    let dir = tempdir("alone-threads");
    let seeds = |out: &std::path::Path| {
        let mut cmd = nndl();
        cmd.args(["cnn", "--seeds", "0..1", "--iterations", "30", "--eval-every", "10", "--checkpoint-every", "5", "--threads", "2", "--device", "cpu", "--quiet", "--data"])
            .arg(mnist_dir()).arg("--out").arg(out);
        cmd
    };
    let (reference, stopped) = (dir.join("reference"), dir.join("stopped"));
    assert!(seeds(&reference).status().unwrap().success());
    let mut child = seeds(&stopped).stderr(std::process::Stdio::null()).spawn().unwrap();
    let waited = std::time::Instant::now();
    while !stopped.join("seed-0/checkpoint.safetensors").exists() {
        assert!(waited.elapsed().as_secs() < 120, "no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(!stopped.join("seed-0/summary.json").exists(), "seed 0 finished before the signal");
    std::fs::remove_dir_all(stopped.join("seed-1")).unwrap();
    assert!(seeds(&stopped).status().unwrap().success());
    for f in ["metrics.csv", "model.safetensors"] {
        let (a, b) = (reference.join(format!("seed-0/{f}")), stopped.join(format!("seed-0/{f}")));
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{} differs from {}", b.display(), a.display());
    }
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(stopped.join("seed-0/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["threads"], 1, "the resumed member says the threads it computed on");
}

#[test]
fn killed_packed_modern_cnn_resumes_bit_for_bit_and_splits_alike() {
    // Adam's moments, each member's generator (dropout, shifts) and batch order come back from
    // the members' checkpoints, and the rerun packs them again. The uninterrupted run has two
    // threads, so its pack is split into two single-threaded sub-packs drawing side by side;
    // the interrupted one trains both members in one thread: their files must agree all the same.
    let dir = tempdir("seeds-kill");
    let args = ["cnn", "--preset", "modern", "--seeds", "0..1", "--pack", "2", "--iterations", "24", "--eval-every", "12", "--checkpoint-every", "4"];
    let common = ["--device", "cpu", "--threads", "1", "--quiet", "--data"];
    let whole = nndl().args(args).args(["--device", "cpu", "--threads", "2", "--quiet", "--data"]).arg(mnist_dir()).arg("--out").arg(dir.join("whole")).output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("whole/seed-0/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["threads"], 1, "a split member's config names the one thread it computed on");
    let cut = dir.join("cut");
    let mut child = nndl().args(args).args(common).arg(mnist_dir()).arg("--out").arg(&cut).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = std::time::Instant::now();
    while !cut.join("seed-1/checkpoint.safetensors").exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.join("seed-1/summary.json").exists(), "killed before the end");
    let rerun = train(&[&args[..], &["--json", "--out", cut.to_str().unwrap()]].concat());
    assert!(json(&rerun)["runs"].as_array().unwrap().iter().all(|r| r["summary"]["resumed"] == true));
    for seed in ["seed-0", "seed-1"] {
        for f in ["metrics.csv", "model.safetensors"] {
            assert!(std::fs::read(dir.join("whole").join(seed).join(f)).unwrap() == std::fs::read(cut.join(seed).join(f)).unwrap(), "{seed}/{f} differs");
        }
    }
}

#[test]
fn sigint_stops_the_pack_and_leaves_the_later_seeds_unstarted() {
    let dir = tempdir("seeds-int");
    let out = dir.join("seeds");
    let child = nndl().args(["mlp", "--seeds", "0..2", "--pack", "1", "--iterations", "100000", "--checkpoint-every", "50", "--json"])
        .args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir()).arg("--out").arg(&out)
        .stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    while !out.join("seed-0/checkpoint.safetensors").exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let end = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&end.stderr);
    assert_eq!(end.status.code(), Some(130), "{err}");
    assert!(err.contains("rerun the same command to continue the seeds"), "{err}");
    let runs = json(&end)["runs"].as_array().unwrap().clone();
    assert_eq!(runs[0]["state"], "interrupted");
    assert_eq!((&runs[1]["started"], &runs[2]["started"]), (&serde_json::json!(false), &serde_json::json!(false)));
    assert!(!out.join("seed-1/metrics.csv").exists() && !out.join("seed-2/metrics.csv").exists());
}

#[test]
fn seeds_with_pack_1_are_their_single_runs_file_for_file() {
    // `--pack 1` turns packing off: each seed runs the single run's own loop, so its metrics
    // (the running training sums included) equal `--seed N`'s to the last digit.
    let dir = tempdir("pack-one");
    let (single, packs) = (dir.join("single"), dir.join("packs"));
    train(&["mlp", "--seed", "2", "--iterations", "30", "--eval-every", "10", "--out", single.to_str().unwrap()]);
    train(&["mlp", "--seeds", "2", "--pack", "1", "--iterations", "30", "--eval-every", "10", "--out", packs.to_str().unwrap()]);
    for f in ["metrics.csv", "model.safetensors"] {
        assert!(std::fs::read(single.join(f)).unwrap() == std::fs::read(packs.join("seed-2").join(f)).unwrap(), "{f} differs");
    }
}

#[test]
fn many_seeds_hold_one_packs_folders_at_a_time() {
    // Each claimed folder holds its lock's file open: 40 seeds in packs of 10 under a limit of
    // 48 open files train when only the pack in hand is claimed.
    let dir = tempdir("seeds-fds");
    let out = dir.join("seeds");
    let script = format!("ulimit -n 48 && exec \"$0\" mlp --seeds 0..39 --pack 10 --iterations 1 --device cpu --threads 1 --quiet --json --data {} --out {}",
        mnist_dir().display(), out.display());
    let end = std::process::Command::new("sh").arg("-c").arg(&script).arg(env!("CARGO_BIN_EXE_nndl")).output().unwrap();
    assert!(end.status.success(), "{}", String::from_utf8_lossy(&end.stderr));
    assert_eq!(json(&end)["runs"].as_array().unwrap().iter().filter(|r| r["state"] == "done").count(), 40);
}

#[test]
fn a_member_with_another_runs_checkpoint_is_refused() {
    // A checkpoint copied in from another run would continue that run's parameters under this
    // seed's name: refused in one line naming the file, as `nndl resume` refuses it.
    let dir = tempdir("seeds-foreign-ck");
    let (other, seeds) = (dir.join("other"), dir.join("seeds"));
    train(&["mlp", "--seed", "4", "--lr", "0.01", "--iterations", "20", "--eval-every", "10", "--out", other.to_str().unwrap()]);
    train(&["mlp", "--seeds", "2", "--iterations", "20", "--eval-every", "10", "--out", seeds.to_str().unwrap()]);
    std::fs::remove_file(seeds.join("seed-2/summary.json")).unwrap();
    std::fs::copy(other.join("checkpoint.safetensors"), seeds.join("seed-2/checkpoint.safetensors")).unwrap();
    let out = nndl().args(["mlp", "--seeds", "2", "--iterations", "20", "--eval-every", "10", "--device", "cpu", "--threads", "1", "--quiet", "--data"])
        .arg(mnist_dir()).arg("--out").arg(&seeds).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("checkpoint.safetensors was written by another config than"), "{err}");
    assert!(!seeds.join("seed-2/summary.json").exists());
}

#[test]
fn a_failed_member_records_why_in_its_folder() {
    // As a sweep's trial does: failed.txt, which `nndl report` shows and a rerun names.
    let dir = tempdir("member-failed");
    let out = dir.join("seeds");
    let args = ["mlp", "--seeds", "0..1", "--iterations", "20", "--eval-every", "10", "--checkpoint-every", "10", "--out", out.to_str().unwrap()];
    train(&args);
    std::fs::remove_file(out.join("seed-1/summary.json")).unwrap();
    let checkpoint = out.join("seed-1/checkpoint.safetensors");
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&checkpoint, bytes).unwrap();
    let again = nndl().args(args).args(["--threads", "1", "--device", "cpu", "--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    let recorded = std::fs::read_to_string(out.join("seed-1/failed.txt")).unwrap();
    assert!(recorded.contains("do not match the checksum"), "{recorded}");
    let report = nndl().arg("report").arg(&out).args(["--json", "--quiet"]).output().unwrap();
    let failed = &json(&report)["configurations"][0]["failed"][0];
    assert!(failed["seed"] == 1 && failed["reason"].as_str().unwrap().contains("checksum"), "{failed}");
}

#[test]
fn a_member_that_cannot_write_its_first_files_fails_alone() {
    // seed-1's metrics.csv is a folder (its log cannot start); seed-2 is a file system with no
    // inode left for its config.json once its lock and marker are made. Seed 0 trains on in the
    // pack, and each failure names its own member's file.
    let dir = tempdir("member-setup");
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(seeds.join("seed-1/metrics.csv/in-the-way")).unwrap();
    std::fs::write(seeds.join("seed-1/.nndl-run"), "{}").unwrap();
    let full = seeds.join("seed-2");
    std::fs::create_dir_all(&full).unwrap();
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m,nr_inodes=3", "tmpfs"]).arg(&full).status().unwrap().success());
    let out = nndl().args(["mlp", "--seeds", "0..2", "--iterations", "20", "--eval-every", "10", "--threads", "1", "--device", "cpu", "--quiet", "--data"])
        .arg(mnist_dir()).arg("--out").arg(&seeds).output().unwrap();
    let finished: Vec<bool> = (0..3).map(|k| seeds.join(format!("seed-{k}/summary.json")).is_file()).collect();
    let _ = std::process::Command::new("umount").arg(&full).status();
    let alone = "(it stopped alone; once mended, the same command continues it)";
    let want = format!("nndl: error: 2 of 3 seeds failed: seed 1: cannot write {}: Is a directory (os error 21) {alone}; seed 2: no space left on device writing {} {alone}",
        seeds.join("seed-1/metrics.csv").display(), seeds.join("seed-2/config.json").display());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), want);
    assert_eq!(finished, [true, false, false]);
    let recorded = std::fs::read_to_string(seeds.join("seed-1/failed.txt")).unwrap();
    assert!(recorded.contains("seed-1/metrics.csv") && !seeds.join("seed-0/failed.txt").exists(), "{recorded}");
}
