//! Choosing the compute device. rustc links with --as-needed, which drops libtorch_cuda.so from
//! the binary; it is loaded by hand at start-up so the same binary runs on CPU and CUDA.
use anyhow::{bail, Result};
use std::sync::OnceLock;
use tch::Device;

static CUDA_LIBRARY: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads libtorch_cuda.so once (via the rpath, LD_LIBRARY_PATH, or the build's libtorch folder).
/// Ok when loaded; Err with the loader's reason otherwise.
pub fn load_cuda_library() -> &'static Result<(), String> {
    CUDA_LIBRARY.get_or_init(|| {
        let mut candidates = vec!["libtorch_cuda.so".to_string()];
        if let Some(dir) = option_env!("NNDL_LIBTORCH_LIB") {
            candidates.push(format!("{dir}/libtorch_cuda.so"));
        }
        let mut last = String::new();
        for name in candidates {
            let c = std::ffi::CString::new(name).expect("no NUL in library name");
            // SAFETY: dlopen with a valid C string; the handle is kept for the process's life.
            let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if !handle.is_null() {
                return Ok(());
            }
            // SAFETY: dlerror returns a thread-local C string or null.
            let err = unsafe { libc::dlerror() };
            if !err.is_null() {
                last = unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned();
            }
        }
        Err(last)
    })
}

/// Why CUDA cannot be used, in words; None when it can.
pub fn cuda_unavailable_reason() -> Option<String> {
    if let Err(e) = load_cuda_library() {
        return Some(format!("libtorch_cuda.so could not be loaded ({e}); see libtorch-setup.md, 'CUDA not detected'"));
    }
    if !tch::Cuda::is_available() || tch::Cuda::device_count() == 0 {
        return Some("libtorch_cuda.so is loaded but no CUDA GPU is visible (driver missing or CUDA_VISIBLE_DEVICES empty)".into());
    }
    None
}

/// Parses `auto|cpu|cuda|cuda:N` and checks it can be used. Returns the device and, for `auto`
/// falling back to the CPU, a note to print once.
pub fn resolve(spec: &str) -> Result<(Device, Option<String>)> {
    let resolved = match spec {
        "cpu" => (Device::Cpu, None),
        "auto" => match cuda_unavailable_reason() {
            None => (Device::Cuda(0), None),
            Some(why) => (Device::Cpu, Some(format!("no CUDA, running on CPU: {why}"))),
        },
        _ => {
            let index = match spec.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) => n,
                    None => bail!("invalid --device '{spec}': expected auto, cpu, cuda or cuda:N"),
                },
                None => bail!("invalid --device '{spec}': expected auto, cpu, cuda or cuda:N"),
            };
            if let Some(why) = cuda_unavailable_reason() {
                bail!("--device {spec}: CUDA is not available: {why}");
            }
            let count = tch::Cuda::device_count() as usize;
            if index >= count {
                bail!("--device {spec}: only {count} CUDA device(s) visible");
            }
            (Device::Cuda(index), None)
        }
    };
    if resolved.0.is_cuda() {
        // Fixed shapes: let cuDNN pick the fastest convolution once.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    Ok(resolved)
}

/// A stable name for reports: "cpu" or "cuda:N".
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
