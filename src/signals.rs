//! SIGINT and SIGTERM during training: the first asks the loop to stop at the next step
//! boundary (it checkpoints, writes what it has and exits 130 or 143); a second exits at once.
//! Before the training starts (`stop_in_good_order` not yet called) there is nothing to save,
//! and a start-up blocked on a file (a FIFO, a hung network mount) would never reach a step
//! boundary: the first signal exits at once, with its status.
//! A SIGINT that was ignored when nndl started (a background job of a non-interactive shell,
//! `nohup`) stays ignored, as the one who started it meant.
//!
//! A sweep's worker often gets one signal twice within milliseconds: from the terminal or Slurm,
//! which signal every process of the group or step, and from its driver, which passes the signal
//! on. A repeat within `SAME_SIGNAL_NS` of the first is taken as that same stop, not as the
//! second that exits at once (which would cut a checkpoint in the middle of its write).
//! signal_hook's flag helpers have no such window, so the handler is ours, registered through
//! its low-level API.
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
/// CLOCK_MONOTONIC nanoseconds of the first signal.
static FIRST_AT: AtomicU64 = AtomicU64::new(0);
static INSTALLED: OnceLock<()> = OnceLock::new();
const SAME_SIGNAL_NS: u64 = 500_000_000;
/// Set once a loop (or a sweep's driver) can take a stop in good order.
static IN_GOOD_ORDER: AtomicBool = AtomicBool::new(false);

fn ignored_at_start(signal: i32) -> bool {
    // SAFETY: a query only (null new action); `old` is a valid, zeroed sigaction.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    let queried = unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } == 0;
    queried && old.sa_sigaction == libc::SIG_IGN
}

/// Monotonic time in nanoseconds; clock_gettime is async-signal-safe.
fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64).max(1)
}

/// The handler: only atomics, clock_gettime, unlink (`held_files`), write and _exit, all
/// async-signal-safe.
fn on_signal(signal: i32) {
    if !IN_GOOD_ORDER.load(Ordering::SeqCst) {
        const SAID: &[u8] = b"nndl: stopped before the training started (nothing to save yet); run the same command again\n";
        crate::held_files::remove_all();
        // SAFETY: write(2) of a static buffer to stderr, then _exit: both async-signal-safe.
        unsafe {
            libc::write(2, SAID.as_ptr().cast(), SAID.len());
            libc::_exit(128 + signal);
        }
    }
    let now = now_ns();
    if REQUESTED.compare_exchange(0, signal as usize, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        FIRST_AT.store(now, Ordering::SeqCst);
        return;
    }
    let first = FIRST_AT.load(Ordering::SeqCst);
    if first != 0 && now.saturating_sub(first) >= SAME_SIGNAL_NS {
        crate::held_files::remove_all();
        // SAFETY: _exit ends the process at once, which is what a second signal asks.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Installs the handlers once; later calls do nothing.
pub fn install() -> anyhow::Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    for signal in [SIGINT, SIGTERM] {
        if signal == SIGINT && ignored_at_start(SIGINT) {
            continue;
        }
        // SAFETY: `on_signal` does only async-signal-safe work (above).
        unsafe { signal_hook::low_level::register(signal, move || on_signal(signal)) }?;
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// From now on a signal asks for a stop in good order (the loop checkpoints at its next step),
/// not for an exit at once. Called where a training loop starts, and by a sweep's driver, which
/// passes the signal on to its workers.
pub fn stop_in_good_order() {
    IN_GOOD_ORDER.store(true, Ordering::SeqCst);
}

/// The signal that asked for a stop, if one did.
pub fn requested() -> Option<i32> {
    let n = REQUESTED.load(Ordering::SeqCst);
    (n != 0).then_some(n as i32)
}

/// The exit status for a run stopped by `signal`: 128 + its number (130 SIGINT, 143 SIGTERM).
pub fn exit_status(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}
