//! One configured training run into its folder, from the start or from its checkpoint: the
//! network, the loop's observer (log lines, metrics.csv, checkpoints and figures, signals), and
//! what a finished run leaves: model.safetensors, the figures and summary.json.
use crate::checkpoint::{self, Checkpoint};
use crate::config::{ModelKind, TrainConfig};
use crate::data::DeviceData;
use crate::metrics::{EvalPoint, MetricsLog};
use crate::models::conv_block::ConvPlan;
use crate::plot::{line_chart, Scale, Series};
use crate::run_dir::RunDir;
use crate::runtime::Runtime;
use crate::system_info::Environment;
use crate::trainer::{self, Ending, Observer, TrainContext, TrainOutcome};
use anyhow::{bail, Context, Result};
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tch::{nn, Device, Tensor};

pub const MODEL_FILE: &str = "model.safetensors";

/// A finished run whose weights were removed since, with its final checkpoint still there: it
/// counts as unfinished, and resuming it writes the weights, figures and summary again from
/// that checkpoint, as they were.
pub fn lost_its_weights(dir: &std::path::Path) -> bool {
    dir.join("summary.json").exists() && !dir.join(MODEL_FILE).exists() && dir.join(checkpoint::FILE).is_file()
}
/// Default checkpoint interval when --checkpoint-every is not given.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub model: String,
    pub preset: String,
    pub device: String,
    pub threads: i32,
    pub seed: u64,
    pub lr: f64,
    pub iterations: usize,
    #[serde(deserialize_with = "crate::metrics::f64_or_null")]
    pub final_test_loss: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_null")]
    pub final_test_accuracy: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_null")]
    pub final_train_loss: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_null")]
    pub final_train_accuracy: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_null")]
    pub best_test_accuracy: f64,
    pub homework_test_loss: f64,
    pub homework_test_accuracy: f64,
    /// The training loop, evaluations included, over every session of a resumed run.
    pub train_seconds: f64,
    /// Of which evaluations on the test set; with `eval_overlap`, the time they took beside the
    /// steps, on their own thread.
    pub eval_seconds: f64,
    /// Whether the evaluations ran beside the steps (the MLP on two CPU threads or more).
    #[serde(default)]
    pub eval_overlap: bool,
    /// Whether, beside, the steps took the evaluation thread's share of the threads while it
    /// had nothing to evaluate (only where a step computes the same bits on either share).
    #[serde(default)]
    pub eval_threads_lent: bool,
    pub evaluations: usize,
    /// Whether the training steps ran as a replayed CUDA graph.
    pub cuda_graph: bool,
    /// How this run trained in a pack (its last session); null for a single run.
    #[serde(default)]
    pub pack: Option<crate::packed::PackInfo>,
    /// How the CNN computed its convolution blocks (its last session); null for the MLP.
    #[serde(default)]
    pub convolutions: Option<ConvPlan>,
    pub deterministic: bool,
    pub tf32: bool,
    #[serde(default)]
    pub flush_denormals: bool,
    /// Whether this run was continued from a checkpoint.
    pub resumed: bool,
    /// This session's whole command, start-up included.
    pub wall_seconds: f64,
    pub out_dir: PathBuf,
    pub environment: Environment,
}

/// A network and the variables it trains.
pub struct Network {
    pub vs: nn::VarStore,
    pub net: nn::SequentialT,
}

/// Seeds libtorch and builds the configured network on `device`.
pub fn build_network(cfg: &TrainConfig, device: Device) -> Network {
    // Seeds wider than i64 wrap: every u64 names a stream, none panics.
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = crate::models::build(&vs.root(), cfg);
    Network { vs, net }
}

/// The parameters by name, sorted, on the host.
pub fn parameters(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Bytes a run may write: the model, a checkpoint (with Adam's two moments) and its temporary
/// copy, figures and metrics.
pub fn disk_estimate(cfg: &TrainConfig) -> u64 {
    let params = 4 * crate::models::parameter_count(cfg.model);
    let per_checkpoint = params * if cfg.optimizer == crate::config::Optimizer::Adam { 3 } else { 1 } + (1 << 20);
    params + 2 * per_checkpoint + (4 << 20) + (cfg.iterations / cfg.eval_every + 2) as u64 * 128
}

/// `--export-steps N`: what the first N steps did, for the step-by-step TF comparison.
pub struct StepExport {
    pub dir: PathBuf,
    pub steps: usize,
    /// Why writing it failed, for the command to fail with once the run has ended.
    pub failure: std::cell::RefCell<Option<String>>,
}

pub(crate) struct RunObserver<'a> {
    run: &'a RunDir,
    /// What --export-steps asks for, the variables it reads, and the losses so far.
    export: Option<(&'a StepExport, &'a nn::VarStore, Vec<f32>)>,
    cfg: &'a TrainConfig,
    log: MetricsLog,
    points: Vec<EvalPoint>,
    pb: &'a Progress,
    quiet: bool,
    /// What its log lines start with: the model's name, or with the seed where several runs
    /// share the output (a pack's member training alone).
    label: String,
    last_checkpoint: Instant,
    /// How many evaluations the figures drawn in this session show (None: none drawn yet).
    drawn: Option<usize>,
}

impl Observer for RunObserver<'_> {
    fn on_eval(&mut self, p: &EvalPoint) -> Result<()> {
        self.pb.set_message(format!("test acc {:.2}%", 100.0 * p.test_accuracy));
        self.pb.log(self.quiet, &format!(
            "{} iter {:>5}: train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4}",
            self.label, p.iteration, p.train_loss, p.train_accuracy, p.test_loss, p.test_accuracy));
        self.log.append(p)?;
        self.points.push(p.clone());
        Ok(())
    }

    fn checkpoint_due(&mut self, next: usize) -> bool {
        match self.cfg.checkpoint_every {
            Some(k) => next.is_multiple_of(k),
            None => self.last_checkpoint.elapsed() >= CHECKPOINT_PERIOD,
        }
    }

    fn on_checkpoint(&mut self, ck: &Checkpoint) -> Result<()> {
        self.log.sync()?;
        ck.save(&self.run.file(checkpoint::FILE))?;
        // The last checkpoint's figures are drawn once, by finish_run, right after it; others
        // only when an evaluation came since (--checkpoint-every 1 redrew them at every step).
        if ck.meta.next_iteration < self.cfg.iterations && self.drawn != Some(ck.meta.points.len()) {
            write_figures(self.run, self.cfg.model.name(), &ck.meta.points)?;
            self.drawn = Some(ck.meta.points.len());
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn stop_requested(&self) -> Option<i32> {
        crate::signals::requested()
    }

    fn on_step(&mut self, done: usize) {
        self.pb.set_position(done as u64);
        let Some((plan, vs, losses)) = &self.export else { return };
        let plan: &StepExport = plan;
        let mut result = Ok(());
        if done == 1 || done == plan.steps {
            result = crate::export::export_params(&plan.dir.join(format!("step-{done}")), vs, self.cfg.model);
        }
        if done == plan.steps && result.is_ok() {
            let masks = if self.cfg.model == ModelKind::Cnn { crate::models::cnn::take_masks() } else { vec![] };
            result = crate::export::export_steps(&plan.dir, losses, masks);
        }
        self.failed_export(result);
    }

    fn on_loss(&mut self, iteration: usize, loss: f64) {
        if let Some((plan, _, losses)) = &mut self.export {
            if iteration < plan.steps {
                losses.push(loss as f32);
            }
        }
    }
}

impl<'a> RunObserver<'a> {
    /// Watches a run in `run` that continues after `earlier` evaluations.
    pub(crate) fn new(run: &'a RunDir, cfg: &'a TrainConfig, earlier: Vec<EvalPoint>, pb: &'a Progress, quiet: bool) -> Result<RunObserver<'a>> {
        Ok(RunObserver {
            run,
            export: None,
            cfg,
            log: MetricsLog::start(&run.file("metrics.csv"), &earlier)?,
            points: earlier,
            pb,
            quiet,
            label: cfg.model.name().to_string(),
            last_checkpoint: Instant::now(),
            drawn: None,
        })
    }

    /// Log lines that name the run's seed.
    pub(crate) fn naming_the_seed(mut self) -> Self {
        self.label = format!("{} seed {}", self.cfg.model.name(), self.cfg.seed);
        self
    }

    /// The evaluations so far, earlier sessions' included.
    pub(crate) fn points(&self) -> &[EvalPoint] {
        &self.points
    }

    /// An export that fails stops, the run goes on, and the command fails at its end. What it
    /// wrote of the steps is removed: a reader would take part of them for all.
    fn failed_export(&mut self, result: Result<()>) {
        let (Err(e), Some((plan, ..))) = (result, &self.export) else { return };
        let _ = crate::export::remove_steps(&plan.dir);
        plan.failure.replace(Some(format!("{e:#}")));
        self.export = None;
    }
}

/// How a run ended, for the command to report.
pub enum RunEnd {
    Finished(Box<RunSummary>),
    Interrupted { signal: i32, next_iteration: usize, out_dir: PathBuf },
}

/// Trains `cfg` into `run` (from `resume` when given), writing every file as it goes.
/// A divergence is an error, after what was written is kept.
pub fn train_into(cfg: &TrainConfig, network: &Network, data: &DeviceData, run: &RunDir, rt: &Runtime, resume: Option<&Checkpoint>, started: Instant) -> Result<RunEnd> {
    train_exporting(cfg, network, data, run, rt, Start { resume, export: None, at: started })
}

/// Where a session of a run starts: from scratch or a checkpoint, what it also exports, and
/// when the command started (for its wall time).
pub struct Start<'a> {
    pub resume: Option<&'a Checkpoint>,
    pub export: Option<&'a StepExport>,
    pub at: Instant,
}

/// `train_into`, also writing what `start.export` asks for.
pub fn train_exporting(cfg: &TrainConfig, network: &Network, data: &DeviceData, run: &RunDir, rt: &Runtime, start: Start) -> Result<RunEnd> {
    let Start { resume, export, at: started } = start;
    let started_utc = crate::system_info::utc_now();
    // Written by a run's first session, and by a later one where it went missing (the
    // checkpoint holds the same config), so that eval and --config find it in a finished run.
    if resume.is_none() || !run.file("config.json").exists() {
        run.write_json("config.json", cfg)?;
    }
    crate::signals::install()?;
    if let (Some(note), false) = (resume.and_then(|ck| ck.changed_plan(ConvPlan::for_run(cfg.model, rt.device))), rt.quiet) {
        crate::say!("note: {note}");
    }
    let name = cfg.model.name();
    let earlier: Vec<EvalPoint> = resume.map(|c| c.meta.points.clone()).unwrap_or_default();
    let pb = Progress::new(cfg.iterations as u64, name, rt.quiet);
    pb.set_position(resume.map_or(0, |c| c.meta.next_iteration) as u64);
    if export.is_some() && cfg.model == ModelKind::Cnn {
        crate::models::cnn::record_masks();
    }
    let mut obs = RunObserver::new(run, cfg, earlier, &pb, rt.quiet)?;
    obs.export = export.map(|e| (e, &network.vs, Vec::new()));
    let ctx = TrainContext { net: &network.net, vs: &network.vs, cfg, data, allow_graph: rt.allow_graph, quiet: rt.quiet, profile_steps: rt.profile_steps };
    let outcome = crate::torch_extras::catch_panics(|| trainer::train(&ctx, resume, &mut obs));
    pb.finish();
    // Why it stopped, for `report`, a rerun and `resume` to say (where it can still be written):
    // a failure in the loop, or in writing what it leaves (its weights, figures, summary).
    let record = |e: &anyhow::Error| drop(crate::run_dir::record_failure(&run.path, &error_line(e)));
    let outcome = outcome.inspect_err(record)?;
    let session = Session { started, started_utc, resumed: resume.is_some() };
    finish_run(cfg, run, rt, &parameters(&network.vs), outcome, obs.points(), session).inspect_err(record)
}

/// When and how a session of a run started, for its summary.
pub(crate) struct Session {
    pub started: Instant,
    pub started_utc: String,
    pub resumed: bool,
}

/// What a session leaves when its loop has ended: on finishing, the weights, figures and
/// summary.json (last: it marks the run finished); on a divergence, the figures and an error.
pub(crate) fn finish_run(cfg: &TrainConfig, run: &RunDir, rt: &Runtime, params: &[(String, Tensor)], outcome: TrainOutcome, seen: &[EvalPoint], session: Session) -> Result<RunEnd> {
    closing(cfg, run, rt, params, outcome, seen, session)?.write(run)
}

/// A session's end in two halves: what needs libtorch (the weights' bytes, the environment),
/// taken in the training thread by `closing`, and the files, written by `Closing::write` on any
/// thread, so that a pack writes its members' folders side by side.
pub(crate) enum Closing {
    /// Interrupted: its checkpoint is all it leaves.
    Done(RunEnd),
    /// Diverged: its figures, then the error.
    Diverged { name: &'static str, points: Vec<EvalPoint>, reason: String },
    /// Finished: the weights, the figures, then summary.json.
    Finished { model: Vec<u8>, points: Vec<EvalPoint>, summary: Box<RunSummary>, started: Instant },
}

/// The first half of `finish_run`, in the thread that trained.
pub(crate) fn closing(cfg: &TrainConfig, run: &RunDir, rt: &Runtime, params: &[(String, Tensor)], outcome: TrainOutcome, seen: &[EvalPoint], session: Session) -> Result<Closing> {
    let name = cfg.model.name();
    if let Some(profile) = &outcome.profile {
        profile.write(run)?;
    }
    match outcome.ending {
        Ending::Finished => {}
        Ending::Interrupted { signal, next_iteration } => {
            return Ok(Closing::Done(RunEnd::Interrupted { signal, next_iteration, out_dir: run.path.clone() }));
        }
        Ending::Diverged { iteration, exact, last_finite, in_test_loss } => {
            let what = match (in_test_loss, exact) {
                (true, _) => format!("test loss became NaN or infinite at iteration {iteration}'s evaluation, the training loss still finite"),
                (false, true) => format!("loss became NaN or infinite at iteration {iteration}"),
                (false, false) => format!("loss became NaN or infinite by iteration {iteration}"),
            };
            let last = last_finite.map(|(i, l)| format!(" (last finite loss {l:.4e} at iteration {i})")).unwrap_or_default();
            let reason = format!("training diverged: the {what}{last}; try a lower --lr (now {}), or --allow-nan to go on as TF would", crate::config::number(cfg.lr));
            return Ok(Closing::Diverged { name, points: seen.to_vec(), reason });
        }
        Ending::Failed(error) => anyhow::bail!("{error} (it stopped alone; once mended, the same command continues it)"),
    }
    let model = crate::tensor_file::encode(&run.file(MODEL_FILE), params, None)?;
    let points = outcome.points;
    let last = points.last().context("training produced no evaluation")?;
    let (homework_test_loss, homework_test_accuracy) = crate::homework::reported(cfg.model);
    let summary = RunSummary {
        model: name.into(),
        preset: cfg.preset.name().into(),
        device: crate::device::name(rt.device),
        threads: tch::get_num_threads(),
        seed: cfg.seed,
        lr: cfg.lr,
        iterations: cfg.iterations,
        final_test_loss: last.test_loss,
        final_test_accuracy: last.test_accuracy,
        final_train_loss: last.train_loss,
        final_train_accuracy: last.train_accuracy,
        best_test_accuracy: points.iter().map(|p| p.test_accuracy).fold(0.0, f64::max),
        homework_test_loss,
        homework_test_accuracy,
        train_seconds: outcome.train_seconds,
        eval_seconds: outcome.eval_seconds,
        eval_overlap: outcome.eval_overlap,
        eval_threads_lent: outcome.eval_threads_lent,
        evaluations: points.len(),
        cuda_graph: outcome.cuda_graph,
        pack: outcome.pack.clone(),
        convolutions: ConvPlan::for_run(cfg.model, rt.device),
        deterministic: cfg.deterministic,
        tf32: cfg.tf32,
        flush_denormals: cfg.flush_denormals,
        resumed: session.resumed,
        // Both set when the files are written, below.
        wall_seconds: 0.0,
        out_dir: run.path.clone(),
        environment: Environment::capture(rt.device, session.started_utc),
    };
    Ok(Closing::Finished { model, points, summary: Box::new(summary), started: session.started })
}

impl Closing {
    /// The second half of `finish_run`: the files, into `run` (no libtorch call).
    pub(crate) fn write(self, run: &RunDir) -> Result<RunEnd> {
        match self {
            Closing::Done(end) => Ok(end),
            Closing::Diverged { name, points, reason } => {
                write_figures(run, name, &points)?;
                // The divergence is the error to report even where its record cannot be written.
                let _ = crate::run_dir::record_failure(&run.path, &reason);
                bail!("{reason}");
            }
            Closing::Finished { model, points, mut summary, started } => {
                crate::run_dir::write_atomic(&run.file(MODEL_FILE), &model)?;
                write_figures(run, &summary.model, &points)?;
                summary.environment.finished_utc = crate::system_info::utc_now();
                summary.wall_seconds = started.elapsed().as_secs_f64();
                run.write_json("summary.json", &summary)?;
                // An earlier session's failure no longer describes the folder (summary.json wins anyway).
                let _ = std::fs::remove_file(run.file(crate::run_dir::FAILED));
                Ok(RunEnd::Finished(summary))
            }
        }
    }
}

pub fn write_figures(run: &RunDir, name: &str, points: &[EvalPoint]) -> Result<()> {
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

/// Trains `cfg` into `dir` whatever the folder holds: an unfinished run (same config) is resumed
/// from its checkpoint, a missing or empty folder gets a fresh run, and a finished run is
/// returned as it is (`false`: nothing was trained here). The folder is locked before it is
/// judged, so of several processes given the same folder exactly one trains it. What `sweep`
/// does for each trial.
pub fn run_or_resume(cfg: &TrainConfig, dir: &std::path::Path, data: &DeviceData, rt: &Runtime) -> Result<(RunEnd, bool)> {
    use crate::run_dir::FolderState;
    let started = Instant::now();
    let (run_dir, state) = claim_for(cfg, dir)?;
    let ck = match state {
        FolderState::FinishedRun if !lost_its_weights(dir) => {
            check_saved_config(cfg, &run_dir)?;
            return Ok((RunEnd::Finished(Box::new(read_summary(dir)?)), false));
        }
        FolderState::FinishedRun | FolderState::UnfinishedRun => saved_checkpoint(cfg, &run_dir)?,
        _ => None,
    };
    let cfg = &on_its_threads(cfg, ck.as_ref(), rt.device);
    let network = build_network(cfg, rt.device);
    Ok((train_into(cfg, &network, data, &run_dir, rt, ck.as_ref(), started)?, true))
}

/// `cfg` on the thread count its run computes with, which this thread then takes: a resumed
/// CPU run's is the count it started with (its checkpoint's config), so that it ends bit for bit
/// as if never stopped, whatever --threads a rerun of its sweep or `--seeds` command is given
/// (convolutions and large products round by thread count); a fresh run's is `cfg`'s. Capped at
/// what this machine takes, as `Runtime::new` caps it.
pub(crate) fn on_its_threads(cfg: &TrainConfig, resume: Option<&Checkpoint>, device: Device) -> TrainConfig {
    let recorded = resume.filter(|_| !device.is_cuda()).and_then(|ck| ck.meta.config.threads);
    let threads = recorded.or(cfg.threads).map(|n| n.min(crate::config::max_threads()));
    if let Some(n) = threads {
        tch::set_num_threads(n as i32);
    }
    TrainConfig { threads, ..cfg.clone() }
}

/// Records a run's failure in its folder (failed.txt: `report` shows it, a rerun says it tries
/// again) when the folder holds this run: a folder it was refused (another configuration's run,
/// files nndl did not write) is not its to mark, and the error names the refusal. Nor is a
/// folder another process holds: a failure before this one took it (its MNIST files, its
/// device) says nothing of the run training there.
pub(crate) fn record_run_failure(dir: &std::path::Path, cfg: &TrainConfig, line: &str) {
    let Ok(_held) = crate::run_dir::DirLock::acquire(dir) else { return };
    let ours = dir.join(crate::run_dir::MARKER).is_file()
        && TrainConfig::read(&dir.join("config.json")).map_or(true, |saved| saved.same_run(cfg));
    if ours {
        let _ = crate::run_dir::record_failure(dir, line);
    }
}

/// Claims `dir` for a run of `cfg` (`RunDir::claim`). A folder that another process holds
/// while it trains another configuration is refused as that conflict, not as busy: a sweep or
/// `--seeds` counts a busy folder as trained elsewhere, and this one never would train `cfg`.
pub(crate) fn claim_for(cfg: &TrainConfig, dir: &std::path::Path) -> Result<(RunDir, crate::run_dir::FolderState)> {
    RunDir::claim(dir).map_err(|e| match e.is::<crate::run_dir::Busy>().then(|| TrainConfig::load(&dir.join("config.json"))) {
        Some(Ok(saved)) if !saved.same_run(cfg) => {
            anyhow::anyhow!("{} is in use by an nndl run of another configuration ({}); choose another folder", dir.display(), saved.differences(cfg).join("; "))
        }
        _ => e,
    })
}

/// The checkpoint of an unfinished run of `cfg` in `run` (None when it has none yet); a run
/// of another configuration is refused.
pub(crate) fn saved_checkpoint(cfg: &TrainConfig, run: &RunDir) -> Result<Option<Checkpoint>> {
    check_saved_config(cfg, run)?;
    let ck_path = run.file(checkpoint::FILE);
    if !ck_path.exists() {
        return Ok(None);
    }
    let ck = Checkpoint::load(&ck_path)?;
    // A checkpoint of another run (copied in, or left by an earlier config) would continue
    // that run's parameters under this one's name.
    if !ck.meta.config.same_run(cfg) {
        bail!("{} was written by another config than {}; start the run again with --force", ck_path.display(), run.file("config.json").display());
    }
    Ok(Some(ck))
}

/// A run folder met again (a rerun of the same command, a sweep) must hold a run of `cfg`:
/// another configuration's run, finished or not, is refused, as is a config.json that does not
/// read.
pub(crate) fn check_saved_config(cfg: &TrainConfig, run: &RunDir) -> Result<()> {
    let dir = run.path.display();
    let config = run.file("config.json");
    match TrainConfig::load(&config) {
        Ok(saved) if !saved.same_run(cfg) => {
            let differences = saved.differences(cfg).join("; ");
            if run.file("summary.json").exists() {
                bail!("{dir} holds a finished run of another configuration ({differences}); remove it or choose another folder");
            }
            bail!("{dir} holds another configuration's run ({differences}); continue it as it is with `{}`, or remove it or choose another folder", crate::run_dir::resume_command(&run.path));
        }
        Ok(_) => {}
        // A run stopped before it wrote its config has nothing of it to keep.
        Err(_) if !config.exists() => {}
        Err(e) => bail!("{e}; repair it or remove {dir}"),
    }
    Ok(())
}

/// A finished run's summary.json.
pub(crate) fn read_summary(dir: &std::path::Path) -> Result<RunSummary> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    // The last checkpoint holds the end of a finished run: resuming it writes the summary again.
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} does not read ({e}); remove it and `{}` writes it again", path.display(), crate::run_dir::resume_command(dir)))
}

/// An error's first line, with its causes (`{:#}`): what failed.txt, failures.json and a
/// pack's summary record of it.
pub fn error_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_string()
}

/// One human line for stderr at the end of a run.
pub fn describe(s: &RunSummary) -> String {
    format!(
        "{} ({}) on {}: test loss {:.4}, accuracy {:.2}% (homework: {}, {:.1}%) in {:.1} s -> {}",
        s.model, s.preset, s.device, s.final_test_loss, 100.0 * s.final_test_accuracy,
        s.homework_test_loss, 100.0 * s.homework_test_accuracy, s.wall_seconds, s.out_dir.display()
    )
}

/// What `resume` and the interruption message tell the user.
pub fn resume_hint(out_dir: &std::path::Path, next_iteration: usize) -> String {
    format!("interrupted before iteration {next_iteration}; checkpoint written; continue with `{}`", crate::run_dir::resume_command(out_dir))
}
