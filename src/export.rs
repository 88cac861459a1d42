//! `--export-init DIR`: a run's initial parameters in TensorFlow's layout and its batch order, as
//! .npy files, so the seed's own TF graph can start from the same weights and see the same
//! batches (scripts/tf_compare.py) and the two can be compared step by step.
use crate::artifacts::write_atomic;
use crate::config::{ModelKind, TrainConfig};
use crate::data::Batcher;
use anyhow::{Context, Result};
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// NPY v1.0: magic, header length, a Python dict literal padded to 64 bytes, raw little-endian data.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write_tensor(dir: &Path, name: &str, t: &Tensor) -> Result<()> {
    let t = t.to_kind(Kind::Float).contiguous().to_device(tch::Device::Cpu);
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(t.flatten(0, -1)).context("parameter to f32")?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(&dir.join(format!("{name}.npy")), &npy("<f4", &shape, &bytes))
}

/// TF's names and layouts: dense weights [in, out]; conv weights [kh, kw, in, out].
fn tf_params(vs: &nn::VarStore, model: ModelKind) -> Vec<(String, Tensor)> {
    let vars = vs.variables();
    let layers: &[(&str, bool)] = match model {
        ModelKind::Mlp => &[("fc1", false), ("fc2", false), ("fc3", false)],
        ModelKind::Cnn => &[("conv1", true), ("conv2", true), ("fc1", false), ("fc2", false)],
    };
    let mut out = Vec::new();
    for (i, (layer, conv)) in layers.iter().enumerate() {
        let w = &vars[&format!("{layer}.weight")];
        let tf_w = if *conv { w.permute([2, 3, 1, 0]) } else { w.tr() };
        out.push((format!("w{}", i + 1), tf_w));
        out.push((format!("b{}", i + 1), vars[&format!("{layer}.bias")].shallow_clone()));
    }
    out
}

/// Writes w1.npy, b1.npy, ... and batches.npy (int64 [iterations, batch size], indices into the
/// 55000 training images) into `dir`.
pub fn export_init(dir: &Path, vs: &nn::VarStore, cfg: &TrainConfig, train_len: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, t) in tf_params(vs, cfg.model) {
        write_tensor(dir, &name, &t)?;
    }
    let mut batcher = Batcher::new(train_len, cfg.seed);
    let bytes: Vec<u8> = (0..cfg.iterations).flat_map(|_| batcher.next_batch(cfg.batch_size)).flat_map(|i| i.to_le_bytes()).collect();
    write_atomic(&dir.join("batches.npy"), &npy("<i8", &[cfg.iterations, cfg.batch_size], &bytes))
}

#[cfg(test)]
mod tests {
    use super::npy;

    #[test]
    fn npy_header_is_aligned_and_readable() {
        let bytes = npy("<f4", &[2, 3], &[0u8; 24]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(bytes.len(), 10 + header_len + 24);
        let one_d = npy("<i8", &[5], &[0u8; 40]);
        assert!(String::from_utf8_lossy(&one_d).contains("'shape': (5,)"));
    }
}
