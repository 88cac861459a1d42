//! `nndl reproduce`: the whole homework with the seed's settings (BPTT check, XOR, MLP, CNN)
//! into one folder, with all five figures and report.md setting each result beside the seed's.
use crate::artifacts::{default_out, RunDir};
use crate::bptt_cmd::{self, BpttReport};
use crate::cli::CommonArgs;
use crate::config::{ModelKind, Preset, TrainConfig};
use crate::run::{self, RunSummary};
use crate::scratch::xor::{self, XorConfig, XorPreset};
use crate::xor_cmd::{self, ManySummary};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Bptt,
    Xor,
    Mlp,
    Cnn,
}

#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// Only these parts, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Option<Vec<Stage>>,
    /// A short smoke schedule (MLP 300 and CNN 100 iterations) instead of the full 4001.
    #[arg(long)]
    pub quick: bool,
    /// Seed of every part.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Serialize, Default)]
pub struct ReproduceSummary {
    pub out_dir: std::path::PathBuf,
    pub device: String,
    pub quick: bool,
    pub bptt: Option<BpttReport>,
    pub xor: Option<XorResult>,
    pub mlp: Option<RunSummary>,
    pub cnn: Option<RunSummary>,
    pub wall_seconds: f64,
}

#[derive(Serialize)]
pub struct XorResult {
    /// The seed's network converges from only some initialisations: `seeds` says how many of
    /// 100 do; the first that does, and its final loss.
    pub first_converged_seed: u64,
    pub final_loss: f64,
    /// The runs drawn in mlp-xor-loss.png.
    pub figure_seeds: Vec<u64>,
    pub seeds: ManySummary,
}

pub fn command(args: &ReproduceArgs) -> Result<()> {
    let started = Instant::now();
    let stages = args.only.clone().unwrap_or_else(|| vec![Stage::Bptt, Stage::Xor, Stage::Mlp, Stage::Cnn]);
    let common = &args.common;
    let rt = run::runtime(common)?;
    let device = rt.device;
    let needs_mnist = stages.iter().any(|s| matches!(s, Stage::Mlp | Stage::Cnn));
    let data = if needs_mnist { Some(run::load_data(common.data.as_deref(), device)?) } else { None };
    let out = common.output.out.clone().unwrap_or_else(|| default_out("reproduce"));
    let root = RunDir::create(&out, common.output.force)?;
    let device_name = crate::device::name(device);
    root.write_json("config.json", &serde_json::json!({"stages": stages, "quick": args.quick, "seed": args.seed, "device": device_name}))?;
    let mut summary = ReproduceSummary { out_dir: out.clone(), device: device_name, quick: args.quick, ..Default::default() };
    let say = |line: String| {
        if !common.output.quiet {
            eprintln!("{line}");
        }
    };
    for (i, stage) in stages.iter().enumerate() {
        say(format!("[{}/{}] {:?} ({:.0} s so far)", i + 1, stages.len(), stage, started.elapsed().as_secs_f64()));
        match stage {
            Stage::Bptt => {
                let r = bptt_cmd::run(if args.quick { 10 } else { 50 }, args.seed);
                say(bptt_cmd::describe(&r));
                summary.bptt = Some(r);
            }
            Stage::Xor => {
                let r = reproduce_xor(&root, args.seed)?;
                say(format!("xor: seed {} converges to {:.3e}; {}", r.first_converged_seed, r.final_loss, xor_cmd::describe_many(&r.seeds)));
                summary.xor = Some(r);
            }
            Stage::Mlp | Stage::Cnn => {
                let model = if *stage == Stage::Mlp { ModelKind::Mlp } else { ModelKind::Cnn };
                let mut cfg = TrainConfig::preset(model, Preset::Faithful);
                cfg.seed = args.seed;
                if args.quick {
                    cfg.iterations = if model == ModelKind::Mlp { 300 } else { 100 };
                }
                let name = model.name();
                let run_dir = RunDir::create(&out.join(name), common.output.force)?;
                let pb = crate::progress::bar(cfg.iterations as u64, name, common.output.quiet);
                let s = run::train_into(&cfg, &run::build_network(&cfg, device), data.as_ref().context("MNIST loaded")?, &run_dir, &rt, &pb, Instant::now())?;
                pb.finish_and_clear();
                for fig in ["loss", "accuracy"] {
                    let file = format!("{name}-{fig}.png");
                    let bytes = std::fs::read(run_dir.file(&file)).with_context(|| format!("cannot read {file}"))?;
                    crate::artifacts::write_atomic(&root.file(&file), &bytes)?;
                }
                say(run::describe(&s));
                if model == ModelKind::Mlp { summary.mlp = Some(s) } else { summary.cnn = Some(s) }
            }
        }
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();
    root.write_text("report.md", &report(&summary))?;
    root.write_json("summary.json", &summary)?;
    say(format!("done in {:.1} s: {}", summary.wall_seconds, root.file("report.md").display()));
    if common.output.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

fn reproduce_xor(root: &RunDir, seed: u64) -> Result<XorResult> {
    let cfg = XorConfig::preset(XorPreset::Seed);
    let started = Instant::now();
    let runs: Vec<_> = (seed..seed + 100).map(|s| xor::train(s, &cfg, false)).collect();
    let seeds = xor_cmd::summarize(&cfg, seed, runs.iter().map(|r| r.final_loss()).collect(), started.elapsed().as_secs_f64());
    // The figure shows the first two runs that converge and the first two that stick, since
    // the seed's network does both.
    let (converged, stuck): (Vec<_>, Vec<_>) = runs.into_iter().partition(|r| r.converged());
    let shown: Vec<_> = converged.iter().take(2).chain(stuck.iter().take(2)).cloned().collect();
    xor_cmd::write_figure(root, &shown)?;
    let best = converged.iter().chain(&stuck).next().context("100 runs")?;
    Ok(XorResult { figure_seeds: shown.iter().map(|r| r.seed).collect(), first_converged_seed: best.seed, final_loss: best.final_loss(), seeds })
}

fn report(s: &ReproduceSummary) -> String {
    let info = crate::info::gather();
    let mut md = String::from("# nndl: assignment 2, reproduced\n\n");
    let _ = writeln!(md, "Device: {}; torch {}; tch {}; libtorch threads {}; {}.\n", s.device, info.torch.as_deref().unwrap_or("?"), info.tch, info.threads,
        if s.quick { "**quick smoke schedule** (not the seed's 4001 iterations)" } else { "the seed's full schedules" });
    md.push_str("| part | nndl | seed (homework) | wall time |\n|---|---|---|---|\n");
    if let Some(b) = &s.bptt {
        let _ = writeln!(md, "| BPTT dL/dU formula | max rel. error {:.1e} vs finite differences, {:.1e} vs libtorch autograd ({} random RNNs) | derived, not checked | {:.2} s |",
            b.max_rel_error_finite_diff, b.max_rel_error_autograd, b.problems, b.wall_seconds);
    }
    if let Some(x) = &s.xor {
        let _ = writeln!(md, "| XOR 2-2-2-1 | final loss {:.3e} (seed {}); {}/{} seeds converge | 7.513e-6 (one run) | {:.3} s for {} runs |",
            x.final_loss, x.first_converged_seed, x.seeds.converged, x.seeds.runs, x.seeds.wall_seconds, x.seeds.runs);
    }
    for r in [&s.mlp, &s.cnn].into_iter().flatten() {
        let _ = writeln!(md, "| {} on MNIST | test loss {:.3}, accuracy {:.2}% ({} iterations) | loss {}, accuracy {:.1}% | {:.1} s |",
            r.model.to_uppercase(), r.final_test_loss, 100.0 * r.final_test_accuracy, r.iterations, r.seed_test_loss, 100.0 * r.seed_test_accuracy, r.wall_seconds);
    }
    let _ = writeln!(md, "\nTotal: {:.1} s.\n", s.wall_seconds);
    let figures = [("mlp-loss.png", s.mlp.is_some()), ("mlp-accuracy.png", s.mlp.is_some()), ("cnn-loss.png", s.cnn.is_some()),
        ("cnn-accuracy.png", s.cnn.is_some()), ("mlp-xor-loss.png", s.xor.is_some())];
    for (f, present) in figures {
        if present {
            let _ = writeln!(md, "![{f}]({f})\n");
        }
    }
    if s.xor.is_some() {
        md.push_str("The seed's XOR network converges from only some initialisations: the table gives the first seed that converges and how many of 100 do; the figure shows two runs that converge and two that stick.\n");
    }
    if s.cnn.is_some() {
        md.push_str("As in the seed's code, the CNN's test evaluation runs through the same dropout layer (keep probability 0.25), so its test figures are noisy.\n");
    }
    md
}
