//! `rccommand`: parses the command line, sends one command to the daemon,
//! and maps the outcome to an exit code.

use std::io::ErrorKind;
use std::process::ExitCode;

use restic_cronned::api::client::{self, Error, USAGE};

fn main() -> ExitCode {
    let args = match client::parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => return fail(&e),
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("rccommand {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let env = |name: &str| std::env::var(name).ok();
    match client::run(&args, &env, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &Error) -> ExitCode {
    match error {
        Error::Usage(message) => {
            eprintln!("rccommand: {message}; try --help");
            ExitCode::from(2)
        }
        Error::Config(_) => {
            eprintln!("rccommand: {error}");
            ExitCode::from(2)
        }
        // `rccommand queue | head -1`: the reader has what it wanted.
        Error::Output(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Error::Answer { .. } | Error::BadAnswer(_) | Error::Output(_) => {
            eprintln!("rccommand: {error}");
            ExitCode::from(1)
        }
        Error::Unreachable { .. } => {
            eprintln!("rccommand: {error}");
            ExitCode::from(3)
        }
    }
}
