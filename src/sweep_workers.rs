//! A sweep's worker processes. Each worker is `nndl sweep SPEC --trial NAME...` training one
//! trial or one pack of trials, so that a crash in one is recorded and the others go on. The
//! driver keeps `--jobs` of them busy (spread over the GPUs), passes a signal meant for the
//! sweep on to them, and counts how each trial ended from the worker's JSON and exit status.
use crate::progress::Progress;
use crate::run::RunSummary;
use crate::sweep::Trial;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A worker's exit status when its trial is being trained by another process.
pub const EXIT_BUSY: u8 = 75;

#[derive(Serialize)]
pub struct SweepSummary {
    pub out_dir: PathBuf,
    pub trials: usize,
    /// This process's shard (1-based) and the number of shards.
    pub shard: String,
    pub done: usize,
    pub skipped: usize,
    pub busy_elsewhere: usize,
    /// Trials whose worker a signal stopped: the sweep's own, passed on, or one sent to the
    /// worker alone (which leaves the sweep unfinished though the driver was not stopped).
    pub interrupted: usize,
    /// Trials still queued when a signal stopped the sweep: no worker started them.
    pub not_started: usize,
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

/// A trial's run folder inside the sweep's folder.
pub fn trial_dir(out: &Path, t: &Trial) -> PathBuf {
    out.join(&t.name)
}

/// A trial is done when its summary.json reads as a run summary and its config.json is the
/// trial's (a folder a since-changed spec left there is not this trial's result).
pub fn finished(out: &Path, trial: &Trial) -> Option<RunSummary> {
    finished_in(&trial_dir(out, trial), trial)
}

/// `finished` of the folder `dir`, wherever it is.
pub fn finished_in(dir: &Path, trial: &Trial) -> Option<RunSummary> {
    let saved = crate::config::TrainConfig::load(&dir.join("config.json")).ok()?;
    if !saved.same_run(&trial.config) || crate::run::lost_its_weights(dir) {
        return None;
    }
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).ok()?).ok()
}

/// How the driver starts its workers.
pub struct Workers {
    pub jobs: usize,
    pub threads: usize,
    pub device: String,
    pub gpus: usize,
    pub data: Option<PathBuf>,
    /// --pack as given.
    pub pack: Option<usize>,
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

    fn spawn(&self, spec: &Path, out: &Path, pack: &[&Trial], slot: usize) -> Result<Worker> {
        let exe = nndl_executable()?;
        let mut cmd = Command::new(exe);
        cmd.arg("sweep").arg(spec).arg("--out").arg(out).args(["--quiet", "--json"]);
        for trial in pack {
            cmd.args(["--trial", &trial.name]);
        }
        cmd.args(["--trial-digest", &crate::sweep::configs_digest(pack)]);
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
        Worker::start(cmd)
    }
}

/// A running worker. Its stdout and stderr are read while it runs, by a thread each: a pack's
/// JSON (about 1.5 KB a member) outgrows a pipe's 64 KB, and a worker blocked on a full pipe
/// would never exit.
struct Worker {
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Worker {
    fn start(mut cmd: Command) -> Result<Worker> {
        let mut child = cmd.spawn().context("cannot start a sweep worker")?;
        let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
        Ok(Worker { child, stdout, stderr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn has_exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Its exit status and everything it wrote.
    fn output(mut self) -> std::io::Result<std::process::Output> {
        let status = self.child.wait()?;
        let stdout = self.stdout.join().unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        Ok(std::process::Output { status, stdout, stderr })
    }
}

/// Reads a worker's pipe to its end on a thread of its own.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// A worker's last words: the last line it wrote to stderr, without nndl's prefix.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
    last.strip_prefix("nndl: error: ").or_else(|| last.strip_prefix("nndl: ")).unwrap_or(last).to_string()
}

/// A worker that a SIGINT or SIGTERM ended before its handlers were in place (a stop passed on
/// as it started) was interrupted, not failed: its trials resume on the next run.
fn stopped_by_signal(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(status.code(), Some(130) | Some(143)) || matches!(status.signal(), Some(libc::SIGINT) | Some(libc::SIGTERM))
}

/// This program's path, for workers. A binary rebuilt while the sweep runs shows as
/// "PATH (deleted)": the new one at PATH is what the workers start.
pub fn nndl_executable() -> Result<PathBuf> {
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

fn wait_worker(worker: Worker) -> Ended {
    let out = match worker.output() {
        Ok(o) => o,
        Err(e) => return Ended::Failed(format!("lost the worker: {e}")),
    };
    let line = last_line(&out.stderr);
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
        _ if stopped_by_signal(out.status) => Ended::Interrupted,
        Some(c) => Ended::Failed(if line.is_empty() { format!("exit status {c}") } else { line }),
        None => Ended::Failed(format!("killed by a signal{}", if line.is_empty() { String::new() } else { format!(" ({line})") })),
    }
}

/// How each trial of a pack's worker ended: from its JSON rows, or all alike when it gave none.
fn wait_pack(worker: Worker, pack: &[&Trial]) -> Vec<Ended> {
    let out = match worker.output() {
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
        let line = last_line(&out.stderr);
        let why = match (out.status.code(), line.is_empty()) {
            (_, false) => line,
            (Some(c), true) => format!("the pack's worker gave no result (exit status {c})"),
            (None, true) => "the pack's worker was killed by a signal".to_string(),
        };
        return pack.iter().map(|_| if stopped_by_signal(out.status) { Ended::Interrupted } else { Ended::Failed(why.clone()) }).collect();
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
pub fn into_packs(queue: Vec<&Trial>, size: usize) -> VecDeque<Vec<&Trial>> {
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
        Ended::Interrupted => summary.interrupted += 1,
        Ended::Failed(error) => {
            summary.failed += 1;
            progress.log(quiet, &format!("trial {name} failed: {error}"));
            summary.failures.push(Failure { trial: name.to_string(), error });
        }
    }
    progress.inc(1);
}

/// Runs `mine` in worker processes, counting into `summary` (which names the sweep's folder).
pub fn drive(spec: &Path, mine: &[&Trial], workers: Workers, quiet: bool, mut summary: SweepSummary, started: Instant) -> Result<SweepSummary> {
    crate::signals::install()?;
    crate::signals::stop_in_good_order();
    let out = summary.out_dir.clone();
    let out = out.as_path();
    let progress = Progress::new(mine.len() as u64, "sweep", quiet);
    let mut queue: Vec<&Trial> = Vec::new();
    for t in mine {
        match finished(out, t) {
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
    let mut running: Vec<Option<(Vec<&Trial>, Worker)>> = (0..workers.jobs).map(|_| None).collect();
    let mut forwarded = false;
    // A worker that cannot start (no processes left) stops the sweep, after the running ones
    // end: they are waited for, not left to die with the driver.
    let mut spawn_error = None;
    loop {
        let stopping = crate::signals::requested().is_some() || spawn_error.is_some();
        if let (Some(signal), false) = (crate::signals::requested(), forwarded) {
            // A signal meant for the sweep (Slurm's `--signal=B:...`, a plain `kill`) reaches
            // only this process: pass it on, so each worker checkpoints and stops now.
            for (_, child) in running.iter().flatten() {
                // SAFETY: kill(2) on our own live child's pid; at worst it has just exited.
                unsafe { libc::kill(child.pid() as i32, signal) };
            }
            forwarded = true;
        }
        for (slot, worker) in running.iter_mut().enumerate() {
            if worker.is_none() && !stopping {
                if let Some(pack) = queue.pop_front() {
                    match workers.spawn(spec, out, &pack, slot) {
                        Ok(child) => *worker = Some((pack, child)),
                        Err(e) => spawn_error = Some(e),
                    }
                }
            }
            let exited = match worker.as_mut() {
                Some((_, child)) => child.has_exited(),
                None => false,
            };
            if let Some((pack, child)) = exited.then(|| worker.take()).flatten() {
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
    summary.not_started = queue.iter().map(Vec::len).sum();
    if let Some(e) = spawn_error {
        return Err(e.context(format!("{} trials finished, {} failed before it", summary.done, summary.failed)));
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
