//! `nndl xor`: one run with its figure and optional replay dump, or many seeds with the
//! distribution of their final losses.
use crate::artifacts::{default_out, write_atomic, RunDir};
use crate::plot::{line_chart, Scale, Series};
use crate::scratch::xor::{self, XorConfig, XorPreset, XorRun};
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct XorArgs {
    /// seed: the homework's init and learning rate; robust: a variant that converges reliably.
    #[arg(long, value_enum, default_value = "seed")]
    pub preset: XorPreset,
    /// Seed of the (first) run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train this many seeds (seed, seed+1, ...) and report how many converge.
    #[arg(long)]
    pub runs: Option<usize>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// Initial weights and biases uniform in [init-low, init-high) (default 0 and 1), replacing
    /// the preset's initialisation.
    #[arg(long, allow_hyphen_values = true)]
    pub init_low: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    pub init_high: Option<f64>,
    /// Write the initial weights and every epoch's sample order (JSON) for a replay elsewhere.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
    /// The single run's figure goes to --out (default runs/xor-<time>).
    #[command(flatten)]
    pub output: crate::cli::OutputArgs,
}

#[derive(Serialize)]
struct SingleSummary {
    seed: u64,
    preset: XorPreset,
    epochs: usize,
    final_loss: f64,
    converged: bool,
    seed_final_loss: f64,
    wall_seconds: f64,
    out_dir: PathBuf,
}

#[derive(Serialize, Debug, Clone)]
pub struct ManySummary {
    pub preset: XorPreset,
    pub first_seed: u64,
    pub runs: usize,
    pub converged: usize,
    pub convergence_rate: f64,
    /// Final losses near 1/6 (one pattern stuck) and near 1/4.
    pub stuck_near_0_167: usize,
    pub stuck_near_0_25: usize,
    pub other: usize,
    /// min, 25%, median, 75%, max of the final losses.
    pub final_loss_quantiles: [f64; 5],
    pub wall_seconds: f64,
}

pub fn config_from(args: &XorArgs) -> Result<XorConfig> {
    let mut cfg = XorConfig::preset(args.preset);
    cfg.epochs = args.epochs.unwrap_or(cfg.epochs);
    cfg.learning_rate = args.lr.unwrap_or(cfg.learning_rate);
    if args.init_low.is_some() || args.init_high.is_some() {
        let (low, high) = (args.init_low.unwrap_or(0.0), args.init_high.unwrap_or(1.0));
        if !(low.is_finite() && high.is_finite() && low < high) {
            bail!("invalid --init-low/--init-high {low}..{high}: need finite low < high");
        }
        cfg.init = xor::XorInit::Uniform { low, high };
    }
    if cfg.epochs == 0 {
        bail!("invalid --epochs 0: must be at least 1");
    }
    if !(cfg.learning_rate.is_finite() && cfg.learning_rate > 0.0) {
        bail!("invalid --lr {}: must be a finite number > 0", cfg.learning_rate);
    }
    Ok(cfg)
}

pub fn command(args: &XorArgs) -> Result<()> {
    let cfg = config_from(args)?;
    match args.runs {
        Some(0) => bail!("invalid --runs 0: must be at least 1"),
        Some(n) => {
            if args.dump.is_some() {
                bail!("--dump records a single run; drop --runs");
            }
            let s = many(args.seed, n, &cfg);
            if !args.output.quiet {
                eprintln!("{}", describe_many(&s));
            }
            if args.output.json {
                println!("{}", serde_json::to_string(&s)?);
            }
        }
        None => single(args, &cfg)?,
    }
    Ok(())
}

fn single(args: &XorArgs, cfg: &XorConfig) -> Result<()> {
    let started = Instant::now();
    let out = args.output.out.clone().unwrap_or_else(|| default_out("xor"));
    let run_dir = RunDir::create(&out, args.output.force)?;
    let run = xor::train(args.seed, cfg, args.dump.is_some());
    let wall_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.dump {
        write_atomic(path, serde_json::to_string(&run)?.as_bytes())?;
    }
    run_dir.write_json("config.json", cfg)?;
    write_figure(&run_dir, std::slice::from_ref(&run))?;
    let summary = SingleSummary {
        seed: run.seed,
        preset: cfg.preset,
        epochs: cfg.epochs,
        final_loss: run.final_loss(),
        converged: run.converged(),
        seed_final_loss: 7.513e-6,
        wall_seconds,
        out_dir: out,
    };
    run_dir.write_json("summary.json", &summary)?;
    if !args.output.quiet {
        eprintln!("xor seed {}: final loss {:.4e} ({}; seed: 7.513e-6) in {:.2} ms -> {}",
            summary.seed, summary.final_loss, if summary.converged { "converged" } else { "not converged" },
            wall_seconds * 1e3, summary.out_dir.display());
    }
    if args.output.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

/// `mlp-xor-loss.png`: the loss on the 4 samples along the epochs, one curve per run.
pub fn write_figure(dir: &RunDir, runs: &[XorRun]) -> Result<()> {
    let series: Vec<Series> = runs
        .iter()
        .map(|r| Series {
            label: format!("seed {}: final {:.1e}", r.seed, r.final_loss()),
            points: r.losses.iter().map(|&(e, l)| (e as f64, l)).collect(),
        })
        .collect();
    line_chart(&dir.file("mlp-xor-loss.png"), "XOR 2-2-2-1: loss on the 4 samples along the epochs", "Epoch", "Loss (log scale)", &series, Scale::Log)
}

/// Trains `runs` seeds from `first_seed` on and sums up their final losses.
pub fn many(first_seed: u64, runs: usize, cfg: &XorConfig) -> ManySummary {
    let started = Instant::now();
    let finals: Vec<f64> = (0..runs as u64).map(|i| xor::train(first_seed + i, cfg, false).final_loss()).collect();
    summarize(cfg, first_seed, finals, started.elapsed().as_secs_f64())
}

/// How many of the runs (seeds from `first_seed` on, with these final losses) converge, and
/// where the others stick.
pub fn summarize(cfg: &XorConfig, first_seed: u64, mut finals: Vec<f64>, wall_seconds: f64) -> ManySummary {
    let runs = finals.len();
    let converged = finals.iter().filter(|&&l| l < xor::CONVERGED_BELOW).count();
    let near = |target: f64| finals.iter().filter(|&&l| (l - target).abs() < 0.02).count();
    let (s167, s25) = (near(1.0 / 6.0), near(0.25));
    finals.sort_by(f64::total_cmp);
    let q = |p: f64| finals[((finals.len() - 1) as f64 * p).round() as usize];
    ManySummary {
        preset: cfg.preset,
        first_seed,
        runs,
        converged,
        convergence_rate: converged as f64 / runs as f64,
        stuck_near_0_167: s167,
        stuck_near_0_25: s25,
        other: runs - converged - s167 - s25,
        final_loss_quantiles: [q(0.0), q(0.25), q(0.5), q(0.75), q(1.0)],
        wall_seconds,
    }
}

pub fn describe_many(s: &ManySummary) -> String {
    let [min, q1, med, q3, max] = s.final_loss_quantiles;
    format!(
        "xor ({:?}) seeds {}..{}: {}/{} converged ({:.1}%), near 0.167: {}, near 0.25: {}, other: {}; final loss min {min:.2e} q1 {q1:.2e} median {med:.2e} q3 {q3:.2e} max {max:.2e}; {:.3} s",
        s.preset, s.first_seed, s.first_seed + s.runs as u64 - 1, s.converged, s.runs, 100.0 * s.convergence_rate,
        s.stuck_near_0_167, s.stuck_near_0_25, s.other, s.wall_seconds
    )
}
