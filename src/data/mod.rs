//! MNIST: IDX parsing, locating and verifying the files, fetching them, and TF1's batch order.
pub mod batcher;
pub mod fetch;
pub mod idx;
pub mod mnist;

pub use batcher::Batcher;
pub use mnist::{Mnist, Split};
