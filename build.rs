//! 1. Turns the libtorch lib folder that torch-sys found into an rpath, so `nndl` and the test
//!    binaries run without LD_LIBRARY_PATH.
//! 2. Compiles csrc/torch_extras.cpp (libtorch state and switches tch lacks) and
//!    csrc/profiler.cpp (libtorch's operator profiler) into a static library linked into nndl,
//!    with the `cc` crate.
//! 3. Builds csrc/cuda_graph.cpp into libnndl_cuda_graph.so when the libtorch has CUDA headers
//!    and libraries (the pip wheels do, even the CPU-minimal set); without them nndl simply
//!    runs CUDA steps one by one. A separate library, loaded only when CUDA is up.
//! 4. Records the git commit for summary.json, with `-dirty` when the sources that make the
//!    binary differ from it.
use std::path::{Path, PathBuf};
use std::process::Command;

const CSRC: [&str; 7] = ["csrc/cuda_graph.cpp", "csrc/cuda_graph.h", "csrc/torch_extras.cpp", "csrc/torch_extras.h", "csrc/profiler.cpp", "csrc/profiler.h", "csrc/guarded.h"];

/// What the binary is built from, for the dirty check.
const BUILT_FROM: [&str; 5] = ["src", "csrc", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    for var in ["LIBTORCH", "CXX", "CXXFLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for f in CSRC {
        println!("cargo:rerun-if-changed={f}");
    }
    watch_git_head();
    println!("cargo:rustc-env=NNDL_GIT_COMMIT={}", git_commit());
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports its libtorch lib folder"));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=NNDL_LIBTORCH_LIB={}", lib.display());
    let include = lib.parent().expect("libtorch root").join("include");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // This script now also reruns on every edit of src/ (for the dirty mark); the C++ parts
    // (12 s with libtorch's headers) are compiled again only when their inputs changed.
    // A libtorch replaced in place keeps its path: its version and library size tell it apart.
    let version = std::fs::read_to_string(include.join("torch/csrc/api/include/torch/version.h")).unwrap_or_default();
    let size = std::fs::metadata(lib.join("libtorch_cpu.so")).map(|m| m.len()).unwrap_or(0);
    let inputs = format!("{}\n{size}\n{version}\n{:?}\n{:?}", lib.display(), std::env::var("CXX"), std::env::var("CXXFLAGS"));
    let archive = out_dir.join("libnndl_torch_extras.a");
    if up_to_date(&archive, &inputs) {
        println!("cargo:rustc-link-lib=static=nndl_torch_extras");
        println!("cargo:rustc-link-search=native={}", out_dir.display());
        println!("cargo:rustc-link-lib=stdc++");
    } else {
        torch_build(&include)
            .file("csrc/torch_extras.cpp")
            .file("csrc/profiler.cpp")
            .compile("nndl_torch_extras");
        stamp(&archive, &inputs);
    }
    match build_cuda_graph(&lib, &include, &inputs) {
        Ok(so) => println!("cargo:rustc-env=NNDL_CUDA_GRAPH_LIB={}", so.display()),
        Err(why) => println!("cargo:warning=CUDA graphs disabled: {why}"),
    }
}

/// `git rev-parse` of HEAD, `-dirty` when `BUILT_FROM` has changes (new files included); the
/// script reruns when any of them changes, so the mark follows edits and commits.
fn git_commit() -> String {
    for path in BUILT_FROM {
        println!("cargo:rerun-if-changed={path}");
    }
    let git = |args: &[&str]| Command::new("git").args(args).output().ok().filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".into() };
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(BUILT_FROM);
    match git(&status) {
        Some(changes) if changes.is_empty() => commit,
        _ => format!("{commit}-dirty"),
    }
}

/// Whether `output` was built from this script, the C++ sources as they are now and the same
/// `inputs` (libtorch, compiler): its stamp file records the inputs, and is newer than them all.
fn up_to_date(output: &Path, inputs: &str) -> bool {
    let stamp_file = output.with_extension("stamp");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (Some(built), Ok(recorded)) = (modified(output), std::fs::read_to_string(&stamp_file)) else { return false };
    recorded == inputs && CSRC.iter().chain(&["build.rs"]).all(|f| modified(Path::new(f)).is_some_and(|m| m < built))
}

fn stamp(output: &Path, inputs: &str) {
    let _ = std::fs::write(output.with_extension("stamp"), inputs);
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

fn build_cuda_graph(lib: &Path, include: &Path, inputs: &str) -> Result<PathBuf, String> {
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
    if !up_to_date(&out, inputs) {
        compile_cuda_graph(lib, include, &cuda, &out)?;
        stamp(&out, inputs);
    }
    // Also beside the binary (OUT_DIR is target/<profile>/build/nndl-*/out), where nndl looks
    // first and where a copy to another machine should take it from.
    if let Some(profile_dir) = out.ancestors().nth(4) {
        let _ = std::fs::copy(&out, profile_dir.join("libnndl_cuda_graph.so"));
    }
    Ok(out)
}

fn compile_cuda_graph(lib: &Path, include: &Path, cuda: &Path, out: &Path) -> Result<(), String> {
    // cc builds static archives; a shared library is its configured compiler plus -shared.
    let mut build = torch_build(include);
    build.include(cuda.join("include")).pic(true).opt_level(2);
    let mut cmd = build.get_compiler().to_command();
    cmd.arg("csrc/cuda_graph.cpp")
        .args(["-shared", "-o"])
        .arg(out)
        .arg("-L")
        .arg(lib)
        .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"])
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    let status = cmd.status().map_err(|e| format!("cannot run the C++ compiler: {e}"))?;
    if !status.success() {
        return Err("the C++ compiler failed on csrc/cuda_graph.cpp".into());
    }
    Ok(())
}
