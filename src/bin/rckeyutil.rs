//! `rckeyutil`: parses the command line, runs, and maps the outcome to an
//! exit code.

use std::process::ExitCode;

use restic_cronned::rckeyutil::{self, Error, USAGE};

fn main() -> ExitCode {
    let args = match rckeyutil::parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => return fail(&e),
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("rckeyutil {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match rckeyutil::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &Error) -> ExitCode {
    match error {
        Error::Usage(message) => {
            eprintln!("rckeyutil: {message}; try --help");
            ExitCode::from(2)
        }
        Error::Input(message) => {
            eprintln!("rckeyutil: {message}");
            ExitCode::from(2)
        }
        Error::Keyring(e) => {
            eprintln!("rckeyutil: {e}");
            ExitCode::from(1)
        }
        Error::Io(message) => {
            eprintln!("rckeyutil: {message}");
            ExitCode::from(1)
        }
    }
}
