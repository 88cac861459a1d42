//! `nndl resume DIR`: continues an interrupted run from its last checkpoint (or from the start
//! when it stopped before its first), or an interrupted `nndl reproduce`; the free space it
//! checks for first is what it has yet to write, not a new run's.
use super::Outcome;
use crate::checkpoint::{self, Checkpoint};
use crate::cli::ResumeArgs;
use crate::config::{Origin, TrainConfig};
use crate::data::DeviceData;
use crate::run;
use crate::run_dir::RunDir;
use crate::runtime::Runtime;
use anyhow::{bail, Result};
use std::time::Instant;

pub fn run(args: &ResumeArgs) -> Result<Outcome> {
    if args.run_dir.join(super::reproduce::SETTINGS).is_file() {
        return super::reproduce::resume(&args.run_dir, args.data.as_deref(), args.report);
    }
    let started = Instant::now();
    let shown = args.run_dir.display();
    if args.run_dir.is_file() {
        bail!("{shown} is a file; give the run's folder");
    }
    if crate::run_dir::folder_state(&args.run_dir)? == crate::run_dir::FolderState::Empty {
        if !args.run_dir.join(crate::run_dir::MARKER).exists() {
            bail!("{shown} is empty: not an nndl run folder");
        }
        bail!("{shown} holds no run yet (it was stopped before it wrote its config); run the training command again");
    }
    if let Some(why) = runs_inside(&args.run_dir) {
        bail!("{shown} {why}");
    }
    let run_dir = RunDir::open(&args.run_dir)?;
    if run_dir.file("summary.json").exists() && !crate::run::lost_its_weights(&args.run_dir) {
        if let Some(done) = super::train::finish_export(&run_dir)? {
            return Ok(done);
        }
        bail!("{shown} is finished (it has summary.json); nothing to resume");
    }
    let ck_path = run_dir.file(checkpoint::FILE);
    let ck = if ck_path.exists() { Some(Checkpoint::load(&ck_path)?) } else { None };
    // A config.json that went missing is the checkpoint's own (the session writes it back).
    let (cfg, origin) = match &ck {
        Some(ck) if !run_dir.file("config.json").exists() => (ck.meta.config.clone(), ck_path.clone()),
        _ => (TrainConfig::load(&run_dir.file("config.json"))?, run_dir.file("config.json")),
    };
    if let Some(ck) = &ck {
        // The last session may have run on another device or thread count (a sweep rerun).
        if !ck.meta.config.same_run(&cfg) {
            bail!("{} was written by another config than {shown}/config.json; start the run again with --force", ck_path.display());
        }
    }
    let mut rt = Runtime::new(&cfg, &Origin::File(origin), args.report.quiet, true)?;
    let data = DeviceData::load(args.data.as_deref(), rt.device)?;
    crate::run_dir::check_free_space(&args.run_dir, still_to_write(&cfg, &args.run_dir))?;
    rt.say_note();
    if !args.report.quiet {
        if let Some(reason) = crate::run_dir::recorded_failure(&args.run_dir) {
            crate::say!("{shown} failed before ({reason}); trying again");
        }
        match &ck {
            Some(ck) => crate::say!("resuming {shown} at iteration {} of {}", ck.meta.next_iteration, cfg.iterations),
            None => crate::say!("{shown} stopped before its first checkpoint: training it from the start"),
        }
    }
    let export_final = super::train::saved_export_final(&run_dir)?.map(|e| e.dir);
    if let Some(dir) = &export_final {
        // Before the training, as a fresh run checks it: not after an hour of it.
        crate::run_dir::check_writable_folder(dir, "--export-final (export.json)")?;
        crate::run_dir::make_folder(dir, "--export-final (export.json)")?;
    }
    let network = run::build_network(&cfg, rt.device);
    let end = run::train_into(&cfg, &network, &data, &run_dir, &rt, ck.as_ref(), started)?;
    super::train::finish(end, &network, &cfg, export_final.as_deref())
}

/// The room a resume of `cfg` in `dir` needs: a new run's (`run::disk_estimate`) less what the
/// files it writes again already take there (a run stopped by a full disk has most of them),
/// since each is replaced by its new version, not kept beside it.
fn still_to_write(cfg: &TrainConfig, dir: &std::path::Path) -> u64 {
    let name = cfg.model.name();
    let rewritten = [checkpoint::FILE, run::MODEL_FILE, "metrics.csv", "summary.json", &format!("{name}-loss.png"), &format!("{name}-accuracy.png")]
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()));
    run::disk_estimate(cfg).saturating_sub(rewritten.iter().sum())
}

/// What a folder of runs (a sweep's, or `--seeds`') is, with how to continue it: `nndl resume`
/// takes one run's folder.
fn runs_inside(dir: &std::path::Path) -> Option<String> {
    if dir.join(crate::run_dir::MARKER).exists() {
        return None;
    }
    if dir.join("sweep.json").is_file() {
        return Some("is a sweep's folder, not a run's: rerun its `nndl sweep SPEC --out` command to continue its trials, or resume one trial's folder".into());
    }
    let runs = crate::run_dir::runs_named_in(dir)?;
    Some(format!("holds runs ({runs}) but is not a run's folder itself: rerun the `--seeds` command that made them to continue them all, or resume one of them"))
}
