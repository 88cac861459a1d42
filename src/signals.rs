//! SIGINT and SIGTERM during training: the first asks the loop to stop at the next step
//! boundary (it checkpoints, writes what it has and exits 130 or 143); a second exits at once.
//! A SIGINT that was ignored when nndl started (a background job of a non-interactive shell,
//! `nohup`) stays ignored, as the one who started it meant.
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

static REQUESTED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn ignored_at_start(signal: i32) -> bool {
    // SAFETY: a query only (null new action); `old` is a valid, zeroed sigaction.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    let queried = unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } == 0;
    queried && old.sa_sigaction == libc::SIG_IGN
}

/// Installs the handlers once; later calls do nothing.
pub fn install() -> anyhow::Result<()> {
    if REQUESTED.get().is_some() {
        return Ok(());
    }
    let requested = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        if signal == SIGINT && ignored_at_start(SIGINT) {
            continue;
        }
        // Handlers run in registration order: a second signal finds `armed` set and exits.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&armed))?;
        signal_hook::flag::register_usize(signal, Arc::clone(&requested), signal as usize)?;
        signal_hook::flag::register(signal, Arc::clone(&armed))?;
    }
    let _ = REQUESTED.set(requested);
    Ok(())
}

/// The signal that asked for a stop, if one did.
pub fn requested() -> Option<i32> {
    let n = REQUESTED.get()?.load(Ordering::SeqCst);
    (n != 0).then_some(n as i32)
}

/// The exit status for a run stopped by `signal`: 128 + its number (130 SIGINT, 143 SIGTERM).
pub fn exit_status(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}
