//! libtorch state and switches that tch does not expose, through csrc/torch_extras.cpp (linked
//! statically by build.rs; its C API is csrc/torch_extras.h): the CPU generator's state, for
//! exact resume, and the global numerics switches (deterministic algorithms, TF32).
use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, CStr};

// The declarations of csrc/torch_extras.h.
extern "C" {
    fn nndl_cpu_rng_get_state(out: *mut u8, cap: usize) -> usize;
    fn nndl_cpu_rng_set_state(state: *const u8, len: usize) -> c_int;
    fn nndl_set_deterministic(on: c_int) -> c_int;
    fn nndl_set_cudnn_benchmark(on: c_int) -> c_int;
    fn nndl_set_tf32(on: c_int) -> c_int;
    fn nndl_tf32_enabled() -> c_int;
    fn nndl_extras_last_error() -> *const c_char;
}

fn last_error() -> String {
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated message.
    unsafe { CStr::from_ptr(nndl_extras_last_error()) }.to_string_lossy().into_owned()
}

fn check(status: c_int, what: &str) -> Result<()> {
    if status != 0 {
        bail!("libtorch refused to {what}: {}", last_error());
    }
    Ok(())
}

/// The default CPU generator's state (what `torch.get_rng_state()` returns).
pub fn cpu_rng_state() -> Vec<u8> {
    // SAFETY: a null buffer with capacity 0 only asks for the size.
    let size = unsafe { nndl_cpu_rng_get_state(std::ptr::null_mut(), 0) };
    let mut out = vec![0u8; size];
    // SAFETY: `out` has room for `size` bytes, the size the generator just reported.
    unsafe { nndl_cpu_rng_get_state(out.as_mut_ptr(), out.len()) };
    out
}

/// Restores a state from `cpu_rng_state`; libtorch checks its size and contents.
pub fn set_cpu_rng_state(state: &[u8]) -> Result<()> {
    // SAFETY: the pointer and length describe `state`, which outlives the call; it is copied.
    check(unsafe { nndl_cpu_rng_set_state(state.as_ptr(), state.len()) }, "restore the CPU generator's state")
}

/// Deterministic algorithms everywhere, cuDNN deterministic, cuDNN benchmark off.
pub fn set_deterministic(on: bool) -> Result<()> {
    // SAFETY: a plain call with an int; errors come back as a status.
    check(unsafe { nndl_set_deterministic(on as c_int) }, "switch deterministic algorithms")
}

/// Let cuDNN time its algorithms once per shape and keep the fastest.
pub fn set_cudnn_benchmark(on: bool) -> Result<()> {
    // SAFETY: as above.
    check(unsafe { nndl_set_cudnn_benchmark(on as c_int) }, "switch cuDNN benchmark mode")
}

/// TF32 for float32 matmuls (cuBLAS) and convolutions (cuDNN) on Ampere and later GPUs.
pub fn set_tf32(on: bool) -> Result<()> {
    // SAFETY: as above.
    check(unsafe { nndl_set_tf32(on as c_int) }, "switch TF32")
}

pub fn tf32_enabled() -> bool {
    // SAFETY: a plain query.
    unsafe { nndl_tf32_enabled() != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_generator_state_round_trips() {
        tch::manual_seed(11);
        let state = cpu_rng_state();
        assert!(state.len() > 1000, "MT19937 state is about 5 kB, got {}", state.len());
        let a = tch::Tensor::randn([8], (tch::Kind::Float, tch::Device::Cpu));
        set_cpu_rng_state(&state).unwrap();
        let b = tch::Tensor::randn([8], (tch::Kind::Float, tch::Device::Cpu));
        assert!(a.equal(&b), "same state, same draws");
        assert!(set_cpu_rng_state(&state[..10]).is_err(), "a truncated state is refused");
    }
}
