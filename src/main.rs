//! The `nndl` binary: parses the command line, runs the command, prints its outcome once, and
//! turns every error into one line on stderr with a non-zero exit status.
use clap::Parser;
use nndl::cli::Cli;
use nndl::commands::{self, Outcome};
use std::io::Write;
use std::process::ExitCode;

/// Errors end as one line on stderr; libtorch's messages carry a C++ backtrace after the first line.
fn one_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("unknown error").trim().to_string()
}

/// clap's message (the lines before its usage block, which name the arguments) as one line.
fn clap_line(text: &str) -> String {
    let message: Vec<&str> = text.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
    if message.is_empty() { one_line(text) } else { message.join(" ") }
}

/// Prints to stdout, ignoring a reader that went away (`nndl ... --json | head -c 10`).
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn report(flags: nndl::cli::ReportArgs, outcome: &Outcome) {
    if flags.json {
        print_stdout(&format!("{}\n", outcome.json));
    } else if let Some(text) = &outcome.stdout {
        print_stdout(text);
    }
    if !flags.quiet && !outcome.human.is_empty() {
        eprintln!("{}", outcome.human);
    }
}

fn main() -> ExitCode {
    // A panic inside libtorch or a bug still ends as one line, unless a backtrace is asked for.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            return default_hook(info);
        }
        let msg = info.payload().downcast_ref::<String>().map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("internal error");
        eprintln!("nndl: error: {} (RUST_BACKTRACE=1 shows where)", one_line(msg));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("nndl: {}", clap_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    // Load libtorch_cuda.so before any tch call (parsing makes none), so CUDA is seen when present.
    if !cli.command.cpu_only() {
        let _ = nndl::device::load_cuda_library();
    }
    let flags = cli.command.report_flags();
    match std::panic::catch_unwind(|| commands::run(cli.command)) {
        Ok(Ok(outcome)) => {
            report(flags, &outcome);
            match outcome.failure {
                None => ExitCode::SUCCESS,
                Some((line, status)) => {
                    eprintln!("nndl: {line}");
                    ExitCode::from(status)
                }
            }
        }
        Ok(Err(e)) => {
            eprintln!("nndl: error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}
