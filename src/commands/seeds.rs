//! `nndl mlp|cnn --seeds 0..9`: one run folder per seed (`--out/seed-N`), the seeds trained
//! together as packs (`crate::packed`). Rerunning the same command keeps finished seeds and
//! resumes interrupted ones, as a sweep does.
use super::Outcome;
use crate::cli::TrainArgs;
use crate::config::{ModelKind, TrainConfig};
use crate::data::DeviceData;
use crate::packed::runs::{run_members, MemberEnd};
use crate::run::{self, RunEnd};
use crate::run_dir::{out_or_fresh, RunDir, DEFAULT_PARENT};
use crate::runtime::Runtime;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The most seeds one command takes.
const MAX_SEEDS: usize = 10_000;

/// `A..B` (both ends), `a,b,c`, or one seed.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let bad = || anyhow::anyhow!("invalid --seeds {text:?}: expected a range such as 0..9 (both ends included) or a list such as 1,4,7");
    let seeds: Vec<u64> = match text.split_once("..") {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if b < a {
                bail!("invalid --seeds {text:?}: the range is empty (its end is below its start)");
            }
            if b - a >= MAX_SEEDS as u64 {
                bail!("invalid --seeds {text:?}: at most {MAX_SEEDS} seeds");
            }
            (a..=b).collect()
        }
        None => text.split(',').map(|s| s.trim().parse().map_err(|_| bad())).collect::<Result<_>>()?,
    };
    let mut unique = seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != seeds.len() {
        bail!("invalid --seeds {text:?}: a seed is named twice");
    }
    if seeds.len() > MAX_SEEDS {
        bail!("invalid --seeds {text:?}: at most {MAX_SEEDS} seeds");
    }
    Ok(seeds)
}

pub fn run(model: ModelKind, args: &TrainArgs, text: &str) -> Result<Outcome> {
    let seeds = parse_seeds(text)?;
    let mut base = super::train::config_from_args(model, args)?;
    let common = &args.common;
    if args.export_steps.is_some() {
        bail!("--export-steps records one run: drop --seeds");
    }
    let mut rt = Runtime::new(&base, &super::train::config_origin(args), common.output.report.quiet, !common.no_cuda_graph)?;
    rt.profile_steps = super::train::profile_steps(args, rt.device)?;
    base.threads = Some(tch::get_num_threads() as usize);
    let pack = match args.pack {
        Some(0) => bail!("invalid --pack 0: must be at least 1"),
        Some(p) => p,
        None => crate::packed::default_pack(rt.device.is_cuda()),
    };
    let data = DeviceData::load(common.data.as_deref(), rt.device)?;
    let cfgs: Vec<TrainConfig> = seeds.iter().map(|&seed| TrainConfig { seed, ..base.clone() }).collect();
    if let Some(out) = &common.output.out {
        check_seeds_folder(out, common.output.force)?;
    }
    let dirs = |out: &Path| -> Vec<PathBuf> { seeds.iter().map(|s| out.join(format!("seed-{s}"))).collect() };
    // What the seeds still to train will write: a rerun's finished ones write nothing more.
    let to_write = match &common.output.out {
        Some(out) => cfgs.iter().zip(dirs(out)).filter(|(_, d)| !d.join("summary.json").exists()).map(|(c, _)| run::disk_estimate(c)).sum(),
        None => cfgs.iter().map(run::disk_estimate).sum(),
    };
    crate::run_dir::check_free_space(common.output.out.as_deref().unwrap_or(Path::new(DEFAULT_PARENT)), to_write)?;
    let out = out_or_fresh(common.output.out.as_deref(), &format!("{}-{}-seeds", model.name(), base.preset.name()))?;
    let dirs = dirs(&out);
    if common.output.force {
        for dir in dirs.iter().filter(|d| d.exists()) {
            drop(RunDir::create(dir, true)?);
        }
    }
    rt.say_note();
    let ends = run_members(&cfgs, &dirs, pack, &data, &rt);
    report(&out, &seeds, pack, ends)
}

/// `--out` of `--seeds`: new, or what `--seeds` (and `nndl report` into it) wrote there: its
/// seed-N folders, report files, temporary files. A run's folder, a sweep's, or one with other
/// files is refused, as a single run's --out would be.
fn check_seeds_folder(out: &Path, force: bool) -> Result<()> {
    use crate::run_dir::FolderState;
    let shown = out.display();
    match crate::run_dir::folder_state(out)? {
        FolderState::Missing | FolderState::Empty => return Ok(()),
        FolderState::FinishedRun | FolderState::UnfinishedRun => bail!("{shown} is a run's folder, not one for --seeds; choose another --out"),
        FolderState::ForeignFiles => {}
    }
    if out.join(super::sweep::MARKER).exists() {
        bail!("{shown} is a sweep's folder, not one for --seeds; choose another --out");
    }
    let ours = |name: &str, is_dir: bool| match is_dir {
        true => name.strip_prefix("seed-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        false => name.starts_with("report") || name.starts_with(crate::run_dir::PARTIAL) || name == crate::run_dir::LOCK,
    };
    let entries = std::fs::read_dir(out).map_err(|e| anyhow::anyhow!("cannot read {shown}: {e}"))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !ours(&name, entry.file_type().is_ok_and(|t| t.is_dir())) {
            // --force replaces the seeds' own folders; other files in the folder are not its to delete.
            let not_even = if force { " (--force replaces seed-N folders only)" } else { "" };
            bail!("{shown} holds files nndl did not write ({name}){not_even}; choose another --out");
        }
    }
    Ok(())
}

/// One line per seed, the JSON of every run (and the most members a pack took), and a failing
/// status when any seed did not finish: 1 for a failure, EX_TEMPFAIL (as a sweep worker's) when
/// the only ones left are seeds another process is running.
fn report(out: &std::path::Path, seeds: &[u64], pack: usize, ends: Vec<MemberEnd>) -> Result<Outcome> {
    let (mut lines, mut rows, mut failed, mut busy, mut signal) = (vec![], vec![], vec![], vec![], None);
    for (seed, end) in seeds.iter().zip(ends) {
        let (line, row) = match end {
            MemberEnd::Ended { end: RunEnd::Finished(s), trained } => {
                let line = if trained { run::describe(&s) } else { format!("seed {seed} was already done: {:.2}% -> {}", 100.0 * s.final_test_accuracy, s.out_dir.display()) };
                (line, serde_json::json!({ "seed": seed, "state": if trained { "done" } else { "already_done" }, "summary": s }))
            }
            MemberEnd::Ended { end: RunEnd::Interrupted { signal: sig, next_iteration, .. }, .. } => {
                signal = Some(sig);
                // No `nndl resume` for the member: rerunning the command (the last line says so)
                // packs it again, bit for bit; alone it would continue as a single run rounds.
                (format!("seed {seed}: interrupted before iteration {next_iteration}; checkpoint written"), serde_json::json!({ "seed": seed, "state": "interrupted", "next_iteration": next_iteration }))
            }
            MemberEnd::NotStarted { signal: sig } => {
                signal = Some(sig);
                (format!("seed {seed}: not started (interrupted)"), serde_json::json!({ "seed": seed, "state": "interrupted", "started": false }))
            }
            MemberEnd::Busy(e) => {
                busy.push(seed.to_string());
                (format!("seed {seed}: {e}"), serde_json::json!({ "seed": seed, "state": "busy", "error": e }))
            }
            MemberEnd::Failed(e) => {
                let e = crate::run::error_line(&e);
                failed.push(format!("seed {seed}: {e}"));
                (format!("seed {seed} failed: {e}"), serde_json::json!({ "seed": seed, "state": "failed", "error": e }))
            }
        };
        lines.push(line);
        rows.push(row);
    }
    // The most members a pack can have took: --pack 1000 over 3 seeds packs 3.
    let json = serde_json::json!({ "out_dir": out, "pack": pack.min(seeds.len()), "runs": rows });
    let outcome = Outcome::new(lines.join("\n"), &json)?;
    if let Some(sig) = signal {
        let line = format!("interrupted; rerun the same command to continue the seeds in {}", out.display());
        return Ok(outcome.failing(line, crate::signals::exit_status(sig)));
    }
    // Seeds another process holds are its to finish, not failures of this command: rerun
    // afterwards, this command reports them as already done.
    let held = (!busy.is_empty()).then(|| format!("seed{} {} {} run by another nndl process; rerun this command once it has ended",
        if busy.len() == 1 { "" } else { "s" }, busy.join(", "), if busy.len() == 1 { "is" } else { "are" }));
    if !failed.is_empty() {
        let also = held.map(|h| format!(" ({h})")).unwrap_or_default();
        return Ok(outcome.failing(format!("error: {} of {} seeds failed: {}{also}", failed.len(), seeds.len(), failed.join("; ")), 1));
    }
    if let Some(held) = held {
        return Ok(outcome.failing(format!("error: {held}"), crate::sweep_workers::EXIT_BUSY));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::parse_seeds;

    #[test]
    fn seeds_parse_as_ranges_and_lists() {
        assert_eq!(parse_seeds("0..9").unwrap(), (0..10).collect::<Vec<u64>>());
        assert_eq!(parse_seeds("3..3").unwrap(), vec![3]);
        assert_eq!(parse_seeds("1, 4,7").unwrap(), vec![1, 4, 7]);
        for bad in ["", "9..0", "a..b", "1,,2", "1,1", "-1..3", "0..20000"] {
            assert!(parse_seeds(bad).is_err(), "{bad:?}");
        }
    }
}
