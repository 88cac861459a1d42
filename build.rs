//! 1. Turns the libtorch lib folder that torch-sys found into an rpath, so `nndl` and the test
//!    binaries run without LD_LIBRARY_PATH.
//! 2. Compiles csrc/torch_extras.cpp (libtorch state and switches tch lacks) and
//!    csrc/profiler.cpp (libtorch's operator profiler) into a static library linked into nndl,
//!    with the `cc` crate.
//! 3. Builds csrc/cuda_graph.cpp into libnndl_cuda_graph.so when the libtorch has CUDA headers
//!    and libraries (the pip wheels do, even the CPU-minimal set); without them nndl simply
//!    runs CUDA steps one by one. A separate library, loaded only when CUDA is up.
//! 4. Records the git commit for summary.json.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    for f in ["csrc/cuda_graph.cpp", "csrc/cuda_graph.h", "csrc/torch_extras.cpp", "csrc/torch_extras.h", "csrc/profiler.cpp", "csrc/profiler.h", "csrc/guarded.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    watch_git_head();
    let commit = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NNDL_GIT_COMMIT={commit}");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports its libtorch lib folder"));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=NNDL_LIBTORCH_LIB={}", lib.display());
    let include = lib.parent().expect("libtorch root").join("include");
    torch_build(&include)
        .file("csrc/torch_extras.cpp")
        .file("csrc/profiler.cpp")
        .compile("nndl_torch_extras");
    match build_cuda_graph(&lib, &include) {
        Ok(so) => println!("cargo:rustc-env=NNDL_CUDA_GRAPH_LIB={}", so.display()),
        Err(why) => println!("cargo:warning=CUDA graphs disabled: {why}"),
    }
}

/// Reruns this script when the commit changes: HEAD, and the branch file it names if loose.
fn watch_git_head() {
    let Ok(head) = std::fs::read_to_string(".git/HEAD") else { return };
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Some(branch) = head.trim().strip_prefix("ref: ") {
        let file = Path::new(".git").join(branch);
        if file.exists() {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
}

/// A C++17 build against libtorch's headers, with the ABI the pip wheels use.
fn torch_build(include: &Path) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .include("csrc")
        // libtorch's own headers warn under -Wall; ours are kept clean by review.
        .warnings(false);
    build
}

fn build_cuda_graph(lib: &Path, include: &Path) -> Result<PathBuf, String> {
    if !include.join("ATen/cuda/CUDAGraph.h").exists() || !lib.join("libtorch_cuda.so").exists() {
        return Err("this libtorch has no CUDA".into());
    }
    // cuda_runtime_api.h: from the NVIDIA pip wheels next to torch, or a CUDA toolkit.
    let root = lib.parent().ok_or("no libtorch root")?;
    let mut cuda_dirs: Vec<PathBuf> = std::fs::read_dir(root.join("../nvidia"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    cuda_dirs.push("/usr/local/cuda".into());
    let cuda = cuda_dirs.into_iter().find(|d| d.join("include/cuda_runtime_api.h").exists()).ok_or("no cuda_runtime_api.h found")?;
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("libnndl_cuda_graph.so");
    // cc builds static archives; a shared library is its configured compiler plus -shared.
    let mut build = torch_build(include);
    build.include(cuda.join("include")).pic(true).opt_level(2);
    let mut cmd = build.get_compiler().to_command();
    cmd.arg("csrc/cuda_graph.cpp")
        .args(["-shared", "-o"])
        .arg(&out)
        .arg("-L")
        .arg(lib)
        .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"])
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    let status = cmd.status().map_err(|e| format!("cannot run the C++ compiler: {e}"))?;
    if !status.success() {
        return Err("the C++ compiler failed on csrc/cuda_graph.cpp".into());
    }
    // Also beside the binary (OUT_DIR is target/<profile>/build/nndl-*/out), where nndl looks
    // first and where a copy to another machine should take it from.
    if let Some(profile_dir) = out.ancestors().nth(4) {
        let _ = std::fs::copy(&out, profile_dir.join("libnndl_cuda_graph.so"));
    }
    Ok(out)
}
