//! Named tensors in the safetensors format (what tch's `VarStore::save` writes for a
//! `.safetensors` path, readable from Python with `safetensors`), written atomically with a
//! metadata map, and read back with every size checked before anything is allocated. The
//! metadata also holds a CRC-32 of the tensors (`CHECKSUM_KEY`) and one of the rest of the
//! header (`HEADER_CHECKSUM_KEY`: the other metadata, a checkpoint's batch order and metrics,
//! and each tensor's type and shape): a checkpoint damaged on disk or in a copy is refused, not
//! resumed from silently. Files without them (written elsewhere, or by earlier builds) are read
//! as they are.
use crate::run_dir::{write_atomic_with, write_error};
use anyhow::{anyhow, bail, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A tensor's bytes on the host, as safetensors wants them.
struct HostView {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for HostView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn host_view(t: &Tensor) -> Result<HostView> {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let dtype: Dtype = t.kind().try_into().map_err(|e| anyhow!("cannot save a {:?} tensor: {e}", t.kind()))?;
    let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut bytes, t.numel())?;
    Ok(HostView { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), bytes })
}

/// The metadata key of the tensors' checksum.
pub const CHECKSUM_KEY: &str = "nndl.crc32";

/// CRC-32 of the tensors' names and bytes, in name order: the same whatever order safetensors
/// lays them out in.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut crc = crc32fast::Hasher::new();
    for (name, bytes) in sorted {
        crc.update(&(name.len() as u64).to_le_bytes());
        crc.update(name.as_bytes());
        crc.update(&(bytes.len() as u64).to_le_bytes());
        crc.update(bytes);
    }
    format!("{:08x}", crc.finalize())
}

/// The metadata key of the checksum of the rest of the header.
pub const HEADER_CHECKSUM_KEY: &str = "nndl.header.crc32";

/// CRC-32 of the metadata other than the two checksums, in key order, and of each tensor's
/// name, type and shape, in name order.
fn header_checksum<'a>(metadata: &HashMap<String, String>, tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize])>) -> String {
    let mut crc = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        crc.update(&(bytes.len() as u64).to_le_bytes());
        crc.update(bytes);
    };
    let mut entries: Vec<(&String, &String)> = metadata.iter().filter(|(k, _)| *k != CHECKSUM_KEY && *k != HEADER_CHECKSUM_KEY).collect();
    entries.sort();
    for (k, v) in entries {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let mut tensors: Vec<(&str, Dtype, &[usize])> = tensors.collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape) in tensors {
        field(name.as_bytes());
        field(format!("{dtype:?}{shape:?}").as_bytes());
    }
    format!("{:08x}", crc.finalize())
}

/// Writes `tensors` (and `metadata`, if any) to `path` atomically.
pub fn write(path: &Path, tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<()> {
    let bytes = encode(path, tensors, metadata)?;
    write_atomic_with(path, |tmp| std::fs::write(tmp, &bytes).map_err(|e| write_error(path, &e)))
}

/// The bytes `write` would write to `path` (named in the error), for a caller that writes them
/// later or on another thread.
pub fn encode(path: &Path, tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let views = tensors.iter().map(|(n, t)| Ok((n.clone(), host_view(t)?))).collect::<Result<Vec<_>>>();
    views.and_then(|v| {
        let mut metadata = metadata.unwrap_or_default();
        metadata.insert(CHECKSUM_KEY.into(), checksum(v.iter().map(|(n, view)| (n.as_str(), &view.bytes[..]))));
        let header = header_checksum(&metadata, v.iter().map(|(n, view)| (n.as_str(), view.dtype, &view.shape[..])));
        metadata.insert(HEADER_CHECKSUM_KEY.into(), header);
        safetensors::tensor::serialize(v, &Some(metadata)).map_err(|e| anyhow!("{e}")).and_then(sorted_metadata)
    }).map_err(|e| anyhow!("cannot encode {}: {e}", path.display()))
}

/// safetensors writes the metadata map in a HashMap's order, which changes from process to
/// process: with its entries sorted, the same tensors and metadata give the same bytes.
fn sorted_metadata(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n])?;
    let mut sorted = serde_json::Map::new();
    if let Some(serde_json::Value::Object(metadata)) = header.remove("__metadata__") {
        let metadata: std::collections::BTreeMap<String, serde_json::Value> = metadata.into_iter().collect();
        sorted.insert("__metadata__".into(), serde_json::Value::Object(metadata.into_iter().collect()));
    }
    sorted.extend(header);
    let mut text = serde_json::to_vec(&sorted)?;
    // safetensors' alignment of the data: the header padded with spaces to a multiple of 8.
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// The largest file read back: well above any checkpoint of these nets (the CNN's Adam
/// checkpoint is about 40 MB), far below what would hurt.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Parses safetensors bytes into CPU tensors and the metadata map.
/// Tensors by name, and the file's metadata map.
pub type Contents = (Vec<(String, Tensor)>, HashMap<String, String>);

/// safetensors' error in words (its Display prints the enum's Debug name).
fn in_words(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall | E::InvalidHeaderLength => "truncated (its header is cut short)".into(),
        E::HeaderTooLarge => "its header claims more than 100 MB".into(),
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization | E::JsonError(_) => "its header is not safetensors' JSON".into(),
        E::TensorInvalidInfo | E::InvalidTensorView(..) | E::MetadataIncompleteBuffer | E::ValidationOverflow => {
            "its tensors' shapes, types and data offsets do not fit the file (truncated or damaged)".into()
        }
        E::InvalidOffset(name) => format!("tensor {name}'s data offsets are invalid"),
        E::TensorNotFound(name) => format!("no tensor {name}"),
        E::IoError(e) => e.to_string(),
    }
}

pub fn decode(bytes: &[u8]) -> Result<Contents> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{}", in_words(&e)))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{}", in_words(&e)))?;
    let tensors = st.tensors();
    if let Some(recorded) = metadata.get(CHECKSUM_KEY) {
        if checksum(tensors.iter().map(|(n, view)| (n.as_str(), view.data()))) != *recorded {
            bail!("its tensors do not match the checksum its header records (damaged on disk or in a copy)");
        }
    }
    if let Some(recorded) = metadata.get(HEADER_CHECKSUM_KEY) {
        if header_checksum(&metadata, tensors.iter().map(|(n, view)| (n.as_str(), view.dtype(), view.shape()))) != *recorded {
            bail!("its header does not match the checksum it records (damaged on disk or in a copy)");
        }
    }
    let mut out = Vec::new();
    for (name, view) in tensors {
        let kind: Kind = view.dtype().try_into().map_err(|e| anyhow!("tensor {name}: {e}"))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|e| anyhow!("tensor {name}: {e}"))?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata))
}

/// Reads a file written by `write` (or by anyone writing safetensors).
/// The metadata map of a safetensors file, from its header alone (8 bytes of length, then
/// that much JSON): a checkpoint's position without reading its tensors. (safetensors' own
/// `read_metadata` takes the whole file, to check the tensors' offsets against it.)
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    regular_file_size(path)?;
    let mut file = std::fs::File::open(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{}: its header claims more than 100 MB", path.display());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let header: Header = serde_json::from_slice(&header).map_err(|e| anyhow!("{}: its header is not safetensors' JSON: {e}", path.display()))?;
    Ok(header.metadata)
}

/// A file to read whole: a regular file (a device or a pipe would never end or never start).
fn regular_file_size(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    Ok(meta.len())
}

pub fn read(path: &Path) -> Result<Contents> {
    let size = regular_file_size(path)?;
    if size > MAX_FILE_BYTES {
        bail!("{} is {} MB, larger than any nndl file ({} MB)", path.display(), size >> 20, MAX_FILE_BYTES >> 20);
    }
    let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    decode(&bytes).map_err(|e| anyhow!("{} is not a valid safetensors file: {e}", path.display()))
}
