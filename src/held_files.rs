//! Lock files this process holds, for a signal that ends it at once (`signals`) to remove.
//! The kernel releases the locks themselves, but a lock file left behind makes the next command
//! say it took over a dead process's lock. The signal handler may do only async-signal-safe
//! work, so the paths wait in fixed slots as C strings, and the handler reads them and calls
//! unlink(2), nothing else.
//!
//! A slot's string is freed when its file is released, unless the handler has begun (`EXITING`):
//! the release clears the slot before it checks, and the handler sets the flag before it reads,
//! so under sequentially consistent atomics the handler never reads a freed string.
use std::ffi::CString;
use std::path::Path;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::SeqCst};

/// More locks than this at once (a pack of over 64 members) leave theirs to the note.
const SLOTS: usize = 64;
static HELD: [AtomicPtr<libc::c_char>; SLOTS] = [const { AtomicPtr::new(null_mut()) }; SLOTS];
static EXITING: AtomicBool = AtomicBool::new(false);

/// A file removed by a signal that ends the process at once, for as long as this is kept.
pub struct HeldFile(Option<usize>);

impl HeldFile {
    pub fn new(path: &Path) -> HeldFile {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = CString::new(path.as_os_str().as_bytes()) else { return HeldFile(None) };
        let ptr = path.into_raw();
        match HELD.iter().position(|slot| slot.compare_exchange(null_mut(), ptr, SeqCst, SeqCst).is_ok()) {
            Some(k) => HeldFile(Some(k)),
            None => {
                // SAFETY: `ptr` came from `into_raw` above and was stored nowhere.
                drop(unsafe { CString::from_raw(ptr) });
                HeldFile(None)
            }
        }
    }
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        let Some(k) = self.0 else { return };
        let ptr = HELD[k].swap(null_mut(), SeqCst);
        if !ptr.is_null() && !EXITING.load(SeqCst) {
            // SAFETY: from `into_raw` in `new`; the slot no longer names it and no handler has
            // begun reading the slots (see the module's comment).
            drop(unsafe { CString::from_raw(ptr) });
        }
    }
}

/// Removes every held file: for the signal handler, right before it `_exit`s. Only atomics and
/// unlink(2), both async-signal-safe.
pub fn remove_all() {
    EXITING.store(true, SeqCst);
    for slot in &HELD {
        let ptr = slot.load(SeqCst);
        if !ptr.is_null() {
            // SAFETY: a NUL-terminated string that stays allocated once EXITING is set.
            unsafe { libc::unlink(ptr) };
        }
    }
}
