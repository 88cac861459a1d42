//! Helpers shared by the integration tests. Every training run gets libtorch one thread:
//! cargo runs tests in parallel, and two 2-thread libtorch processes on two cores slow each
//! other down many times over.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Held by every test that draws from libtorch's global generator in this process (the tests
/// run on parallel threads and would otherwise draw from each other's sequences).
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// MNIST on the CPU with a 200-image test set, for in-process runs whose evaluations are not
/// what they check.
pub fn small_mnist() -> nndl::data::DeviceData {
    let d = nndl::data::DeviceData::load(Some(&mnist_dir()), tch::Device::Cpu).unwrap();
    let test = nndl::data::DeviceSplit { images: d.test.images.narrow(0, 0, 200), labels: d.test.labels.narrow(0, 0, 200) };
    nndl::data::DeviceData { train: d.train, test }
}

/// An in-process run's observer that records `probe(loss)` at every step and ignores the rest.
pub struct PerStep<T> {
    pub seen: Vec<T>,
    probe: fn(f64) -> T,
}

impl<T> PerStep<T> {
    pub fn new(probe: fn(f64) -> T) -> PerStep<T> {
        PerStep { seen: vec![], probe }
    }
}

impl<T> nndl::trainer::Observer for PerStep<T> {
    fn on_eval(&mut self, _: &nndl::metrics::EvalPoint) -> anyhow::Result<()> {
        Ok(())
    }
    fn checkpoint_due(&mut self, _: usize) -> bool {
        false
    }
    fn on_checkpoint(&mut self, _: &nndl::checkpoint::Checkpoint) -> anyhow::Result<()> {
        Ok(())
    }
    fn stop_requested(&self) -> Option<i32> {
        None
    }
    fn on_loss(&mut self, _: usize, loss: f64) {
        self.seen.push((self.probe)(loss));
    }
}

pub fn nndl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nndl"))
}

/// MNIST for tests: $MNIST_DIR, else data/mnist (scripts/test fetches it there).
pub fn mnist_dir() -> PathBuf {
    std::env::var_os("MNIST_DIR").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
    })
}

/// A temporary folder, removed when dropped; derefs to its path.
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.path().as_os_str()
    }
}

pub fn tempdir(name: &str) -> Scratch {
    Scratch(tempfile::Builder::new().prefix(&format!("nndl-test-{name}-")).tempdir().unwrap())
}

/// Runs `nndl <args> --threads 1 --device cpu --data <mnist>` and returns its output.
pub fn train(args: &[&str]) -> Output {
    let out = nndl()
        .args(args)
        .args(["--threads", "1", "--device", "cpu", "--quiet", "--data"])
        .arg(mnist_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "nndl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Asserts a failure: non-zero exit, exactly one line on stderr containing `needle`.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line, got: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

/// metrics.csv as (iteration, split, loss, accuracy) rows.
pub fn metrics(run: &Path) -> Vec<(usize, String, f64, f64)> {
    std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().skip(1).map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        (f[0].parse().unwrap(), f[1].to_string(), f[2].parse().unwrap(), f[3].parse().unwrap())
    }).collect()
}

/// Waits (up to 30 s) until process `pid` catches SIGTERM, as /proc says: a signal sent before
/// nndl's handlers are in place (libtorch still loading) would take the default action instead.
pub fn wait_for_sigterm_handler(pid: u32) {
    let catches = || -> Option<bool> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?.trim().to_string();
        Some(u64::from_str_radix(&mask, 16).ok()? & (1 << (15 - 1)) != 0)
    };
    let waited = std::time::Instant::now();
    while catches() != Some(true) {
        assert!(waited.elapsed().as_secs() < 30, "pid {pid} never installed its SIGTERM handler");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
