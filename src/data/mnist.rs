//! Finding, verifying and loading MNIST the way TF1's `read_data_sets` did: the first 5000
//! training images become the validation set, the other 55000 train, pixels are x * (1/255) in f32.
use super::idx::{self, Images};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const VALIDATION_SIZE: usize = 5000;
pub const PIXELS: usize = 28 * 28;
pub const DEFAULT_DIR: &str = "data/mnist";

/// One of the four standard files, with the SHA-256 of its unpacked bytes.
pub struct MnistFile {
    pub stem: &'static str,
    pub kind: &'static str,
    pub sha256: &'static str,
}

pub const FILES: [MnistFile; 4] = [
    MnistFile { stem: "train-images", kind: "idx3", sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db" },
    MnistFile { stem: "train-labels", kind: "idx1", sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5" },
    MnistFile { stem: "t10k-images", kind: "idx3", sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7" },
    MnistFile { stem: "t10k-labels", kind: "idx1", sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" },
];

impl MnistFile {
    /// The standard name, the one `data fetch` writes.
    pub fn canonical_name(&self) -> String {
        format!("{}-{}-ubyte", self.stem, self.kind)
    }

    /// Both common namings (`train-images-idx3-ubyte`, `train-images.idx3-ubyte`), gzipped or not.
    pub fn candidates(&self) -> Vec<String> {
        let dash = self.canonical_name();
        let dot = format!("{}.{}-ubyte", self.stem, self.kind);
        vec![format!("{dash}.gz"), dash, format!("{dot}.gz"), dot]
    }

    /// The first candidate that exists as a regular file.
    pub fn find_in(&self, dir: &Path) -> Option<PathBuf> {
        self.candidates().into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
    }

    /// Reads, unpacks and checks the SHA-256 of one file. Every candidate name is tried in turn
    /// (a corrupt `X.gz` beside a good `X` still loads); something other than a regular file
    /// under a candidate name, or a file larger than any MNIST file, is named as what it is.
    pub fn read_verified(&self, dir: &Path) -> Result<Vec<u8>> {
        let fix = format!("run `nndl data fetch --data {}`", dir.display());
        let mut first_error = None;
        for path in self.candidates().into_iter().map(|n| dir.join(n)) {
            match self.read_one(&path, &fix) {
                Ok(Some(bytes)) => return Ok(bytes),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| self.not_found(dir)))
    }

    fn not_found(&self, dir: &Path) -> anyhow::Error {
        anyhow::anyhow!("MNIST file {} not found in {} (looked for {}); run `nndl data fetch --data {}`",
            self.canonical_name(), dir.display(), self.candidates().join(", "), dir.display())
    }

    /// One candidate: None when nothing is there, an error when something unusable is.
    fn read_one(&self, path: &Path, fix: &str) -> Result<Option<Vec<u8>>> {
        let shown = path.display();
        let link = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => bail!("cannot read {shown}: {e}"),
            Ok(m) => m,
        };
        let meta = match std::fs::metadata(path) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => bail!("MNIST file {shown} is a symlink loop; {fix}"),
            Err(_) if link.file_type().is_symlink() => bail!("MNIST file {shown} is a dangling symlink; {fix}"),
            Err(e) => bail!("cannot read {shown}: {e}"),
            Ok(m) => m,
        };
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() { Some("a directory") } else if ft.is_fifo() { Some("a FIFO") } else if ft.is_socket() { Some("a socket") }
            else if ft.is_char_device() || ft.is_block_device() { Some("a device") } else { None };
        if let Some(kind) = kind {
            bail!("MNIST file {shown} is {kind}, not a regular file; {fix}");
        }
        if meta.len() > idx::MAX_UNPACKED {
            bail!("MNIST file {shown} is {} MB, larger than any MNIST file ({} MB at most); {fix}", meta.len() >> 20, idx::MAX_UNPACKED >> 20);
        }
        let raw = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
        let bytes = idx::unpack(raw).map_err(|e| match crate::torch_extras::out_of_memory(&format!("{e:#}")) {
            // The file may well be good: the memory to unpack it is what is missing.
            true => anyhow::anyhow!("MNIST file {shown}: {e:#}; free some memory or raise the process's limit"),
            false => anyhow::anyhow!("MNIST file {shown}: {e:#}; delete it and {fix}"),
        })?;
        let digest = sha256_hex(&bytes);
        if digest != self.sha256 {
            bail!("MNIST file {shown} is corrupt (SHA-256 {digest}, expected {}); delete it and {fix}", self.sha256);
        }
        Ok(Some(bytes))
    }
}

/// Whether `dir` has a file under one of each MNIST file's names, without reading them: for a
/// command that starts processes which read them (a sweep's driver), so that a wrong folder is
/// one line before any starts, not one failure a trial.
pub fn check_present(dir: &Path) -> Result<()> {
    match FILES.iter().find(|f| f.find_in(dir).is_none()) {
        Some(missing) => Err(missing.not_found(dir)),
        None => Ok(()),
    }
}

/// The first MNIST file (by any of its names) in `dir` or a folder below it, symbolic links
/// not followed: what `--force` must not delete with the folder it replaces.
pub fn file_within(dir: &Path) -> Option<PathBuf> {
    let names: Vec<String> = FILES.iter().flat_map(MnistFile::candidates).collect();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        // In name order, so that an error names the same file each time.
        let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&folder).into_iter().flatten().flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() && names.iter().any(|n| entry.file_name() == n.as_str()) {
                return Some(entry.path());
            }
        }
    }
    None
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The data directory: `--data`, else `MNIST_DIR`, else `data/mnist`.
pub fn resolve_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("MNIST_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// TF1's pixel scale: `images.astype(float32) * (1.0 / 255.0)`, the scalar rounded to f32 first.
pub const PIXEL_SCALE: f32 = (1.0f64 / 255.0) as f32;

/// Images as rows of 784 bytes, as the IDX file holds them, and labels 0..=9. The bytes are
/// scaled to f32 where they are used (`images`, or at the upload to the device, in libtorch's
/// threads): a quarter of the memory to fill at start-up.
#[derive(Debug, Clone)]
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images as f32 rows of 784, scaled as TF1 scaled them.
    pub fn images(&self) -> Vec<f32> {
        self.pixels.iter().map(|&p| p as f32 * PIXEL_SCALE).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Mnist {
    pub train: Split,
    pub validation: Split,
    pub test: Split,
}

/// As many labels as images, each image 28 x 28.
fn check_split(images: &Images, labels: &[u8], name: &str) -> Result<()> {
    if images.count != labels.len() {
        bail!("{name} set has {} images but {} labels", images.count, labels.len());
    }
    if images.rows * images.cols != PIXELS {
        bail!("{name} images are {}x{}, expected 28x28", images.rows, images.cols);
    }
    Ok(())
}

impl Mnist {
    /// Loads and verifies the four files in `dir`.
    pub fn load(dir: &Path) -> Result<Mnist> {
        // One thread a file: unpacking the training images takes most of the time, and the
        // others finish beside it. A file whose thread cannot start (a process limit) is read
        // here instead. Errors are reported in the files' order, as one by one.
        let [tri, trl, tei, tel] = std::thread::scope(|s| {
            let started = FILES.each_ref().map(|f| (f, std::thread::Builder::new().spawn_scoped(s, move || f.read_verified(dir))));
            started.map(|(f, thread)| match thread {
                Ok(thread) => thread.join().unwrap_or_else(|_| bail!("the thread reading {} stopped", f.canonical_name())),
                Err(_) => f.read_verified(dir),
            })
        });
        let train_images = idx::images_from(tri?)?;
        let train_labels = idx::parse_labels(&trl?)?;
        let test_images = idx::images_from(tei?)?;
        let test_labels = idx::parse_labels(&tel?)?;
        Mnist::from_parts(train_images, &train_labels, test_images, &test_labels, VALIDATION_SIZE)
    }

    /// The test split alone, from its two files: what an evaluation needs (`nndl eval`
    /// works with the training files absent).
    pub fn load_test(dir: &Path) -> Result<Split> {
        let [_, _, images, labels] = &FILES;
        let images = idx::images_from(images.read_verified(dir)?)?;
        let labels = idx::parse_labels(&labels.read_verified(dir)?)?;
        check_split(&images, &labels, "test")?;
        Ok(Split { pixels: images.pixels, labels })
    }

    /// Splits parsed IDX data as `read_data_sets` does; also used with small synthetic sets.
    /// The images' buffers become the training and test splits' (only the validation images
    /// are copied).
    pub fn from_parts(
        train_images: Images,
        train_labels: &[u8],
        test_images: Images,
        test_labels: &[u8],
        validation_size: usize,
    ) -> Result<Mnist> {
        check_split(&train_images, train_labels, "training")?;
        check_split(&test_images, test_labels, "test")?;
        if validation_size >= train_images.count {
            bail!("validation size {validation_size} leaves no training images out of {}", train_images.count);
        }
        let mut pixels = train_images.pixels;
        let validation = Split { pixels: pixels.drain(..validation_size * PIXELS).collect(), labels: train_labels[..validation_size].to_vec() };
        Ok(Mnist {
            validation,
            train: Split { pixels, labels: train_labels[validation_size..].to_vec() },
            test: Split { pixels: test_images.pixels, labels: test_labels.to_vec() },
        })
    }
}
