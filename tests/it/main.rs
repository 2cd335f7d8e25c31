//! Integration tests: the real `restic-cronned` and `rckeyutil` binaries, a
//! fake restic for faults, the real restic against repositories in temp
//! directories, and a real gnome-keyring on a private session bus.

mod api; // /job, every error status with and without a token, HEAD, bodies
mod calendar; // cron schedules: second boundaries, catch-up, --check
mod chromium; // headless chromium: bounded runs, and a browser driven over a pipe
mod clock; // the wall clock jumping (a suspend) under sleeping jobs: libfaketime, and the offset file
mod control; // control URLs, reload, SIGTERM and SIGHUP
mod files; // job files, config file, command line and --check
mod fuzz; // generated input for the parsers and the router: no panics
mod hardening; // floods, planted links, task limits, blocking files, log rotation
mod history; // run history across restarts, HistoryRuns, torn lines, planted links; log levels
mod hooks; // Before, OnSuccess, OnFailure, After: failures, order, environment, stops, limits, real restic
mod interrupted; // a run the daemon's end interrupted runs again once; a stopped one never
mod keyring; // rckeyutil and job passwords: Secret Service, kernel keyring, secrecy
mod migration; // the later Go original's flags, flat config, cron and "" timers, Wg
mod monitoring; // healthcheck pings to a local stand-in for healthchecks.io
mod notify; // notifications to local receivers: events, formats, dead receivers, secrets, stale
mod packaging; // scripts/install.sh into a temp root: files, modes, units, uninstall
mod page; // the status page: headers, token, rendered and clicked in chromium
mod preconditions; // disks that must be mounted, hosts that must answer: checking, skipped
mod probe; // --check --probe with the real restic: ok, each failure on its line, no lock, nothing written
mod rccommand; // the client against a live daemon: commands, discovery, exit codes
mod real_restic; // backups, forgets, stops and locks with real restic 0.14 and 0.18
mod reasons; // why a run failed, with the real restic: a wrong password, a server that is down
mod repository; // one restic per repository, restic exit codes, UnlockStale
mod robustness; // thousands of hostile requests and slow clients; the daemon goes on
mod run_once; // --run NAME: its line and exit code, no state file, no follow-ups, SIGINT with real restic
mod scheduling; // intervals, state-file start cases, retries, follow-ups
mod service; // systemd notify and watchdog, journald priorities, without systemd
mod support; // temp environments, the daemon under test, HTTP client
