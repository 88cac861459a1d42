//! What a run measures at each evaluation point, and metrics.csv, which grows by one append
//! per evaluation (a killed process loses nothing written). It is synced to disk with each
//! checkpoint, not each append: a resumed run rewrites it from its checkpoint anyway, and the
//! loop does not wait on the disk at every evaluation (81 waits in a faithful run). An append
//! that fails (a full disk) is cut back off, so that the file never ends in a torn row.
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
    /// The length of its whole rows, to cut a failed append back to.
    len: u64,
}

impl MetricsLog {
    /// Starts the file afresh holding `points` (none for a new run; a checkpoint's for a
    /// resumed one, which drops rows written after that checkpoint), then opens it to append.
    pub fn start(path: &Path, points: &[EvalPoint]) -> Result<MetricsLog> {
        let mut text = String::from(HEADER);
        points.iter().for_each(|p| text.push_str(&p.csv_rows()));
        write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| write_error(path, &e))?;
        Ok(MetricsLog { path: path.to_path_buf(), file, len: text.len() as u64 })
    }

    /// Appends the point's rows, or none of them: a full disk can take part of a write.
    pub fn append(&mut self, point: &EvalPoint) -> Result<()> {
        let rows = point.csv_rows();
        if let Err(e) = self.file.write_all(rows.as_bytes()) {
            // Shrinking a file needs no room, so this works on a full disk too.
            let _ = self.file.set_len(self.len);
            return Err(write_error(&self.path, &e));
        }
        self.len += rows.len() as u64;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tmpfs mounted on a temporary folder (the tests run as root), unmounted when dropped.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(options: &str) -> Tmpfs {
            let dir = tempfile::tempdir().unwrap();
            let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir.path()).status().unwrap();
            assert!(mounted.success(), "tests run as root and may mount a tmpfs");
            Tmpfs(dir)
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0.path()).status();
        }
    }

    /// Takes every free byte of the file system `dir` is on.
    fn fill(dir: &Path) {
        let mut filler = File::create(dir.join("filler")).unwrap();
        while filler.write_all(&[0; 4096]).is_ok() {}
    }

    #[test]
    fn an_append_the_full_disk_cuts_short_leaves_no_torn_row() {
        let fs = Tmpfs::mount("size=64k");
        let path = fs.0.path().join("metrics.csv");
        let mut log = MetricsLog::start(&path, &[]).unwrap();
        let point = |iteration| EvalPoint { iteration, train_loss: 0.123456789, train_accuracy: 0.5, test_loss: 0.987654321, test_accuracy: 0.25 };
        // Rows up to a memory page's end, so that the next one straddles it: the page it starts
        // in takes its first bytes, the next page cannot be had.
        let mut i = 0;
        while 4096 - log.len % 4096 >= point(i).csv_rows().len() as u64 {
            log.append(&point(i)).unwrap();
            i += 1;
        }
        fill(fs.0.path());
        let before = std::fs::read(&path).unwrap();
        let err = log.append(&point(i)).unwrap_err().to_string();
        assert!(err.starts_with("no space left on device writing"), "{err}");
        let after = std::fs::read(&path).unwrap();
        assert!(after == before, "the failed append left a torn row: {} bytes became {}", before.len(), after.len());
    }
}
