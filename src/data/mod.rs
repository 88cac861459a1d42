//! MNIST: IDX parsing, locating and verifying the files, fetching them, TF1's batch order, and
//! the splits on the compute device.
pub mod batcher;
pub mod fetch;
pub mod idx;
pub mod mnist;
pub mod on_device;

pub use batcher::{Batcher, BatcherPosition};
pub use mnist::{Mnist, Split};
pub use on_device::{DeviceData, DeviceSplit};
