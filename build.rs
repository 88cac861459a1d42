// Turns the libtorch lib folder that torch-sys found into an rpath, so `nndl` and the test
// binaries run without LD_LIBRARY_PATH.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=NNDL_LIBTORCH_LIB={lib}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
}
