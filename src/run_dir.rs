//! One folder per run: config.json, metrics.csv, summary.json, model.safetensors, checkpoints
//! and figures. The rules that keep what a user started:
//! - every file is written to a temporary name, synced and renamed (then the folder is synced),
//!   so a crash never leaves a half-written file; `.partial-*` leftovers of dead processes are
//!   removed when the folder is next opened;
//! - a folder is nndl's when it holds the marker `.nndl-run`; one that holds other files is not
//!   overwritten without --force, and --force moves the old run aside before anything is written
//!   (back again if the new folder cannot be made), deleting it once the new folder is there;
//! - while a run writes into a folder it holds an exclusive lock (`.nndl.lock`, flock, with its
//!   pid and host inside for the message a second writer gets).
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const MARKER: &str = ".nndl-run";
pub const LOCK: &str = ".nndl.lock";
/// A run that stopped on an error (a divergence, a sweep trial's failure) keeps its one-line
/// reason here, for `nndl report` and the next command on the folder; finishing removes it.
pub const FAILED: &str = "failed.txt";
/// Where a run's `--export-final` goes (commands::train), for `nndl resume` to write it too.
pub const EXPORT_FILE: &str = "export.json";
pub const PARTIAL: &str = ".partial-";

/// `no space left on device writing DIR/FILE`, or the OS's words for other failures.
pub fn write_error(path: &Path, e: &io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        anyhow!("no space left on device writing {}", path.display())
    } else {
        anyhow!("cannot write {}: {e}", path.display())
    }
}

/// Writes through `fill` into a temporary sibling of `path`, then syncs and renames it into
/// place; the temporary file is removed on any failure.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(path);
    let done = fill(&tmp).and_then(|()| {
        let finish = || -> io::Result<()> {
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, path)?;
            sync_dir(path.parent().unwrap_or(Path::new(".")))
        };
        finish().map_err(|e| write_error(path, &e))
    });
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp);
        // Libraries that write for us (tch's npy writer) report a full disk in their own words.
        if format!("{e:#}").contains("No space left on device") {
            return Err(anyhow!("no space left on device writing {}", path.display()));
        }
        // A folder removed under a running process (a cleanup script, a user's `rm -r`).
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.exists() {
            return Err(anyhow!("cannot write {}: its folder {} no longer exists (removed while nndl was writing into it?)", path.display(), parent.display()));
        }
        // A library may show the system's error only as a Rust debug dump (`Os { code: 30, .. }`).
        if let Some(io) = os_error_in(&format!("{e:#}")) {
            return Err(write_error(path, &io));
        }
        return Err(e);
    }
    Ok(())
}

/// A small text file the user names (a sweep spec, a config): at most `max` bytes, read as
/// such, since a pipe or a device (/dev/zero) reports no size and would be read until memory
/// runs out. `what` names it in the error: "a sweep spec".
pub fn read_small_text(path: &Path, max: u64, what: &str) -> Result<String> {
    use std::io::Read;
    let cannot = |e: io::Error| anyhow!("cannot read {}: {e}", path.display());
    let size = fs::metadata(path).map_err(cannot)?.len();
    if size > max {
        bail!("{} is {size} bytes; {what} is at most {max}", path.display());
    }
    let mut bytes = Vec::new();
    File::open(path).map_err(cannot)?.take(max + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > max {
        bail!("{} holds more than {max} bytes; {what} is at most that", path.display());
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("cannot read {}: it is not UTF-8 text", path.display()))
}

/// The system error a library's debug dump names (`Os { code: N, ... }`), if any.
fn os_error_in(text: &str) -> Option<io::Error> {
    let code = text.split("Os { code: ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?;
    code.parse().ok().map(io::Error::from_raw_os_error)
}

/// `value` as pretty JSON with a final newline, written atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp).map_err(|e| write_error(path, &e))?;
        f.write_all(bytes).map_err(|e| write_error(path, &e))
    })
}

/// Records why the run in `dir` stopped (`FAILED`), replacing an earlier reason.
pub fn record_failure(dir: &Path, reason: &str) -> Result<()> {
    write_atomic(&dir.join(FAILED), format!("{}\n", reason.trim()).as_bytes())
}

/// Whether a recorded failure is a divergence (`run::closing`'s reason), which a resume from
/// the checkpoint before it repeats (on the CPU, exactly).
pub fn diverged(reason: &str) -> bool {
    reason.starts_with("training diverged")
}

/// The reason recorded by `record_failure`, if the folder has one.
pub fn recorded_failure(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join(FAILED)).ok().map(|s| s.trim().to_string())
}

/// fsync of a folder, so a rename inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir)?.sync_all()
}

/// A hidden name beside `path` that keeps its extension (a library may pick the format by it)
/// and names the writing process and its machine, `.partial-<pid>@<host>@<name>`, so leftovers
/// of dead processes can be told apart: on a file system several machines share (a Slurm
/// array's folder), a pid says whether its writer lives only on the writer's own host.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{PARTIAL}{}@{}@{name}", std::process::id(), this_host()))
}

/// This machine's name, looked up once ('@' cannot be in it, so names split on it).
fn this_host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| hostname().replace('@', "_"))
}

/// Another machine's temporary file is taken as left over once it is this old: its writer's
/// pid cannot be checked from here, and no write of nndl's takes a day.
const FOREIGN_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether a process with this pid runs on this machine.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Removes the temporary files whose writer is gone: this machine's when their pid no longer
/// runs, another machine's after `FOREIGN_PARTIAL_AGE` (`.partial-<pid>-*`, the form of earlier
/// releases, as this machine's).
pub fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PARTIAL) else { continue };
        let (pid, host) = match rest.split_once('@') {
            Some((pid, rest)) => (pid, rest.split_once('@').map(|(host, _)| host)),
            None => (rest.split('-').next().unwrap_or(""), None),
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let stale = match host {
            Some(host) if host != this_host() => entry.metadata().and_then(|m| m.modified()).ok()
                .and_then(|m| m.elapsed().ok()).is_some_and(|age| age > FOREIGN_PARTIAL_AGE),
            _ => pid != std::process::id() && !pid_alive(pid),
        };
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The error of a folder another live process holds: callers that can wait or skip (a sweep)
/// tell it apart with `err.is::<Busy>()`.
#[derive(Debug)]
pub struct Busy(pub String);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Busy {}

/// --quiet for the notes said deep in folder handling (a lock taken over from a dead process),
/// where no command's flags reach: set once, at start.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// The run folders directly inside `dir` (a `--seeds` folder's), the first three named, or
/// None when it holds none.
pub fn runs_named_in(dir: &Path) -> Option<String> {
    let mut runs: Vec<String> = fs::read_dir(dir).ok()?.flatten()
        .filter(|e| e.path().join(MARKER).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    runs.sort();
    let more = if runs.len() > 3 { ", ..." } else { "" };
    (!runs.is_empty()).then(|| format!("{}{more}", runs[..runs.len().min(3)].join(", ")))
}

/// An exclusive lock on a folder, released when dropped (and by the kernel if the process dies).
pub struct DirLock {
    file: File,
    path: PathBuf,
    /// The lock file, for a signal that ends the process at once to remove (until it is
    /// released: see Drop).
    held: Option<crate::held_files::HeldFile>,
}

#[derive(Serialize, serde::Deserialize)]
struct LockOwner {
    pid: u32,
    host: String,
}

impl DirLock {
    /// Takes the folder's lock or fails at once naming the holder.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK);
        for _ in 0..10 {
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)
                .map_err(|e| write_error(&path, &e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<LockOwner>(&t).ok());
                    let who = holder.map(|h| format!("pid {} on {}", h.pid, h.host)).unwrap_or_else(|| "another process".into());
                    return Err(Busy(format!("{} is in use by another nndl run ({who}); wait for it to finish or choose another folder", dir.display())).into());
                }
                Err(fs::TryLockError::Error(e)) => return Err(anyhow!("cannot lock {}: {e}", path.display())),
            }
            // The holder before us may have removed the file between our open and our lock:
            // then we locked an orphan, and must lock the file that is there now.
            if !same_file(&file, &path) {
                continue;
            }
            // Ours from here: a signal that ends the process at once removes it, even while its
            // holder's line below is being written.
            let held = crate::held_files::HeldFile::new(&path);
            let previous = fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<LockOwner>(&t).ok());
            if let Some(p) = previous.filter(|p| p.pid != std::process::id() && !QUIET.load(std::sync::atomic::Ordering::Relaxed)) {
                crate::say!("note: {} was locked by pid {} on {}, which is gone; taking it over", dir.display(), p.pid, p.host);
            }
            let owner = serde_json::to_string(&LockOwner { pid: std::process::id(), host: hostname() })?;
            let mut f = &file;
            f.set_len(0).and_then(|()| f.write_all(owner.as_bytes())).and_then(|()| f.sync_data())
                .map_err(|e| write_error(&path, &e))?;
            return Ok(DirLock { file, held: Some(held), path });
        }
        bail!("cannot lock {}: it keeps changing under us", path.display())
    }

    /// The folder moved (a --force rename): the lock file moved with it.
    fn moved_to(&mut self, dir: &Path) {
        self.path = dir.join(LOCK);
        self.held = Some(crate::held_files::HeldFile::new(&self.path));
    }
}

/// The live process of this machine that holds `dir`'s lock, if one does (its pid, from the
/// lock file; a holder on another machine cannot be checked from here).
pub fn holder(dir: &Path) -> Option<u32> {
    let owner: LockOwner = serde_json::from_str(&fs::read_to_string(dir.join(LOCK)).ok()?).ok()?;
    (owner.host == hostname() && pid_alive(owner.pid)).then_some(owner.pid)
}

fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // No longer a signal's to remove: once removed, another process may lock a new file of
        // the same name, which is not ours.
        drop(self.held.take());
        // Remove while still holding the lock, so no one locks a file that is about to vanish
        // unseen (acquire's same_file check covers the rest).
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// What a folder holds, as far as starting a run there is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum FolderState {
    Missing,
    Empty,
    FinishedRun,
    UnfinishedRun,
    ForeignFiles,
}

pub fn folder_state(dir: &Path) -> Result<FolderState> {
    let meta = match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FolderState::Missing),
        Err(e) => bail!("cannot use {}: {e}", dir.display()),
        Ok(m) => m,
    };
    if !meta.is_dir() && !fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        bail!("{}: a file of that name exists", dir.display());
    }
    let names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK && !n.starts_with(PARTIAL))
        .collect();
    // The marker alone (or with export.json, written beside config.json) is a run killed before
    // it wrote its config: nothing to keep.
    Ok(if names.is_empty() || names.iter().all(|n| n == MARKER || n == EXPORT_FILE) {
        FolderState::Empty
    } else if names.iter().any(|n| n == MARKER) {
        if names.iter().any(|n| n == "summary.json") { FolderState::FinishedRun } else { FolderState::UnfinishedRun }
    } else {
        FolderState::ForeignFiles
    })
}

pub struct RunDir {
    pub path: PathBuf,
    _lock: DirLock,
}

impl RunDir {
    /// A folder for a new run. An earlier run or foreign files are refused unless `force`, which
    /// moves them aside (one rename) before anything new is written and then deletes them.
    pub fn create(path: &Path, force: bool) -> Result<RunDir> {
        let state = folder_state(path).map_err(|e| match fs::symlink_metadata(path) {
            Err(cause) if cause.kind() != io::ErrorKind::NotFound => anyhow!("cannot create output folder {}: {cause}", path.display()),
            Ok(_) => anyhow!("cannot create output folder {}: a file of that name exists", path.display()),
            _ => e,
        })?;
        let shown = path.display();
        let lock = match state {
            FolderState::Missing => {
                fs::create_dir_all(path).map_err(|e| anyhow!("cannot create output folder {shown}: {e}"))?;
                DirLock::acquire(path)?
            }
            _ => DirLock::acquire(path)?,
        };
        let mut lock = lock;
        match (folder_state(path)?, force) {
            (FolderState::Missing | FolderState::Empty, _) => {}
            (FolderState::FinishedRun, false) => bail!("{shown} already holds a run; choose another --out or pass --force to replace it"),
            (FolderState::UnfinishedRun, false) => match recorded_failure(path) {
                // Resumed, a diverged run diverges again: its checkpoint precedes the divergence.
                Some(reason) if diverged(&reason) => bail!("{shown} holds a run that diverged ({reason}); pass --force to start it again"),
                Some(reason) => bail!("{shown} holds a run that failed ({reason}); pass --force to replace it, or `{}` to try again", resume_command(path)),
                None => bail!("{shown} holds an unfinished run; resume it with `{}`, or pass --force to replace it", resume_command(path)),
            },
            (FolderState::ForeignFiles, false) => bail!("{shown} holds files nndl did not write; choose another --out or pass --force to replace them"),
            (_, true) => lock = replace(path, lock)?,
        }
        remove_stale_partials(path);
        let marker = serde_json::json!({ "nndl": env!("CARGO_PKG_VERSION"), "pid": std::process::id() });
        let run = RunDir { path: path.to_path_buf(), _lock: lock };
        run.write_json(MARKER, &marker).map_err(|e| anyhow!("output folder {shown} is not writable: {e:#}"))?;
        Ok(run)
    }

    /// The folder at `path` for whatever it holds, locked first and judged after: a missing or
    /// empty folder becomes a new run's (marker written); a finished or unfinished run is
    /// returned with its state; files nndl did not write are refused.
    pub fn claim(path: &Path) -> Result<(RunDir, FolderState)> {
        fs::create_dir_all(path).map_err(|e| anyhow!("cannot create output folder {}: {e}", path.display()))?;
        let lock = DirLock::acquire(path)?;
        let state = folder_state(path)?;
        if state == FolderState::ForeignFiles {
            bail!("{} holds files nndl did not write; choose another folder", path.display());
        }
        remove_stale_partials(path);
        let run = RunDir { path: path.to_path_buf(), _lock: lock };
        if matches!(state, FolderState::Missing | FolderState::Empty) {
            run.write_json(MARKER, &serde_json::json!({ "nndl": env!("CARGO_PKG_VERSION"), "pid": std::process::id() }))?;
        }
        Ok((run, state))
    }

    /// An existing run folder, to resume or evaluate: locked, stale leftovers removed.
    pub fn open(path: &Path) -> Result<RunDir> {
        match folder_state(path)? {
            FolderState::FinishedRun | FolderState::UnfinishedRun => {}
            FolderState::Missing => bail!("{} does not exist", path.display()),
            _ => bail!("{} is not an nndl run folder (no {MARKER})", path.display()),
        }
        let lock = DirLock::acquire(path)?;
        remove_stale_partials(path);
        Ok(RunDir { path: path.to_path_buf(), _lock: lock })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        write_json(&self.file(name), value)
    }

    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        write_atomic(&self.file(name), text.as_bytes())
    }

}

/// Before a run starts: the folder `dir` must take new files, or, if missing, its nearest
/// existing ancestor must take the folders to make it, so that what is written there after the
/// training (`--export-final`) does not fail then. Nothing is made here: the folder may lie
/// inside a run folder not created yet (`make_folder` makes it once that exists).
pub fn check_writable_folder(dir: &Path, flag: &str) -> Result<()> {
    let shown = dir.display();
    let absolute = std::path::absolute(dir).map_err(|e| anyhow!("{flag} {shown}: {e}"))?;
    let existing = absolute.ancestors().find(|a| fs::symlink_metadata(a).is_ok()).unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        match existing == absolute {
            true => bail!("{flag} {shown}: a file of that name exists"),
            false => bail!("{flag} {shown}: cannot create it: {} is a file", existing.display()),
        }
    }
    match existing == absolute {
        true => writable(existing).map_err(|e| anyhow!("{flag} {shown}: cannot write there: {e}")),
        false => writable(existing).map_err(|e| anyhow!("{flag} {shown}: cannot create it in {}: {e}", existing.display())),
    }
}

/// Makes the folder `dir` that `check_writable_folder` found makeable (some file systems, such
/// as /proc, refuse what access(2) allows).
pub fn make_folder(dir: &Path, flag: &str) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| anyhow!("{flag} {}: cannot create it: {e}", dir.display()))
}

/// Before a run starts: the file `path` must be creatable (its folder exists and takes files).
/// An earlier regular file is replaced; anything else there (a device such as /dev/null, a
/// pipe, a link to one) is refused, since the rename would put a file in its place.
pub fn check_writable_file(path: &Path, flag: &str) -> Result<()> {
    if path.is_dir() {
        bail!("{flag} {}: a folder of that name exists", path.display());
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            bail!("{flag} {}: not a regular file (nndl writes a new file there, replacing what is there)", path.display());
        }
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("{flag} {}: no folder {}", path.display(), parent.display());
    }
    writable(parent).map_err(|e| anyhow!("{flag} {}: cannot write there: {e}", path.display()))
}

/// Whether this process may create files in `dir` (access(2), which also sees read-only mounts).
pub fn writable(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: access only reads the NUL-terminated path.
    match unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Fails early, with both numbers, when the file system that `path` is (or would be) on has less
/// than `bytes` free.
pub fn check_free_space(path: &Path, bytes: u64) -> Result<()> {
    let existing = path.ancestors().find(|p| p.is_dir()).unwrap_or(Path::new("."));
    let existing = if existing.as_os_str().is_empty() { Path::new(".") } else { existing };
    // A read-only place reports no free space: say what is wrong with it instead.
    writable(existing).map_err(|e| anyhow!("cannot write in {} (for {}): {e}", existing.display(), path.display()))?;
    let free = free_bytes(existing)?;
    if free < bytes {
        bail!("not enough free space for {}: about {} MB needed, {} MB free", path.display(), bytes.div_ceil(1 << 20), free >> 20);
    }
    Ok(())
}

/// Moves the old folder aside with one rename, makes a fresh one in its place (same lock, now
/// held on the new folder), then deletes the old one. An interruption leaves the old run whole
/// (under `.NAME.replaced-PID@HOST` beside it) or the new one; a new folder that cannot be made
/// or locked puts the old one back, and an old one that cannot be deleted is a warning naming
/// where it is (the new run goes on). What earlier `--force`s of dead processes left beside it
/// is removed first.
fn replace(path: &Path, old_lock: DirLock) -> Result<DirLock> {
    // Renaming a link would move the link, not the run it points to.
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::canonicalize(path).map(|p| format!(" ({})", p.display())).unwrap_or_default();
        bail!("--force cannot replace {}: it is a symbolic link; name the folder it points to{target}", path.display());
    }
    // Moved by its real path: `x/.` holds no name to move it by, and `x/../x` names it through
    // itself, a path the move would break before the new folder is made.
    let real = fs::canonicalize(path).map_err(|e| anyhow!("cannot replace {}: {e}", path.display()))?;
    // `--out .` (or a folder above this one): the command would go on in the folder it deletes.
    if std::env::current_dir().ok().and_then(|d| fs::canonicalize(d).ok()).is_some_and(|cwd| cwd.starts_with(&real)) {
        bail!("--force cannot replace {}: the command runs inside it; run it from another folder", path.display());
    }
    let Some(name) = real.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        bail!("--force cannot replace {}: it is the root folder", path.display());
    };
    // MNIST is no run's output, and a run may be reading it from there.
    if let Some(file) = crate::data::mnist::file_within(path) {
        bail!("--force would delete {}, which holds MNIST ({}); choose another --out", path.display(), file.display());
    }
    remove_abandoned_asides(&real, &name);
    let aside = real.with_file_name(format!(".{name}{REPLACED}{}@{}", std::process::id(), this_host()));
    fs::rename(&real, &aside).map_err(|e| anyhow!("cannot move the old {} aside: {e}", path.display()))?;
    let mut old_lock = old_lock;
    old_lock.moved_to(&aside);
    let lock = match locked_new_folder(&real, path) {
        Ok(lock) => lock,
        Err(e) => return Err(put_back(&aside, &real, old_lock, path, e)),
    };
    drop(old_lock);
    if let Err(e) = fs::remove_dir_all(&aside) {
        crate::say!("warning: cannot remove the old run moved to {}: {e}; the new run goes on in {}; remove it by hand", aside.display(), path.display());
    }
    Ok(lock)
}

/// What `replace` names the old folder it moves aside: `.NAME.replaced-PID@HOST`.
const REPLACED: &str = ".replaced-";

/// A new folder at `real` (`shown` as the user gave it), locked.
fn locked_new_folder(real: &Path, shown: &Path) -> Result<DirLock> {
    fs::create_dir(real).map_err(|e| anyhow!("cannot create output folder {}: {e}", shown.display()))?;
    DirLock::acquire(real).inspect_err(|e| {
        // Empty but for the lock file it may have left: removed, so the old run can go back.
        // (A busy one is another process's since, and stays.)
        if !e.is::<Busy>() {
            let _ = fs::remove_file(real.join(LOCK));
            let _ = fs::remove_dir(real);
        }
    })
}

/// After a failed replacement: the old run renamed back (its lock with it), and `e` saying
/// where it now is.
fn put_back(aside: &Path, real: &Path, mut old_lock: DirLock, shown: &Path, e: anyhow::Error) -> anyhow::Error {
    match fs::rename(aside, real) {
        Ok(()) => {
            old_lock.moved_to(real);
            anyhow!("{e:#}; the old run is back in {}, unchanged", shown.display())
        }
        Err(back) => anyhow!("{e:#}; the old run is kept in {} (moving it back failed: {back})", aside.display()),
    }
}

/// Removes the old runs that `replace`s of dead processes left beside `real` (killed before
/// their delete, or unable to finish it); another machine's are named, not judged.
fn remove_abandoned_asides(real: &Path, name: &str) {
    let Some(parent) = real.parent() else { return };
    let Ok(entries) = fs::read_dir(parent) else { return };
    let prefix = format!(".{name}{REPLACED}");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = file_name.strip_prefix(&prefix) else { continue };
        // `PID@HOST`, or `PID` alone (earlier releases, this machine's).
        let (pid, host) = owner.split_once('@').map_or((owner, None), |(pid, host)| (pid, Some(host)));
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let path = entry.path();
        let quiet = QUIET.load(std::sync::atomic::Ordering::Relaxed);
        match host {
            Some(host) if host != this_host() => if !quiet {
                crate::say!("note: {} is an old run that --force on {host} moved aside; remove it once that command has ended", path.display());
            },
            _ if pid == std::process::id() || pid_alive(pid) => {}
            _ => match fs::remove_dir_all(&path) {
                Ok(()) if !quiet => crate::say!("note: removed {}, an old run that an earlier --force left", path.display()),
                Ok(()) => {}
                Err(e) => crate::say!("warning: cannot remove {}, an old run that an earlier --force left: {e}", path.display()),
            },
        }
    }
}

/// Renames the run folder `from` to `to` under its lock, so that no run writes in it
/// meanwhile; `to` must not exist (renameat2's RENAME_NOREPLACE: a folder another process has
/// just made there is not replaced).
pub fn rename_run(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut lock = DirLock::acquire(from)?;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| anyhow!("{} has a NUL byte", p.display()));
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths, relative to the working directory.
    if unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_NOREPLACE) } != 0 {
        let e = io::Error::last_os_error();
        // NFS and other shared file systems take no rename flags (EINVAL; ENOSYS on old
        // kernels): a plain rename, once nothing is at `to`, leaves only a moment in which a
        // folder made there is replaced.
        let unsupported = matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS));
        let plain = unsupported && fs::symlink_metadata(to).is_err_and(|m| m.kind() == io::ErrorKind::NotFound);
        if !plain {
            bail!("cannot rename {} to {}: {e}", from.display(), to.display());
        }
        fs::rename(from, to).map_err(|e| anyhow!("cannot rename {} to {}: {e}", from.display(), to.display()))?;
    }
    lock.moved_to(to);
    if let Some(parent) = to.parent() {
        let _ = sync_dir(parent);
    }
    Ok(())
}

pub fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| anyhow!("{} has a NUL byte", dir.display()))?;
    // SAFETY: statvfs fills the zeroed struct for a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        bail!("cannot read the free space of {}: {}", dir.display(), io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_word(w: &str) -> String {
    if w.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=,+:".contains(c)) { w.to_string() } else { format!("'{}'", w.replace('\'', "'\\''")) }
}

/// `nndl resume DIR`, as a line a user can paste into a shell.
pub fn resume_command(dir: &Path) -> String {
    format!("nndl resume {}", shell_word(&dir.display().to_string()))
}

/// Where runs go when no --out is given.
pub const DEFAULT_PARENT: &str = "runs";

/// The folder of a run given no --out: `runs/<name>-<unix seconds>`, or `-2`, `-3`... after it
/// when that is taken (runs started in the same second). It is created here, empty, so that
/// processes started together never pick the same one; call it once the run is about to start.
pub fn fresh_default_out(name: &str) -> Result<PathBuf> {
    fresh_folder_in(Path::new(DEFAULT_PARENT), name)
}

fn fresh_folder_in(parent: &Path, name: &str) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    fs::create_dir_all(parent).map_err(|e| anyhow!("cannot create output folder {}: {e}", parent.display()))?;
    for n in 1..=1000 {
        let path = match n {
            1 => parent.join(format!("{name}-{secs}")),
            n => parent.join(format!("{name}-{secs}-{n}")),
        };
        match fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => bail!("cannot create output folder {}: {e}", path.display()),
        }
    }
    bail!("{}/{name}-{secs}-1000 and all before it exist; give --out", parent.display())
}

/// `--out`, or a fresh folder under runs/ for `name` (`fresh_default_out`).
pub fn out_or_fresh(out: Option<&Path>, name: &str) -> Result<PathBuf> {
    out.map_or_else(|| fresh_default_out(name), |p| Ok(p.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libraries_debug_dump_of_a_system_error_is_said_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report-loss.png");
        let plotters = "backend error: Drawing backend error: ImageError(IoError(Os { code: 30, kind: ReadOnlyFilesystem, message: \"Read-only file system\" }))";
        let e = write_atomic_with(&path, |_| Err(anyhow!("{plotters}"))).unwrap_err();
        assert_eq!(format!("{e:#}"), format!("cannot write {}: Read-only file system (os error 30)", path.display()));
        let other = write_atomic_with(&path, |_| Err(anyhow!("no system error here"))).unwrap_err();
        assert_eq!(format!("{other:#}"), "no system error here");
    }

    #[test]
    fn stale_partials_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        // pid 1 always lives; a pid past the kernel's limit never does.
        let dead = dir.path().join(format!(".partial-4194999@{}@metrics.csv", this_host()));
        let live = dir.path().join(format!(".partial-1@{}@summary.json", this_host()));
        let earlier_release = dir.path().join(".partial-4194999-config.json");
        // Another machine's, sharing the folder: its pid means nothing here.
        let other_host = dir.path().join(".partial-4194999@another-node@sweep.json");
        for f in [&dead, &live, &earlier_release, &other_host] {
            fs::write(f, b"x").unwrap();
        }
        remove_stale_partials(dir.path());
        assert!(!dead.exists() && live.exists() && !earlier_release.exists() && other_host.exists());
        // A day old, it is taken as left over.
        let day_old = std::time::SystemTime::now() - FOREIGN_PARTIAL_AGE - std::time::Duration::from_secs(60);
        fs::File::options().write(true).open(&other_host).unwrap().set_modified(day_old).unwrap();
        remove_stale_partials(dir.path());
        assert!(!other_host.exists());
        assert!(temp_sibling(Path::new("run/metrics.csv")).starts_with("run"));
    }

    #[test]
    fn a_second_lock_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).err().expect("second lock refused").to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(lock);
        assert!(!dir.path().join(LOCK).exists());
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn only_regular_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = dir.path().join("dump.json");
        fs::write(&earlier, b"{}").unwrap();
        check_writable_file(&earlier, "--dump").unwrap();
        let err = check_writable_file(Path::new("/dev/null"), "--dump").unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::os::unix::fs::symlink(&earlier, dir.path().join("link")).unwrap();
        assert!(check_writable_file(&dir.path().join("link"), "--dump").is_err());
    }

    #[test]
    fn a_write_into_a_removed_folder_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("run");
        let err = format!("{:#}", write_atomic(&gone.join("metrics.csv"), b"x").unwrap_err());
        assert!(err.contains("no longer exists") && err.contains(&gone.display().to_string()), "{err}");
    }

    #[test]
    fn resume_commands_paste_into_a_shell() {
        assert_eq!(resume_command(Path::new("runs/mlp-1")), "nndl resume runs/mlp-1");
        assert_eq!(resume_command(Path::new("sp ace/it's")), "nndl resume 'sp ace/it'\\''s'");
    }

    #[test]
    fn default_folders_started_together_differ() {
        let dir = tempfile::tempdir().unwrap();
        let made: Vec<PathBuf> = (0..3).map(|_| fresh_folder_in(&dir.path().join("runs"), "xor").unwrap()).collect();
        assert!(made[0] != made[1] && made[1] != made[2] && made[0] != made[2], "{made:?}");
        assert!(made.iter().all(|p| p.is_dir() && p.starts_with(dir.path())));
    }

    #[test]
    fn folder_states() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        assert_eq!(folder_state(&run).unwrap(), FolderState::Missing);
        fs::create_dir(&run).unwrap();
        assert_eq!(folder_state(&run).unwrap(), FolderState::Empty);
        fs::write(run.join("metrics.csv"), b"mine").unwrap();
        assert_eq!(folder_state(&run).unwrap(), FolderState::ForeignFiles);
        fs::write(run.join(MARKER), b"{}").unwrap();
        assert_eq!(folder_state(&run).unwrap(), FolderState::UnfinishedRun);
        fs::write(run.join("summary.json"), b"{}").unwrap();
        assert_eq!(folder_state(&run).unwrap(), FolderState::FinishedRun);
    }
}
