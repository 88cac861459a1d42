//! `--export-init DIR` / `--export-final DIR`: a run's parameters in TensorFlow's layout, and its
//! batch order, as .npy files (tch's `Tensor::write_npy`, to a temporary name then renamed), so
//! the homework's own TF graph can start from the same weights and see the same batches
//! (scripts/tf_compare.py) and the two can be compared step by step.
use crate::config::{ModelKind, TrainConfig};
use crate::data::Batcher;
use crate::run_dir::write_atomic_with;
use anyhow::{anyhow, Context, Result};
use std::path::Path;
use tch::{nn, Kind, Tensor};

fn write_npy(dir: &Path, name: &str, t: &Tensor) -> Result<()> {
    let path = dir.join(format!("{name}.npy"));
    let t = t.detach().to_device(tch::Device::Cpu).contiguous();
    write_atomic_with(&path, |tmp| t.write_npy(tmp).map_err(|e| anyhow!("cannot write {}: {e}", path.display())))
}

/// A model's layers in TF's order, and whether each is a convolution.
fn layers(model: ModelKind) -> &'static [(&'static str, bool)] {
    match model {
        ModelKind::Mlp => &[("fc1", false), ("fc2", false), ("fc3", false)],
        ModelKind::Cnn => &[("conv1", true), ("conv2", true), ("fc1", false), ("fc2", false)],
    }
}

/// The most layers any model has: the w{k}.npy an export may hold.
fn most_layers() -> usize {
    layers(ModelKind::Mlp).len().max(layers(ModelKind::Cnn).len())
}

/// TF's names and layouts: dense weights [in, out]; conv weights [kh, kw, in, out].
fn tf_params(vs: &nn::VarStore, model: ModelKind) -> Vec<(String, Tensor)> {
    let vars = vs.variables();
    let mut out = Vec::new();
    for (i, (layer, conv)) in layers(model).iter().enumerate() {
        let w = &vars[&format!("{layer}.weight")];
        let tf_w = if *conv { w.permute([2, 3, 1, 0]) } else { w.tr() };
        out.push((format!("w{}", i + 1), tf_w.to_kind(Kind::Float)));
        out.push((format!("b{}", i + 1), vars[&format!("{layer}.bias")].to_kind(Kind::Float)));
    }
    out
}

/// Whether `dir` holds every parameter file of an export of `model`.
pub fn holds_params(dir: &Path, model: ModelKind) -> bool {
    (1..=layers(model).len()).all(|k| ["w", "b"].iter().all(|p| dir.join(format!("{p}{k}.npy")).is_file()))
}

/// Removes w{k}.npy and b{k}.npy for the layers `from..=most_layers()`, where an earlier
/// export left them.
fn remove_layers_from(dir: &Path, from: usize) -> Result<()> {
    for k in from..=most_layers() {
        remove_stale(&dir.join(format!("w{k}.npy")))?;
        remove_stale(&dir.join(format!("b{k}.npy")))?;
    }
    Ok(())
}

/// Writes w1.npy, b1.npy, ... (float32, TF layout) into `dir`.
pub fn export_params(dir: &Path, vs: &nn::VarStore, model: ModelKind) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // What an export killed mid-write left (its own temporary files).
    crate::run_dir::remove_stale_partials(dir);
    // A folder that held the CNN's 4 layers keeps no w4.npy beside the MLP's 3.
    remove_layers_from(dir, layers(model).len() + 1)?;
    tf_params(vs, model).iter().try_for_each(|(name, t)| write_npy(dir, name, t))
}

/// The initial parameters, and batches.npy (int64 [iterations, batch size], indices into the
/// 55000 training images). What an earlier export left there and this one would not write
/// (its losses, masks, step-K folders) goes first, so that no comparison reads another run's.
pub fn export_init(dir: &Path, vs: &nn::VarStore, cfg: &TrainConfig, train_len: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_steps(dir)?;
    export_params(dir, vs, cfg.model)?;
    let mut batcher = Batcher::new(train_len, cfg.seed);
    let order: Vec<i64> = (0..cfg.iterations).flat_map(|_| batcher.next_batch(cfg.batch_size)).collect();
    let batches = Tensor::from_slice(&order).view([cfg.iterations as i64, cfg.batch_size as i64]);
    write_npy(dir, "batches", &batches)
}

/// Removes one file an earlier export wrote, if it is there.
fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow!("cannot remove the earlier export's {}: {e}", path.display())),
        _ => Ok(()),
    }
}

/// The files `export_steps` writes, and its step-K folders (parameters only; a folder holding
/// anything else is the user's and stays): an earlier export's, or this one's when it failed.
pub fn remove_steps(dir: &Path) -> Result<()> {
    for name in ["losses", "masks_train", "masks_eval"] {
        remove_stale(&dir.join(format!("{name}.npy")))?;
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_step = name.to_str().and_then(|n| n.strip_prefix("step-")).is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
        if !is_step || !entry.path().is_dir() {
            continue;
        }
        remove_layers_from(&entry.path(), 1)?;
        let _ = std::fs::remove_dir(entry.path()); // fails, and keeps it, when not empty
    }
    Ok(())
}

/// Packs the last axis of a 0/1 tensor into bytes, first element in the highest bit (as
/// numpy's `packbits`; `unpackbits` restores it).
fn pack_bits(mask: &Tensor) -> Tensor {
    let mut shape = mask.size();
    let last = shape.pop().expect("a mask has an axis");
    let weights = Tensor::from_slice(&[128u8, 64, 32, 16, 8, 4, 2, 1]).to_kind(Kind::Int);
    let mut grouped = shape.clone();
    grouped.extend([last / 8, 8]);
    let packed = (mask.to_kind(Kind::Int).view(grouped.as_slice()) * weights).sum_dim_intlist(-1, false, Kind::Int);
    packed.to_kind(Kind::Uint8)
}

/// After the first N steps: `losses.npy` (each step's training loss, float32 [N]) and, for the
/// CNN, the dropout masks those steps and their evaluations drew, bit-packed along the 1024
/// units: `masks_train.npy` [N, batch, 128] and `masks_eval.npy` [evaluations, 10000, 128].
pub fn export_steps(dir: &Path, losses: &[f32], masks: Vec<(bool, Tensor)>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_npy(dir, "losses", &Tensor::from_slice(losses))?;
    if masks.is_empty() {
        return Ok(());
    }
    let (train, eval): (Vec<_>, Vec<_>) = masks.into_iter().partition(|m| m.0);
    let train: Vec<Tensor> = train.into_iter().map(|m| m.1).collect();
    write_npy(dir, "masks_train", &pack_bits(&Tensor::stack(&train, 0)))?;
    if !eval.is_empty() {
        let rows = Tensor::cat(&eval.into_iter().map(|m| m.1).collect::<Vec<_>>(), 0);
        let evals = rows.size()[0] / 10_000;
        write_npy(dir, "masks_eval", &pack_bits(&rows.narrow(0, 0, evals * 10_000).view([evals, 10_000, -1])))?;
    }
    Ok(())
}
