//! The IDX format of the MNIST files, validated before anything sized by the header is allocated.
use anyhow::{bail, ensure, Context, Result};
use std::io::Read;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest unpacked MNIST file is 47 MB; a file, or a gzip that inflates, past this is not MNIST.
pub const MAX_UNPACKED: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Returns the unpacked bytes of a file that may or may not be gzipped. Every member of a
/// multi-member gzip is read, and zero bytes after the last are ignored, as gunzip does (a
/// copy padded to a block size; the SHA-256 of what unpacks is checked all the same).
pub fn unpack(raw: Vec<u8>) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    let mut rest: &[u8] = &raw;
    while rest.iter().any(|&b| b != 0) {
        // The bufread decoder takes only its member's bytes from `rest`.
        let mut member = flate2::bufread::GzDecoder::new(rest);
        (&mut member).take(MAX_UNPACKED + 1 - out.len() as u64).read_to_end(&mut out).map_err(|e| {
            // Not the file's fault (zlib's allocation failing): the memory to unpack it is missing.
            if e.kind() == std::io::ErrorKind::OutOfMemory || e.to_string().contains("out of memory") {
                anyhow::anyhow!("out of memory while unpacking it")
            } else {
                anyhow::anyhow!("corrupt gzip: {e}")
            }
        })?;
        ensure!(out.len() as u64 <= MAX_UNPACKED, "unpacks to more than {MAX_UNPACKED} bytes");
        rest = member.into_inner();
    }
    Ok(out)
}

fn check_magic(bytes: &[u8], header_len: usize, magic: u32, what: &str) -> Result<()> {
    ensure!(bytes.len() >= header_len, "truncated header ({} bytes)", bytes.len());
    let found = be_u32(bytes, 0);
    if found != magic {
        bail!("wrong magic number 0x{found:08x} for {what} (expected 0x{magic:08x})");
    }
    Ok(())
}

/// The payload length the header promises must equal what the file holds.
fn check_len(bytes: &[u8], header_len: usize, dims: &[u32]) -> Result<usize> {
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .context("header dimensions overflow")?;
    let actual = (bytes.len() - header_len) as u64;
    ensure!(
        expected == actual,
        "header claims {dims:?} = {expected} bytes of data but the file holds {actual}"
    );
    Ok(expected as usize)
}

pub fn parse_images(bytes: &[u8]) -> Result<Images> {
    images_from(bytes.to_vec())
}

/// As `parse_images`, keeping the file's own buffer (its header is cut off in place): MNIST's
/// 47 MB of training images are not copied at start-up.
pub fn images_from(mut bytes: Vec<u8>) -> Result<Images> {
    check_magic(&bytes, 16, IMAGES_MAGIC, "images")?;
    let dims = [be_u32(&bytes, 4), be_u32(&bytes, 8), be_u32(&bytes, 12)];
    check_len(&bytes, 16, &dims)?;
    bytes.drain(..16);
    Ok(Images { count: dims[0] as usize, rows: dims[1] as usize, cols: dims[2] as usize, pixels: bytes })
}

pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>> {
    check_magic(bytes, 8, LABELS_MAGIC, "labels")?;
    check_len(bytes, 8, &[be_u32(bytes, 4)])?;
    let labels = bytes[8..].to_vec();
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        bail!("label {l} at index {i} is outside 0..=9");
    }
    Ok(labels)
}

/// Builds IDX bytes; used by tests and by anyone making a small synthetic set.
pub fn encode_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC, count, rows, cols] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}
