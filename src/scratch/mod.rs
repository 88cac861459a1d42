//! Pure Rust, no tch: the XOR network trained as the homework's Python does, its statistics over
//! many seeds, and the BPTT check.
pub mod bptt;
pub mod xor;
pub mod xor_stats;
