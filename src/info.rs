//! `nndl info`: what this binary runs on.
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
pub struct Info {
    pub nndl: &'static str,
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
        mkl: tch::utils::has_mkl(),
        openmp: tch::utils::has_openmp(),
    }
}

pub fn describe(i: &Info) -> String {
    let dir = i.libtorch_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "?".into());
    let mut out = format!(
        "nndl {}\ntch {} / torch {}\nlibtorch: {dir}\nCUDA: {}{}\ncuDNN: {}\nGPUs: {}\nCUDA graphs: {}\nthreads: {}\nMKL: {}, OpenMP: {}",
        i.nndl, i.tch, i.torch.as_deref().unwrap_or("?"),
        if i.cuda_available { "available" } else { "not available" },
        i.cuda_note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        match i.cudnn_version { Some(v) => format!("available ({v})"), None => "not available".into() },
        i.gpu_count, i.cuda_graphs, i.threads, i.mkl, i.openmp
    );
    out.push('\n');
    out
}
