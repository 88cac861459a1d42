//! `nndl eval DIR`: a finished run's weights on the test set, evaluated as the run evaluated
//! (through the faithful dropout when its preset does, seeded by the run's seed), with a
//! confusion matrix (`confusion.png`) and `eval.json` written beside the run. A folder it cannot
//! write in (read-only: a note; a full disk: a warning) gets no files, and the result is printed
//! all the same (exit 0).
use super::Outcome;
use crate::cli::EvalArgs;
use crate::config::{Origin, TrainConfig};
use crate::data::DeviceSplit;
use crate::run::{self, MODEL_FILE};
use crate::run_dir::RunDir;
use crate::runtime::Runtime;
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Kind, Tensor};

#[derive(Serialize)]
pub struct EvalReport {
    pub run_dir: std::path::PathBuf,
    pub model: String,
    pub preset: String,
    pub device: String,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// `confusion[true][predicted]` counts over the 10 000 test images.
    pub confusion: Vec<Vec<u64>>,
    /// The run's own final test figures from summary.json, when it has one.
    pub run_final_test_loss: Option<f64>,
    pub run_final_test_accuracy: Option<f64>,
}

/// Copies saved weights into the network's variables; any missing, extra or misshapen tensor
/// is one error naming both shapes.
pub fn load_weights(vs: &nn::VarStore, saved: Vec<(String, Tensor)>, what: &str, model: &str) -> Result<()> {
    let mut saved: HashMap<String, Tensor> = saved.into_iter().collect();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            let Some(src) = saved.remove(&name) else {
                bail!("{what} lacks {name} {:?} that the {model} needs (are these weights of another model?)", var.size());
            };
            if src.size() != var.size() {
                bail!("{what} holds {name} of shape {:?} but the {model} needs {:?}", src.size(), var.size());
            }
            // Floats of another width convert; integers would be some other file's bits.
            if !src.is_floating_point() {
                bail!("{what} holds {name} as {:?}, not floating point (not nndl's weights?)", src.kind());
            }
            var.copy_(&src.to_kind(var.kind()));
        }
        Ok(())
    })?;
    if let Some(extra) = saved.keys().min() {
        bail!("{what} holds {extra} {:?}, which the {model} does not have (weights of another model?)", saved[extra].size());
    }
    Ok(())
}

/// What a folder whose config.json does not load as an MNIST run's is instead, in words: not a
/// folder, a reproduce, a folder of runs, an XOR run (None: the load's own error says it).
fn not_one_mnist_run(dir: &Path) -> Option<String> {
    let shown = dir.display();
    if !dir.is_dir() {
        return Some(format!("{shown} is not a folder"));
    }
    if dir.join(super::reproduce::SETTINGS).is_file() {
        // A finished stage first: an unfinished one has no weights to evaluate.
        let stages = || ["mlp", "cnn"].iter().map(|s| dir.join(s)).filter(|d| d.join("config.json").is_file());
        let stage = stages().find(|d| d.join(MODEL_FILE).is_file()).or_else(|| stages().next());
        return Some(match stage {
            Some(run) => format!("{shown} is a reproduce folder: evaluate one of its runs, as `nndl eval {}`", crate::run_dir::shell_word(&run.display().to_string())),
            None => format!("{shown} is a reproduce folder that holds no MNIST run (yet)"),
        });
    }
    let config = dir.join("config.json");
    if !config.exists() {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).filter(|p| p.join(crate::run_dir::MARKER).exists()).collect();
        runs.sort();
        let first = runs.first()?;
        let what = if runs.len() == 1 { "a run in a folder of its own".to_string() } else { format!("{} runs, not one", runs.len()) };
        return Some(format!("{shown} holds {what}: evaluate {}, as `nndl eval {}`", if runs.len() == 1 { "it" } else { "each" }, crate::run_dir::shell_word(&first.display().to_string())));
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).ok()?).ok()?;
    (json.get("epochs").is_some() && json.get("model").is_none()).then(|| format!("{shown} is an XOR run: `nndl eval` evaluates MNIST runs (mlp, cnn)"))
}

/// confusion.png and eval.json, beside the run.
fn write_files(run_dir: &RunDir, report: &EvalReport) -> Result<()> {
    crate::plot::confusion_chart(&run_dir.file("confusion.png"), &format!("{}: test-set confusion (rows: true digit)", report.model.to_uppercase()), &report.confusion)?;
    run_dir.write_json("eval.json", report)
}

pub fn run(args: &EvalArgs) -> Result<Outcome> {
    let dir = &args.run_dir;
    let mut cfg = TrainConfig::load(&dir.join("config.json")).map_err(|e| not_one_mnist_run(dir).map_or(e, |why| anyhow::anyhow!(why)))?;
    let model_path = dir.join(MODEL_FILE);
    if !model_path.is_file() {
        let shown = dir.display();
        match crate::run_dir::recorded_failure(dir) {
            Some(reason) => bail!("{shown} has no {MODEL_FILE}: the run failed ({reason})"),
            None if crate::run::lost_its_weights(dir) => bail!("{shown} has no {MODEL_FILE} although the run finished (removed?): `{}` writes it again from the final checkpoint", crate::run_dir::resume_command(dir)),
            None if dir.join("summary.json").exists() => bail!("{shown} has no {MODEL_FILE} although the run finished (removed?): train it again with --force"),
            None => bail!("{shown} has no {MODEL_FILE}: the run has not finished (if it is not running, continue it with `{}`)", crate::run_dir::resume_command(dir)),
        }
    }
    if let Some(d) = &args.device {
        cfg.device = d.clone();
        crate::device::DeviceSpec::parse(d)?;
    }
    let flags = if args.device.is_some() { vec!["device"] } else { vec![] };
    let mut rt = Runtime::new(&cfg, &Origin::FileAndFlags(dir.join("config.json"), flags), args.report.quiet, false)?;
    let test = DeviceSplit::load_test(args.data.as_deref(), rt.device)?;
    // A folder this process cannot write (read-only media, another user's runs) is evaluated
    // all the same: only eval.json and confusion.png are not written.
    let run_dir = match crate::run_dir::writable(dir) {
        Ok(()) => Some(RunDir::open(dir)?),
        Err(e) => {
            if !args.report.quiet {
                crate::say!("note: cannot write in {} ({e}): eval.json and confusion.png are not written", dir.display());
            }
            None
        }
    };
    rt.say_note();
    let network = run::build_network(&cfg, rt.device);
    let (saved, _) = crate::tensor_file::read(&model_path)?;
    load_weights(&network.vs, saved, MODEL_FILE, cfg.model.name())?;
    let _denormals = crate::torch_extras::DenormalMode::enter(cfg.flush_denormals)?;
    // The faithful CNN evaluates through dropout: seeded, so `eval` gives the same figures twice.
    tch::manual_seed(cfg.seed as i64);
    let counts = Tensor::zeros([100], (Kind::Int64, rt.device));
    let (test_loss, test_accuracy) = crate::trainer::evaluate_with(&network.net, &test, cfg.eval_chunk(rt.device), |pred, labels| {
        let cells = labels * 10 + pred;
        let _ = counts.shallow_clone().index_add_(0, &cells, &cells.ones_like());
    });
    let flat: Vec<i64> = Vec::try_from(counts.to_device(tch::Device::Cpu))?;
    let confusion: Vec<Vec<u64>> = flat.chunks(10).map(|r| r.iter().map(|&c| c as u64).collect()).collect();
    let summary: Option<serde_json::Value> = std::fs::read_to_string(dir.join("summary.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let report = EvalReport {
        run_dir: dir.clone(),
        model: cfg.model.name().into(),
        preset: cfg.preset.name().into(),
        device: crate::device::name(rt.device),
        test_loss,
        test_accuracy,
        confusion,
        run_final_test_loss: summary.as_ref().and_then(|s| s["final_test_loss"].as_f64()),
        run_final_test_accuracy: summary.as_ref().and_then(|s| s["final_test_accuracy"].as_f64()),
    };
    if let Some(run_dir) = &run_dir {
        // As where the folder is read-only: the evaluation is the result, its files a copy of it.
        if let Err(e) = write_files(run_dir, &report) {
            crate::say!("warning: {e:#}; the result is printed only");
        }
    }
    let mut human = format!("{} ({}) weights from {}: test loss {:.4}, accuracy {:.2}%", report.model, report.preset, dir.display(), test_loss, 100.0 * test_accuracy);
    if let (Some(l), Some(a)) = (report.run_final_test_loss, report.run_final_test_accuracy) {
        human.push_str(&format!(" (the run's own final evaluation: {l:.4}, {:.2}%)", 100.0 * a));
    }
    Outcome::new(human, &report)
}
