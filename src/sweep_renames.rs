//! Trials that an earlier spec of the same sweep folder named otherwise. A trial is named by the
//! settings that vary, so a setting that was one value and is now a list (or the reverse)
//! renames every trial: `lr=0.01` becomes `lr=0.01,seed=0`. A folder that holds such a trial's
//! run, finished or not, is renamed to the trial's name before the trial runs, so that the
//! sweep neither trains it again nor leaves two runs of one configuration for `nndl report` to
//! count twice.
use crate::config::TrainConfig;
use crate::run_dir::MARKER;
use crate::sweep::Trial;
use crate::sweep_workers::trial_dir;
use anyhow::{anyhow, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Each of `mine` whose own folder does not exist and whose run another folder of `out` holds,
/// under a name that no trial of the spec (`trials`) has: the trial and that folder.
pub fn under_other_names<'a>(out: &Path, trials: &[Trial], mine: &[&'a Trial]) -> Vec<(&'a Trial, PathBuf)> {
    let missing: Vec<&Trial> = mine.iter().copied().filter(|t| !trial_dir(out, t).exists()).collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let names: HashSet<&str> = trials.iter().map(|t| t.name.as_str()).collect();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(out).into_iter().flatten().flatten().map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !names.contains(n)) && p.join(MARKER).is_file())
        .collect();
    // The same choice in every process, should two old folders hold one run.
    folders.sort();
    let mut by_run: HashMap<String, PathBuf> = HashMap::new();
    for dir in folders {
        if let Ok(cfg) = TrainConfig::load(&dir.join("config.json")) {
            by_run.entry(cfg.run_key()).or_insert(dir);
        }
    }
    missing.into_iter().filter_map(|t| by_run.remove(&t.config.run_key()).map(|dir| (t, dir))).collect()
}

/// Renames each folder found by `under_other_names` to its trial's name, and returns the
/// trials whose folder another process holds (training it under its old name, say): those are
/// left to it, as a trial busy elsewhere is, not trained a second time under the new name.
pub fn take_over(out: &Path, found: &[(&Trial, PathBuf)], quiet: bool) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for (t, from) in found {
        let to = trial_dir(out, t);
        match crate::run_dir::rename_run(from, &to) {
            Ok(()) if !quiet => crate::say!("note: {} held trial {}'s run under an earlier spec's name; renamed to {}", from.display(), t.name, to.display()),
            Ok(()) => {}
            // Another driver of this spec renamed it first.
            Err(_) if to.exists() && !from.exists() => {}
            Err(e) if e.is::<crate::run_dir::Busy>() => {
                if !quiet {
                    crate::say!("note: {} holds trial {}'s run under an earlier spec's name and is in use: the trial is left to that process", from.display(), t.name);
                }
                left.push(t.name.clone());
            }
            Err(e) => return Err(anyhow!("{} holds trial {}'s run under an earlier spec's name, and cannot be renamed to it: {e:#}", from.display(), t.name)),
        }
    }
    Ok(left)
}
