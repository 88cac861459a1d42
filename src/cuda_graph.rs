//! CUDA graphs for the training step, through the small C API in csrc/cuda_graph.cpp (tch has
//! none). The shim is a separate shared library, loaded only when CUDA is up, so the binary
//! keeps running on CPU-only hosts; without it, CUDA steps simply run one by one.
use anyhow::{anyhow, bail, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

type NewFn = unsafe extern "C" fn(c_int) -> *mut c_void;
type OpFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type ErrFn = unsafe extern "C" fn() -> *const c_char;

struct Api {
    new: NewFn,
    enter: OpFn,
    leave: OpFn,
    capture_begin: OpFn,
    capture_end: OpFn,
    replay: OpFn,
    free: FreeFn,
    last_error: ErrFn,
}

const LIB: &str = "libnndl_cuda_graph.so";

/// Next to the executable first (a binary carried to another machine), then where build.rs
/// left it.
fn candidates() -> Vec<String> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(LIB))) {
        out.push(dir.display().to_string());
    }
    if let Some(built) = option_env!("NNDL_CUDA_GRAPH_LIB") {
        out.push(built.to_string());
    }
    out
}

fn load() -> Result<Api, String> {
    let handle = candidates()
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .find_map(|p| {
            let c = CString::new(p).ok()?;
            // SAFETY: dlopen of a library we built; the handle lives as long as the process.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            (!h.is_null()).then_some(h)
        })
        .ok_or_else(|| format!("{LIB} not found or not loadable"))?;
    let sym = |name: &str| -> Result<*mut c_void, String> {
        let c = CString::new(name).unwrap();
        // SAFETY: looking a symbol up in a handle dlopen returned.
        let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if p.is_null() { Err(format!("{LIB} lacks {name}")) } else { Ok(p) }
    };
    // SAFETY: the symbols have the C signatures declared in csrc/cuda_graph.cpp.
    unsafe {
        Ok(Api {
            new: std::mem::transmute::<*mut c_void, NewFn>(sym("nndl_graph_new")?),
            enter: std::mem::transmute::<*mut c_void, OpFn>(sym("nndl_graph_enter")?),
            leave: std::mem::transmute::<*mut c_void, OpFn>(sym("nndl_graph_leave")?),
            capture_begin: std::mem::transmute::<*mut c_void, OpFn>(sym("nndl_graph_capture_begin")?),
            capture_end: std::mem::transmute::<*mut c_void, OpFn>(sym("nndl_graph_capture_end")?),
            replay: std::mem::transmute::<*mut c_void, OpFn>(sym("nndl_graph_replay")?),
            free: std::mem::transmute::<*mut c_void, FreeFn>(sym("nndl_graph_free")?),
            last_error: std::mem::transmute::<*mut c_void, ErrFn>(sym("nndl_graph_last_error")?),
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
        // SAFETY: C API from csrc/cuda_graph.cpp; null means failure.
        let handle = unsafe { (api.new)(device_index as c_int) };
        if handle.is_null() {
            bail!("cannot create a CUDA graph: {}", last_error(api));
        }
        let graph = StepGraph { api, handle, captured: false };
        graph.call(api.enter, "enter the capture stream")?;
        Ok(graph)
    }

    fn call(&self, f: OpFn, what: &str) -> Result<()> {
        // SAFETY: `handle` is live until drop.
        if unsafe { f(self.handle) } != 0 {
            bail!("CUDA graph: cannot {what}: {}", last_error(self.api));
        }
        Ok(())
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

fn last_error(api: &Api) -> String {
    // SAFETY: the shim returns a pointer to a thread-local NUL-terminated string.
    unsafe { CStr::from_ptr((api.last_error)()) }.to_string_lossy().into_owned()
}

/// Whether this build found the shim (for `nndl info`); loads it.
pub fn available() -> Result<(), String> {
    api().map(|_| ()).map_err(|e| e.to_string())
}
