//! MNIST's splits resident on the compute device, so the training loop never waits on the host.
use super::mnist::PIXEL_SCALE;
use super::{Mnist, Split};
use anyhow::Result;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A split on the device: images [N, 784] f32, labels [N] i64.
pub struct DeviceSplit {
    pub images: Tensor,
    pub labels: Tensor,
}

impl DeviceSplit {
    /// The test split alone, from `--data` / $MNIST_DIR / data/mnist: what an evaluation needs.
    pub fn load_test(flag: Option<&Path>, device: Device) -> Result<DeviceSplit> {
        let split = Mnist::load_test(&super::mnist::resolve_dir(flag))?;
        Ok(DeviceSplit::upload(&split, device))
    }

    /// Another handle on the same tensors (for a thread of its own; nothing is copied).
    pub fn shallow_clone(&self) -> DeviceSplit {
        DeviceSplit { images: self.images.shallow_clone(), labels: self.labels.shallow_clone() }
    }

    /// The images are scaled to f32 by libtorch, on its threads, into the one tensor that keeps
    /// them: the same values as `Split::images` (a float product of the byte and the f32 scale).
    pub fn upload(split: &Split, device: Device) -> DeviceSplit {
        let n = split.len() as i64;
        let bytes = Tensor::from_slice(&split.pixels).view([n, 784]).to_device(device);
        let images = bytes.to_kind(Kind::Float).g_mul_scalar_(PIXEL_SCALE as f64);
        let labels = Tensor::from_slice(&split.labels).to_kind(Kind::Int64).to_device(device);
        DeviceSplit { images, labels }
    }

    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// MNIST's training and test splits, on the device.
pub struct DeviceData {
    pub train: DeviceSplit,
    pub test: DeviceSplit,
}

impl DeviceData {
    /// Another handle on the same tensors (for a thread of its own; nothing is copied).
    pub fn shallow_clone(&self) -> DeviceData {
        DeviceData { train: self.train.shallow_clone(), test: self.test.shallow_clone() }
    }

    /// Loads and verifies MNIST from `--data` / $MNIST_DIR / data/mnist and uploads it. On CUDA
    /// the device's context (made by its first allocation: CUDA's and the libraries' set-up) is
    /// made on another thread meanwhile, so process start-up waits for the longer of the two
    /// instead of both. NNDL_OVERLAP_START=off makes it one after the other, for A/B runs.
    pub fn load(flag: Option<&Path>, device: Device) -> Result<DeviceData> {
        let dir = super::mnist::resolve_dir(flag);
        let overlap = device.is_cuda() && std::env::var("NNDL_OVERLAP_START").as_deref() != Ok("off");
        // Fallible: an error shows again, and is reported, at the upload. A thread that cannot
        // start (a process limit) leaves the context to the upload.
        let context = overlap.then(|| std::thread::Builder::new().spawn(move || drop(Tensor::f_zeros([1], (Kind::Float, device)))).ok()).flatten();
        let mnist = Mnist::load(&dir);
        if let Some(thread) = context {
            let _ = thread.join();
        }
        let mnist = mnist?;
        Ok(DeviceData { train: DeviceSplit::upload(&mnist.train, device), test: DeviceSplit::upload(&mnist.test, device) })
    }
}
