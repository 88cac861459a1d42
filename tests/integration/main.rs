//! The integration tests, one binary (libtorch is linked once), a module per area.
mod batcher;
mod cli_errors;
mod cnn_parts;
mod defects;
mod fuzz_regressions;
mod idx_parsing;
mod numerics;
mod packed;
mod profile;
mod reproduce;
mod resume;
mod robustness;
mod scratch_is_pure;
mod sweep;
mod train_mnist;
mod util;
mod xor_bptt;
