//! CUDA graphs for the training step, and side streams (a pack's members side by side),
//! through the small C API of csrc/cuda_graph.h (tch has neither). The shim is a separate shared
//! library, loaded with libloading only when CUDA is up, so the binary keeps running on CPU-only
//! hosts; without it, CUDA steps simply run one by one.
use anyhow::{anyhow, bail, Result};
use libloading::{Library, Symbol};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

// The signatures of csrc/cuda_graph.h.
type NewFn = unsafe extern "C" fn(c_int) -> *mut c_void;
type OpFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type ErrFn = unsafe extern "C" fn() -> *const c_char;

/// Every symbol loaded below, for the test that holds them to csrc/cuda_graph.h.
pub const SYMBOLS: [&str; 13] = [
    "nndl_graph_new", "nndl_graph_enter", "nndl_graph_leave", "nndl_graph_capture_begin",
    "nndl_graph_capture_end", "nndl_graph_replay", "nndl_graph_free", "nndl_graph_last_error",
    "nndl_stream_new", "nndl_stream_enter", "nndl_stream_leave", "nndl_stream_join", "nndl_stream_free",
];

struct Api {
    new: NewFn,
    enter: OpFn,
    leave: OpFn,
    capture_begin: OpFn,
    capture_end: OpFn,
    replay: OpFn,
    free: FreeFn,
    last_error: ErrFn,
    stream_new: NewFn,
    stream_enter: OpFn,
    stream_leave: OpFn,
    stream_join: OpFn,
    stream_free: FreeFn,
    /// Keeps the code above mapped for as long as the process lives.
    _lib: Library,
}

const LIB: &str = "libnndl_cuda_graph.so";

/// Next to the executable first (a binary carried to another machine), then where build.rs
/// left it.
fn candidates() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(LIB))) {
        out.push(dir);
    }
    if let Some(built) = option_env!("NNDL_CUDA_GRAPH_LIB") {
        out.push(built.into());
    }
    out
}

fn load() -> Result<Api, String> {
    let lib = candidates()
        .into_iter()
        .filter(|p| p.exists())
        // SAFETY: a library we built; its initialisers only register with libtorch.
        .find_map(|p| unsafe { Library::new(&p) }.ok())
        .ok_or_else(|| format!("{LIB} not found or not loadable"))?;
    /// A symbol as the function type csrc/cuda_graph.h declares for it.
    fn get<T: Copy>(lib: &Library, name: &str) -> Result<T, String> {
        // SAFETY: every caller below names the type the header declares for `name`.
        let sym: Symbol<T> = unsafe { lib.get(name.as_bytes()) }.map_err(|e| format!("{LIB} lacks {name}: {e}"))?;
        Ok(*sym)
    }
    {
        Ok(Api {
            new: get(&lib, SYMBOLS[0])?,
            enter: get(&lib, SYMBOLS[1])?,
            leave: get(&lib, SYMBOLS[2])?,
            capture_begin: get(&lib, SYMBOLS[3])?,
            capture_end: get(&lib, SYMBOLS[4])?,
            replay: get(&lib, SYMBOLS[5])?,
            free: get(&lib, SYMBOLS[6])?,
            last_error: get(&lib, SYMBOLS[7])?,
            stream_new: get(&lib, SYMBOLS[8])?,
            stream_enter: get(&lib, SYMBOLS[9])?,
            stream_leave: get(&lib, SYMBOLS[10])?,
            stream_join: get(&lib, SYMBOLS[11])?,
            stream_free: get(&lib, SYMBOLS[12])?,
            _lib: lib,
        })
    }
}

fn api() -> Result<&'static Api> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| anyhow!("{e}"))
}

/// One captured training step. While it lives, a side stream is current (capture needs one);
/// dropping it restores the previous stream, which waits for the side stream's work.
pub struct StepGraph {
    api: &'static Api,
    handle: *mut c_void,
    captured: bool,
}

impl StepGraph {
    pub fn new(device_index: usize) -> Result<StepGraph> {
        let api = api()?;
        // SAFETY: C API of csrc/cuda_graph.h; null means failure.
        let handle = made(api, unsafe { (api.new)(device_index as c_int) }, "graph")?;
        let graph = StepGraph { api, handle, captured: false };
        graph.call(api.enter, "enter the capture stream")?;
        Ok(graph)
    }

    fn call(&self, f: OpFn, what: &str) -> Result<()> {
        // SAFETY: `handle` is live until drop.
        checked(self.api, unsafe { f(self.handle) }, &format!("graph: cannot {what}"))
    }

    pub fn is_captured(&self) -> bool {
        self.captured
    }

    /// Records the work `step` queues (nothing runs); replay() then runs it.
    pub fn capture(&mut self, step: impl FnOnce()) -> Result<()> {
        self.call(self.api.capture_begin, "begin capture")?;
        step();
        self.call(self.api.capture_end, "end capture")?;
        self.captured = true;
        Ok(())
    }

    pub fn replay(&self) -> Result<()> {
        self.call(self.api.replay, "replay")
    }
}

impl Drop for StepGraph {
    fn drop(&mut self) {
        // SAFETY: handle is live; freed exactly once.
        unsafe {
            (self.api.leave)(self.handle);
            (self.api.free)(self.handle);
        }
    }
}

/// A stream beside the current one. Work queued while it is entered runs after what was queued
/// before on the current stream, and concurrently with what is queued there after `leave`.
pub struct SideStream {
    api: &'static Api,
    handle: *mut c_void,
}

impl SideStream {
    pub fn new(device_index: usize) -> Result<SideStream> {
        let api = api()?;
        // SAFETY: C API of csrc/cuda_graph.h; null means failure.
        let handle = made(api, unsafe { (api.stream_new)(device_index as c_int) }, "stream")?;
        Ok(SideStream { api, handle })
    }

    /// Queues the work `f` issues on this stream, a branch beside the current stream (also inside
    /// a graph capture), then makes the earlier stream current again; `join` merges it back.
    pub fn branch<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        // SAFETY (both calls): `handle` is live until drop.
        checked(self.api, unsafe { (self.api.stream_enter)(self.handle) }, "stream: cannot enter")?;
        let out = f();
        checked(self.api, unsafe { (self.api.stream_leave)(self.handle) }, "stream: cannot leave")?;
        Ok(out)
    }

    /// Orders the work queued from now on the current stream after this stream's.
    pub fn join(&self) -> Result<()> {
        // SAFETY: `handle` is live until drop.
        checked(self.api, unsafe { (self.api.stream_join)(self.handle) }, "stream: cannot join")
    }
}

impl Drop for SideStream {
    fn drop(&mut self) {
        // SAFETY: handle is live; freed exactly once.
        unsafe { (self.api.stream_free)(self.handle) }
    }
}

/// A handle the shim made (null: it could not).
fn made(api: &Api, handle: *mut c_void, what: &str) -> Result<*mut c_void> {
    if handle.is_null() {
        bail!("cannot create a CUDA {what}: {}", last_error(api));
    }
    Ok(handle)
}

/// A shim call's status (non-zero: failed).
fn checked(api: &Api, status: c_int, what: &str) -> Result<()> {
    if status != 0 {
        bail!("CUDA {what}: {}", last_error(api));
    }
    Ok(())
}

fn last_error(api: &Api) -> String {
    // SAFETY: the shim returns a pointer to a thread-local NUL-terminated string.
    unsafe { CStr::from_ptr((api.last_error)()) }.to_string_lossy().into_owned()
}

/// Whether this build found the shim (for `nndl info`); loads it.
pub fn available() -> Result<(), String> {
    api().map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_loaded_symbol_is_declared_in_the_header() {
        let header = include_str!("../csrc/cuda_graph.h");
        for name in super::SYMBOLS {
            assert!(header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")), "{name} is not in csrc/cuda_graph.h");
        }
        // And nothing declared there is left unloaded.
        let declared = header.lines().filter(|l| !l.trim_start().starts_with("//") && (l.contains(" nndl_") || l.contains("*nndl_"))).count();
        assert_eq!(declared, super::SYMBOLS.len(), "csrc/cuda_graph.h declares symbols Rust does not load");
    }

    /// The built shim exports every symbol Rust loads. CUDA's libraries load without a GPU, so
    /// this runs on a CPU machine whose libtorch has them all; where build.rs skipped the shim,
    /// or libtorch_cuda.so cannot load (a CPU set-up without NVIDIA's runtime), there is nothing
    /// to load.
    #[test]
    fn the_built_shim_loads_with_every_symbol() {
        if option_env!("NNDL_CUDA_GRAPH_LIB").is_some() && crate::device::load_cuda_library().is_ok() {
            assert_eq!(super::available(), Ok(()));
        }
    }
}
