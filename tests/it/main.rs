//! Integration tests: the real `restic-cronned` binary, a fake restic for
//! faults, and the real restic against repositories in temp directories.

mod api; // /job, every error status with and without a token, HEAD, bodies
mod control; // control URLs, reload, SIGTERM and SIGHUP
mod files; // job files, config file, command line and --check
mod rccommand; // the client against a live daemon: commands, discovery, exit codes
mod real_restic; // backups, forgets and stops with Debian's restic
mod robustness; // thousands of hostile requests and slow clients; the daemon goes on
mod scheduling; // intervals, state-file start cases, retries, follow-ups
mod support; // temp environments, the daemon under test, HTTP client
