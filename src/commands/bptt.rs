//! `nndl bptt`: the homework's dL/dU formula checked against central finite differences and the
//! O(T) recursion (pure Rust, `scratch::bptt`) and against libtorch autograd (`bptt_autograd`),
//! all on the same random problems, generated once.
use super::Outcome;
use crate::bptt_autograd;
use crate::cli::BpttArgs;
use anyhow::{bail, Result};

/// The largest --trials: each problem is a few hundred microseconds of work.
const MAX_PROBLEMS: usize = 1_000_000;

pub fn run(args: &BpttArgs) -> Result<Outcome> {
    if args.problems == 0 || args.problems > MAX_PROBLEMS {
        bail!("invalid --trials {}: must be between 1 and {MAX_PROBLEMS}", args.problems);
    }
    let report = bptt_autograd::run(args.problems, args.seed, args.report.quiet);
    let outcome = Outcome::new(bptt_autograd::describe(&report), &report)?;
    Ok(if report.passed { outcome } else { outcome.failing("error: the BPTT check failed its targets".into(), 1) })
}
