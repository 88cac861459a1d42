//! nndl: a Rust port of "Neural Networks and Deep Learning, assignment 2".
//! `scratch` is pure Rust (XOR, BPTT); everything else drives libtorch through tch.
pub mod artifacts;
pub mod bptt_cmd;
pub mod cli;
pub mod config;
pub mod cuda_graph;
pub mod data;
pub mod device;
pub mod export;
pub mod info;
pub mod models;
pub mod plot;
pub mod progress;
pub mod reproduce;
pub mod rng;
pub mod run;
pub mod scratch;
pub mod train;
pub mod xor_cmd;
