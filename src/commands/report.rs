//! `nndl report DIR...`: finished runs aggregated per configuration into report.md, report.csv
//! and figures (test accuracy and loss against iteration with min-max bands over seeds, the
//! legend beside the plot; for a one-setting sweep, final accuracy against that setting with
//! error bars).
use super::Outcome;
use crate::cli::ReportCmdArgs;
use crate::plot::{band_chart, error_bar_chart, Band, Scale};
use crate::report::{self, GroupReport, RunRecord};
use crate::run_dir::write_atomic;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

pub fn run(args: &ReportCmdArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    for d in &args.dirs {
        if !d.is_dir() {
            bail!("{} is not a folder", d.display());
        }
    }
    let found = report::collect(&args.dirs, &mut warnings);
    let shown_dirs = || args.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    let groups = report::aggregate(&found);
    warnings.extend(report::repeated_seeds(&groups, &found.finished));
    // First, so that "no finished runs" comes after what each folder lacks.
    for w in &warnings {
        if !args.report.quiet {
            crate::say!("warning: {w}");
        }
    }
    if found.finished.is_empty() && found.failed.is_empty() {
        match warnings.first() {
            Some(w) => bail!("no finished runs under {} ({w})", shown_dirs()),
            None => bail!("no finished runs under {}", shown_dirs()),
        }
    }
    let out = args.out.clone().unwrap_or_else(|| args.dirs[0].clone());
    if out.join(super::reproduce::SETTINGS).is_file() {
        bail!("{} is a reproduce folder, whose report.md is the reproduction's; give --out for this report", out.display());
    }
    std::fs::create_dir_all(&out).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    // The tables last, so that report.md never links figures that failed to be drawn.
    let write_tables = || -> Result<()> {
        write_atomic(&out.join("report.csv"), report::csv(&groups).as_bytes())?;
        write_atomic(&out.join("report.md"), report::markdown(&groups, &warnings).as_bytes())
    };
    // Every run failed: the tables say which and why; there is nothing to draw.
    if let Some(first) = found.failed.first().filter(|_| found.finished.is_empty()) {
        remove_undrawn_figures(&out, &groups, None, false);
        write_tables()?;
        let json = serde_json::json!({ "runs": 0, "failed": found.failed.len(), "configurations": groups, "warnings": warnings, "out_dir": out });
        let line = format!("error: no finished runs under {}: {} failed ({}: {}); see {}", shown_dirs(), found.failed.len(), first.dir.display(), first.reason, out.join("report.md").display());
        return Ok(Outcome::new(String::new(), &json)?.failing(line, 1));
    }
    let curves = |f: fn(&crate::metrics::EvalPoint) -> f64| bands(&groups, &found.finished, f);
    band_chart(&out.join("report-accuracy.png"), "Test accuracy (mean, min-max over seeds)", "Iteration", "Test accuracy", &curves(|p| p.test_accuracy), Scale::Linear)?;
    band_chart(&out.join("report-loss.png"), "Test loss (mean, min-max over seeds)", "Iteration", "Test loss (log scale)", &curves(|p| p.test_loss), Scale::Log)?;
    let axis = report::single_numeric_axis(&groups);
    remove_undrawn_figures(&out, &groups, axis.as_deref(), true);
    if let Some(axis) = axis {
        // A configuration whose every run failed has no point to draw.
        let mut pts: Vec<(f64, f64, f64, f64)> = groups.iter().filter_map(|g| {
            let a = g.test_accuracy?;
            Some((g.settings[axis.as_str()].as_f64().unwrap_or(f64::NAN), a.mean, a.min, a.max))
        }).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        error_bar_chart(&out.join(format!("report-{axis}.png")), &format!("Final test accuracy against {axis} (mean, min-max over seeds)"), &axis, "Final test accuracy", &pts)?;
    }
    write_tables()?;
    // Sorted best first, and some run finished: the first group has statistics.
    let best = &groups[0];
    let accuracy = best.test_accuracy.context("the best configuration has no finished run")?;
    let failed = found.failed.len();
    let mut left_out = Vec::new();
    if failed > 0 {
        left_out.push(format!("{failed} failed, see report.md"));
    }
    if !warnings.is_empty() {
        left_out.push(count(warnings.len(), "warning", "warnings") + ", see above");
    }
    let human = format!("{} in {} -> {}; best {}: {:.2}%{} over {}{}",
        count(found.finished.len(), "run", "runs"), count(groups.len(), "configuration", "configurations"), out.join("report.md").display(),
        best.label, 100.0 * accuracy.mean, report::plus_minus(accuracy.std.map(|s| 100.0 * s), 2), runs_and_seeds(&best.seeds),
        if left_out.is_empty() { String::new() } else { format!(" ({})", left_out.join("; ")) });
    Outcome::new(human, &serde_json::json!({ "runs": found.finished.len(), "failed": failed, "configurations": groups, "warnings": warnings, "out_dir": out }))
}

/// `3 seeds`, or `8 runs (4 seeds)` where some seed ran more than once.
fn runs_and_seeds(seeds: &[u64]) -> String {
    let distinct = seeds.iter().collect::<std::collections::BTreeSet<_>>().len();
    if distinct == seeds.len() {
        count(distinct, "seed", "seeds")
    } else {
        format!("{} ({})", count(seeds.len(), "run", "runs"), count(distinct, "seed", "seeds"))
    }
}

/// `1 run`, `2 runs`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Per configuration: at each evaluation iteration, the mean, min and max over its runs.
fn bands(groups: &[GroupReport], records: &[RunRecord], f: fn(&crate::metrics::EvalPoint) -> f64) -> Vec<Band> {
    groups.iter().filter(|g| !g.runs.is_empty()).map(|g| {
        let mut at: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for &i in &g.runs {
            for p in &records[i].points {
                at.entry(p.iteration).or_default().push(f(p));
            }
        }
        let points = at.into_iter().map(|(it, ys)| {
            let s = report::Stats::of(&ys);
            (it as f64, s.mean, s.min, s.max)
        }).collect();
        Band { label: format!("{} ({})", g.label, runs_and_seeds(&g.seeds)), points }
    }).collect()
}

/// Removes the figures an earlier report left in `out` that this one does not draw (the
/// accuracy and loss bands without finished runs, another setting's error bars), so that the
/// folder never shows figures of other runs beside this report.
fn remove_undrawn_figures(out: &std::path::Path, groups: &[report::GroupReport], axis: Option<&str>, bands: bool) {
    let keys = groups.iter().filter_map(|g| g.settings.as_object()).flat_map(|m| m.keys());
    let axes = keys.filter(|k| Some(k.as_str()) != axis).map(|k| format!("report-{k}.png"));
    let band_files = ["report-accuracy.png", "report-loss.png"].into_iter().filter(|_| !bands).map(String::from);
    for name in axes.chain(band_files) {
        let _ = std::fs::remove_file(out.join(name));
    }
}
