//! The commands, one file each. A command validates its input, does its work and returns an
//! `Outcome`; `main` prints it once (the human line on stderr, or the JSON object on stdout) and
//! turns a failure into the exit status.
pub mod bptt;
pub mod data;
pub mod eval;
pub mod info;
pub mod report;
pub mod reproduce;
pub mod resume;
pub mod seeds;
pub mod sweep;
pub mod train;
pub mod xor;

use crate::cli::{Command, DataCommand};
use crate::config::ModelKind;
use anyhow::Result;
use serde::Serialize;

/// What a command has to say when it is done.
pub struct Outcome {
    /// For people: on stderr unless --quiet.
    pub human: String,
    /// Text whose place is stdout (`info`'s description, `sweep --list`), printed without --json.
    pub stdout: Option<String>,
    /// For scripts: on stdout with --json.
    pub json: serde_json::Value,
    /// Set when the command did its work but must still end non-zero (a failed check, an
    /// interrupted run): the line to print last and the exit status.
    pub failure: Option<(String, u8)>,
}

impl Outcome {
    pub fn new(human: String, json: &impl Serialize) -> Result<Outcome> {
        Ok(Outcome { human, stdout: None, json: serde_json::to_value(json)?, failure: None })
    }

    /// An outcome whose text is the command's output (stdout), with nothing said on stderr.
    pub fn output(text: String, json: &impl Serialize) -> Result<Outcome> {
        Ok(Outcome { stdout: Some(text), ..Outcome::new(String::new(), json)? })
    }

    pub fn failing(mut self, line: String, status: u8) -> Outcome {
        self.failure = Some((line, status));
        self
    }
}

pub fn run(command: Command) -> Result<Outcome> {
    // Commands that train handle SIGINT and SIGTERM from their first moment: before the training
    // starts a signal exits at once (nothing to save yet, and a start-up blocked on a file would
    // never take a stop in good order); from then on it stops at a step with a checkpoint.
    if matches!(command, Command::Mlp(_) | Command::Cnn(_) | Command::Resume(_) | Command::Sweep(_) | Command::Reproduce(_)) {
        crate::signals::install()?;
    }
    match command {
        Command::Mlp(args) => train::run(ModelKind::Mlp, &args),
        Command::Cnn(args) => train::run(ModelKind::Cnn, &args),
        Command::Resume(args) => resume::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Reproduce(args) => reproduce::run(&args),
        Command::Xor(args) => xor::run(&args),
        Command::Bptt(args) => bptt::run(&args),
        Command::Data(DataCommand::Fetch { data, source, report }) => data::fetch(data.as_deref(), source, report.quiet),
        Command::Data(DataCommand::Verify { data, .. }) => data::verify(data.as_deref()),
        Command::Info(_) => info::run(),
    }
}
