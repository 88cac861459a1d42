//! What a run measures at each evaluation point, and metrics.csv, which grows by one append
//! per evaluation (a killed process loses nothing written). It is synced to disk with each
//! checkpoint, not each append: a resumed run rewrites it from its checkpoint anyway, and the
//! loop does not wait on the disk at every evaluation (81 waits in a faithful run).
use crate::run_dir::{write_atomic, write_error};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const HEADER: &str = "iteration,split,loss,accuracy\n";

/// Everything the loop reports at an evaluation point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub iteration: usize,
    #[serde(deserialize_with = "f64_or_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "f64_or_null")]
    pub train_accuracy: f64,
    #[serde(deserialize_with = "f64_or_null")]
    pub test_loss: f64,
    #[serde(deserialize_with = "f64_or_null")]
    pub test_accuracy: f64,
}

/// JSON has no NaN, and serde_json writes a NaN (or infinite) f64 as null: read null back as
/// NaN, so that the files of an --allow-nan run that diverged read back.
pub fn f64_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl EvalPoint {
    /// Its two CSV lines, train then test.
    pub fn csv_rows(&self) -> String {
        format!(
            "{i},train,{},{}\n{i},test,{},{}\n",
            self.train_loss, self.train_accuracy, self.test_loss, self.test_accuracy, i = self.iteration
        )
    }
}

/// metrics.csv, open for appending.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Starts the file afresh holding `points` (none for a new run; a checkpoint's for a
    /// resumed one, which drops rows written after that checkpoint), then opens it to append.
    pub fn start(path: &Path, points: &[EvalPoint]) -> Result<MetricsLog> {
        let mut text = String::from(HEADER);
        points.iter().for_each(|p| text.push_str(&p.csv_rows()));
        write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| write_error(path, &e))?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, point: &EvalPoint) -> Result<()> {
        self.file.write_all(point.csv_rows().as_bytes()).map_err(|e| write_error(&self.path, &e))
    }

    /// Makes what was appended durable (before a checkpoint, which a finished run's summary follows).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| write_error(&self.path, &e))
    }
}

/// Reads metrics.csv back into points (for `nndl report` and tests).
pub fn read_csv(path: &Path) -> Result<Vec<EvalPoint>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    anyhow::ensure!(text.lines().next() == HEADER.lines().next(), "{}: not an nndl metrics file (its first line is not {:?})", path.display(), HEADER.trim_end());
    let mut points: Vec<EvalPoint> = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let parse = |s: &str| s.parse::<f64>().map_err(|_| anyhow::anyhow!("{}:{}: bad number '{s}'", path.display(), n + 1));
        anyhow::ensure!(f.len() == 4, "{}:{}: expected 4 fields", path.display(), n + 1);
        let iteration: usize = f[0].parse().map_err(|_| anyhow::anyhow!("{}:{}: bad iteration", path.display(), n + 1))?;
        let (loss, accuracy) = (parse(f[2])?, parse(f[3])?);
        if f[1] == "train" {
            points.push(EvalPoint { iteration, train_loss: loss, train_accuracy: accuracy, test_loss: f64::NAN, test_accuracy: f64::NAN });
        } else if let Some(p) = points.last_mut().filter(|p| p.iteration == iteration) {
            p.test_loss = loss;
            p.test_accuracy = accuracy;
        }
    }
    Ok(points)
}
