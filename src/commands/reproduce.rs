//! `nndl reproduce`: the whole homework with its own settings (BPTT check, XOR, MLP, CNN) into
//! one folder, with all five figures and report.md setting each result beside the homework's.
//! Each finished part leaves its result in the folder, so `nndl resume DIR` redoes only what an
//! interruption left unfinished (an MLP or CNN stage continues from its checkpoint).
use super::Outcome;
use crate::bptt_autograd::{self, BpttReport};
use crate::cli::{ReportArgs, ReproduceArgs, Stage};
use crate::config::{ModelKind, Origin, Preset, TrainConfig};
use crate::data::DeviceData;
use crate::homework;
use crate::run::{self, RunEnd, RunSummary};
use crate::run_dir::{out_or_fresh, write_atomic, RunDir};
use crate::runtime::Runtime;
use crate::scratch::xor::{self, XorConfig, XorPreset};
use crate::scratch::xor_stats::{self, ManySummary};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// The settings file of a reproduce folder (what `resume` recognises it by).
pub const SETTINGS: &str = "reproduce.json";

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ReproduceSettings {
    pub stages: Vec<StageName>,
    pub quick: bool,
    pub seed: u64,
    pub device: String,
    pub threads: usize,
    /// `--no-cuda-graph`, kept so that a resumed reproduce steps as the first session did.
    #[serde(default)]
    pub no_cuda_graph: bool,
}

/// A stage by name, as settings files spell it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum StageName {
    Bptt,
    Xor,
    Mlp,
    Cnn,
}

impl StageName {
    fn name(self) -> &'static str {
        match self {
            StageName::Bptt => "bptt",
            StageName::Xor => "xor",
            StageName::Mlp => "mlp",
            StageName::Cnn => "cnn",
        }
    }
}

impl From<Stage> for StageName {
    fn from(s: Stage) -> StageName {
        match s {
            Stage::Bptt => StageName::Bptt,
            Stage::Xor => StageName::Xor,
            Stage::Mlp => StageName::Mlp,
            Stage::Cnn => StageName::Cnn,
        }
    }
}

#[derive(Serialize, Default)]
pub struct ReproduceSummary {
    pub out_dir: std::path::PathBuf,
    pub device: String,
    pub quick: bool,
    pub seed: u64,
    pub bptt: Option<BpttReport>,
    pub xor: Option<XorResult>,
    pub mlp: Option<RunSummary>,
    pub cnn: Option<RunSummary>,
    /// This session's time: a resumed reproduce (`resumed`) does not count the earlier ones.
    pub wall_seconds: f64,
    pub resumed: bool,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct XorResult {
    /// The homework's network converges from only some initialisations: `seeds` says how many
    /// of 100 do; the first that does (none if none does) and its final loss.
    pub first_converged_seed: Option<u64>,
    pub final_loss: Option<f64>,
    /// The runs drawn in mlp-xor-loss.png.
    pub figure_seeds: Vec<u64>,
    pub seeds: ManySummaryRecord,
}

/// `ManySummary` as stored between sessions.
pub type ManySummaryRecord = serde_json::Value;

pub fn run(args: &ReproduceArgs) -> Result<Outcome> {
    let started = Instant::now();
    // Before the folder exists: a stop asked for once it does is taken in good order, in the
    // short stages when the stage has stored its result.
    crate::signals::install()?;
    let mut stages: Vec<StageName> = args.only.clone().unwrap_or_else(|| vec![Stage::Bptt, Stage::Xor, Stage::Mlp, Stage::Cnn])
        .into_iter().map(StageName::from).collect();
    // Each part once, in the homework's order, however --only spelt it.
    stages.sort();
    stages.dedup();
    let common = &args.common;
    if stages.contains(&StageName::Xor) && xor_stats::seed_range(args.seed, 100).is_err() {
        bail!("invalid --seed {}: the XOR part runs 100 seeds from it, past the largest seed {}; use --only to leave xor out, or a smaller --seed", args.seed, u64::MAX);
    }
    let device = common.device.clone().unwrap_or_else(|| "auto".into());
    if let Some(n) = common.threads {
        crate::config::check_threads(n, "--threads")?;
    }
    let mut rt = Runtime::for_device(&device, common.threads, &Origin::Flags, common.output.report.quiet)?;
    let needs_mnist = stages.iter().any(|s| matches!(s, StageName::Mlp | StageName::Cnn));
    let data = if needs_mnist { Some(DeviceData::load(common.data.as_deref(), rt.device)?) } else { None };
    let settings = ReproduceSettings { stages, quick: args.quick, seed: args.seed, device, threads: tch::get_num_threads() as usize, no_cuda_graph: common.no_cuda_graph };
    check_space(common.output.out.as_deref().unwrap_or(Path::new(crate::run_dir::DEFAULT_PARENT)), &settings, None)?;
    let out = out_or_fresh(common.output.out.as_deref(), "reproduce")?;
    let root = RunDir::create(&out, common.output.force)?;
    crate::signals::stop_in_good_order();
    rt.say_note();
    root.write_json(SETTINGS, &settings)?;
    run_stages(&root, &settings, data.as_ref(), &rt, common.output.report.quiet, Session { started, resumed: false })
}

/// When this process started on the folder, and whether an earlier one began it.
struct Session {
    started: Instant,
    resumed: bool,
}

/// `nndl resume DIR` on a reproduce folder.
pub fn resume(dir: &Path, data_flag: Option<&Path>, report: ReportArgs) -> Result<Outcome> {
    let started = Instant::now();
    crate::signals::install()?;
    let root = RunDir::open(dir)?;
    if root.file("summary.json").exists() {
        bail!("{} is finished (it has summary.json); nothing to resume", dir.display());
    }
    let text = std::fs::read_to_string(root.file(SETTINGS)).with_context(|| format!("cannot read {}", root.file(SETTINGS).display()))?;
    let settings: ReproduceSettings = serde_json::from_str(&text).map_err(|e| anyhow!("{} does not read: {e}", root.file(SETTINGS).display()))?;
    crate::config::check_saved_threads(settings.threads, &format!("{}: threads", root.file(SETTINGS).display()))?;
    let mut rt = Runtime::for_device(&settings.device, Some(settings.threads), &Origin::File(root.file(SETTINGS)), report.quiet)?;
    let needs_mnist = settings.stages.iter().any(|s| matches!(s, StageName::Mlp | StageName::Cnn));
    let data = if needs_mnist { Some(DeviceData::load(data_flag, rt.device)?) } else { None };
    check_space(dir, &settings, Some(&root))?;
    rt.say_note();
    run_stages(&root, &settings, data.as_ref(), &rt, report.quiet, Session { started, resumed: true })
}

fn run_stages(root: &RunDir, settings: &ReproduceSettings, data: Option<&DeviceData>, rt: &Runtime, quiet: bool, session: Session) -> Result<Outcome> {
    let started = session.started;
    // Its stages are short or training loops: a stop waits for the end of the stage, or the
    // loop's next step, and the folder is left with its lock released and the resume named.
    // (A fresh reproduction's folder took stops so from its creation.)
    crate::signals::stop_in_good_order();
    let mut summary = ReproduceSummary { out_dir: root.path.clone(), device: crate::device::name(rt.device), quick: settings.quick, seed: settings.seed, resumed: session.resumed, ..Default::default() };
    let say = |line: String| {
        if !quiet {
            crate::say!("{line}");
        }
    };
    let n = settings.stages.len();
    for (i, stage) in settings.stages.iter().enumerate() {
        if let Some(signal) = crate::signals::requested() {
            let json = serde_json::json!({ "interrupted": true, "signal": signal, "stage": stage, "out_dir": root.path });
            let line = format!("interrupted before the {} stage; continue with `{}`", stage.name(), crate::run_dir::resume_command(&root.path));
            return Ok(Outcome::new(String::new(), &json)?.failing(line, crate::signals::exit_status(signal)));
        }
        say(format!("[{}/{n}] {} ({:.0} s so far)", i + 1, stage.name(), started.elapsed().as_secs_f64()));
        match stage {
            StageName::Bptt => {
                let r: BpttReport = done_or(root, "bptt.json", || Ok(bptt_autograd::run(if settings.quick { 10 } else { 50 }, settings.seed, quiet)))?;
                say(bptt_autograd::describe(&r));
                summary.bptt = Some(r);
            }
            StageName::Xor => {
                let r: XorResult = done_or(root, "xor.json", || reproduce_xor(root, settings.seed, quiet))?;
                say(match (r.first_converged_seed, r.final_loss) {
                    (Some(s), Some(l)) => format!("xor: seed {s} converges to {l:.3e}"),
                    _ => "xor: no seed of the 100 converges".into(),
                });
                summary.xor = Some(r);
            }
            StageName::Mlp | StageName::Cnn => {
                let model = if *stage == StageName::Mlp { ModelKind::Mlp } else { ModelKind::Cnn };
                let data = data.context("MNIST loaded for the MNIST stages")?;
                let mut rt_stage = Runtime::for_device(&settings.device, Some(settings.threads), &Origin::File(root.file(SETTINGS)), quiet)?;
                rt_stage.allow_graph = !settings.no_cuda_graph;
                match mnist_stage(root, model, settings, data, &rt_stage)? {
                    RunEnd::Finished(s) => {
                        say(run::describe(&s));
                        if model == ModelKind::Mlp { summary.mlp = Some(*s) } else { summary.cnn = Some(*s) }
                    }
                    RunEnd::Interrupted { signal, next_iteration, .. } => {
                        let json = serde_json::json!({ "interrupted": true, "signal": signal, "stage": stage, "next_iteration": next_iteration, "out_dir": root.path });
                        let line = format!("interrupted in the {} stage before iteration {next_iteration}; continue with `{}`", model.name(), crate::run_dir::resume_command(&root.path));
                        return Ok(Outcome::new(String::new(), &json)?.failing(line, crate::signals::exit_status(signal)));
                    }
                }
            }
        }
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();
    root.write_text("report.md", &report(&summary))?;
    root.write_json("summary.json", &summary)?;
    let human = format!("done in {:.1} s: {}", summary.wall_seconds, root.file("report.md").display());
    let outcome = Outcome::new(human, &summary)?;
    // The report is whole either way; a failed check is still a failure.
    Ok(match &summary.bptt {
        Some(b) if !b.passed => outcome.failing("error: the BPTT check failed its targets; see the report".into(), 1),
        _ => outcome,
    })
}

/// A stage's stored result when an earlier session finished it, else `make` it and store it.
fn done_or<T: Serialize + for<'de> Deserialize<'de>>(root: &RunDir, file: &str, make: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Some(done) = std::fs::read_to_string(root.file(file)).ok().and_then(|t| serde_json::from_str(&t).ok()) {
        return Ok(done);
    }
    let result = make()?;
    root.write_json(file, &result)?;
    Ok(result)
}

/// An MNIST stage's config: the faithful preset, on the quick schedule if asked.
fn stage_config(model: ModelKind, settings: &ReproduceSettings) -> TrainConfig {
    let mut cfg = TrainConfig::preset(model, Preset::Faithful);
    cfg.seed = settings.seed;
    cfg.device = settings.device.clone();
    cfg.threads = Some(settings.threads);
    if settings.quick {
        cfg.iterations = if model == ModelKind::Mlp { 300 } else { 100 };
    }
    cfg
}

/// What the MNIST stages still to run will write, checked against the free space before any
/// training (a reproduce that trains for an hour and then cannot write its checkpoint loses it).
/// `resumed`: the reproduce folder being continued, whose finished stages write nothing more.
fn check_space(folder: &Path, settings: &ReproduceSettings, resumed: Option<&RunDir>) -> Result<()> {
    let bytes = settings.stages.iter().filter_map(|s| match s {
        StageName::Mlp => Some(ModelKind::Mlp),
        StageName::Cnn => Some(ModelKind::Cnn),
        _ => None,
    }).filter(|m| !resumed.is_some_and(|root| root.file(m.name()).join("summary.json").exists()))
        .map(|m| run::disk_estimate(&stage_config(m, settings))).sum();
    crate::run_dir::check_free_space(folder, bytes)
}

/// One MNIST stage in its subfolder: reused when finished, resumed when started, else new.
fn mnist_stage(root: &RunDir, model: ModelKind, settings: &ReproduceSettings, data: &DeviceData, rt: &Runtime) -> Result<RunEnd> {
    let name = model.name();
    let cfg = stage_config(model, settings);
    let dir = root.file(name);
    let (mut end, _) = run::run_or_resume(&cfg, &dir, data, rt)?;
    if let RunEnd::Finished(summary) = &mut end {
        // Where the stage is now: a finished stage's summary.json names the folder it was made
        // in, which a copied or moved reproduce folder has left.
        summary.out_dir = dir.clone();
        for fig in ["loss", "accuracy"] {
            let file = format!("{name}-{fig}.png");
            let bytes = std::fs::read(dir.join(&file)).with_context(|| format!("cannot read {file}"))?;
            write_atomic(&root.file(&file), &bytes)?;
        }
    }
    Ok(end)
}

fn reproduce_xor(root: &RunDir, seed: u64, quiet: bool) -> Result<XorResult> {
    let cfg = XorConfig::preset(XorPreset::Homework);
    let seeds = xor_stats::seed_range(seed, 100).map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let runs: Vec<_> = seeds.map(|s| xor::train(s, &cfg, false)).collect();
    let stats: ManySummary = xor_stats::summarize(&cfg, seed, runs.iter().map(|r| r.final_loss()).collect(), started.elapsed().as_secs_f64());
    if !quiet {
        crate::say!("{}", xor_stats::describe_many(&stats));
    }
    let (result, shown) = xor_result(runs, &stats)?;
    super::xor::write_figure(root, &shown)?;
    Ok(result)
}

/// The first run that converges (none when none does) and the runs the figure shows: the first
/// two that converge and the first two that stick, since the homework's network does both.
fn xor_result(runs: Vec<xor::XorRun>, stats: &ManySummary) -> Result<(XorResult, Vec<xor::XorRun>)> {
    let (converged, stuck): (Vec<_>, Vec<_>) = runs.into_iter().partition(|r| r.converged());
    let shown: Vec<_> = converged.iter().take(2).chain(stuck.iter().take(2)).cloned().collect();
    let first = converged.first();
    let result = XorResult {
        figure_seeds: shown.iter().map(|r| r.seed).collect(),
        first_converged_seed: first.map(|r| r.seed),
        final_loss: first.map(|r| r.final_loss()),
        seeds: serde_json::to_value(stats)?,
    };
    Ok((result, shown))
}


fn report(s: &ReproduceSummary) -> String {
    let info = crate::system_info::gather();
    let mut md = String::from("# nndl: assignment 2, reproduced\n\n");
    let _ = writeln!(md, "nndl {} ({}), seed {}. Device: {}; torch {}; tch {}; libtorch threads {}; {}.\n", info.nndl, info.git_commit, s.seed,
        s.device, info.torch.as_deref().unwrap_or("?"), info.tch, info.threads,
        if s.quick { "**quick smoke schedule** (not the homework's 4001 iterations)" } else { "the homework's full schedules" });
    md.push_str("| part | nndl | homework | wall time |\n|---|---|---|---|\n");
    if let Some(b) = &s.bptt {
        let _ = writeln!(md, "| BPTT dL/dU formula | **{}**: max rel. error {:.1e} vs finite differences, {:.1e} vs libtorch autograd ({} random RNNs) | derived, not checked | {:.2} s |",
            if b.passed { "pass" } else { "FAIL" }, b.max_rel_error_finite_diff, b.max_rel_error_autograd, b.problems, b.wall_seconds);
    }
    if let Some(x) = &s.xor {
        let (converged, runs, secs) = (&x.seeds["converged"], &x.seeds["runs"], x.seeds["wall_seconds"].as_f64().unwrap_or(0.0));
        let first = match (x.first_converged_seed, x.final_loss) {
            (Some(seed), Some(l)) => format!("final loss {l:.3e} (seed {seed})"),
            _ => "no seed converges".into(),
        };
        let _ = writeln!(md, "| XOR 2-2-2-1 | {first}; {converged}/{runs} seeds converge | {:.3e} (one run) | {secs:.3} s for {runs} runs |", homework::XOR_FINAL_LOSS);
    }
    for r in [&s.mlp, &s.cnn].into_iter().flatten() {
        // A resumed run's wall time is its last session's; its training time covers them all.
        let time = if r.resumed { format!("{:.1} s training, over its sessions", r.train_seconds) } else { format!("{:.1} s", r.wall_seconds) };
        let _ = writeln!(md, "| {} on MNIST | test loss {:.3}, accuracy {:.2}% ({} iterations) | loss {}, accuracy {:.1}% | {time} |",
            r.model.to_uppercase(), r.final_test_loss, 100.0 * r.final_test_accuracy, r.iterations, r.homework_test_loss, 100.0 * r.homework_test_accuracy);
    }
    let session = if s.resumed { " in the last session (resumed: the earlier sessions are not counted)" } else { "" };
    let _ = writeln!(md, "\nTotal: {:.1} s{session}.\n", s.wall_seconds);
    let figures = [("mlp-loss.png", s.mlp.is_some()), ("mlp-accuracy.png", s.mlp.is_some()), ("cnn-loss.png", s.cnn.is_some()),
        ("cnn-accuracy.png", s.cnn.is_some()), ("mlp-xor-loss.png", s.xor.is_some())];
    for (f, present) in figures {
        if present {
            let _ = writeln!(md, "![{f}]({f})\n");
        }
    }
    if s.xor.is_some() {
        md.push_str("The homework's XOR network converges from only some initialisations: the table gives the first seed that converges and how many of 100 do; the figure shows two runs that converge and two that stick.\n");
    }
    if s.cnn.is_some() {
        md.push_str("As in the homework's code, the CNN's test evaluation runs through the same dropout layer (keep probability 0.25), so its test figures are noisy.\n");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, final_loss: f64) -> xor::XorRun {
        xor::XorRun { seed, config: XorConfig::preset(XorPreset::Homework), initial: vec![], orders: vec![], losses: vec![(3000, final_loss)] }
    }

    #[test]
    fn no_converged_seed_is_none_not_a_stuck_one() {
        let runs = vec![run(0, 0.17), run(1, 0.25)];
        let stats = xor_stats::summarize(&XorConfig::preset(XorPreset::Homework), 0, vec![0.17, 0.25], 0.0);
        let (r, shown) = xor_result(runs, &stats).unwrap();
        assert_eq!((r.first_converged_seed, r.final_loss), (None, None));
        assert_eq!(shown.len(), 2);
        let (r, _) = xor_result(vec![run(4, 0.2), run(5, 1e-5), run(6, 1e-6)], &stats).unwrap();
        assert_eq!((r.first_converged_seed, r.final_loss), (Some(5), Some(1e-5)));
    }
}
