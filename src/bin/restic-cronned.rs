//! The `restic-cronned` daemon: parses the command line, runs, and maps the
//! outcome to an exit code.

use std::process::ExitCode;

use restic_cronned::daemon::{self, Error, USAGE};
use restic_cronned::restic::process;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    // The daemon starts each child through its own binary (src/restic/process.rs):
    // this answers before anything else runs.
    if args.next_if(|arg| arg == process::EXEC_CHILD_ARG).is_some() {
        return process::exec_child(args);
    }
    process::start_children_through_this_binary();
    let args = match daemon::parse_args(args) {
        Ok(args) => args,
        Err(e) => return fail(&e),
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("restic-cronned {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match daemon::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &Error) -> ExitCode {
    match error {
        // Printed already, one line per problem.
        Error::CheckFailed | Error::RunFailed => {}
        Error::Usage(message) => eprintln!("restic-cronned: {message}; try --help"),
        other => eprintln!("restic-cronned: {other}"),
    }
    ExitCode::from(error.exit_code())
}
