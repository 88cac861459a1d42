//! `nndl xor`: one run with its figure and optional replay dump, or many seeds with the
//! distribution of their final losses.
use super::Outcome;
use crate::cli::XorArgs;
use crate::plot::{line_chart, Scale, Series};
use crate::progress::Progress;
use crate::run_dir::{out_or_fresh, write_atomic, RunDir};
use crate::scratch::xor::{self, XorConfig, XorRun};
use crate::scratch::xor_stats::{self, ManySummary};
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Serialize)]
struct SingleSummary {
    seed: u64,
    preset: xor::XorPreset,
    epochs: usize,
    final_loss: f64,
    converged: bool,
    homework_final_loss: f64,
    /// (epoch, loss) every 50 epochs and after the last, what the homework prints.
    losses: Vec<(usize, f64)>,
    wall_seconds: f64,
    out_dir: PathBuf,
}

pub fn config_from(args: &XorArgs) -> Result<XorConfig> {
    let mut cfg = XorConfig::preset(args.preset);
    cfg.epochs = args.epochs.unwrap_or(cfg.epochs);
    cfg.learning_rate = args.lr.unwrap_or(cfg.learning_rate);
    if args.init_low.is_some() || args.init_high.is_some() {
        cfg.init = xor::XorInit::Uniform { low: args.init_low.unwrap_or(0.0), high: args.init_high.unwrap_or(1.0) };
    }
    cfg.validate().map_err(|e| anyhow!(e))?;
    Ok(cfg)
}

pub fn run(args: &XorArgs) -> Result<Outcome> {
    let cfg = config_from(args)?;
    if args.output.force && args.output.out.is_none() {
        bail!("--force replaces what --out holds; give --out too");
    }
    match args.runs {
        Some(n) => {
            let seeds = xor_stats::seed_range(args.seed, n).map_err(|e| anyhow!(e))?;
            if args.dump.is_some() {
                bail!("--dump records a single run; drop --runs");
            }
            let folder = args.output.out.as_ref().map(|out| RunDir::create(out, args.output.force)).transpose()?;
            let s = many(seeds, &cfg, args.output.report.quiet);
            if let Some(dir) = &folder {
                dir.write_json("config.json", &cfg)?;
                dir.write_json("summary.json", &s)?;
            }
            Outcome::new(xor_stats::describe_many(&s), &s)
        }
        None => single(args, &cfg),
    }
}

/// `--dump` replaces an earlier dump, and nothing else: a mistyped path (an MNIST file, a
/// config) would be lost without a word, where `--out` asks for `--force`.
fn refuse_other_files(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let earlier_dump = meta.len() < 64 << 20
        && std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok()).is_some_and(|v| v.get("losses").is_some() && v.get("orders").is_some());
    if !earlier_dump {
        bail!("--dump {}: a file of that name exists and is not an earlier dump; remove it or choose another name", path.display());
    }
    Ok(())
}

fn single(args: &XorArgs, cfg: &XorConfig) -> Result<Outcome> {
    let started = Instant::now();
    if let Some(path) = &args.dump {
        crate::run_dir::check_writable_file(path, "--dump")?;
        refuse_other_files(path)?;
    }
    let out = out_or_fresh(args.output.out.as_deref(), "xor")?;
    let run_dir = RunDir::create(&out, args.output.force)?;
    let run = xor::train(args.seed, cfg, args.dump.is_some());
    let wall_seconds = started.elapsed().as_secs_f64();
    if !args.output.report.quiet {
        // The homework's own lines (Python prints a float as Rust's `{}` does: shortest round trip).
        for (epoch, loss) in &run.losses {
            crate::say!("Epoch: {epoch}, loss: {loss}");
        }
    }
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
        homework_final_loss: crate::homework::XOR_FINAL_LOSS,
        losses: run.losses.clone(),
        wall_seconds,
        out_dir: out,
    };
    run_dir.write_json("summary.json", &summary)?;
    let human = format!("xor seed {}: final loss {:.4e} ({}; homework: {:.3e}) in {:.2} ms -> {}",
        summary.seed, summary.final_loss, if summary.converged { "converged" } else { "not converged" },
        crate::homework::XOR_FINAL_LOSS, wall_seconds * 1e3, summary.out_dir.display());
    Outcome::new(human, &summary)
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

/// Trains every seed of `seeds` and sums up their final losses.
pub fn many(seeds: std::ops::RangeInclusive<u64>, cfg: &XorConfig, quiet: bool) -> ManySummary {
    let started = Instant::now();
    let first = *seeds.start();
    let progress = Progress::new(seeds.end() - seeds.start() + 1, "xor", quiet);
    let finals: Vec<f64> = seeds
        .map(|s| {
            progress.inc(1);
            xor::train(s, cfg, false).final_loss()
        })
        .collect();
    progress.finish();
    xor_stats::summarize(cfg, first, finals, started.elapsed().as_secs_f64())
}
