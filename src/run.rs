//! `nndl mlp` / `nndl cnn`: one training run into one folder (config, metrics, summary, figures).
use crate::artifacts::{default_out, MetricRow, RunDir};
use crate::cli::{CommonArgs, TrainArgs};
use crate::config::{ModelKind, TrainConfig};
use crate::data::Mnist;
use crate::plot::{line_chart, Scale, Series};
use crate::train::{self, DeviceSplit, EvalPoint};
use crate::{device, progress};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::{nn, Device};

/// Where and how a run executes.
pub struct Runtime {
    pub device: Device,
    pub quiet: bool,
    /// Replay the training step as a CUDA graph where the run allows it.
    pub cuda_graph: bool,
}

/// Sets libtorch's threads and picks the device; prints the CPU fall-back note once.
pub fn runtime(common: &CommonArgs) -> Result<Runtime> {
    if let Some(n) = common.threads {
        if n == 0 {
            bail!("invalid --threads 0: must be at least 1");
        }
        tch::set_num_threads(n as i32);
    }
    let (device, note) = device::resolve(&common.device)?;
    if let (Some(note), false) = (note, common.output.quiet) {
        eprintln!("note: {note}");
    }
    Ok(Runtime { device, quiet: common.output.quiet, cuda_graph: !common.no_cuda_graph })
}

/// MNIST's training and test splits, on the device.
pub struct DeviceData {
    pub train: DeviceSplit,
    pub test: DeviceSplit,
}

pub fn load_data(flag: Option<&std::path::Path>, device: Device) -> Result<DeviceData> {
    let dir = crate::data::mnist::resolve_dir(flag);
    let mnist = Mnist::load(&dir)?;
    Ok(DeviceData { train: DeviceSplit::upload(&mnist.train, device), test: DeviceSplit::upload(&mnist.test, device) })
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub model: &'static str,
    pub preset: &'static str,
    pub device: String,
    pub threads: i32,
    pub seed: u64,
    pub iterations: usize,
    pub final_test_loss: f64,
    pub final_test_accuracy: f64,
    pub final_train_loss: f64,
    pub final_train_accuracy: f64,
    pub best_test_accuracy: f64,
    pub seed_test_loss: f64,
    pub seed_test_accuracy: f64,
    /// The training loop, evaluations included.
    pub train_seconds: f64,
    /// Of which evaluations on the test set.
    pub eval_seconds: f64,
    pub evaluations: usize,
    /// Whether the training steps ran as a replayed CUDA graph.
    pub cuda_graph: bool,
    pub wall_seconds: f64,
    pub out_dir: PathBuf,
}

/// Builds the config from the preset or a saved file, then applies flag overrides.
pub fn config_from_args(model: ModelKind, args: &TrainArgs) -> Result<TrainConfig> {
    let mut cfg = match &args.config {
        Some(path) => TrainConfig::load(path)?,
        None => TrainConfig::preset(model, args.preset),
    };
    if cfg.model != model {
        bail!("config is for the {} but this command trains the {}", cfg.model.name(), model.name());
    }
    cfg.lr = args.lr.unwrap_or(cfg.lr);
    cfg.batch_size = args.batch_size.unwrap_or(cfg.batch_size);
    cfg.iterations = args.iterations.unwrap_or(cfg.iterations);
    cfg.eval_every = args.eval_every.unwrap_or(cfg.eval_every);
    cfg.seed = args.seed.unwrap_or(cfg.seed);
    cfg.validate()?;
    Ok(cfg)
}

/// `nndl mlp|cnn`: validate everything, then train and write the run folder.
pub fn command(model: ModelKind, args: &TrainArgs) -> Result<RunSummary> {
    let started = Instant::now();
    let cfg = config_from_args(model, args)?;
    let common = &args.common;
    let out = common.output.out.clone().unwrap_or_else(|| default_out(&format!("{}-{}", model.name(), cfg.preset.name())));
    let rt = runtime(common)?;
    let data = load_data(common.data.as_deref(), rt.device)?;
    let run = RunDir::create(&out, common.output.force)?;
    let network = build_network(&cfg, rt.device);
    if let Some(dir) = &args.export_init {
        crate::export::export_init(dir, &network.vs, &cfg, data.train.len() as usize)?;
    }
    let pb = progress::bar(cfg.iterations as u64, model.name(), common.output.quiet);
    let summary = train_into(&cfg, &network, &data, &run, &rt, &pb, started)?;
    pb.finish_and_clear();
    Ok(summary)
}

/// A network and the variables it trains.
pub struct Network {
    pub vs: nn::VarStore,
    pub net: nn::SequentialT,
}

/// Seeds libtorch and builds the configured network on `device`.
pub fn build_network(cfg: &TrainConfig, device: Device) -> Network {
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = crate::models::build(&vs.root(), cfg);
    Network { vs, net }
}

/// Trains one configured network and writes config.json, metrics.csv, summary.json and the
/// `<model>-loss.png` / `<model>-accuracy.png` figures into `run`.
pub fn train_into(
    cfg: &TrainConfig,
    network: &Network,
    data: &DeviceData,
    run: &RunDir,
    rt: &Runtime,
    pb: &indicatif::ProgressBar,
    started: Instant,
) -> Result<RunSummary> {
    let (device, quiet) = (rt.device, rt.quiet);
    run.write_json("config.json", cfg)?;
    let name = cfg.model.name();
    let train_start = Instant::now();
    let outcome = train::train(&network.net, &network.vs, cfg, &data.train, &data.test, rt.cuda_graph, pb, |p| {
        pb.set_message(format!("test acc {:.2}%", 100.0 * p.test_accuracy));
        progress::log(pb, quiet, &format!(
            "{name} iter {:>5}: train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4}",
            p.iteration, p.train_loss, p.train_accuracy, p.test_loss, p.test_accuracy));
    })?;
    let train_seconds = train_start.elapsed().as_secs_f64();
    let points = outcome.points;
    let rows: Vec<MetricRow> = points.iter().flat_map(EvalPoint::rows).collect();
    run.write_metrics("metrics.csv", &rows)?;
    write_figures(run, name, &points)?;
    let last = points.last().context("training produced no evaluation")?;
    let (seed_test_loss, seed_test_accuracy) = cfg.model.seed_result();
    let summary = RunSummary {
        model: name,
        preset: cfg.preset.name(),
        device: device::name(device),
        threads: tch::get_num_threads(),
        seed: cfg.seed,
        iterations: cfg.iterations,
        final_test_loss: last.test_loss,
        final_test_accuracy: last.test_accuracy,
        final_train_loss: last.train_loss,
        final_train_accuracy: last.train_accuracy,
        best_test_accuracy: points.iter().map(|p| p.test_accuracy).fold(0.0, f64::max),
        seed_test_loss,
        seed_test_accuracy,
        train_seconds,
        eval_seconds: outcome.eval_seconds,
        evaluations: points.len(),
        cuda_graph: outcome.cuda_graph,
        wall_seconds: started.elapsed().as_secs_f64(),
        out_dir: run.path.clone(),
    };
    run.write_json("summary.json", &summary)?;
    Ok(summary)
}

fn write_figures(run: &RunDir, name: &str, points: &[EvalPoint]) -> Result<()> {
    let curve = |f: fn(&EvalPoint) -> f64| points.iter().map(|p| (p.iteration as f64, f(p))).collect::<Vec<_>>();
    let upper = name.to_uppercase();
    let pair = |train: fn(&EvalPoint) -> f64, test: fn(&EvalPoint) -> f64| {
        vec![
            Series { label: "training (mean over the interval's batches)".into(), points: curve(train) },
            Series { label: "test (full 10k set)".into(), points: curve(test) },
        ]
    };
    line_chart(&run.file(&format!("{name}-loss.png")), &format!("{upper}: loss along the iterations"), "Iteration", "Loss (log scale)",
        &pair(|p| p.train_loss, |p| p.test_loss), Scale::Log)?;
    line_chart(&run.file(&format!("{name}-accuracy.png")), &format!("{upper}: accuracy along the iterations"), "Iteration", "Accuracy",
        &pair(|p| p.train_accuracy, |p| p.test_accuracy), Scale::Linear)
}

/// One human line for stderr at the end of a run.
pub fn describe(s: &RunSummary) -> String {
    format!(
        "{} ({}) on {}: test loss {:.4}, accuracy {:.2}% (seed: {}, {:.1}%) in {:.1} s -> {}",
        s.model, s.preset, s.device, s.final_test_loss, 100.0 * s.final_test_accuracy,
        s.seed_test_loss, 100.0 * s.seed_test_accuracy, s.wall_seconds, s.out_dir.display()
    )
}
