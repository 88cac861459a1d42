//! nndl: a Rust port of "Neural Networks and Deep Learning, assignment 2".
//! `commands` holds one file per command; everything else is the library they share.
//! `scratch` is pure Rust (XOR, BPTT); the rest drives libtorch through tch.
/// `eprintln!` that shrugs off a failed write: a log line lost to a full disk (a Slurm log on a
/// full file system) or a closed stderr must not end a run, where `eprintln!` would panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod cli;
pub mod commands;

// Settings and what the homework reported.
pub mod config;
pub mod homework;

// Data, models and training.
pub mod data;
pub mod models;
pub mod optim;
pub mod packed;
pub mod trainer;
pub mod overlapped_eval;
pub mod metrics;

// A run and what it leaves on disk.
pub mod checkpoint;
pub mod run;
pub mod report;
pub mod sweep;
pub mod sweep_workers;
pub mod sweep_renames;
pub mod run_dir;
pub mod tensor_file;
pub mod export;
pub mod plot;
pub mod progress;
pub mod profile;
pub mod signals;
pub mod held_files;

// The machine: device, threads, numerics and speed switches, CUDA graphs, versions.
pub mod cuda_graph;
pub mod device;
pub mod runtime;
pub mod switches;
pub mod system_info;
pub mod torch_extras;

// From scratch, and the autograd cross-check of the BPTT formula.
pub mod bptt_autograd;
pub mod rng;
pub mod scratch;
