//! `nndl sweep SPEC.toml`: every trial of a spec, each an ordinary run folder inside the sweep's
//! folder. Trials run in worker processes (`--jobs`), each `nndl sweep SPEC --trial NAME`, so a
//! crash in one is recorded and the others go on. Rerunning the same command skips finished
//! trials and resumes interrupted ones from their checkpoints; two sweeps on one folder never run
//! a trial twice (each trial's folder is locked while it trains). `--shard I/N`, or a Slurm job
//! array's variables, split the trials over machines that share the folder. The workers and
//! their driver are `sweep_workers`; this file is the command and the worker's side.
use super::Outcome;
use crate::cli::SweepArgs;
use crate::config::Origin;
use crate::data::DeviceData;
use crate::run::{self, RunEnd};
use crate::run_dir::{recorded_failure, shell_word, write_atomic, write_json, Busy};
use crate::runtime::Runtime;
use crate::sweep::{configs_digest, Shard, SweepSpec, Trial};
use crate::sweep_workers::{drive, finished, into_packs, nndl_executable, trial_dir, Failure, SweepSummary, Workers, EXIT_BUSY};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const MARKER: &str = ".nndl-sweep";
/// Every trial's full config as the driver expanded the spec: what its workers train.
pub const EXPANDED: &str = "sweep.json";

fn default_out(spec: &Path) -> PathBuf {
    let stem = spec.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sweep".into());
    PathBuf::from("runs").join(format!("sweep-{stem}"))
}

pub fn run(args: &SweepArgs) -> Result<Outcome> {
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.spec));
    // A worker trains the trials as its driver expanded them into the folder: the spec may have
    // been edited since, or be a pipe that only the driver could read.
    let expanded = if args.trial.is_empty() { None } else { expanded_trials(&out)? };
    let trials = match expanded {
        Some(trials) => trials,
        None => {
            let spec = SweepSpec::load(&args.spec)?;
            let trials = spec.trials()?;
            if let Some(n) = spec.random.filter(|&n| n > trials.len() && !args.report.quiet) {
                crate::say!("note: random = {n} drew {} distinct trials (the others repeated one)", trials.len());
            }
            trials
        }
    };
    let shard = match &args.shard {
        // A worker trains the trials it is named, whatever shard its driver runs.
        _ if !args.trial.is_empty() => Shard::ALL,
        Some(s) => Shard::parse(s)?,
        None => Shard::from_slurm(|k| std::env::var(k).ok(), args.shards)?.unwrap_or(Shard::ALL),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let jobs = args.jobs.unwrap_or(1);
    if jobs == 0 || jobs > crate::config::max_threads() {
        bail!("invalid --jobs {jobs}: must be between 1 and {}", crate::config::max_threads());
    }
    let threads = args.threads.unwrap_or((cores / jobs).max(1));
    // --list may print commands for machines with more cores than this one.
    if threads == 0 || (threads > crate::config::max_threads() && !args.list) {
        bail!("invalid --threads {threads}: must be between 1 and {} (4 per core)", crate::config::max_threads());
    }
    let device = args.device.clone().unwrap_or_else(|| "auto".into());
    let mine: Vec<&Trial> = trials.iter().enumerate().filter(|(k, _)| shard.owns(*k)).map(|(_, t)| t).collect();
    if args.list || args.dry_run {
        // Commands for other machines, or a listing: this one's devices do not matter.
        crate::device::DeviceSpec::parse(&device)?;
    } else {
        // Before any folder is made: every trial would fail alike.
        crate::device::resolve(&device, "--device")?;
    }
    if !args.trial.is_empty() {
        if let Some(twice) = args.trial.iter().enumerate().find(|(i, t)| args.trial[..*i].contains(t)) {
            bail!("--trial {} is given twice", twice.1);
        }
        let named = args.trial.iter().map(|name| trials.iter().find(|t| &t.name == name).ok_or_else(|| anyhow!("{} has no trial named {name}", args.spec.display())))
            .collect::<Result<Vec<&Trial>>>()?;
        if args.trial_digest.as_ref().is_some_and(|d| *d != configs_digest(&named)) {
            bail!("{} no longer holds the configuration this worker was started for (a command with an edited spec prepared the folder since); run the sweep again, or list its commands again",
                out.join(EXPANDED).display());
        }
        // A worker started by another driver (from --list) may be the first to write here; under
        // nndl's own driver, or after --list, the folder is ready and is left as it is.
        if !out.join(MARKER).exists() {
            prepare_folder(&out, &trials)?;
        }
        check_space(&out, &unfinished(&out, &named))?;
        return match named[..] {
            [trial] => run_trial(trial, &out, &device, threads, args.data.as_deref(), args.report.quiet),
            _ => run_pack(&named, &out, &device, threads, args.data.as_deref(), args.report.quiet),
        };
    }
    if args.pack == Some(0) {
        bail!("invalid --pack 0: must be at least 1");
    }
    if args.list {
        // The listed workers write into the sweep's folder, which `nndl report` and a rerun read.
        // Its notes always: a trial left out of the list is trained by no command of it.
        let left_to_others = take_over_renamed(&out, &trials, &mine, false)?;
        prepare_folder(&out, &trials)?;
        let listed: Vec<&Trial> = mine.iter().copied().filter(|t| !left_to_others.contains(&t.name)).collect();
        return list(args, &listed, &out, threads);
    }
    if args.dry_run {
        let renamed = crate::sweep_renames::under_other_names(&out, &trials, &mine);
        let rows: Vec<serde_json::Value> = mine.iter().map(|t| {
            // A run under an earlier spec's name is judged where it is: the sweep renames it.
            let now_in = renamed.iter().find(|(r, _)| r.name == t.name).map(|(_, from)| from.clone());
            let dir = now_in.clone().unwrap_or_else(|| trial_dir(&out, t));
            let failure = recorded_failure(&dir);
            // Held, finished or not, it is left to its holder: the sweep counts it busy elsewhere.
            let state = if now_in.is_some() && crate::run_dir::holder(&dir).is_some() { "training" } else { trial_state(&dir, t) };
            serde_json::json!({ "trial": t.name, "dir": trial_dir(&out, t), "state": state, "error": failure, "now_in": now_in })
        }).collect();
        let human = rows.iter().map(|r| {
            let now_in = r["now_in"].as_str().map(|d| match r["state"].as_str() {
                Some("training") => format!(" (now {d}, under an earlier spec's name, held by a process that is training it: left to it)"),
                _ => format!(" (now {d}, under an earlier spec's name: renamed when the sweep runs)"),
            }).unwrap_or_default();
            format!("{:<10} {}{now_in}", r["state"].as_str().unwrap_or(""), r["dir"].as_str().unwrap_or(""))
        }).collect::<Vec<_>>().join("\n");
        let json = serde_json::json!({ "shard": format!("{}/{}", shard.index + 1, shard.count), "trials": rows });
        // The listing is the command's output: on stdout, as --list's, and kept by --quiet.
        return Outcome::output(format!("{human}\n{} trials (shard {}/{})\n", rows.len(), shard.index + 1, shard.count), &json);
    }
    let left_to_others = take_over_renamed(&out, &trials, &mine, args.report.quiet)?;
    let runs_here: Vec<&Trial> = mine.iter().copied().filter(|t| !left_to_others.contains(&t.name)).collect();
    // What is left to train decides whether MNIST is needed and how much room.
    let left = unfinished(&out, &runs_here);
    if !left.is_empty() {
        crate::data::mnist::check_present(&crate::data::mnist::resolve_dir(args.data.as_deref()))?;
    }
    check_space(&out, &left)?;
    prepare_folder(&out, &trials)?;
    let started = Instant::now();
    let gpus = gpu_count(&device)?;
    let summary = SweepSummary {
        out_dir: out.clone(), trials: trials.len(), shard: format!("{}/{}", shard.index + 1, shard.count),
        done: 0, skipped: 0, busy_elsewhere: left_to_others.len(), interrupted: 0, not_started: 0, failed: 0, failures: vec![], best: None, wall_seconds: 0.0,
    };
    let workers = Workers { jobs, threads, device, gpus, data: args.data.clone(), pack: args.pack };
    let summary = drive(&args.spec, &runs_here, workers, args.report.quiet, summary, started)?;
    write_failures(&out, &trials, &mine, &summary.failures)?;
    let mut interrupted = if summary.interrupted > 0 { format!(", {} interrupted", summary.interrupted) } else { String::new() };
    if summary.not_started > 0 {
        interrupted.push_str(&format!(", {} not started", summary.not_started));
    }
    let human = format!(
        "sweep {}: {} trials in shard {}: {} done, {} already done, {} running elsewhere{interrupted}, {} failed in {:.1} s{}",
        out.display(), mine.len(), summary.shard, summary.done, summary.skipped, summary.busy_elsewhere, summary.failed, summary.wall_seconds,
        summary.best.as_ref().map(|b| format!("; best {} at {:.2}%", b.trial, 100.0 * b.final_test_accuracy)).unwrap_or_default()
    );
    let outcome = Outcome::new(human, &summary)?;
    if let Some(signal) = crate::signals::requested() {
        let line = format!("interrupted; rerun the same command to continue the sweep in {}", out.display());
        return Ok(outcome.failing(line, crate::signals::exit_status(signal)));
    }
    // Workers a signal reached that the sweep did not get (an OOM killer's SIGTERM, a `kill` of
    // one worker): their trials are not done, and the sweep must not look finished.
    let rerun = (summary.interrupted > 0).then(|| format!("{} interrupted by a signal to {} worker alone; rerun the same command to continue {}",
        plural(summary.interrupted, "trial"), if summary.interrupted == 1 { "its" } else { "their" }, if summary.interrupted == 1 { "it" } else { "them" }));
    if summary.failed > 0 {
        let names: Vec<String> = summary.failures.iter().map(|f| format!("{} ({})", f.trial, f.error)).collect();
        let also = rerun.map(|r| format!("; {r}")).unwrap_or_default();
        let line = format!("error: {} of {} trials failed: {}; see {}{also}", summary.failed, mine.len(), names.join("; "), out.join("failures.json").display());
        return Ok(outcome.failing(line, 1));
    }
    if let Some(rerun) = rerun {
        return Ok(outcome.failing(format!("error: {rerun}"), 1));
    }
    Ok(outcome)
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The trials of `trials` not finished yet (a finished one writes nothing more).
fn unfinished<'a>(out: &Path, trials: &[&'a Trial]) -> Vec<&'a Trial> {
    trials.iter().copied().filter(|t| finished(out, t).is_none()).collect()
}

/// Free space for what `trials` will write.
fn check_space(out: &Path, trials: &[&Trial]) -> Result<()> {
    let bytes = trials.iter().map(|t| run::disk_estimate(&t.config)).fold(0u64, u64::saturating_add);
    crate::run_dir::check_free_space(out, bytes)
}

/// `--list`: one worker command per trial, or per pack with `--pack M` (the machines that run
/// the commands may not be this one, so the pack size is the user's to choose, not a default
/// for this machine's device). A worker given several --trial trains them as one pack.
fn list(args: &SweepArgs, mine: &[&Trial], out: &Path, threads: usize) -> Result<Outcome> {
    let exe = nndl_executable().map(|p| p.display().to_string()).unwrap_or_else(|_| "nndl".into());
    let mut common = format!("--threads {threads} --quiet");
    if let Some(device) = &args.device {
        common += &format!(" --device {}", shell_word(device));
    }
    // Absolute paths: the commands may run from another folder (a job script's, xargs').
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    if let Some(data) = &args.data {
        common += &format!(" --data {}", shell_word(&absolute(data)));
    }
    let packs = into_packs(mine.to_vec(), args.pack.unwrap_or(1));
    let lines: String = packs.iter().map(|pack| {
        let trials: String = pack.iter().map(|t| format!(" --trial {}", shell_word(&t.name))).collect();
        let digest = configs_digest(pack);
        format!("{exe} sweep {} --out {}{trials} --trial-digest {digest} {common}\n", shell_word(&absolute(&args.spec)), shell_word(&absolute(out)))
    }).collect();
    // With --json: the commands, and the trials each runs.
    let names = |pack: &Vec<&Trial>| pack.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    let json = serde_json::json!({
        "commands": lines.lines().collect::<Vec<_>>(),
        "trials": packs.iter().map(names).collect::<Vec<_>>(),
    });
    Outcome::output(lines, &json)
}

/// The trials a driver wrote into the sweep's folder (sweep.json), if it has; each checked as
/// a spec's would be, since the file may have been edited by hand.
fn expanded_trials(out: &Path) -> Result<Option<Vec<Trial>>> {
    #[derive(serde::Deserialize)]
    struct Expanded {
        trials: Vec<Trial>,
    }
    let path = out.join(EXPANDED);
    if !out.join(MARKER).exists() || !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let trials = serde_json::from_str::<Expanded>(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?.trials;
    for t in &trials {
        let one_folder = matches!(Path::new(&t.name).components().collect::<Vec<_>>().as_slice(), [std::path::Component::Normal(_)]);
        if !one_folder {
            bail!("{}: trial name {:?} is not one folder name inside the sweep", path.display(), t.name);
        }
        t.config.validate(&crate::config::Origin::File(path.clone())).map_err(|e| anyhow!("trial {}: {e:#}", t.name))?;
    }
    Ok(Some(trials))
}

/// The sweep's folder: its marker and the expanded spec (every trial's full config).
fn prepare_folder(out: &Path, trials: &[Trial]) -> Result<()> {
    let state = crate::run_dir::folder_state(out).map_err(|e| anyhow!("cannot use sweep folder {}: {e:#}", out.display()))?;
    if matches!(state, crate::run_dir::FolderState::FinishedRun | crate::run_dir::FolderState::UnfinishedRun) {
        bail!("{} is a run's folder, not a sweep's; choose another --out", out.display());
    }
    if state == crate::run_dir::FolderState::ForeignFiles && !out.join(MARKER).exists() {
        if let Some(runs) = crate::run_dir::runs_named_in(out) {
            bail!("{} holds runs of its own ({runs}: a --seeds folder), not a sweep's; choose another --out", out.display());
        }
        bail!("{} holds files nndl did not write; choose another --out", out.display());
    }
    std::fs::create_dir_all(out).map_err(|e| anyhow!("cannot create sweep folder {}: {e}", out.display()))?;
    // What a driver killed mid-write left (its own temporary files; live ones stay).
    crate::run_dir::remove_stale_partials(out);
    write_atomic(&out.join(MARKER), b"{}\n")?;
    write_json(&out.join(EXPANDED), &serde_json::json!({ "trials": trials }))
}

/// What `--dry-run` says of trial `t`'s run in `dir`.
fn trial_state(dir: &Path, t: &Trial) -> &'static str {
    let saved = crate::config::TrainConfig::load(&dir.join("config.json"));
    if crate::sweep_workers::finished_in(dir, t).is_some() {
        "done"
    } else if crate::run_dir::holder(dir).is_some() {
        // Before failed: an earlier attempt's failed.txt stays until the run finishes.
        "training"
    } else if saved.is_ok_and(|saved| !saved.same_run(&t.config)) {
        // A run of another configuration, finished or not: a rerun refuses it.
        "other-config"
    } else if recorded_failure(dir).is_some() {
        "failed"
    } else if dir.join("summary.json").exists() && !crate::run::lost_its_weights(dir) {
        // A summary that no longer reads as a finished run of this trial.
        "damaged"
    } else if dir.exists() {
        "unfinished"
    } else {
        "new"
    }
}

/// Renames the runs that an earlier spec of this sweep folder named otherwise to their trials'
/// names (`sweep_renames`), before anything counts what is done; the trials whose folder
/// another process holds are left to it.
fn take_over_renamed(out: &Path, trials: &[Trial], mine: &[&Trial], quiet: bool) -> Result<Vec<String>> {
    if !out.join(MARKER).is_file() {
        return Ok(Vec::new());
    }
    crate::sweep_renames::take_over(out, &crate::sweep_renames::under_other_names(out, trials, mine), quiet)
}

fn gpu_count(device: &str) -> Result<usize> {
    use crate::device::{auto_cuda_unavailable_reason, cuda_unavailable_reason, DeviceSpec};
    let unavailable = match DeviceSpec::parse(device)? {
        DeviceSpec::Cpu => return Ok(0),
        DeviceSpec::Auto => auto_cuda_unavailable_reason(),
        DeviceSpec::Cuda(_) => cuda_unavailable_reason(),
    };
    Ok(if unavailable.is_none() { tch::Cuda::device_count() as usize } else { 0 })
}

/// failures.json: the failed trials of every process that ran on the folder (their failed.txt),
/// this driver's (`seen`: also those that failed before they had a folder of their own, or were
/// refused one), and what the file said of trials other shards run (`mine` are this one's),
/// less those now done.
fn write_failures(out: &Path, trials: &[Trial], mine: &[&Trial], seen: &[Failure]) -> Result<()> {
    let path = out.join("failures.json");
    let earlier: Vec<Failure> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let failures: Vec<Failure> = trials.iter().filter(|t| finished(out, t).is_none()).filter_map(|t| {
        let recorded = recorded_failure(&trial_dir(out, t));
        let other_shards = || earlier.iter().find(|f| f.trial == t.name && !mine.iter().any(|m| m.name == t.name));
        let error = recorded.or_else(|| seen.iter().find(|f| f.trial == t.name).map(|f| f.error.clone())).or_else(|| other_shards().map(|f| f.error.clone()))?;
        Some(Failure { trial: t.name.clone(), error })
    }).collect();
    write_json(&path, &failures)
}

/// Several trials in this process as one pack; one JSON row per trial on stdout.
fn run_pack(pack: &[&Trial], out: &Path, device: &str, threads: usize, data: Option<&Path>, quiet: bool) -> Result<Outcome> {
    use crate::packed::runs::{packable, run_members, MemberEnd};
    let cfgs: Vec<crate::config::TrainConfig> = pack.iter().map(|t| crate::config::TrainConfig { device: device.to_string(), threads: Some(threads), ..t.config.clone() }).collect();
    if let Some(t) = pack.iter().zip(&cfgs).find(|(_, c)| !packable(&cfgs[0], c)) {
        bail!("trial {} differs from {} in more than seed and learning rate: they cannot share a pack", t.0.name, pack[0].name);
    }
    let rt = Runtime::new(&cfgs[0], &Origin::Flags, quiet, true)?;
    let data = DeviceData::load(data, rt.device)?;
    let dirs: Vec<PathBuf> = pack.iter().map(|t| trial_dir(out, t)).collect();
    let ends = run_members(&cfgs, &dirs, pack.len(), &data, &rt);
    let (mut signal, mut failed, mut busy) = (None, vec![], 0);
    let rows: Vec<serde_json::Value> = pack.iter().zip(ends).map(|(t, end)| match end {
        MemberEnd::Ended { end: RunEnd::Finished(s), trained } => {
            serde_json::json!({ "trial": t.name, "state": if trained { "done" } else { "already_done" }, "summary": s })
        }
        MemberEnd::Ended { end: RunEnd::Interrupted { signal: sig, next_iteration, .. }, .. } => {
            signal = Some(sig);
            serde_json::json!({ "trial": t.name, "state": "interrupted", "next_iteration": next_iteration })
        }
        MemberEnd::NotStarted { signal: sig } => {
            signal = Some(sig);
            serde_json::json!({ "trial": t.name, "state": "interrupted", "started": false })
        }
        MemberEnd::Busy(e) => {
            busy += 1;
            serde_json::json!({ "trial": t.name, "state": "busy", "error": e })
        }
        MemberEnd::Failed(e) => {
            // Its folder's failed.txt is written where the member failed (`run_members`).
            let line = run::error_line(&e);
            failed.push(format!("{} ({line})", t.name));
            serde_json::json!({ "trial": t.name, "state": "failed", "error": line })
        }
    }).collect();
    let outcome = Outcome::new(format!("pack of {} trials ended", pack.len()), &serde_json::json!({ "pack": rows }))?;
    // Statuses as a single trial's worker gives them, for drivers that read only those.
    Ok(match signal {
        Some(sig) => outcome.failing(format!("pack of {} trials interrupted", pack.len()), crate::signals::exit_status(sig)),
        None if !failed.is_empty() => outcome.failing(format!("error: {} of the pack's {} trials failed: {}", failed.len(), pack.len(), failed.join("; ")), 1),
        None if busy > 0 => outcome.failing(format!("error: {} of the pack's {} trials are run by another nndl process", busy, pack.len()), EXIT_BUSY),
        None => outcome,
    })
}

/// One trial in this process: fresh, resumed, or already done.
fn run_trial(trial: &Trial, out: &Path, device: &str, threads: usize, data: Option<&Path>, quiet: bool) -> Result<Outcome> {
    let mut cfg = trial.config.clone();
    cfg.device = device.to_string();
    cfg.threads = Some(threads);
    let dir = trial_dir(out, trial);
    let result = (|| -> Result<(RunEnd, bool)> {
        let rt = Runtime::new(&cfg, &Origin::Flags, quiet, true)?;
        let data = DeviceData::load(data, rt.device)?;
        run::run_or_resume(&cfg, &dir, &data, &rt)
    })();
    match result {
        Ok((RunEnd::Finished(s), true)) => {
            Outcome::new(run::describe(&s), &s)
        }
        Ok((RunEnd::Finished(s), false)) => {
            let json = serde_json::json!({ "already_done": true, "summary": s });
            Outcome::new(format!("trial {} was already done", trial.name), &json)
        }
        Ok((RunEnd::Interrupted { signal, next_iteration, .. }, _)) => {
            let json = serde_json::json!({ "interrupted": true, "trial": trial.name, "next_iteration": next_iteration });
            Ok(Outcome::new(String::new(), &json)?.failing(format!("trial {} interrupted before iteration {next_iteration}", trial.name), crate::signals::exit_status(signal)))
        }
        Err(e) if e.is::<Busy>() => Ok(Outcome::new(String::new(), &serde_json::json!({ "busy": true }))?.failing(format!("{e}"), EXIT_BUSY)),
        Err(e) => {
            let line = run::error_line(&e);
            run::record_run_failure(&dir, &cfg, &line);
            Err(e)
        }
    }
}
