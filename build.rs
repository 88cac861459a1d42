// 1. Turns the libtorch lib folder that torch-sys found into an rpath, so `nndl` and the test
//    binaries run without LD_LIBRARY_PATH.
// 2. Builds csrc/cuda_graph.cpp into libnndl_cuda_graph.so when the libtorch has CUDA headers
//    and libraries (the pip wheels do, even the CPU-minimal set); without them nndl simply
//    runs CUDA steps one by one.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=NNDL_LIBTORCH_LIB={lib}");
    match build_cuda_graph(Path::new(&lib)) {
        Ok(so) => println!("cargo:rustc-env=NNDL_CUDA_GRAPH_LIB={}", so.display()),
        Err(why) => println!("cargo:warning=CUDA graphs disabled: {why}"),
    }
}

fn build_cuda_graph(lib: &Path) -> Result<PathBuf, String> {
    let root = lib.parent().ok_or("no libtorch root")?;
    let include = root.join("include");
    if !include.join("ATen/cuda/CUDAGraph.h").exists() || !lib.join("libtorch_cuda.so").exists() {
        return Err("this libtorch has no CUDA".into());
    }
    // cuda_runtime_api.h: from the NVIDIA pip wheels next to torch, or a CUDA toolkit.
    let mut cuda_dirs: Vec<PathBuf> = std::fs::read_dir(root.join("../nvidia"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    cuda_dirs.extend(["/usr/local/cuda".into()]);
    let cuda = cuda_dirs.into_iter().find(|d| d.join("include/cuda_runtime_api.h").exists()).ok_or("no cuda_runtime_api.h found")?;
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("libnndl_cuda_graph.so");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let status = Command::new(&cxx)
        .args(["-std=c++17", "-O2", "-shared", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=1", "-w"])
        .arg("-I").arg(&include)
        .arg("-I").arg(include.join("torch/csrc/api/include"))
        .arg("-I").arg(cuda.join("include"))
        .arg("csrc/cuda_graph.cpp")
        .arg("-o").arg(&out)
        .arg("-L").arg(lib)
        .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"])
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .map_err(|e| format!("cannot run {cxx}: {e}"))?;
    if !status.success() {
        return Err(format!("{cxx} failed on csrc/cuda_graph.cpp"));
    }
    // Also beside the binary (OUT_DIR is target/<profile>/build/nndl-*/out), where nndl looks
    // first and where a copy to another machine should take it from.
    if let Some(profile_dir) = out.ancestors().nth(4) {
        let _ = std::fs::copy(&out, profile_dir.join("libnndl_cuda_graph.so"));
    }
    Ok(out)
}
