//! Integration tests: the real `restic-cronned` and `rckeyutil` binaries, a
//! fake restic for faults, the real restic against repositories in temp
//! directories, and a real gnome-keyring on a private session bus.

mod control; // control URLs, reload, SIGTERM and SIGHUP
mod files; // job files, config file, command line and --check
mod keyring; // rckeyutil and job passwords: Secret Service, kernel keyring, secrecy
mod real_restic; // backups, forgets and stops with Debian's restic
mod scheduling; // intervals, state-file start cases, retries, follow-ups
mod support; // temp environments, the daemon under test, HTTP client
