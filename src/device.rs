//! Choosing the compute device. rustc links with --as-needed, which drops libtorch_cuda.so from
//! the binary; it is loaded by hand at start-up so the same binary runs on CPU and CUDA.
use anyhow::{bail, Result};
use std::sync::OnceLock;
use tch::Device;

static CUDA_LIBRARY: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads libtorch_cuda.so once (via the rpath, LD_LIBRARY_PATH, or the build's libtorch folder),
/// RTLD_GLOBAL so libtorch's registries see its kernels. Ok when loaded; Err with the reason.
pub fn load_cuda_library() -> &'static Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    CUDA_LIBRARY.get_or_init(|| {
        let mut candidates = vec!["libtorch_cuda.so".to_string()];
        if let Some(dir) = option_env!("NNDL_LIBTORCH_LIB") {
            candidates.push(format!("{dir}/libtorch_cuda.so"));
        }
        let mut last = String::new();
        for name in candidates {
            // SAFETY: libtorch's own CUDA library; its initialisers register CUDA kernels.
            match unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    // Kept for the life of the process: libtorch holds pointers into it.
                    std::mem::forget(lib);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    })
}

/// Paths that exist wherever an NVIDIA driver can give CUDA a GPU: its control device (also in
/// containers given a GPU), its /proc folder, WSL2's GPU device and Jetson's.
const DRIVER_PATHS: [&str; 4] = ["/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg", "/dev/nvhost-ctrl-gpu"];

/// Whether this machine has an NVIDIA driver. Without one no GPU can be visible, and loading a
/// CUDA libtorch's libraries only to learn that took 0.1-0.2 s of every process here.
pub fn nvidia_driver_present() -> bool {
    DRIVER_PATHS.iter().any(|p| std::path::Path::new(p).exists())
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

/// As `cuda_unavailable_reason`, for `auto`: on a machine with no NVIDIA driver it answers
/// without loading anything. `--device cuda` always tries, whatever the paths say.
pub fn auto_cuda_unavailable_reason() -> Option<String> {
    if !nvidia_driver_present() {
        return Some(format!("no NVIDIA driver on this machine: none of {} exists", DRIVER_PATHS.join(", ")));
    }
    cuda_unavailable_reason()
}

/// What `--device` asked for, parsed but not yet checked against the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    pub fn parse(spec: &str) -> Result<DeviceSpec> {
        Ok(match spec {
            "auto" => DeviceSpec::Auto,
            "cpu" => DeviceSpec::Cpu,
            "cuda" => DeviceSpec::Cuda(0),
            _ => match spec.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => DeviceSpec::Cuda(n),
                None => bail!("invalid --device '{spec}': expected auto, cpu, cuda or cuda:N"),
            },
        })
    }
}

/// Checks `spec` against the machine. Returns the device and, for `auto` falling back to the
/// CPU, a note to print once. `setting` names where `spec` came from in errors: `--device`, or
/// `runs/x/config.json: device` for a saved run's.
pub fn resolve(spec: &str, setting: &str) -> Result<(Device, Option<String>)> {
    let parsed = DeviceSpec::parse(spec).map_err(|_| anyhow::anyhow!("invalid {setting} '{spec}': expected auto, cpu, cuda or cuda:N"))?;
    match parsed {
        DeviceSpec::Cpu => Ok((Device::Cpu, None)),
        DeviceSpec::Auto => Ok(match auto_cuda_unavailable_reason() {
            None => (Device::Cuda(0), None),
            Some(why) => (Device::Cpu, Some(format!("no CUDA, running on CPU: {why}"))),
        }),
        DeviceSpec::Cuda(index) => {
            if let Some(why) = cuda_unavailable_reason() {
                bail!("{setting} {spec}: CUDA is not available: {why}");
            }
            let count = tch::Cuda::device_count() as usize;
            if index >= count {
                bail!("{setting} {spec}: only {count} CUDA device(s) visible");
            }
            Ok((Device::Cuda(index), None))
        }
    }
}

/// A stable name for reports: "cpu" or "cuda:N".
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
