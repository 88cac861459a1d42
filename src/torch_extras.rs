//! libtorch state and switches that tch does not expose, through csrc/torch_extras.cpp (linked
//! statically by build.rs; its C API is csrc/torch_extras.h): the CPU generator's state, for
//! exact resume, and the numerics switches (deterministic algorithms, TF32, denormals).
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
    fn nndl_set_flush_denormal(on: c_int, supported: *mut c_int) -> c_int;
    fn nndl_flush_denormal_enabled() -> c_int;
    fn nndl_extras_last_error() -> *const c_char;
}

thread_local! {
    /// How many `catch_panics` this thread is inside: while one is, the binary's panic hook
    /// leaves a panic of this thread to the error it becomes.
    static CATCHING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether a panic of this thread now becomes an error (`catch_panics`).
pub fn panics_caught() -> bool {
    CATCHING.with(|c| c.get() > 0)
}

/// A panic's message as one short line. libtorch's errors reach us through tch's `unwrap` as
/// ``called `Result::unwrap()` on an `Err` value: Torch("...")``, newlines escaped and the C++
/// stack frames after the first line: keep libtorch's first line, and name a failed allocation.
pub fn panic_line(msg: &str) -> String {
    let inner = msg.split_once("Torch(\"").map_or(msg, |(_, rest)| rest);
    let first = inner.split("\\n").next().unwrap_or(inner);
    let first = first.lines().find(|l| !l.trim().is_empty()).unwrap_or("unknown error").trim().to_string();
    if out_of_memory(&first) {
        return format!("out of memory ({first}); try a smaller --batch-size, or fewer runs at once");
    }
    first
}

/// Whether libtorch's message says an allocation failed.
pub fn out_of_memory(msg: &str) -> bool {
    ["can't allocate memory", "not enough memory", "out of memory", "std::bad_alloc"].iter().any(|m| msg.contains(m))
}

/// A panic's payload as text.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("internal error")
}

/// Runs `f`, a run's training (or a part of it on a thread of its own), turning a panic in
/// this thread (tch's ops panic on libtorch's errors, such as running out of memory at a large
/// --batch-size) into an error, so that the run's folder records why it stopped as for any
/// other error. Anything but running out of memory is a bug, and says how to see where.
pub fn catch_panics<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            CATCHING.with(|c| c.set(c.get() - 1));
        }
    }
    CATCHING.with(|c| c.set(c.get() + 1));
    let counted = Counted;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    drop(counted);
    result.unwrap_or_else(|payload| {
        let msg = panic_text(&*payload);
        let hint = if out_of_memory(msg) || backtrace_asked() { "" } else { " (RUST_BACKTRACE=1 shows where)" };
        Err(anyhow::anyhow!("{}{hint}", panic_line(msg)))
    })
}

/// Whether RUST_BACKTRACE asks for backtraces.
pub fn backtrace_asked() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
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

/// Whether float math on this thread flushes denormals to zero.
pub fn flush_denormal_enabled() -> bool {
    // SAFETY: a plain query of this thread's floating-point control register.
    unsafe { nndl_flush_denormal_enabled() != 0 }
}

/// Flushes denormal floats to zero (or keeps them) on this thread and its libtorch threads.
/// Returns false, changing nothing, where the CPU has no such mode.
pub fn set_flush_denormal(on: bool) -> Result<bool> {
    let mut supported: c_int = 0;
    // SAFETY: `supported` is a live int the shim writes once.
    check(unsafe { nndl_set_flush_denormal(on as c_int, &mut supported) }, "switch denormal flushing")?;
    Ok(supported != 0)
}

/// The denormal mode of a job, undone when dropped: the thread and its libtorch threads get
/// back the mode they had, so code that follows (the pure-Rust XOR, numpy's way) is untouched.
/// Threads spawned meanwhile inherit the mode (POSIX threads copy the floating-point
/// environment of the thread that creates them).
#[must_use = "the mode lasts while the guard lives"]
pub struct DenormalMode {
    previous: bool,
}

impl DenormalMode {
    /// TF flushes denormals in its kernels; PyTorch keeps them, and pays for it: the faithful
    /// MLP's saturated softmax sends denormal gradients through every backward product.
    pub fn enter(flush: bool) -> Result<DenormalMode> {
        let previous = flush_denormal_enabled();
        if !set_flush_denormal(flush)? && flush {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| crate::say!("note: this CPU cannot flush denormal floats to zero; they are kept"));
        }
        Ok(DenormalMode { previous })
    }
}

impl Drop for DenormalMode {
    fn drop(&mut self) {
        // Setting a mode the thread had before cannot fail but for a broken libtorch; a drop
        // has nowhere to report it.
        let _ = set_flush_denormal(self.previous);
    }
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

    /// Values that are denormal when computed exactly: 1e-20 squared is 1e-40, and the product
    /// of two 512-square matrices of 1e-21 holds 512e-42 in every entry.
    fn denormal_results() -> (tch::Tensor, tch::Tensor) {
        let opts = (tch::Kind::Float, tch::Device::Cpu);
        let x = tch::Tensor::full([1 << 18], 1e-20, opts);
        let a = tch::Tensor::full([512, 512], 1e-21, opts);
        (&x * &x, a.mm(&a))
    }

    #[test]
    fn denormal_mode_reaches_libtorch_threads_and_is_undone() {
        let threads = tch::get_num_threads();
        tch::set_num_threads(2);
        // LLVM assumes one floating-point mode, so each product must be opaque to it.
        let square = || std::hint::black_box(1e-20f32) * std::hint::black_box(1e-20f32);
        assert!(!flush_denormal_enabled(), "a fresh thread keeps denormals");
        {
            let _mode = DenormalMode::enter(true).unwrap();
            assert!(flush_denormal_enabled());
            assert_eq!(square(), 0.0, "Rust's own float math on this thread flushes too");
            let (square, product) = denormal_results();
            // Over 2^18 elements, libtorch splits the product over both threads.
            assert_eq!(f64::try_from(square.abs().max()).unwrap(), 0.0);
            assert_eq!(f64::try_from(product.abs().max()).unwrap(), 0.0);
        }
        assert!(!flush_denormal_enabled(), "the guard restores the mode");
        assert!(square() > 0.0);
        let (square, product) = denormal_results();
        assert!(f64::try_from(square.min()).unwrap() > 0.0, "every thread keeps denormals again");
        assert!(f64::try_from(product.min()).unwrap() > 0.0);
        tch::set_num_threads(threads);
    }
}
