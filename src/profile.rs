//! Where a training step's time goes, measured by libtorch's own profiler (Kineto, through
//! csrc/profiler.cpp): `--profile-steps N` records N training steps between two evaluations,
//! after the warm-up, and the run folder gets profile.txt (each operator's self time per step
//! on the host, each kernel's time per step on the GPU) and profile-trace.json (the Chrome
//! trace, for Perfetto or chrome://tracing). libtorch writes the trace into the temporary folder
//! (TMPDIR), from which it is read, checked to be whole JSON and removed; a trace that could not
//! be written there is a warning naming that folder, and the run goes on without a profile. The
//! profiler adds some microseconds to every operator call, so compare its rows with each other,
//! and the loop's speed with unprofiled runs.
use crate::config::TrainConfig;
use crate::run_dir::RunDir;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

// The declarations of csrc/profiler.h.
extern "C" {
    fn nndl_profiler_start(cuda: c_int) -> c_int;
    fn nndl_profiler_stop(trace_path: *const c_char) -> c_int;
    fn nndl_profiler_events(out: *mut c_char, cap: usize) -> usize;
    fn nndl_profiler_last_error() -> *const c_char;
}

/// Readies the profiler on the main thread, before any training thread starts. Kineto's own
/// log is read when it first starts: on the CPU its only line says that no GPU is there (as an
/// ERROR, with a CUDA build of libtorch), so it is silenced there unless KINETO_LOG_LEVEL is
/// set; on CUDA it stays, for what CUPTI reports. Kineto also wants to start first on the
/// thread that loaded it (else it says so on stderr), hence one empty session here.
pub fn prepare(device: Device) {
    // Only the CPU's packs train in threads of their own (sub-packs side by side).
    if device.is_cuda() {
        return;
    }
    if std::env::var_os("KINETO_LOG_LEVEL").is_none() {
        std::env::set_var("KINETO_LOG_LEVEL", "5");
    }
    // SAFETY: plain calls (a null path asks for no trace); a failure here shows again, and is
    // reported, when the window starts.
    unsafe {
        if nndl_profiler_start(0) == 0 {
            nndl_profiler_stop(std::ptr::null());
        }
    }
}

/// Rows of each table in profile.txt.
const ROWS: usize = 25;

fn check(status: c_int, what: &str) -> Result<()> {
    if status != 0 {
        // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated message.
        let why = unsafe { CStr::from_ptr(nndl_profiler_last_error()) }.to_string_lossy().into_owned();
        bail!("libtorch's profiler could not {what}: {why}");
    }
    Ok(())
}

/// One recorded interval: an operator call (or runtime call) on a host thread, or a kernel or
/// copy on the GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub gpu: bool,
    pub thread: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub name: String,
}

/// One line of the shim's event list: "device\tthread\tstart_ns\tend_ns\tname".
fn parse_event(line: &str) -> Option<Event> {
    let mut f = line.splitn(5, '\t');
    let gpu = f.next()? == "1";
    let thread = f.next()?.parse().ok()?;
    let start_ns = f.next()?.parse().ok()?;
    let end_ns: u64 = f.next()?.parse().ok()?;
    Some(Event { gpu, thread, start_ns, end_ns: end_ns.max(start_ns), name: f.next()?.to_string() })
}

/// Time and count per name.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub calls: usize,
    pub ns: u64,
}

/// Host events' self time (their own duration less their children's, the calls they made on
/// the same thread), summed by name, slowest first.
pub fn host_self_times(events: &[Event]) -> Vec<Row> {
    let mut by_thread: HashMap<u64, Vec<&Event>> = HashMap::new();
    for e in events.iter().filter(|e| !e.gpu) {
        by_thread.entry(e.thread).or_default().push(e);
    }
    let mut rows: HashMap<&str, Row> = HashMap::new();
    for mut list in by_thread.into_values() {
        // Parents before their children: by start, the longer first.
        list.sort_by_key(|e| (e.start_ns, std::cmp::Reverse(e.end_ns)));
        let mut self_ns: Vec<u64> = list.iter().map(|e| e.end_ns - e.start_ns).collect();
        let mut open: Vec<usize> = Vec::new();
        for (k, e) in list.iter().enumerate() {
            while open.last().is_some_and(|&p| list[p].end_ns <= e.start_ns) {
                open.pop();
            }
            if let Some(&p) = open.last() {
                self_ns[p] = self_ns[p].saturating_sub(e.end_ns.min(list[p].end_ns) - e.start_ns);
            }
            open.push(k);
        }
        for (e, ns) in list.iter().zip(self_ns) {
            let row = rows.entry(e.name.as_str()).or_insert_with(|| Row { name: e.name.clone(), calls: 0, ns: 0 });
            row.calls += 1;
            row.ns += ns;
        }
    }
    sorted(rows.into_values())
}

/// GPU events' durations (kernels, copies, fills), summed by name, slowest first.
pub fn gpu_times(events: &[Event]) -> Vec<Row> {
    let mut rows: HashMap<&str, Row> = HashMap::new();
    for e in events.iter().filter(|e| e.gpu) {
        let row = rows.entry(e.name.as_str()).or_insert_with(|| Row { name: e.name.clone(), calls: 0, ns: 0 });
        row.calls += 1;
        row.ns += e.end_ns - e.start_ns;
    }
    sorted(rows.into_values())
}

fn sorted(rows: impl Iterator<Item = Row>) -> Vec<Row> {
    let mut rows: Vec<Row> = rows.collect();
    rows.sort_by(|a, b| b.ns.cmp(&a.ns).then_with(|| a.name.cmp(&b.name)));
    rows
}

/// What one profiling window measured.
#[derive(Debug, Clone)]
pub struct StepProfile {
    /// What ran: net, preset, device, threads, graph, members.
    pub about: String,
    /// The first iteration recorded, and how many.
    pub first: usize,
    pub steps: usize,
    /// Why fewer steps than asked were recorded.
    pub clipped: Option<String>,
    /// Wall time of the window (the device synchronised at both ends).
    pub wall_seconds: f64,
    pub host: Vec<Row>,
    pub gpu: Vec<Row>,
    /// Kineto's Chrome trace of the window.
    pub trace: Vec<u8>,
}

impl StepProfile {
    /// profile.txt: the window, then the two tables per step.
    pub fn report(&self) -> String {
        let per = |ns: u64| ns as f64 / 1e3 / self.steps as f64;
        let mut s = format!("nndl profile: {}\n", self.about);
        let _ = writeln!(s, "iterations {}..{} ({} steps; no evaluation inside), recorded by libtorch's profiler (Kineto)", self.first, self.first + self.steps - 1, self.steps);
        if let Some(why) = &self.clipped {
            let _ = writeln!(s, "{why}");
        }
        let _ = writeln!(s, "wall time per step, profiled: {:.1} us (the profiler adds a little to every operator call)", self.wall_seconds * 1e6 / self.steps as f64);
        let mut table = |title: &str, rows: &[Row]| {
            let total: u64 = rows.iter().map(|r| r.ns).sum();
            let _ = writeln!(s, "\n{title}: {:.1} us per step in all; slowest {} of {} names (us per step, calls per step, share)", per(total), rows.len().min(ROWS), rows.len());
            for r in rows.iter().take(ROWS) {
                let share = if total > 0 { 100.0 * r.ns as f64 / total as f64 } else { 0.0 };
                let _ = writeln!(s, "  {:>10.1}  {:>6.1}  {:>5.1}%  {}", per(r.ns), r.calls as f64 / self.steps as f64, share, r.name);
            }
        };
        table("host: self time by operator", &self.host);
        if !self.gpu.is_empty() {
            table("GPU: time by kernel or copy", &self.gpu);
        }
        s
    }

    /// profile.txt and profile-trace.json in the run folder, each written atomically.
    pub fn write(&self, run: &RunDir) -> Result<()> {
        run.write_text("profile.txt", &self.report())?;
        crate::run_dir::write_atomic(&run.file("profile-trace.json"), &self.trace)
    }
}

/// Records a window of training steps: `before_step(i)` and `after_step(i)` around each step
/// of the loop (after its loss check, before its evaluation). A profiler that fails is said
/// once on stderr and the run goes on without it.
pub struct StepProfiler {
    from: usize,
    to: usize,
    clipped: Option<String>,
    cuda: Option<usize>,
    about: String,
    started: Option<Instant>,
    failed: bool,
}

impl StepProfiler {
    /// The window of `steps` steps from the first one after `warm` (the warm-up and a CUDA
    /// graph's capture), ended early by the next evaluation. None when nothing is asked, or
    /// when no step is left after the warm-up (said on stderr unless quiet).
    pub fn plan(steps: Option<usize>, warm: usize, cfg: &TrainConfig, device: Device, about: String, quiet: bool) -> Option<StepProfiler> {
        let steps = steps?;
        let mut from = warm;
        // An evaluation point's step may end the window, not start it (as the first of one).
        while from < cfg.iterations && cfg.is_eval_point(from) && from + 1 < cfg.iterations {
            from += 1;
        }
        if from >= cfg.iterations {
            if !quiet {
                crate::say!("note: --profile-steps: no step left to record: the warm-up takes {warm} steps, the run has {}", cfg.iterations);
            }
            return None;
        }
        // The step of the next evaluation point is the last one recorded.
        let eval = (from..cfg.iterations).find(|&i| cfg.is_eval_point(i)).unwrap_or(cfg.iterations - 1);
        let to = (from + steps).min(eval + 1);
        let clipped = (to - from < steps).then(|| format!("{steps} steps asked; the evaluation after iteration {eval} ends the window at {} step{}", to - from, if to - from == 1 { "" } else { "s" }));
        if let (Some(why), false) = (&clipped, quiet) {
            crate::say!("note: --profile-steps: {why}");
        }
        let cuda = match device {
            Device::Cuda(d) => Some(d),
            _ => None,
        };
        Some(StepProfiler { from, to, clipped, cuda, about, started: None, failed: false })
    }

    fn synchronize(&self) {
        if let Some(d) = self.cuda {
            tch::Cuda::synchronize(d as i64);
        }
    }

    /// Starts recording before the window's first step.
    pub fn before_step(&mut self, i: usize) {
        if i != self.from || self.failed {
            return;
        }
        self.synchronize();
        // SAFETY: a plain call with an int; errors come back as a status.
        match check(unsafe { nndl_profiler_start(self.cuda.is_some() as c_int) }, "start") {
            Ok(()) => self.started = Some(Instant::now()),
            Err(e) => self.fail(e),
        }
    }

    /// Stops after the window's last step and returns what it measured.
    pub fn after_step(&mut self, i: usize) -> Option<StepProfile> {
        let started = self.started.filter(|_| i + 1 == self.to)?;
        self.started = None;
        self.stop(started).map_err(|e| self.fail(e)).ok()
    }

    fn fail(&mut self, e: anyhow::Error) {
        crate::say!("warning: --profile-steps: {e:#}; the run goes on without a profile");
        self.failed = true;
    }

    fn stop(&self, started: Instant) -> Result<StepProfile> {
        self.synchronize();
        let wall_seconds = started.elapsed().as_secs_f64();
        let trace_path = std::env::temp_dir().join(format!("nndl-profile-{}-{}.json", std::process::id(), self.from));
        let c_path = CString::new(trace_path.to_string_lossy().as_bytes()).context("temporary path has a NUL byte")?;
        // SAFETY: `c_path` is NUL-terminated and outlives the call.
        let stopped = check(unsafe { nndl_profiler_stop(c_path.as_ptr()) }, "stop");
        let trace = take_trace(&trace_path);
        stopped?;
        let events: Vec<Event> = kept_events().lines().filter_map(parse_event).collect();
        Ok(StepProfile {
            about: self.about.clone(),
            first: self.from,
            steps: self.to - self.from,
            clipped: self.clipped.clone(),
            wall_seconds,
            host: host_self_times(&events),
            gpu: gpu_times(&events),
            trace: trace?,
        })
    }
}

impl Drop for StepProfiler {
    /// A loop that ends inside the window (a stop, a divergence) leaves no profiler running.
    fn drop(&mut self) {
        if self.started.is_some() {
            // SAFETY: a null path asks for no trace; the status is of no use here.
            let _ = unsafe { nndl_profiler_stop(std::ptr::null()) };
        }
    }
}

/// The Chrome trace libtorch wrote at `path` (Kineto writes `path.tmp` and renames it when
/// done), checked to be whole JSON: a trace cut short by a full disk is no trace. Both files
/// are removed, whatever happened, since they lie in the system's temporary folder.
fn take_trace(path: &Path) -> Result<Vec<u8>> {
    let unfinished = PathBuf::from(format!("{}.tmp", path.display()));
    let read = std::fs::read(path);
    let left_unfinished = std::fs::remove_file(&unfinished).is_ok();
    let _ = std::fs::remove_file(path);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let cause = format!("libtorch could not write its trace in {} (the temporary folder, TMPDIR: full or read-only?)", dir.display());
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(_) if left_unfinished => bail!("{cause}: it left {name}.tmp unfinished"),
        Err(e) => bail!("{cause}: no {name} ({e})"),
    };
    match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => bail!("{cause}: {name} is not whole JSON ({e})"),
    }
}

/// The shim's event lines from the last stop.
fn kept_events() -> String {
    // SAFETY: a null buffer with capacity 0 only asks for the size.
    let size = unsafe { nndl_profiler_events(std::ptr::null_mut(), 0) };
    let mut out = vec![0u8; size];
    // SAFETY: `out` has room for `size` bytes, the size just reported.
    unsafe { nndl_profiler_events(out.as_mut_ptr() as *mut c_char, out.len()) };
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(thread: u64, start_ns: u64, end_ns: u64, name: &str) -> Event {
        Event { gpu: false, thread, start_ns, end_ns, name: name.into() }
    }

    #[test]
    fn self_time_is_duration_less_the_children_on_the_same_thread() {
        // mm (0..100) calls copy (10..30) and fill (40..50); fill calls memset (41..45).
        // Another thread's add (20..90) is no child of mm. A second mm (200..260) has none.
        let events = [ev(1, 0, 100, "mm"), ev(1, 10, 30, "copy"), ev(1, 40, 50, "fill"), ev(1, 41, 45, "memset"), ev(2, 20, 90, "add"), ev(1, 200, 260, "mm")];
        let rows = host_self_times(&events);
        let get = |n: &str| rows.iter().find(|r| r.name == n).map(|r| (r.calls, r.ns)).unwrap();
        assert_eq!(get("mm"), (2, 70 + 60));
        assert_eq!(get("copy"), (1, 20));
        assert_eq!(get("fill"), (1, 6));
        assert_eq!(get("memset"), (1, 4));
        assert_eq!(get("add"), (1, 70));
        assert_eq!(rows[0].name, "mm", "slowest first");
        assert_eq!(rows.iter().map(|r| r.ns).sum::<u64>(), 100 + 60 + 70, "self times add up to the top-level time");
    }

    #[test]
    fn a_trace_is_taken_whole_or_not_at_all_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nndl-profile-1-4.json");
        let unfinished = dir.path().join("nndl-profile-1-4.json.tmp");
        std::fs::write(&path, br#"{"traceEvents": [{"name": "aten::mm"}]}"#).unwrap();
        assert!(take_trace(&path).unwrap().starts_with(b"{"));
        // Cut short by a full disk, and renamed all the same.
        std::fs::write(&path, br#"{"traceEvents": [{"name": "at"#).unwrap();
        let err = take_trace(&path).unwrap_err().to_string();
        assert!(err.contains("could not write its trace in") && err.contains("is not whole JSON"), "{err}");
        // Not renamed: only the unfinished file is there.
        std::fs::write(&unfinished, b"{").unwrap();
        let err = take_trace(&path).unwrap_err().to_string();
        assert!(err.contains("full or read-only?): it left nndl-profile-1-4.json.tmp unfinished"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "both files removed");
    }

    #[test]
    fn gpu_rows_sum_durations_and_event_lines_parse() {
        let lines = "1\t7\t100\t150\tsgemm_kernel\n0\t3\t0\t500\taten::mm\n1\t7\t200\t230\tsgemm_kernel\nbroken line\n1\t7\t300\t310\tname\twith tab";
        let events: Vec<Event> = lines.lines().filter_map(parse_event).collect();
        assert_eq!(events.len(), 4);
        assert_eq!(events[3].name, "name\twith tab", "the name is the rest of the line");
        let gpu = gpu_times(&events);
        assert_eq!((gpu[0].name.as_str(), gpu[0].calls, gpu[0].ns), ("sgemm_kernel", 2, 80));
        assert_eq!(host_self_times(&events)[0].ns, 500);
    }
}
