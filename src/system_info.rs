//! What this binary runs on: `nndl info`, and the environment every summary.json records.
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
pub struct Info {
    pub nndl: &'static str,
    pub git_commit: &'static str,
    pub tch: &'static str,
    pub torch: Option<String>,
    pub libtorch_dir: Option<PathBuf>,
    pub cuda_library_loaded: bool,
    pub cuda_available: bool,
    pub cuda_note: Option<String>,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub gpu_count: i64,
    /// The CUDA-graph shim: "available", or why not.
    pub cuda_graphs: String,
    pub threads: i32,
    pub tf32: bool,
    pub mkl: bool,
    pub openmp: bool,
}

/// The folder of the libtorch this process loaded, read from the loader's map.
pub fn loaded_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("/libtorch_cpu.so"))?;
    let path = PathBuf::from(&line[line.find('/')?..]);
    Some(path.parent()?.parent()?.to_path_buf())
}

/// The torch version of that libtorch: a pip install has version.py, an archive build-version.
fn torch_version(dir: &std::path::Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    std::fs::read_to_string(dir.join("build-version")).ok().map(|s| s.trim().to_string())
}

pub fn gather() -> Info {
    let loaded = crate::device::load_cuda_library().is_ok();
    let note = crate::device::cuda_unavailable_reason();
    let cuda = note.is_none();
    let libtorch_dir = loaded_libtorch_dir();
    Info {
        nndl: env!("CARGO_PKG_VERSION"),
        git_commit: env!("NNDL_GIT_COMMIT"),
        tch: "0.24.0",
        torch: libtorch_dir.as_deref().and_then(torch_version),
        libtorch_dir,
        cuda_library_loaded: loaded,
        cuda_available: cuda,
        cuda_note: note,
        cudnn_available: cuda && tch::Cuda::cudnn_is_available(),
        cudnn_version: (cuda && tch::Cuda::cudnn_is_available()).then(tch::utils::version_cudnn),
        gpu_count: if cuda { tch::Cuda::device_count() } else { 0 },
        cuda_graphs: if cuda {
            crate::cuda_graph::available().map(|_| "available".to_string()).unwrap_or_else(|e| e)
        } else {
            "not used without CUDA".into()
        },
        threads: tch::get_num_threads(),
        tf32: crate::torch_extras::tf32_enabled(),
        mkl: tch::utils::has_mkl(),
        openmp: tch::utils::has_openmp(),
    }
}

/// The environment of a run, recorded in its summary.json so a result can be traced.
#[derive(Serialize, serde::Deserialize, Clone, Debug)]
pub struct Environment {
    pub nndl_version: String,
    pub git_commit: String,
    pub command_line: Vec<String>,
    pub started_utc: String,
    pub finished_utc: String,
    pub torch: Option<String>,
    pub cuda_runtime: Option<i64>,
    pub cudnn: Option<i64>,
    pub gpu: Option<String>,
    pub cpu: Option<String>,
    pub threads: i32,
    pub host: String,
}

pub fn utc_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The CPU's model name from /proc/cpuinfo.
pub fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// The GPU's name as the driver reports it (tch has no call for it; nvidia-smi ships with the
/// driver).
pub fn gpu_name(index: usize) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", &format!("--id={index}")])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

impl Environment {
    /// Everything but the finish time, which `finish` sets.
    pub fn capture(device: tch::Device, started_utc: String) -> Environment {
        let cuda = device.is_cuda();
        Environment {
            nndl_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("NNDL_GIT_COMMIT").into(),
            command_line: std::env::args().collect(),
            started_utc,
            finished_utc: String::new(),
            torch: loaded_libtorch_dir().as_deref().and_then(torch_version),
            cuda_runtime: cuda.then(tch::utils::version_cudart),
            cudnn: (cuda && tch::Cuda::cudnn_is_available()).then(tch::utils::version_cudnn),
            gpu: match device {
                tch::Device::Cuda(i) => gpu_name(i),
                _ => None,
            },
            cpu: cpu_model(),
            threads: tch::get_num_threads(),
            host: crate::run_dir::hostname(),
        }
    }
}

pub fn describe(i: &Info) -> String {
    let dir = i.libtorch_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "?".into());
    let mut out = format!(
        "nndl {} ({})\ntch {} / torch {}\nlibtorch: {dir}\nCUDA: {}{}\ncuDNN: {}\nGPUs: {}\nCUDA graphs: {}\nthreads: {}\nTF32: {} (libtorch's default; runs set their own --tf32)\nMKL: {}, OpenMP: {}",
        i.nndl, i.git_commit, i.tch, i.torch.as_deref().unwrap_or("?"),
        if i.cuda_available { "available" } else { "not available" },
        i.cuda_note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        match i.cudnn_version { Some(v) => format!("available ({v})"), None => "not available".into() },
        i.gpu_count, i.cuda_graphs, i.threads, if i.tf32 { "on" } else { "off" }, i.mkl, i.openmp
    );
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    /// The recorded commit is the checkout's, marked dirty exactly when its sources differ from
    /// it (build.rs reruns on every source edit; cargo test builds before it runs this).
    #[test]
    fn the_commit_names_the_checkout_and_its_changes() {
        let git = |args: &[&str]| std::process::Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()
            .filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else { return }; // not a git checkout
        let changes = git(&["status", "--porcelain", "--", "src", "csrc", "build.rs", "Cargo.toml", "Cargo.lock"]).unwrap();
        // A file edited after this test binary was built says nothing of the build.
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let built = modified(&std::env::current_exe().unwrap()).unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        if changes.lines().filter_map(|l| l.split_whitespace().last()).any(|f| modified(&root.join(f)).is_some_and(|m| m > built)) {
            return;
        }
        let expected = if changes.is_empty() { head } else { format!("{head}-dirty") };
        assert_eq!(env!("NNDL_GIT_COMMIT"), expected, "changes: {changes}");
    }
}
