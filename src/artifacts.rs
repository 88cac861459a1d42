//! One folder per run: config.json, metrics.csv, summary.json and the figures. Every file is
//! written to a temporary name and renamed, so a crash never leaves a half-written file.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A hidden name beside `path` that keeps its extension (plotters picks the format by it).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".partial-{}-{name}", std::process::id()))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricRow {
    pub iteration: usize,
    pub split: &'static str,
    pub loss: f64,
    pub accuracy: f64,
}

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates (or reuses) the folder, refusing to overwrite an earlier run unless `force`,
    /// and proves it writable before any long work starts.
    pub fn create(path: &Path, force: bool) -> Result<RunDir> {
        if path.join("config.json").exists() && !force {
            bail!("{} already holds a run; choose another --out or pass --force to replace it", path.display());
        }
        std::fs::create_dir_all(path).with_context(|| format!("cannot create output folder {}", path.display()))?;
        let probe = path.join(".write-probe");
        std::fs::write(&probe, b"").with_context(|| format!("output folder {} is not writable", path.display()))?;
        let _ = std::fs::remove_file(probe);
        Ok(RunDir { path: path.to_path_buf() })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        write_atomic(&self.file(name), text.as_bytes())
    }

    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        write_atomic(&self.file(name), text.as_bytes())
    }

    pub fn write_metrics(&self, name: &str, rows: &[MetricRow]) -> Result<()> {
        let mut csv = String::from("iteration,split,loss,accuracy\n");
        for r in rows {
            csv.push_str(&format!("{},{},{},{}\n", r.iteration, r.split, r.loss, r.accuracy));
        }
        self.write_text(name, &csv)
    }
}

/// `runs/<name>-<unix seconds>` when no --out is given.
pub fn default_out(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    PathBuf::from("runs").join(format!("{name}-{secs}"))
}
