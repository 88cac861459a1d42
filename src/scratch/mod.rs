//! From-scratch code with no framework: the XOR network and the BPTT check. Nothing under this
//! folder may import tch (tests/scratch_is_pure.rs enforces it).
pub mod bptt;
pub mod xor;
