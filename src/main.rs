//! The `nndl` binary: parses the command line, runs the command, prints its outcome once, and
//! turns every error into one line on stderr with a non-zero exit status.
use clap::Parser;
use nndl::cli::Cli;
use nndl::commands::{self, Outcome};
use std::io::Write;

/// Errors end as one line on stderr; libtorch's messages carry a C++ backtrace after the first line.
fn one_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("unknown error").trim().to_string()
}

/// clap's message (the lines before its usage block, which name the arguments) as one line.
fn clap_line(text: &str) -> String {
    let message: Vec<&str> = text.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
    if message.is_empty() { one_line(text) } else { message.join(" ") }
}

/// Prints to stdout. A reader that went away (`nndl ... --json | head -c 10`) took what it
/// wanted; any other failure (a full disk) lost the output: an error.
fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// With --json, an error is an object too, so that a script reading stdout always gets one:
/// `{"error": "the line on stderr"}`.
fn json_error(wanted: bool, line: &str) {
    if wanted {
        let _ = print_stdout(&format!("{}\n", serde_json::json!({ "error": line })));
    }
}

fn report(flags: nndl::cli::ReportArgs, outcome: &Outcome) -> std::io::Result<()> {
    let printed = if flags.json {
        print_stdout(&format!("{}\n", outcome.json))
    } else {
        outcome.stdout.as_deref().map_or(Ok(()), print_stdout)
    };
    if !flags.quiet && !outcome.human.is_empty() {
        nndl::say!("{}", outcome.human);
    }
    printed
}

fn main() {
    let status = run();
    // Every file a command writes is renamed into place and synced before it returns, and the
    // output is flushed here: the process can end without running libtorch's static destructors,
    // about 0.15 s of CPU time at every exit (measured with strace: the time between the last
    // write and exit_group), which a sweep or a Slurm array pays once per run.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes C's stdio streams (whatever a library printed with printf and
    // left buffered); _exit then only ends the process, with nothing of ours left to run.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(i32::from(status))
    }
}

/// Runs the command line; the exit status.
fn run() -> u8 {
    // A panic inside libtorch or a bug still ends as one line, unless a backtrace is asked for.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        use nndl::torch_extras::{backtrace_asked, out_of_memory, panic_line, panic_text, panics_caught};
        let msg = panic_text(info.payload());
        // Running out of memory is no bug to trace: one line, wherever it happens.
        let oom = out_of_memory(msg);
        // A run's training turns it into its error line: only a bug's backtrace is shown first.
        if panics_caught() && (!backtrace_asked() || oom) {
            return;
        }
        if backtrace_asked() && !oom {
            return default_hook(info);
        }
        let hint = if oom { "" } else { " (RUST_BACKTRACE=1 shows where)" };
        nndl::say!("nndl: error: {}{hint}", panic_line(msg));
    }));
    // Before the flags are parsed: whether --json was asked for, for the errors of parsing.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let fail = |line: String, status: u8| {
        nndl::say!("nndl: {line}");
        json_error(json, line.strip_prefix("error: ").unwrap_or(&line));
        status
    };
    // Paths and values go into JSON files and output, which hold UTF-8 text only: refused here,
    // before any work, rather than failing once the run is done.
    if let Some(arg) = std::env::args_os().skip(1).find(|a| a.to_str().is_none()) {
        return fail(format!("error: {:?} is not valid UTF-8; nndl takes UTF-8 paths and values", arg.to_string_lossy()), 2);
    }
    if std::env::var_os("MNIST_DIR").is_some_and(|v| v.to_str().is_none()) {
        return fail("error: MNIST_DIR is not valid UTF-8; nndl takes UTF-8 paths".into(), 2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return 0;
        }
        // `nndl` or `nndl data` alone: clap would print the whole help as the error.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
            let command = ["nndl".to_string()].into_iter().chain(words).collect::<Vec<_>>().join(" ");
            return fail(format!("error: {command} needs a subcommand (`{command} --help` lists them)"), 2);
        }
        Err(e) => return fail(clap_line(&e.render().to_string()), 2),
    };
    // Load libtorch_cuda.so before any tch call (parsing makes none), so CUDA is seen when present;
    // not where no GPU can be (no --device cuda, and no NVIDIA driver).
    if !cli.command.cpu_only() && (cli.command.asks_for_cuda() || nndl::device::nvidia_driver_present()) {
        let _ = nndl::device::load_cuda_library();
    }
    let flags = cli.command.report_flags();
    nndl::run_dir::set_quiet(flags.quiet);
    match std::panic::catch_unwind(|| nndl::switches::check().and_then(|()| commands::run(cli.command))) {
        Ok(Ok(outcome)) => {
            if let Err(e) = report(flags, &outcome) {
                nndl::say!("nndl: error: cannot write the output to stdout: {e}");
                return 1;
            }
            match outcome.failure {
                None => 0,
                Some((line, status)) => {
                    nndl::say!("nndl: {line}");
                    status
                }
            }
        }
        Ok(Err(e)) => fail(format!("error: {}", one_line(&format!("{e:#}"))), 1),
        Err(payload) => {
            // The panic hook said what on stderr; --json's object says it too.
            json_error(flags.json, &nndl::torch_extras::panic_line(nndl::torch_extras::panic_text(&*payload)));
            1
        }
    }
}
