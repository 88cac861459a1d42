//! Progress bars on stderr: hidden when stderr is not a terminal (indicatif's default) or --quiet.
use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>5} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}")
            .expect("valid template"),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// Prints a log line to stderr without tearing the bar (and even when the bar is hidden).
pub fn log(pb: &ProgressBar, quiet: bool, line: &str) {
    if !quiet {
        pb.suspend(|| eprintln!("{line}"));
    }
}
