use clap::Parser;
use nndl::cli::{Cli, Command, DataCommand};
use nndl::config::ModelKind;
use std::process::ExitCode;

/// Errors end as one line on stderr; libtorch's messages carry a C++ backtrace after the first line.
fn one_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("unknown error").trim().to_string()
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Mlp(args) => train(ModelKind::Mlp, &args),
        Command::Cnn(args) => train(ModelKind::Cnn, &args),
        Command::Reproduce(args) => nndl::reproduce::command(&args),
        Command::Xor(args) => nndl::xor_cmd::command(&args),
        Command::Bptt(args) => nndl::bptt_cmd::command(&args),
        Command::Data(DataCommand::Fetch { data, source }) => {
            let dir = nndl::data::mnist::resolve_dir(data.as_deref());
            let n = nndl::data::fetch::fetch(&dir, source)?;
            eprintln!("MNIST in {}: {} file(s) fetched, all four verified", dir.display(), n);
            Ok(())
        }
        Command::Data(DataCommand::Verify { data }) => {
            let dir = nndl::data::mnist::resolve_dir(data.as_deref());
            for f in &nndl::data::mnist::FILES {
                f.read_verified(&dir)?;
            }
            eprintln!("MNIST in {}: all four files verified", dir.display());
            Ok(())
        }
        Command::Info(args) => {
            let info = nndl::info::gather();
            if args.json {
                print_json(&info)
            } else {
                print!("{}", nndl::info::describe(&info));
                Ok(())
            }
        }
    }
}

fn train(model: ModelKind, args: &nndl::cli::TrainArgs) -> anyhow::Result<()> {
    let summary = nndl::run::command(model, args)?;
    if !args.common.output.quiet {
        eprintln!("{}", nndl::run::describe(&summary));
    }
    if args.common.output.json {
        print_json(&summary)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    // A panic inside libtorch or a bug still ends as one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("internal error");
        eprintln!("nndl: error: {}", one_line(msg));
    }));
    // Load libtorch_cuda.so before any tch call, so CUDA is seen when present.
    let _ = nndl::device::load_cuda_library();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("nndl: {}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("nndl: error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}
