//! Aggregating finished runs: per configuration (every setting but the seed), the number of
//! seeds and the mean, sample standard deviation, min and max of the final test accuracy and
//! loss, the best accuracy and the mean training time; sorted by mean accuracy.
use crate::config::TrainConfig;
use crate::metrics::{read_csv, EvalPoint};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One finished run as the report sees it.
pub struct RunRecord {
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub final_test_accuracy: f64,
    pub final_test_loss: f64,
    pub best_test_accuracy: f64,
    pub train_seconds: f64,
    /// Trained in a pack (summary.json's `pack`): its train_seconds are the whole pack's.
    pub packed: bool,
    /// metrics.csv, when it reads.
    pub points: Vec<EvalPoint>,
}

/// A run that stopped on an error (a divergence), with the reason its folder records: counted
/// in its configuration's row, kept out of the statistics.
pub struct FailedRun {
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub reason: String,
}

/// The runs `collect` found.
#[derive(Default)]
pub struct Found {
    pub finished: Vec<RunRecord>,
    pub failed: Vec<FailedRun>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Within [min, max], and exactly the value when all are equal.
    pub mean: f64,
    /// Sample standard deviation (n - 1), exactly 0 when all values are equal; none (null) for a
    /// single run, and in a configuration's report for fewer than two distinct seeds (runs of one
    /// seed are no sample of the spread over seeds).
    pub std: Option<f64>,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// The sums are compensated and the mean refined once around a first estimate, so that the
    /// mean is the exact one's nearest float (a plain running sum put three copies of 0.3398 at
    /// 0.33980000000000005, above their max, and printed 86.05% for a mean of 0.86055).
    pub fn of(xs: &[f64]) -> Stats {
        let n = xs.len() as f64;
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let rough = accurate_sum(xs.iter().copied()) / n;
        let mut mean = if rough.is_finite() { rough + accurate_sum(xs.iter().map(|x| x - rough)) / n } else { rough };
        // min > max only when every value is NaN (a summary without train_seconds).
        if min <= max {
            mean = mean.clamp(min, max);
        }
        let spread = || if min == max { 0.0 } else { (accurate_sum(xs.iter().map(|x| (x - mean).powi(2))) / (n - 1.0)).sqrt() };
        Stats { mean, std: (xs.len() > 1).then(spread), min, max }
    }
}

/// Neumaier's compensated sum: the rounding error of each addition is carried along, so the
/// result is as if summed exactly and rounded once (for the sums a report meets).
fn accurate_sum(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut lost) = (0.0f64, 0.0f64);
    for x in xs {
        let t = sum + x;
        lost += if sum.abs() >= x.abs() { (sum - t) + x } else { (x - t) + sum };
        sum = t;
    }
    sum + lost
}

#[derive(Serialize)]
pub struct GroupReport {
    /// The settings that tell this configuration from the others (`lr=0.01`), or the model and
    /// preset when there is one configuration.
    pub label: String,
    /// Every setting of the configuration except the seed.
    pub settings: serde_json::Value,
    /// The seeds of the finished runs, which the statistics cover (none when every run failed).
    pub seeds: Vec<u64>,
    pub test_accuracy: Option<Stats>,
    pub test_loss: Option<Stats>,
    pub best_test_accuracy: Option<f64>,
    pub mean_train_seconds: Option<f64>,
    /// Of its finished runs, those trained in a pack, whose train_seconds are the whole pack's.
    pub packed_runs: usize,
    /// The runs of this configuration that failed: seed, folder and reason.
    pub failed: Vec<FailedSeed>,
    /// Indices into `Found::finished`.
    #[serde(skip)]
    pub runs: Vec<usize>,
}

impl GroupReport {
    /// How many seeds its finished runs have (fewer than its runs where a seed ran twice).
    pub fn distinct_seeds(&self) -> usize {
        distinct(&self.seeds)
    }
}

#[derive(Serialize)]
pub struct FailedSeed {
    pub seed: u64,
    pub dir: PathBuf,
    pub reason: String,
}

/// Settings that do not change what a run computes, or that the grouping must ignore.
const NOT_CONFIGURATION: [&str; 6] = ["seed", "device", "threads", "checkpoint_every", "notes", "allow_nan"];

fn configuration(cfg: &TrainConfig) -> serde_json::Map<String, serde_json::Value> {
    let mut v = match serde_json::to_value(cfg) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    for k in NOT_CONFIGURATION {
        v.remove(k);
    }
    v
}

enum Read {
    Finished(RunRecord),
    Failed(FailedRun),
}

fn read_run(dir: &Path, warnings: &mut Vec<String>) -> Result<Read, String> {
    let config = TrainConfig::load(&dir.join("config.json")).map_err(|e| format!("{e:#}"))?;
    let Ok(text) = std::fs::read_to_string(dir.join("summary.json")) else {
        // A live holder first: an earlier attempt's failed.txt stays until the run finishes.
        if let Some(pid) = crate::run_dir::holder(dir) {
            return Err(format!("still training (pid {pid})"));
        }
        return match crate::run_dir::recorded_failure(dir) {
            Some(reason) => Ok(Read::Failed(FailedRun { dir: dir.to_path_buf(), config, reason })),
            None => Err("no summary.json (unfinished? `nndl resume` it)".to_string()),
        };
    };
    let s: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("corrupt summary.json: {e}"))?;
    // JSON writes NaN as null: an --allow-nan run that diverged finished without figures.
    if ["final_test_loss", "final_test_accuracy"].iter().any(|k| s[k].is_null()) {
        let reason = "its final test figures are NaN (it diverged, trained on with allow_nan)".to_string();
        return Ok(Read::Failed(FailedRun { dir: dir.to_path_buf(), config, reason }));
    }
    let num = |k: &str| s[k].as_f64().ok_or_else(|| format!("summary.json lacks {k}"));
    let points = match read_csv(&dir.join("metrics.csv")) {
        Ok(points) if points.last().is_some_and(|p| p.iteration + 1 == config.iterations) => points,
        Ok(_) => {
            warnings.push(format!("{}: metrics.csv stops before the run's last iteration; its curves are left out", dir.display()));
            vec![]
        }
        Err(e) => {
            warnings.push(format!("{e:#}; the curves of {} are left out", dir.display()));
            vec![]
        }
    };
    Ok(Read::Finished(RunRecord {
        dir: dir.to_path_buf(),
        config,
        final_test_accuracy: num("final_test_accuracy")?,
        final_test_loss: num("final_test_loss")?,
        best_test_accuracy: num("best_test_accuracy")?,
        train_seconds: num("train_seconds").unwrap_or(f64::NAN),
        packed: s["pack"].is_object(),
        points,
    }))
}

/// Finds the runs under `dirs`: each is a run folder, or a folder of run folders (a sweep, a
/// reproduce), or a folder of those. A folder that nndl started but that has neither a readable
/// summary nor a recorded failure is a warning, as is a named folder with no run in it.
pub fn collect(dirs: &[PathBuf], warnings: &mut Vec<String>) -> Found {
    let mut found = Found::default();
    // A run reached twice (a folder and its parent, one folder given twice) counts once.
    let mut seen = std::collections::HashSet::new();
    let mut unstarted = Vec::new();
    for dir in dirs {
        let runs = run_folders(dir, &mut unstarted);
        if runs.is_empty() {
            warnings.push(no_runs_in(dir));
        }
        let mut repeated = 0;
        for run in &runs {
            if !seen.insert(std::fs::canonicalize(run).unwrap_or_else(|_| run.clone())) {
                repeated += 1;
                continue;
            }
            match read_run(run, warnings) {
                Ok(Read::Finished(r)) => found.finished.push(r),
                Ok(Read::Failed(f)) => found.failed.push(f),
                Err(e) => warnings.push(format!("{}: {e}; left out", run.display())),
            }
        }
        // One line per folder, however many of its runs.
        if repeated > 0 {
            let which = if repeated == runs.len() { String::new() } else { format!(" {repeated} of its {} runs", runs.len()) };
            warnings.push(format!("{}:{which} reached twice; counted once", dir.display()));
        }
    }
    warnings.extend(unstarted);
    found
}

fn is_run(dir: &Path) -> bool {
    has_marker(dir) && dir.join("config.json").exists()
}

fn has_marker(dir: &Path) -> bool {
    dir.join(crate::run_dir::MARKER).exists()
}

/// The run folders `collect` reads for one named folder: the folder itself when it is a run,
/// else its subfolders that nndl started, and those one level further down where a subfolder
/// holds runs (reproduce, sweep or `--seeds` folders side by side). `unstarted` gets the sweeps'
/// trials without a folder.
fn run_folders(dir: &Path, unstarted: &mut Vec<String>) -> Vec<PathBuf> {
    if is_run(dir) {
        return vec![dir.to_path_buf()];
    }
    use crate::commands::{reproduce::SETTINGS, sweep::EXPANDED};
    let holds_runs = |d: &Path| [SETTINGS, EXPANDED].iter().any(|f| d.join(f).is_file()) || subdirs(d).iter().any(|i| has_marker(i));
    let mut runs = Vec::new();
    unstarted.extend(unstarted_trials(dir));
    for d in subdirs(dir) {
        if !is_run(&d) && holds_runs(&d) {
            unstarted.extend(unstarted_trials(&d));
            runs.extend(subdirs(&d).into_iter().filter(|i| has_marker(i)));
        } else if has_marker(&d) {
            runs.push(d);
        }
    }
    runs
}

/// A folder's subfolders, sorted.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir).map(|it| it.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default();
    subdirs.sort();
    subdirs
}

/// The warning for a named folder that has no run where `run_folders` looks, naming the folder
/// that holds the shallowest run further down, if there is one.
fn no_runs_in(dir: &Path) -> String {
    let d = dir.display();
    let searched = format!("{d}: no runs at the depths searched ({d}, {d}/*, {d}/*/*)");
    match deeper_run(dir).and_then(|run| run.parent().map(Path::to_path_buf)) {
        Some(holder) => format!("{searched}; runs lie deeper, in {}: name that folder", holder.display()),
        None => searched,
    }
}

/// The shallowest folder nndl started below `dir`, breadth first, without following links and
/// within a bound, so that a huge or looping tree costs little.
fn deeper_run(dir: &Path) -> Option<PathBuf> {
    const MAX_FOLDERS: usize = 10_000;
    let mut queue = std::collections::VecDeque::from([dir.to_path_buf()]);
    let mut visited = 0;
    while let Some(d) = queue.pop_front() {
        visited += 1;
        if visited > MAX_FOLDERS {
            return None;
        }
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        let mut children: Vec<PathBuf> = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect();
        children.sort();
        if let Some(run) = children.iter().find(|c| has_marker(c)) {
            return Some(run.clone());
        }
        queue.extend(children);
    }
    None
}

/// A sweep folder's trials (sweep.json) that have no folder yet, as a warning: a report of a
/// sweep still under way, or one whose shards did not all run, counts fewer runs than it has.
fn unstarted_trials(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(crate::commands::sweep::EXPANDED)).ok()?;
    let spec: serde_json::Value = serde_json::from_str(&text).ok()?;
    let names: Vec<&str> = spec["trials"].as_array()?.iter().filter_map(|t| t["name"].as_str()).collect();
    let missing: Vec<&&str> = names.iter().filter(|n| !dir.join(n).exists()).collect();
    let first = missing.first()?;
    Some(format!("{}: {} of its {} trials have not started (the first: {first}); this report covers the others", dir.display(), missing.len(), names.len()))
}

/// One configuration's runs: indices into `Found::finished` and `Found::failed`.
#[derive(Default)]
struct Members {
    finished: Vec<usize>,
    failed: Vec<usize>,
}

impl Members {
    /// The config of any of its runs (they share every setting the grouping looks at).
    fn config<'a>(&self, found: &'a Found) -> &'a TrainConfig {
        match self.finished.first() {
            Some(&i) => &found.finished[i].config,
            None => &found.failed[self.failed[0]].config,
        }
    }
}

/// Groups runs by configuration and sorts the groups by mean accuracy, best first; a
/// configuration whose every run failed comes last.
pub fn aggregate(found: &Found) -> Vec<GroupReport> {
    let key = |c: &TrainConfig| serde_json::Value::Object(configuration(c)).to_string();
    let mut groups: BTreeMap<String, Members> = BTreeMap::new();
    for (i, r) in found.finished.iter().enumerate() {
        groups.entry(key(&r.config)).or_default().finished.push(i);
    }
    for (i, f) in found.failed.iter().enumerate() {
        groups.entry(key(&f.config)).or_default().failed.push(i);
    }
    let configs: Vec<serde_json::Map<String, serde_json::Value>> = groups.values().map(|g| configuration(g.config(found))).collect();
    // The keys whose values differ between configurations label them.
    let mut varying: Vec<String> = configs.iter().flat_map(|c| c.keys().cloned()).collect();
    varying.sort();
    varying.dedup();
    varying.retain(|k| configs.iter().any(|c| c.get(k) != configs[0].get(k)));
    // Where the preset varies, the settings each configuration has from its preset say nothing
    // more: `preset=modern`, not every setting the modern preset changes. The model and the
    // preset pick those defaults, so they stay whenever they vary (an MLP and a CNN each at its
    // own defaults would otherwise share a label).
    if varying.iter().any(|k| k == "preset") {
        let defaults: Vec<serde_json::Map<String, serde_json::Value>> = groups.values().map(|g| {
            let cfg = g.config(found);
            configuration(&TrainConfig::preset(cfg.model, cfg.preset))
        }).collect();
        varying.retain(|k| k == "preset" || k == "model" || configs.iter().zip(&defaults).any(|(c, d)| c.get(k) != d.get(k)));
    }
    let mut out: Vec<GroupReport> = groups.values().zip(&configs).map(|(g, settings)| {
        let runs: Vec<&RunRecord> = g.finished.iter().map(|&i| &found.finished[i]).collect();
        let label = if varying.is_empty() {
            let cfg = g.config(found);
            format!("{} {}", cfg.model.name(), cfg.preset.name())
        } else {
            varying.iter().map(|k| format!("{k}={}", labelled(&settings[k], configs.iter().filter_map(|c| c.get(k))))).collect::<Vec<_>>().join(",")
        };
        let seeds: Vec<u64> = runs.iter().map(|r| r.config.seed).collect();
        // Runs of a repeated seed each count, but are no second sample of the spread over seeds.
        let one_seed = distinct(&seeds) < 2;
        let over_runs = |f: fn(&RunRecord) -> f64| (!runs.is_empty()).then(|| {
            let s = Stats::of(&runs.iter().map(|r| f(r)).collect::<Vec<f64>>());
            if one_seed { Stats { std: None, ..s } } else { s }
        });
        GroupReport {
            label,
            settings: serde_json::Value::Object(settings.clone()),
            seeds,
            test_accuracy: over_runs(|r| r.final_test_accuracy),
            test_loss: over_runs(|r| r.final_test_loss),
            best_test_accuracy: over_runs(|r| r.best_test_accuracy).map(|s| s.max),
            mean_train_seconds: over_runs(|r| r.train_seconds).map(|s| s.mean),
            packed_runs: runs.iter().filter(|r| r.packed).count(),
            failed: g.failed.iter().map(|&i| &found.failed[i]).map(|f| FailedSeed { seed: f.config.seed, dir: f.dir.clone(), reason: f.reason.clone() }).collect(),
            runs: g.finished.clone(),
        }
    }).collect();
    let mean_accuracy = |g: &GroupReport| g.test_accuracy.map_or(f64::NEG_INFINITY, |s| s.mean);
    out.sort_by(|a, b| mean_accuracy(b).total_cmp(&mean_accuracy(a)).then_with(|| a.label.cmp(&b.label)));
    out
}

/// How many different seeds `seeds` holds.
fn distinct(seeds: &[u64]) -> usize {
    seeds.iter().collect::<std::collections::BTreeSet<_>>().len()
}

/// One warning per seed that several runs of one configuration share (the same reproduction
/// run twice, say): each counts in the statistics, whose spread they understate.
pub fn repeated_seeds(groups: &[GroupReport], records: &[RunRecord]) -> Vec<String> {
    let mut warnings = Vec::new();
    for g in groups {
        let mut by_seed: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for &i in &g.runs {
            by_seed.entry(records[i].config.seed).or_default().push(records[i].dir.display().to_string());
        }
        for (seed, dirs) in by_seed.into_iter().filter(|(_, dirs)| dirs.len() > 1) {
            warnings.push(format!("{}: seed {seed} is in {} runs ({}); each counts in the statistics", g.label, dirs.len(), first_few(&dirs)));
        }
    }
    warnings
}

/// `a, b, c`, or the first three and `and N more`: a seed copied a thousand times is no
/// 17 KB line.
fn first_few(items: &[String]) -> String {
    const SHOWN: usize = 3;
    match items.len().checked_sub(SHOWN) {
        Some(more) if more > 0 => format!("{} and {more} more", items[..SHOWN].join(", ")),
        _ => items.join(", "),
    }
}

/// A setting's value as a label shows it (numbers compact, strings bare, objects by their kind).
fn short(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(crate::config::number).unwrap_or_else(|| n.to_string()),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) => m.get("kind").map(short).unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

/// A varying setting's value in a label: `short`, and for an object (a schedule, a dropout)
/// also the fields in which it differs from the other configurations' objects of its kind, so
/// that two of them never share a label (`warmup_cosine(warmup=5)`).
fn labelled<'a>(v: &serde_json::Value, all: impl Iterator<Item = &'a serde_json::Value>) -> String {
    let serde_json::Value::Object(m) = v else { return short(v) };
    let same_kind: Vec<&serde_json::Map<String, serde_json::Value>> = all.filter_map(|o| o.as_object()).filter(|o| o.get("kind") == m.get("kind")).collect();
    let fields: Vec<String> = m.iter().filter(|(f, x)| *f != "kind" && same_kind.iter().any(|o| o.get(*f) != Some(*x)))
        .map(|(f, x)| format!("{f}={}", short(x))).collect();
    if fields.is_empty() { short(v) } else { format!("{}({})", short(v), fields.join(",")) }
}

/// When exactly one numeric setting varies between configurations: its name.
pub fn single_numeric_axis(groups: &[GroupReport]) -> Option<String> {
    if groups.len() < 2 {
        return None;
    }
    let first = groups[0].settings.as_object()?;
    let varying: Vec<&String> = first.keys().filter(|k| groups.iter().any(|g| g.settings.get(*k) != first.get(*k))).collect();
    match varying.as_slice() {
        [k] if groups.iter().all(|g| g.settings[k.as_str()].is_number()) => Some((*k).clone()),
        _ => None,
    }
}

pub fn markdown(groups: &[GroupReport], warnings: &[String]) -> String {
    use std::fmt::Write as _;
    let finished: usize = groups.iter().map(|g| g.seeds.len()).sum();
    let failed: Vec<&FailedSeed> = groups.iter().flat_map(|g| &g.failed).collect();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let runs = if failed.is_empty() { format!("{finished} run{}", plural(finished)) } else { format!("{finished} finished run{} and {} failed", plural(finished), failed.len()) };
    let configurations = format!("{} configuration{}", groups.len(), plural(groups.len()));
    let mut md = format!("# nndl report\n\n{runs} in {configurations}, sorted by mean final test accuracy (std is the sample standard deviation over the finished runs, each run of a repeated seed counting; none for fewer than two distinct seeds).\n\n");
    md.push_str("| configuration | seeds | failed | test accuracy, mean ± std | min | max | test loss, mean ± std | min | max | best accuracy | train s (mean) |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for g in groups {
        // One run per seed, unless a seed was run twice (the warnings name it): then both counts.
        let distinct = g.distinct_seeds();
        let seeds = if distinct < g.seeds.len() { format!("{} runs of {distinct}", g.seeds.len()) } else { distinct.to_string() };
        let _ = write!(md, "| {} | {seeds} | {} |", g.label, g.failed.len());
        match (&g.test_accuracy, &g.test_loss, g.best_test_accuracy, g.mean_train_seconds) {
            (Some(a), Some(l), Some(best), Some(seconds)) => {
                let _ = writeln!(md, " {:.2}%{} | {:.2}% | {:.2}% | {}{} | {} | {} | {:.2}% | {} |",
                    100.0 * a.mean, plus_minus(a.std.map(|s| 100.0 * s), 2), 100.0 * a.min, 100.0 * a.max,
                    shown(l.mean, 4), plus_minus(l.std, 4), shown(l.min, 4), shown(l.max, 4), 100.0 * best, shown(seconds, 1));
            }
            _ => {
                let _ = writeln!(md, "{}", " — |".repeat(8));
            }
        }
    }
    let packed: usize = groups.iter().map(|g| g.packed_runs).sum();
    if packed > 0 {
        let _ = writeln!(md, "\ntrain s: a packed run's time is its whole pack's ({packed} of the {finished} runs trained in packs).");
    }
    // Drawn only when some run finished (`nndl report` draws nothing otherwise).
    if finished > 0 {
        md.push_str("\n![test accuracy](report-accuracy.png)\n\n![test loss](report-loss.png)\n");
        if let Some(axis) = single_numeric_axis(groups) {
            let _ = writeln!(md, "\n![final accuracy against {axis}](report-{axis}.png)");
        }
    }
    if !failed.is_empty() {
        md.push_str("\nFailed runs (counted in their configuration's row, not in its statistics):\n");
        for f in failed {
            let _ = writeln!(md, "- {}: {}", f.dir.display(), f.reason);
        }
    }
    if !warnings.is_empty() {
        md.push_str("\nWarnings:\n");
        for w in warnings {
            let _ = writeln!(md, "- {w}");
        }
    }
    md
}

/// ` ± 0.31`, or nothing for a single seed (its spread unknown, not zero).
pub fn plus_minus(std: Option<f64>, decimals: usize) -> String {
    std.map_or_else(String::new, |s| format!(" ± {}", shown(s, decimals)))
}

/// A number for report.md: `decimals` places, or scientific from a million up (a diverged but
/// finite loss printed as 33 digits).
fn shown(x: f64, decimals: usize) -> String {
    if x.abs() >= 1e6 { format!("{x:.3e}") } else { format!("{x:.decimals$}") }
}

/// A number for report.csv that reads back to the same float: plain, or scientific from 1e6 up
/// and below 1e-5 (`2.4565027707079276e32`, not 33 digits).
fn compact(x: f64) -> String {
    if x != 0.0 && !(1e-5..1e6).contains(&x.abs()) { format!("{x:e}") } else { x.to_string() }
}

/// One row per configuration; a configuration whose every run failed has empty statistics.
pub fn csv(groups: &[GroupReport]) -> String {
    let mut out = String::from("configuration,seeds,accuracy_mean,accuracy_std,accuracy_min,accuracy_max,loss_mean,loss_std,loss_min,loss_max,best_accuracy,train_seconds_mean,failed,runs\n");
    for g in groups {
        let value = |v: Option<f64>| v.map_or_else(String::new, compact);
        let stats = |s: Option<Stats>| s.map_or_else(|| ",,,".to_string(), |s| format!("{},{},{},{}", compact(s.mean), value(s.std), compact(s.min), compact(s.max)));
        out.push_str(&format!("\"{}\",{},{},{},{},{},{},{}\n", g.label.replace('"', "'"), g.distinct_seeds(), stats(g.test_accuracy), stats(g.test_loss),
            value(g.best_test_accuracy), value(g.mean_train_seconds), g.failed.len(), g.seeds.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_hand() {
        let s = Stats::of(&[0.90, 0.92, 0.94]);
        assert!((s.mean - 0.92).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.02).abs() < 1e-12, "sample std of 0.90, 0.92, 0.94 is 0.02: {:?}", s.std);
        assert_eq!((s.min, s.max), (0.90, 0.94));
        assert_eq!(Stats::of(&[0.5]).std, None);
    }

    #[test]
    fn equal_values_have_their_value_as_mean_and_no_spread() {
        // A plain running sum gave 0.33980000000000005 (above the max) and a std of 6.8e-17.
        for n in [2, 3, 7, 1000] {
            let s = Stats::of(&vec![0.3398; n]);
            assert_eq!((s.mean, s.std), (0.3398, Some(0.0)), "{n} copies");
        }
        // Means stay within [min, max] when the values differ too.
        let xs = [0.1, 0.1, 0.1, 0.1 + f64::EPSILON / 8.0];
        let s = Stats::of(&xs);
        assert!(s.min <= s.mean && s.mean <= s.max, "{s:?}");
    }

    #[test]
    fn a_mean_of_decimals_rounds_as_the_exact_mean_does() {
        // 16 accuracies (counts out of 10000) whose exact mean is 0.86055, that is 86.06%: a plain
        // running sum ends at 0.8605499999999999, printed 86.05%.
        let counts = [8414, 8599, 8621, 8711, 8790, 8792, 8401, 8756, 8628, 8536, 8769, 8517, 8702, 8452, 8562, 8438];
        let xs: Vec<f64> = counts.iter().map(|&c| c as f64 / 10000.0).collect();
        assert_eq!(counts.iter().sum::<i32>(), 137688);
        let s = Stats::of(&xs);
        assert_eq!(s.mean, 0.86055);
        assert_eq!(format!("{:.2}", 100.0 * s.mean), "86.06");
    }

    #[test]
    fn huge_losses_are_scientific_and_read_back() {
        use crate::config::{ModelKind, Preset};
        let config = |seed| TrainConfig { seed, iterations: 20, ..TrainConfig::preset(ModelKind::Mlp, Preset::Faithful) };
        let run = |seed, loss| RunRecord { final_test_loss: loss, ..finished(config(seed)) };
        let losses = [2.4565027707079276e32, 1.5e32];
        let groups = aggregate(&Found { finished: vec![run(0, losses[0]), run(1, losses[1])], failed: Vec::new() });
        let md = markdown(&groups, &[]);
        let row = md.lines().find(|l| l.starts_with("| mlp faithful")).unwrap();
        assert!(row.contains("| 1.978e32 ± 6.763e31 | 1.500e32 | 2.457e32 |"), "{row}");
        let csv = csv(&groups);
        let cells: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        assert_eq!((cells[8], cells[9]), ("1.5e32", "2.4565027707079276e32"), "{csv}");
        assert_eq!(cells[9].parse::<f64>().unwrap(), losses[0]);
        assert_eq!((cells[2], cells[11]), ("0.9", "1"), "ordinary numbers stay plain: {csv}");
        assert_eq!(compact(3e-7), "3e-7");
    }

    #[test]
    fn a_seed_in_many_runs_lists_a_few_of_them() {
        use crate::config::{ModelKind, Preset};
        let config = TrainConfig { seed: 7, iterations: 20, ..TrainConfig::preset(ModelKind::Mlp, Preset::Faithful) };
        let runs: Vec<RunRecord> = (0..1000).map(|i| RunRecord { dir: PathBuf::from(format!("copy{i}")), ..finished(config.clone()) }).collect();
        let found = Found { finished: runs, failed: Vec::new() };
        let warnings = repeated_seeds(&aggregate(&found), &found.finished);
        assert_eq!(warnings, ["mlp faithful: seed 7 is in 1000 runs (copy0, copy1, copy2 and 997 more); each counts in the statistics"]);
        assert_eq!(first_few(&["a".into(), "b".into(), "c".into()]), "a, b, c");
    }

    #[test]
    fn runs_of_one_seed_have_no_std() {
        use crate::config::{ModelKind, Preset};
        let config = |seed| TrainConfig { seed, iterations: 20, ..TrainConfig::preset(ModelKind::Mlp, Preset::Faithful) };
        let run = |seed, accuracy| RunRecord { final_test_accuracy: accuracy, ..finished(config(seed)) };
        let found = Found { finished: vec![run(3, 0.90), run(3, 0.92), run(3, 0.91)], failed: Vec::new() };
        let g = &aggregate(&found)[0];
        assert_eq!((g.test_accuracy.unwrap().std, g.test_loss.unwrap().std), (None, None));
        let md = markdown(&aggregate(&found), &[]);
        let row = md.lines().find(|l| l.starts_with("| mlp faithful")).unwrap();
        assert!(row.contains("| 3 runs of 1 | 0 | 91.00% | 90.00% | 92.00% | 0.3000 |"), "{row}");
        // Two distinct seeds: the std covers every run, the repeated seed's each counting.
        let found = Found { finished: vec![run(3, 0.90), run(3, 0.90), run(4, 0.96)], failed: Vec::new() };
        let std = aggregate(&found)[0].test_accuracy.unwrap().std.unwrap();
        assert!((std - 0.06 / 3f64.sqrt()).abs() < 1e-12, "{std}");
    }

    fn finished(config: TrainConfig) -> RunRecord {
        RunRecord { dir: PathBuf::from("r"), config, final_test_accuracy: 0.9, final_test_loss: 0.3, best_test_accuracy: 0.9, train_seconds: 1.0, packed: false, points: Vec::new() }
    }

    #[test]
    fn configurations_that_differ_have_labels_that_differ() {
        use crate::config::{ModelKind, Preset, Schedule};
        let short = |model, preset| TrainConfig { iterations: 20, ..TrainConfig::preset(model, preset) };
        let label_sets = [
            // The preset varies and each run keeps its preset's defaults, the model too.
            vec![short(ModelKind::Cnn, Preset::Faithful), short(ModelKind::Mlp, Preset::Faithful), short(ModelKind::Cnn, Preset::Modern)],
            // One setting varies.
            vec![short(ModelKind::Mlp, Preset::Faithful), TrainConfig { lr: 0.01, ..short(ModelKind::Mlp, Preset::Faithful) }],
            // Only inside an object-valued setting (the schedule's warm-up), and its kind too.
            vec![
                short(ModelKind::Mlp, Preset::Modern),
                TrainConfig { schedule: Schedule::WarmupCosine { warmup: 5 }, ..short(ModelKind::Mlp, Preset::Modern) },
                TrainConfig { schedule: Schedule::Constant {}, ..short(ModelKind::Mlp, Preset::Modern) },
            ],
        ];
        for configs in label_sets {
            let found = Found { finished: configs.into_iter().map(finished).collect(), failed: Vec::new() };
            let mut labels: Vec<String> = aggregate(&found).into_iter().map(|g| g.label).collect();
            let n = labels.len();
            labels.sort();
            labels.dedup();
            assert_eq!(labels.len(), n, "{labels:?}");
        }
        let schedules = [Schedule::WarmupCosine { warmup: 5 }, Schedule::WarmupCosine { warmup: 200 }, Schedule::Constant {}];
        let found = Found { finished: schedules.map(|schedule| finished(TrainConfig { schedule, ..short(ModelKind::Mlp, Preset::Modern) })).into(), failed: Vec::new() };
        let mut labels: Vec<String> = aggregate(&found).into_iter().map(|g| g.label).collect();
        labels.sort();
        assert_eq!(labels, ["schedule=constant", "schedule=warmup_cosine(warmup=200)", "schedule=warmup_cosine(warmup=5)"]);
        let found = Found { finished: vec![finished(short(ModelKind::Mlp, Preset::Faithful)), finished(short(ModelKind::Cnn, Preset::Modern))], failed: Vec::new() };
        let labels: Vec<String> = aggregate(&found).into_iter().map(|g| g.label).collect();
        assert!(labels.contains(&"model=mlp,preset=faithful".to_string()) && labels.contains(&"model=cnn,preset=modern".to_string()), "{labels:?}");
    }
}
