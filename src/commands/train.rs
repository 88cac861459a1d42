//! `nndl mlp` / `nndl cnn`: one training run into one folder (config, metrics, checkpoints,
//! weights, figures, summary).
use super::Outcome;
use crate::cli::{OnOff, TrainArgs};
use crate::config::{ModelKind, Origin, Preset, TrainConfig};
use crate::data::DeviceData;
use crate::run::{self, Network, RunEnd};
use crate::run_dir::{out_or_fresh, RunDir, DEFAULT_PARENT, EXPORT_FILE};
use crate::runtime::Runtime;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;

/// --export-steps keeps the CNN's masks in memory: 1000 steps are about 100 MB.
const MAX_EXPORTED_STEPS: usize = 1000;

/// --profile-steps keeps every operator call of the window in memory (about 100 a step).
const MAX_PROFILED_STEPS: usize = 1000;

/// --export-steps on the CNN keeps each evaluation's dropout masks in memory until step N.
const MAX_EXPORTED_EVALUATIONS: usize = 10;

/// --export-init's batches.npy is 8 bytes an index: 400 MB at most.
const MAX_EXPORTED_INDICES: usize = 50_000_000;

/// Builds the config from the preset or a saved file, then applies flag overrides.
pub fn config_from_args(model: ModelKind, args: &TrainArgs) -> Result<TrainConfig> {
    let mut cfg = match (&args.config, args.preset) {
        (Some(_), Some(_)) => bail!("--preset cannot be combined with --config: the file's preset and settings are used; drop --preset"),
        (Some(path), None) => TrainConfig::read(path)?,
        (None, preset) => TrainConfig::preset(model, preset.unwrap_or(Preset::Faithful)),
    };
    if cfg.model != model {
        bail!("config is for the {} but this command trains the {}", cfg.model.name(), model.name());
    }
    let common = &args.common;
    cfg.lr = args.lr.unwrap_or(cfg.lr);
    cfg.batch_size = args.batch_size.unwrap_or(cfg.batch_size);
    cfg.iterations = args.iterations.unwrap_or(cfg.iterations);
    cfg.eval_every = args.eval_every.unwrap_or(cfg.eval_every);
    cfg.seed = args.seed.unwrap_or(cfg.seed);
    cfg.checkpoint_every = args.checkpoint_every.or(cfg.checkpoint_every);
    cfg.allow_nan = args.allow_nan.map_or(cfg.allow_nan, |a| a == OnOff::On);
    cfg.deterministic = args.deterministic.map_or(cfg.deterministic, |d| d == OnOff::On);
    cfg.tf32 = args.tf32.map_or(cfg.tf32, |t| t == OnOff::On);
    cfg.flush_denormals = args.flush_denormals.map_or(cfg.flush_denormals, |f| f == OnOff::On);
    cfg.device = common.device.clone().unwrap_or(cfg.device);
    cfg.threads = common.threads.or(cfg.threads);
    cfg.validate(&config_origin(args))?;
    Ok(cfg)
}

/// Where the config's values came from: the flags, or a `--config` file with flags over it.
pub fn config_origin(args: &TrainArgs) -> Origin {
    match &args.config {
        None => Origin::Flags,
        Some(path) => Origin::FileAndFlags(path.clone(), flags_given(args)),
    }
}

/// The config keys that flags set, for errors that name where a bad value came from.
fn flags_given(args: &TrainArgs) -> Vec<&'static str> {
    let common = &args.common;
    [
        ("lr", args.lr.is_some()),
        ("batch_size", args.batch_size.is_some()),
        ("iterations", args.iterations.is_some()),
        ("eval_every", args.eval_every.is_some()),
        ("checkpoint_every", args.checkpoint_every.is_some()),
        ("device", common.device.is_some()),
        ("threads", common.threads.is_some()),
    ].into_iter().filter(|(_, given)| *given).map(|(key, _)| key).collect()
}

/// --profile-steps, checked (the profiler keeps every event of the window in memory), with
/// the profiler's log prepared for `device`.
pub fn profile_steps(args: &TrainArgs, device: tch::Device) -> Result<Option<usize>> {
    match args.profile_steps {
        Some(n) if n == 0 || n > MAX_PROFILED_STEPS => bail!("invalid --profile-steps {n}: must be between 1 and {MAX_PROFILED_STEPS}"),
        Some(n) => {
            crate::profile::prepare(device);
            Ok(Some(n))
        }
        None => Ok(None),
    }
}

/// The convolution switches are the environment's, not config.json's: a rerun of a saved config
/// under other ones gives other bits, which the summary.json beside that config tells.
fn plan_change_from(config: &Path, model: ModelKind, device: tch::Device) -> Option<String> {
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(config.with_file_name("summary.json")).ok()?).ok()?;
    let earlier = serde_json::from_value(summary.get("convolutions")?.clone()).ok()?;
    crate::models::conv_block::ConvPlan::change(Some(earlier), crate::models::conv_block::ConvPlan::for_run(model, device))
        .map(|change| format!("the run of {} computed its convolutions otherwise: {change}; this rerun will not give its bits", config.display()))
}

/// --tf32 on and --deterministic act on CUDA only; given for a CPU run, they are recorded (a
/// rerun of its config on a GPU uses them) and change nothing here.
fn cuda_only_flags_on_cpu(args: &TrainArgs, device: tch::Device) -> Option<String> {
    let given: Vec<&str> = [("--tf32 on", args.tf32 == Some(OnOff::On)), ("--deterministic", args.deterministic == Some(OnOff::On))]
        .into_iter().filter(|(_, on)| *on).map(|(flag, _)| flag).collect();
    let (acts, it_changes, it) = if given.len() == 1 { ("acts", "it changes", "it") } else { ("act", "they change", "them") };
    (device == tch::Device::Cpu && !given.is_empty())
        .then(|| format!("{} {acts} on CUDA only: this run is on the CPU, where {it_changes} nothing (config.json keeps {it} for a rerun on a GPU)", given.join(" and ")))
}

/// `nndl mlp|cnn`: validate everything, then train and write the run folder.
pub fn run(model: ModelKind, args: &TrainArgs) -> Result<Outcome> {
    if let Some(seeds) = &args.seeds {
        return super::seeds::run(model, args, seeds);
    }
    let started = Instant::now();
    let mut cfg = config_from_args(model, args)?;
    let common = &args.common;
    let mut rt = Runtime::new(&cfg, &config_origin(args), common.output.report.quiet, !common.no_cuda_graph)?;
    rt.profile_steps = profile_steps(args, rt.device)?;
    let notes = [args.config.as_deref().and_then(|c| plan_change_from(c, model, rt.device)), cuda_only_flags_on_cpu(args, rt.device)];
    for note in notes.into_iter().flatten().filter(|_| !common.output.report.quiet) {
        crate::say!("note: {note}");
    }
    // Recorded as it is, so `--config` and `resume` run with the same count (same bits).
    cfg.threads = Some(tch::get_num_threads() as usize);
    if args.export_init.is_some() && cfg.iterations.saturating_mul(cfg.batch_size) > MAX_EXPORTED_INDICES {
        bail!("--export-init writes every batch's indices: at most {MAX_EXPORTED_INDICES} (iterations x batch size), here {}", cfg.iterations.saturating_mul(cfg.batch_size));
    }
    if let Some(n) = args.export_steps {
        if n == 0 || n > MAX_EXPORTED_STEPS || n > cfg.iterations {
            bail!("invalid --export-steps {n}: must be between 1 and {} (and the iterations)", MAX_EXPORTED_STEPS);
        }
        if rt.device != tch::Device::Cpu {
            bail!("--export-steps records on the CPU only; add --device cpu");
        }
        // The CNN keeps each evaluation's masks (10,000 x 1024) until step N: about 90 MB each.
        let evaluations = (n - 1) / cfg.eval_every + 1;
        let masks_in_eval = matches!(cfg.dropout, crate::config::Dropout::KeepProb { in_eval: true, .. });
        if model == ModelKind::Cnn && masks_in_eval && evaluations > MAX_EXPORTED_EVALUATIONS {
            bail!("--export-steps {n} with --eval-every {} keeps the dropout masks of {evaluations} evaluations (about 90 MB each); at most {MAX_EXPORTED_EVALUATIONS}: raise --eval-every or lower --export-steps", cfg.eval_every);
        }
    }
    if let (Some(init), Some(last)) = (&args.export_init, &args.export_final) {
        let same = |a: &Path, b: &Path| a == b || std::fs::canonicalize(a).ok().is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a));
        if same(init, last) {
            bail!("--export-init and --export-final name the same folder {}: the final weights would replace the initial ones beside their batches", init.display());
        }
    }
    for (dir, flag) in [(&args.export_init, "--export-init"), (&args.export_final, "--export-final")] {
        if let Some(dir) = dir {
            crate::run_dir::check_writable_folder(dir, flag)?;
        }
    }
    let data = DeviceData::load(common.data.as_deref(), rt.device)?;
    crate::run_dir::check_free_space(common.output.out.as_deref().unwrap_or(Path::new(DEFAULT_PARENT)), run::disk_estimate(&cfg))?;
    let out = out_or_fresh(common.output.out.as_deref(), &format!("{}-{}", model.name(), cfg.preset.name()))?;
    let run_dir = RunDir::create(&out, common.output.force)?;
    // The folder now holds a run a rerun of this command would refuse: from here a stop is
    // taken at the first step, with a checkpoint and the resume command named.
    crate::signals::stop_in_good_order();
    if let Some(dir) = &args.export_final {
        crate::run_dir::make_folder(dir, "--export-final")?;
    }
    rt.say_note();
    let network = run::build_network(&cfg, rt.device);
    if let Some(dir) = &args.export_init {
        crate::export::export_init(dir, &network.vs, &cfg, data.train.len() as usize)?;
    }
    if let Some(dir) = &args.export_final {
        // Before config.json (written again by the loop): a run killed between the two is a
        // folder with its marker and export.json only, which a new run takes as empty, and a
        // run with a config always has its export.json. Absolute: a resume may start from
        // elsewhere.
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        write_saved_export(&run_dir.path, &dir, false)?;
        run_dir.write_json("config.json", &cfg)?;
    } else {
        // A run killed before its config, in this folder, may have left one.
        let _ = std::fs::remove_file(run_dir.file(EXPORT_FILE));
    }
    let export = match (args.export_steps, &args.export_init) {
        (Some(steps), Some(dir)) => Some(run::StepExport { dir: dir.clone(), steps, failure: Default::default() }),
        _ => None,
    };
    let end = run::train_exporting(&cfg, &network, &data, &run_dir, &rt, run::Start { resume: None, export: export.as_ref(), at: started })?;
    let export_failed = export.and_then(|e| e.failure.take());
    if let (RunEnd::Interrupted { next_iteration, .. }, Some(n), None) = (&end, args.export_steps, &export_failed) {
        if *next_iteration < n && !common.output.report.quiet {
            // The first N steps' masks lived in this process only; a resume cannot draw them again.
            crate::say!("warning: --export-steps {n}: interrupted before step {n}, so the steps' export is incomplete; run the export again from the start");
        }
    }
    let outcome = finish(end, &network, &cfg, args.export_final.as_deref())?;
    match (export_failed, &args.export_init) {
        (Some(e), Some(dir)) => steps_export_failed(outcome, &run_dir.path, dir, &e),
        _ => Ok(outcome),
    }
}

/// A run whose `--export-steps` failed: an export asked for and not made fails the command, as
/// `--export-final`'s does (an interruption's outcome stands, with the failure said beside it).
fn steps_export_failed(outcome: Outcome, run: &Path, dir: &Path, e: &str) -> Result<Outcome> {
    let what = format!("its --export-steps into {} failed (what it wrote of the steps is removed; run the export again from the start): {e}", dir.display());
    if outcome.failure.is_some() {
        crate::say!("warning: {what}");
        return Ok(outcome);
    }
    bail!("the run finished ({}), but {what}", run.display())
}

/// A finished run whose `--export-final` an interruption cut short (killed after summary.json,
/// while exporting): the export, written now from model.safetensors. None when there is none
/// to finish.
pub fn finish_export(run_dir: &RunDir) -> Result<Option<Outcome>> {
    let Some(SavedExport { dir, written }) = saved_export_final(run_dir)? else { return Ok(None) };
    let cfg = &TrainConfig::load(&run_dir.file("config.json"))?;
    // An export.json of an earlier release has no `written`: its files there are taken as it.
    if written.unwrap_or(true) && crate::export::holds_params(&dir, cfg.model) {
        return Ok(None);
    }
    let network = run::build_network(cfg, tch::Device::Cpu);
    let saved = crate::tensor_file::read(&run_dir.file(run::MODEL_FILE))?.0;
    super::eval::load_weights(&network.vs, saved, &run_dir.file(run::MODEL_FILE).display().to_string(), cfg.model.name())?;
    crate::export::export_params(&dir, &network.vs, cfg.model)?;
    write_saved_export(&run_dir.path, &dir, true)?;
    let line = format!("{} was finished; wrote its --export-final {}, which had not been written", run_dir.path.display(), dir.display());
    Ok(Some(Outcome::new(line, &serde_json::json!({ "export_final": dir, "out_dir": run_dir.path }))?))
}

/// A run's `--export-final` (export.json): the folder, and whether this run's export there is
/// whole. The folder may hold an earlier run's export until then, which a run killed after its
/// summary.json must not take as its own.
pub struct SavedExport {
    pub dir: std::path::PathBuf,
    /// None in an export.json of an earlier release.
    pub written: Option<bool>,
}

/// The `--export-final` folder a run was started with, if any.
pub fn saved_export_final(run_dir: &RunDir) -> Result<Option<SavedExport>> {
    let path = run_dir.file(EXPORT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let written = match value.get("written") {
        None => None,
        Some(serde_json::Value::Bool(w)) => Some(*w),
        Some(_) => bail!("{}: its written is not true or false", path.display()),
    };
    let dir = match value.get("export_final") {
        Some(serde_json::Value::String(dir)) if Path::new(dir).is_absolute() => std::path::PathBuf::from(dir),
        _ => bail!("{}: its export_final is not an absolute folder path", path.display()),
    };
    // A run folder moved with its export's (a project folder renamed or copied elsewhere): the
    // export goes where it now is beside the run, not into the old tree made again.
    let moved_from = value.get("run_dir").and_then(|v| v.as_str()).map(std::path::PathBuf::from);
    let here = std::path::absolute(&run_dir.path).unwrap_or_else(|_| run_dir.path.clone());
    // Moved: the old tree is gone. Copied: the old tree is there, but so is the export's
    // folder beside the copy (made when the run started, and copied with it).
    let dir = match moved_from {
        Some(old) if old != here => {
            let followed = follow_move(&old, &here, &dir);
            if !dir.parent().is_some_and(Path::exists) || followed.is_dir() { followed } else { dir }
        }
        _ => dir,
    };
    Ok(Some(SavedExport { dir, written }))
}

/// Where `target`, placed relative to a folder that moved from `old` to `new`, now is: the same
/// relative path from `new` (`..` taken lexically, as the move kept the tree's shape).
fn follow_move(old: &Path, new: &Path, target: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let common = old.components().zip(target.components()).take_while(|(a, b)| a == b).count();
    let mut moved: Vec<Component> = new.components().collect();
    for _ in common..old.components().count() {
        moved.pop();
    }
    moved.extend(target.components().skip(common));
    moved.iter().collect()
}

fn write_saved_export(run_dir: &Path, dir: &Path, written: bool) -> Result<()> {
    let here = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    crate::run_dir::write_json(&run_dir.join(EXPORT_FILE), &serde_json::json!({ "export_final": dir, "written": written, "run_dir": here }))
}

/// The outcome of a run that ended: its summary, or the interruption with the resume command.
pub fn finish(end: RunEnd, network: &Network, cfg: &TrainConfig, export_final: Option<&Path>) -> Result<Outcome> {
    match end {
        RunEnd::Finished(summary) => {
            if let Some(dir) = export_final {
                crate::export::export_params(dir, &network.vs, cfg.model).with_context(|| format!(
                    "the run finished ({}), but its --export-final {} failed (once mended, `{}` writes it)",
                    summary.out_dir.display(), dir.display(), crate::run_dir::resume_command(&summary.out_dir)))?;
                let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
                write_saved_export(&summary.out_dir, &dir, true)?;
            }
            Outcome::new(run::describe(&summary), &summary)
        }
        RunEnd::Interrupted { signal, next_iteration, out_dir } => {
            let json = serde_json::json!({ "interrupted": true, "signal": signal, "next_iteration": next_iteration, "out_dir": out_dir });
            Ok(Outcome::new(String::new(), &json)?.failing(run::resume_hint(&out_dir, next_iteration), crate::signals::exit_status(signal)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::follow_move;
    use std::path::Path;

    #[test]
    fn an_export_follows_its_moved_run_folder() {
        let at = |t: &str| follow_move(Path::new("/home/a/proj/run"), Path::new("/scratch/proj2/run"), Path::new(t));
        assert_eq!(at("/home/a/proj/exp"), Path::new("/scratch/proj2/exp"), "a sibling");
        assert_eq!(at("/home/a/proj/run/export"), Path::new("/scratch/proj2/run/export"), "inside the run");
        assert_eq!(at("/home/b/exp"), Path::new("/b/exp"), "up to the common root and down again");
    }
}
