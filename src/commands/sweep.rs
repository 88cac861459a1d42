//! `nndl sweep SPEC.toml`: every trial of a spec, each an ordinary run folder inside the sweep's
//! folder. Trials run in worker processes (`--jobs`), each `nndl sweep SPEC --trial NAME`, so a
//! crash in one is recorded and the others go on. Rerunning the same command skips finished
//! trials and resumes interrupted ones from their checkpoints; two sweeps on one folder never run
//! a trial twice (each trial's folder is locked while it trains). `--shard I/N`, or a Slurm job
//! array's variables, split the trials over machines that share the folder.
use super::Outcome;
use crate::cli::SweepArgs;
use crate::data::DeviceData;
use crate::progress::Progress;
use crate::run::{self, RunEnd, RunSummary};
use crate::run_dir::{record_failure, recorded_failure, write_atomic, Busy};
use crate::runtime::Runtime;
use crate::sweep::{Shard, SweepSpec, Trial};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A worker's exit status when its trial is being trained by another process.
const EXIT_BUSY: u8 = 75;
pub const MARKER: &str = ".nndl-sweep";

#[derive(Serialize)]
pub struct SweepSummary {
    pub out_dir: PathBuf,
    pub trials: usize,
    /// This process's shard (1-based) and the number of shards.
    pub shard: String,
    pub done: usize,
    pub skipped: usize,
    pub busy_elsewhere: usize,
    pub failed: usize,
    pub failures: Vec<Failure>,
    pub best: Option<Best>,
    pub wall_seconds: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Failure {
    pub trial: String,
    pub error: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct Best {
    pub trial: String,
    pub final_test_accuracy: f64,
}

fn trial_dir(out: &Path, t: &Trial) -> PathBuf {
    out.join(&t.name)
}

/// A trial is done when its summary.json reads as a run summary.
fn finished(dir: &Path) -> Option<RunSummary> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).ok()?).ok()
}

fn default_out(spec: &Path) -> PathBuf {
    let stem = spec.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sweep".into());
    PathBuf::from("runs").join(format!("sweep-{stem}"))
}

pub fn run(args: &SweepArgs) -> Result<Outcome> {
    let spec = SweepSpec::load(&args.spec)?;
    let trials = spec.trials()?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.spec));
    let shard = match &args.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::from_slurm(|k| std::env::var(k).ok(), args.shards)?.unwrap_or(Shard::ALL),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let jobs = args.jobs.unwrap_or(1);
    if jobs == 0 || jobs > crate::config::max_threads() {
        bail!("invalid --jobs {jobs}: must be between 1 and {}", crate::config::max_threads());
    }
    let threads = args.threads.unwrap_or((cores / jobs).max(1));
    let device = args.device.clone().unwrap_or_else(|| "auto".into());
    let mine: Vec<&Trial> = trials.iter().enumerate().filter(|(k, _)| shard.owns(*k)).map(|(_, t)| t).collect();
    if !args.trial.is_empty() {
        let named = args.trial.iter().map(|name| trials.iter().find(|t| &t.name == name).ok_or_else(|| anyhow!("{} has no trial named {name}", args.spec.display())))
            .collect::<Result<Vec<&Trial>>>()?;
        // A worker started by another driver (from --list) may be the first to write here; under
        // nndl's own driver, or after --list, the folder is ready and is left as it is.
        if !out.join(MARKER).exists() {
            prepare_folder(&out, &trials)?;
        }
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
        prepare_folder(&out, &trials)?;
        return list(args, &mine, &out, threads);
    }
    if args.dry_run {
        let rows: Vec<serde_json::Value> = mine.iter().map(|t| {
            let dir = trial_dir(&out, t);
            let failure = recorded_failure(&dir);
            let state = if finished(&dir).is_some() {
                "done"
            } else if failure.is_some() {
                "failed"
            } else if dir.exists() {
                "unfinished"
            } else {
                "new"
            };
            serde_json::json!({ "trial": t.name, "dir": dir, "state": state, "error": failure })
        }).collect();
        let human = rows.iter().map(|r| format!("{:<10} {}", r["state"].as_str().unwrap_or(""), r["dir"].as_str().unwrap_or(""))).collect::<Vec<_>>().join("\n");
        return Outcome::new(format!("{human}\n{} trials (shard {}/{})", rows.len(), shard.index + 1, shard.count), &rows);
    }
    prepare_folder(&out, &trials)?;
    let started = Instant::now();
    let gpus = gpu_count(&device)?;
    let summary = SweepSummary {
        out_dir: out.clone(), trials: trials.len(), shard: format!("{}/{}", shard.index + 1, shard.count),
        done: 0, skipped: 0, busy_elsewhere: 0, failed: 0, failures: vec![], best: None, wall_seconds: 0.0,
    };
    let workers = Workers { jobs, threads, device, gpus, data: args.data.clone(), pack: args.pack };
    let summary = drive(&args.spec, &mine, workers, args.report.quiet, summary, started)?;
    write_failures(&out, &trials)?;
    let human = format!(
        "sweep {}: {} trials in shard {}: {} done, {} already done, {} running elsewhere, {} failed in {:.1} s{}",
        out.display(), mine.len(), summary.shard, summary.done, summary.skipped, summary.busy_elsewhere, summary.failed, summary.wall_seconds,
        summary.best.as_ref().map(|b| format!("; best {} at {:.2}%", b.trial, 100.0 * b.final_test_accuracy)).unwrap_or_default()
    );
    let outcome = Outcome::new(human, &summary)?;
    if let Some(signal) = crate::signals::requested() {
        let line = format!("interrupted; rerun the same command to continue the sweep in {}", out.display());
        return Ok(outcome.failing(line, crate::signals::exit_status(signal)));
    }
    if summary.failed > 0 {
        let names: Vec<String> = summary.failures.iter().map(|f| format!("{} ({})", f.trial, f.error)).collect();
        let line = format!("error: {} of {} trials failed: {}; see {}", summary.failed, mine.len(), names.join("; "), out.join("failures.json").display());
        return Ok(outcome.failing(line, 1));
    }
    Ok(outcome)
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
    if let Some(data) = &args.data {
        common += &format!(" --data {}", shell_word(&data.display().to_string()));
    }
    let packs = into_packs(mine.to_vec(), args.pack.unwrap_or(1));
    let lines: String = packs.iter().map(|pack| {
        let trials: String = pack.iter().map(|t| format!(" --trial {}", shell_word(&t.name))).collect();
        format!("{exe} sweep {} --out {}{trials} {common}\n", shell_word(&args.spec.display().to_string()), shell_word(&out.display().to_string()))
    }).collect();
    let names = |pack: &Vec<&Trial>| pack.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    if args.pack.is_some() {
        return Outcome::output(lines, &packs.iter().map(names).collect::<Vec<_>>());
    }
    Outcome::output(lines, &packs.iter().flat_map(names).collect::<Vec<_>>())
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(w: &str) -> String {
    if w.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=,+:".contains(c)) { w.to_string() } else { format!("'{}'", w.replace('\'', "'\\''")) }
}

/// The sweep's folder: its marker and the expanded spec (every trial's full config).
fn prepare_folder(out: &Path, trials: &[Trial]) -> Result<()> {
    let state = crate::run_dir::folder_state(out).map_err(|e| anyhow!("cannot use sweep folder {}: {e:#}", out.display()))?;
    if state == crate::run_dir::FolderState::ForeignFiles && !out.join(MARKER).exists() {
        bail!("{} holds files nndl did not write; choose another --out", out.display());
    }
    std::fs::create_dir_all(out).map_err(|e| anyhow!("cannot create sweep folder {}: {e}", out.display()))?;
    crate::run_dir::check_free_space(out, trials.iter().map(|t| run::disk_estimate(&t.config)).sum::<u64>().min(u64::MAX / 2))?;
    write_atomic(&out.join(MARKER), b"{}\n")?;
    let mut text = serde_json::to_string_pretty(&serde_json::json!({ "trials": trials }))?;
    text.push('\n');
    write_atomic(&out.join("sweep.json"), text.as_bytes())
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

struct Workers {
    jobs: usize,
    threads: usize,
    device: String,
    gpus: usize,
    data: Option<PathBuf>,
    /// --pack as given.
    pack: Option<usize>,
}

impl Workers {
    /// The device of worker slot `slot`: with `cuda` (or auto) and several GPUs, round-robin.
    fn device_for(&self, slot: usize) -> String {
        match self.device.as_str() {
            "cuda" | "auto" if self.gpus > 1 => format!("cuda:{}", slot % self.gpus),
            d => d.to_string(),
        }
    }

    /// How many of `queued` trials one worker trains at once.
    fn pack_size(&self, queued: usize) -> usize {
        let spread = queued.div_ceil(self.jobs).max(1);
        self.pack.unwrap_or(crate::packed::default_pack(self.gpus > 0).min(spread))
    }

    fn spawn(&self, spec: &Path, out: &Path, pack: &[&Trial], slot: usize) -> Result<Child> {
        let exe = nndl_executable()?;
        let mut cmd = Command::new(exe);
        cmd.arg("sweep").arg(spec).arg("--out").arg(out).args(["--quiet", "--json"]);
        for trial in pack {
            cmd.args(["--trial", &trial.name]);
        }
        cmd
            .args(["--threads", &self.threads.to_string(), "--device", &self.device_for(slot)])
            .stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(d) = &self.data {
            cmd.arg("--data").arg(d);
        }
        // A worker dies with the sweep (SIGKILL included), so a rerun finds no orphan holding a
        // trial; its checkpoint is what the rerun resumes from.
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn().context("cannot start a sweep worker")
    }
}

/// This program's path, for workers. A binary rebuilt while the sweep runs shows as
/// "PATH (deleted)": the new one at PATH is what the workers start.
fn nndl_executable() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the nndl executable")?;
    if exe.exists() {
        return Ok(exe);
    }
    let text = exe.to_string_lossy();
    Ok(PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text)))
}

enum Ended {
    Done(Box<RunSummary>),
    /// Another process finished it after this one queued it.
    AlreadyDone(Box<RunSummary>),
    Busy,
    Interrupted,
    Failed(String),
}

fn wait_worker(child: Child) -> Ended {
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return Ended::Failed(format!("lost the worker: {e}")),
    };
    let last_line = String::from_utf8_lossy(&out.stderr).lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    let line = last_line.strip_prefix("nndl: error: ").or_else(|| last_line.strip_prefix("nndl: ")).unwrap_or(&last_line).to_string();
    match out.status.code() {
        Some(0) => {
            #[derive(Deserialize)]
            struct Earlier {
                already_done: bool,
                summary: Box<RunSummary>,
            }
            if let Ok(e) = serde_json::from_slice::<Earlier>(&out.stdout) {
                return if e.already_done { Ended::AlreadyDone(e.summary) } else { Ended::Done(e.summary) };
            }
            match serde_json::from_slice::<RunSummary>(&out.stdout) {
                Ok(s) => Ended::Done(Box::new(s)),
                Err(e) => Ended::Failed(format!("the worker's summary did not parse: {e}")),
            }
        }
        Some(c) if c == EXIT_BUSY as i32 => Ended::Busy,
        Some(130) | Some(143) => Ended::Interrupted,
        Some(c) => Ended::Failed(if line.is_empty() { format!("exit status {c}") } else { line }),
        None => Ended::Failed(format!("killed by a signal{}", if line.is_empty() { String::new() } else { format!(" ({line})") })),
    }
}

/// How each trial of a pack's worker ended: from its JSON rows, or all alike when it gave none.
fn wait_pack(child: Child, pack: &[&Trial]) -> Vec<Ended> {
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return pack.iter().map(|_| Ended::Failed(format!("lost the worker: {e}"))).collect(),
    };
    #[derive(Deserialize)]
    struct Row {
        trial: String,
        state: String,
        summary: Option<Box<RunSummary>>,
        error: Option<String>,
    }
    #[derive(Deserialize)]
    struct Rows {
        pack: Vec<Row>,
    }
    let Ok(rows) = serde_json::from_slice::<Rows>(&out.stdout) else {
        let last_line = String::from_utf8_lossy(&out.stderr).lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return pack.iter().map(|_| match out.status.code() {
            Some(130) | Some(143) => Ended::Interrupted,
            c => Ended::Failed(if last_line.is_empty() { format!("the pack's worker ended with {c:?}") } else { last_line.clone() }),
        }).collect();
    };
    pack.iter().map(|t| match rows.pack.iter().find(|r| r.trial == t.name) {
        Some(Row { state, summary: Some(s), .. }) if state == "done" => Ended::Done(s.clone()),
        Some(Row { state, summary: Some(s), .. }) if state == "already_done" => Ended::AlreadyDone(s.clone()),
        Some(Row { state, .. }) if state == "busy" => Ended::Busy,
        Some(Row { state, .. }) if state == "interrupted" => Ended::Interrupted,
        Some(Row { error, .. }) => Ended::Failed(error.clone().unwrap_or_else(|| "failed".into())),
        None => Ended::Failed("the pack's worker did not report this trial".into()),
    }).collect()
}

/// Groups queued trials into packs: in queue order, each joins the first open pack whose
/// trials it may train with (`packable`), at most `size` to a pack.
fn into_packs(queue: Vec<&Trial>, size: usize) -> VecDeque<Vec<&Trial>> {
    let mut packs: Vec<Vec<&Trial>> = Vec::new();
    for t in queue {
        match packs.iter_mut().find(|p| p.len() < size && crate::packed::runs::packable(&p[0].config, &t.config)) {
            Some(p) => p.push(t),
            None => packs.push(vec![t]),
        }
    }
    packs.into()
}

fn note_best(summary: &mut SweepSummary, name: &str, s: &RunSummary) {
    if summary.best.as_ref().is_none_or(|b| s.final_test_accuracy > b.final_test_accuracy) {
        summary.best = Some(Best { trial: name.to_string(), final_test_accuracy: s.final_test_accuracy });
    }
}

/// Counts how one trial ended.
fn tally(summary: &mut SweepSummary, name: &str, ended: Ended, progress: &Progress, quiet: bool) {
    match ended {
        Ended::Done(s) => {
            summary.done += 1;
            note_best(summary, name, &s);
        }
        Ended::AlreadyDone(s) => {
            summary.skipped += 1;
            note_best(summary, name, &s);
        }
        Ended::Busy => summary.busy_elsewhere += 1,
        Ended::Interrupted => {}
        Ended::Failed(error) => {
            summary.failed += 1;
            progress.log(quiet, &format!("trial {name} failed: {error}"));
            summary.failures.push(Failure { trial: name.to_string(), error });
        }
    }
    progress.inc(1);
}

/// Runs `mine` in worker processes, counting into `summary` (which names the sweep's folder).
fn drive(spec: &Path, mine: &[&Trial], workers: Workers, quiet: bool, mut summary: SweepSummary, started: Instant) -> Result<SweepSummary> {
    crate::signals::install()?;
    let out = summary.out_dir.clone();
    let out = out.as_path();
    let progress = Progress::new(mine.len() as u64, "sweep", quiet);
    let mut queue: Vec<&Trial> = Vec::new();
    for t in mine {
        match finished(&trial_dir(out, t)) {
            Some(s) => {
                summary.skipped += 1;
                note_best(&mut summary, &t.name, &s);
                progress.inc(1);
            }
            None => queue.push(t),
        }
    }
    let size = workers.pack_size(queue.len());
    let mut queue = into_packs(queue, size);
    let mut running: Vec<Option<(Vec<&Trial>, Child)>> = (0..workers.jobs).map(|_| None).collect();
    let mut forwarded = false;
    loop {
        let stopping = crate::signals::requested().is_some();
        if let (Some(signal), false) = (crate::signals::requested(), forwarded) {
            // A signal meant for the sweep (Slurm's `--signal=B:...`, a plain `kill`) reaches
            // only this process: pass it on, so each worker checkpoints and stops now.
            for (_, child) in running.iter().flatten() {
                // SAFETY: kill(2) on our own live child's pid; at worst it has just exited.
                unsafe { libc::kill(child.id() as i32, signal) };
            }
            forwarded = true;
        }
        for (slot, worker) in running.iter_mut().enumerate() {
            if worker.is_none() && !stopping {
                if let Some(pack) = queue.pop_front() {
                    let child = workers.spawn(spec, out, &pack, slot)?;
                    *worker = Some((pack, child));
                }
            }
            let exited = match worker.as_mut() {
                Some((_, child)) => child.try_wait().ok().flatten().is_some(),
                None => false,
            };
            if exited {
                let (pack, child) = worker.take().expect("checked above");
                let ends = if pack.len() == 1 { vec![wait_worker(child)] } else { wait_pack(child, &pack) };
                for (t, ended) in pack.iter().zip(ends) {
                    tally(&mut summary, &t.name, ended, &progress, quiet);
                }
                if let Some(b) = &summary.best {
                    progress.set_message(format!("best {} {:.2}%", b.trial, 100.0 * b.final_test_accuracy));
                }
            }
        }
        if running.iter().all(Option::is_none) && (queue.is_empty() || stopping) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    progress.finish();
    summary.wall_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// failures.json: the failed trials of every process that ran on the folder, less those now done.
fn write_failures(out: &Path, trials: &[Trial]) -> Result<()> {
    let failures: Vec<Failure> = trials.iter().filter_map(|t| {
        let dir = trial_dir(out, t);
        if finished(&dir).is_some() {
            return None;
        }
        Some(Failure { trial: t.name.clone(), error: recorded_failure(&dir)? })
    }).collect();
    let mut text = serde_json::to_string_pretty(&failures)?;
    text.push('\n');
    write_atomic(&out.join("failures.json"), text.as_bytes())
}

/// Several trials in this process as one pack; one JSON row per trial on stdout.
fn run_pack(pack: &[&Trial], out: &Path, device: &str, threads: usize, data: Option<&Path>, quiet: bool) -> Result<Outcome> {
    use crate::packed::runs::{packable, run_members, MemberEnd};
    let cfgs: Vec<crate::config::TrainConfig> = pack.iter().map(|t| crate::config::TrainConfig { device: device.to_string(), threads: Some(threads), ..t.config.clone() }).collect();
    if let Some(t) = pack.iter().zip(&cfgs).find(|(_, c)| !packable(&cfgs[0], c)) {
        bail!("trial {} differs from {} in more than seed and learning rate: they cannot share a pack", t.0.name, pack[0].name);
    }
    let rt = Runtime::new(&cfgs[0], quiet, true)?;
    let data = DeviceData::load(data, rt.device)?;
    let dirs: Vec<PathBuf> = pack.iter().map(|t| trial_dir(out, t)).collect();
    let ends = run_members(&cfgs, &dirs, pack.len(), &data, &rt);
    let mut signal = None;
    let rows: Vec<serde_json::Value> = pack.iter().zip(&dirs).zip(ends).map(|((t, dir), end)| match end {
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
        MemberEnd::Busy(e) => serde_json::json!({ "trial": t.name, "state": "busy", "error": e }),
        MemberEnd::Failed(e) => {
            let line = format!("{e:#}").lines().next().unwrap_or("").to_string();
            if dir.is_dir() {
                let _ = record_failure(dir, &line);
            }
            serde_json::json!({ "trial": t.name, "state": "failed", "error": line })
        }
    }).collect();
    let outcome = Outcome::new(format!("pack of {} trials ended", pack.len()), &serde_json::json!({ "pack": rows }))?;
    Ok(match signal {
        Some(sig) => outcome.failing(format!("pack of {} trials interrupted", pack.len()), crate::signals::exit_status(sig)),
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
        let rt = Runtime::new(&cfg, quiet, true)?;
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
            let line = format!("{e:#}").lines().next().unwrap_or("").to_string();
            if dir.is_dir() {
                let _ = record_failure(&dir, &line);
            }
            Err(e)
        }
    }
}
