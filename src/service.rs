//! Running under systemd: the notify protocol (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=…`, `WATCHDOG=1`) on `$NOTIFY_SOCKET`, and the
//! one-line status it reports. Without `NOTIFY_SOCKET` everything here is a
//! no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use jiff::Timestamp;

use crate::api::board::Overview;
use crate::api::client::relative;

/// Variables of the protocol, which a restic or hook started by us must not
/// inherit (it would talk to systemd in the daemon's name).
pub const NOTIFY_VARIABLES: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Where the daemon tells systemd how it is.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC`/`WATCHDOG_PID` as systemd
    /// sets them; `env` reads a variable.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Notifier {
        let target = env("NOTIFY_SOCKET").and_then(|path| {
            // `@name` is a socket in the abstract namespace.
            let address = match path.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&path),
            };
            Some((UnixDatagram::unbound().ok()?, address.ok()?))
        });
        let ours =
            env("WATCHDOG_PID").is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog = env("WATCHDOG_USEC")
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && ours && target.is_some())
            // Twice per period, as sd_watchdog_enabled(3) advises.
            .map(|usec| Duration::from_micros(usec) / 2);
        Notifier { target, watchdog }
    }

    /// Whether anyone listens (`NOTIFY_SOCKET` is set).
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1`, when systemd watches us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `message` (lines of `KEY=VALUE`). Best effort: a systemd that
    /// went away must not take the daemon with it.
    pub fn notify(&self, message: &str) {
        if let Some((socket, address)) = &self.target {
            let _ = socket.send_to_addr(message.as_bytes(), address);
        }
    }
}

/// The `STATUS=` line: `7 jobs, 1 running, 1 failing; next: ExampleBackup in
/// 3h` (with `, 2 invalid` when there are any).
pub fn status_line(summary: &Overview, now: Timestamp) -> String {
    let mut line = format!(
        "{} job{}, {} running, {} failing",
        summary.jobs,
        if summary.jobs == 1 { "" } else { "s" },
        summary.running,
        summary.failing
    );
    if summary.invalid > 0 {
        line.push_str(&format!(", {} invalid", summary.invalid));
    }
    if let Some((name, at)) = &summary.next {
        line.push_str(&format!("; next: {name} {}", relative(*at, now)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_counts_and_names_the_next_run() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let summary = Overview {
            jobs: 7,
            running: 1,
            failing: 1,
            invalid: 0,
            next: Some((
                "ExampleBackup".into(),
                now + jiff::SignedDuration::from_hours(3),
            )),
        };
        assert_eq!(
            status_line(&summary, now),
            "7 jobs, 1 running, 1 failing; next: ExampleBackup in 3h"
        );
        let summary = Overview {
            jobs: 1,
            invalid: 1,
            ..Overview::default()
        };
        assert_eq!(
            status_line(&summary, now),
            "1 job, 0 running, 0 failing, 1 invalid"
        );
    }

    #[test]
    fn the_watchdog_is_ours_only_with_a_socket_and_our_pid() {
        let pid = std::process::id().to_string();
        let vars = |list: Vec<(&'static str, String)>| {
            move |key: &str| list.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        };
        let env = vars(vec![
            ("NOTIFY_SOCKET", "/run/x".into()),
            ("WATCHDOG_USEC", "60000000".into()),
            ("WATCHDOG_PID", pid.clone()),
        ]);
        let notifier = Notifier::from_env(&env);
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(30)));
        let env = vars(vec![
            ("NOTIFY_SOCKET", "/run/x".into()),
            ("WATCHDOG_USEC", "60000000".into()),
            ("WATCHDOG_PID", "1".into()),
        ]);
        assert_eq!(Notifier::from_env(&env).watchdog_interval(), None);
        let env = vars(vec![("WATCHDOG_USEC", "60000000".into())]);
        assert_eq!(Notifier::from_env(&env).watchdog_interval(), None);
        // Without a socket, notifying does nothing (and does not fail).
        Notifier::from_env(&env).notify("READY=1");
    }
}
