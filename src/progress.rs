//! Progress on stderr for long jobs: a bar with ETA on a terminal (indicatif), a plain line
//! every 30 s otherwise (logs of batch jobs), nothing with --quiet.
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PLAIN_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    pub bar: ProgressBar,
    /// Not a terminal and not quiet: (label, start, last line printed).
    plain: Option<Mutex<(String, Instant, Instant)>>,
}

impl Progress {
    pub fn new(len: u64, prefix: &str, quiet: bool) -> Progress {
        if quiet {
            return Progress { bar: ProgressBar::hidden(), plain: None };
        }
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            let bar = ProgressBar::hidden();
            bar.set_length(len);
            return Progress { bar, plain: Some(Mutex::new((prefix.to_string(), now, now))) };
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>5} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(prefix.to_string());
        Progress { bar, plain: None }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.plain_line();
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        self.plain_line();
    }

    fn plain_line(&self) {
        let Some(plain) = &self.plain else { return };
        let Ok(mut p) = plain.lock() else { return };
        if p.2.elapsed() >= PLAIN_EVERY {
            p.2 = Instant::now();
            let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
            let secs = p.1.elapsed().as_secs_f64();
            let eta = if pos > 0 { format!("about {:.0} s to go", secs * (len.saturating_sub(pos)) as f64 / pos as f64) } else { "starting".into() };
            crate::say!("{}: {pos}/{len} after {secs:.0} s, {eta} {}", p.0, self.bar.message());
        }
    }

    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Prints a log line to stderr without tearing the bar (and even when the bar is hidden).
    pub fn log(&self, quiet: bool, line: &str) {
        if !quiet {
            self.bar.suspend(|| crate::say!("{line}"));
        }
    }
}
