//! Healthcheck pings, in the protocol of healthchecks.io: `GET URL/start`
//! when a run starts, `POST URL/<exit code>` (or `URL/fail`) with the end of
//! the output when it ends. A few threads send them (each job's in order),
//! so a slow or dead ping URL never delays a job; every request has a 10 s
//! timeout, and a failed ping is logged, never fatal.

use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::delivery::{Courier, NotQueued, Pool, Queue, Settings};
use crate::job::outcome::{Outcome, RunRecord};
use crate::restic::process;

/// The most a request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the output an end ping carries.
const BODY_BYTES: usize = 10 * 1024;

/// A ping to send.
#[derive(Debug)]
pub struct Ping {
    pub job: String,
    pub url: String,
    pub body: Option<String>,
}

impl Ping {
    /// The ping for a run that starts.
    pub fn start(job: &str, base: &str) -> Ping {
        Ping {
            job: job.to_string(),
            url: join(base, "start"),
            body: None,
        }
    }

    /// The ping for a run that ended: `0` for a success, the exit code for a
    /// warning, failure or lock conflict that exited, `fail` for timeouts,
    /// stops and runs that never started or died by a signal.
    pub fn end(job: &str, base: &str, run: &RunRecord) -> Ping {
        let status = match (run.outcome, run.exit_code) {
            (Outcome::Success, _) => "0".to_string(),
            (Outcome::Warning | Outcome::Failure | Outcome::Locked, Some(code)) => code.to_string(),
            _ => "fail".to_string(),
        };
        let mut body = process::last_bytes(&run.output_tail, BODY_BYTES).to_string();
        if let Some(error) = &run.error {
            body.push_str(&format!(
                "restic-cronned: {}: {error}\n",
                run.outcome.as_str()
            ));
        }
        Ping {
            job: job.to_string(),
            url: join(base, &status),
            body: Some(body),
        }
    }
}

/// `base/what`, keeping a query string at the end.
fn join(base: &str, what: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (base, String::new()),
    };
    format!("{}/{what}{query}", path.trim_end_matches('/'))
}

/// How many threads send pings. A job's pings always go through the same
/// one, in order; each job has its own up to this many, then they share,
/// so a dead ping host holds up only the jobs that share its thread, and
/// never a job itself.
const SENDERS: usize = 4;

/// Where jobs queue their pings (cheap to clone).
#[derive(Clone)]
pub struct PingSender {
    queue: Queue<Ping>,
}

impl PingSender {
    /// Queues `ping` on its job's thread, starting that thread with the
    /// first ping it gets (never blocks).
    pub fn send(&self, ping: Ping) {
        let job = ping.job.clone();
        let host = without_path(&ping.url);
        match self.queue.send(&job, ping) {
            Ok(()) => {}
            Err(NotQueued::ShuttingDown) => {
                warn!("[{job}] shutting down: healthcheck ping to {host} not sent");
            }
            Err(why) => warn!("[{job}] healthcheck ping to {host} not sent: {why}"),
        }
    }
}

/// The threads that send pings, started one by one as pings need them:
/// most daemons have no job with a `Healthcheck` and start none. Dropping
/// it sends what is queued (for at most [`TIMEOUT`] more), then joins them.
pub struct Pinger {
    pool: Pool<Ping>,
}

impl Pinger {
    /// A pinger; it starts no thread until the first ping.
    pub fn spawn() -> std::io::Result<Pinger> {
        let settings = Settings {
            thread_name: "healthcheck",
            max_threads: SENDERS,
            timeout: TIMEOUT,
            shutdown_grace: TIMEOUT,
            agent,
        };
        Ok(Pinger {
            pool: Pool::new(settings, send),
        })
    }

    /// Where jobs queue their pings.
    pub fn sender(&self) -> PingSender {
        PingSender {
            queue: self.pool.queue(),
        }
    }

    /// At shutdown: what is not sent by `at` is dropped (the first deadline
    /// set counts; dropping the pinger sets one [`TIMEOUT`] from then).
    pub fn give_up_at(&self, at: Instant) {
        self.pool.give_up_at(at);
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .user_agent(concat!("restic-cronned/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn send(courier: &Courier, ping: Ping) {
    // The path holds the check's secret UUID: logs name the host only.
    let host = without_path(&ping.url);
    let Some(timeout) = courier.time_left() else {
        warn!(
            "[{}] shutting down: healthcheck ping to {host} not sent",
            ping.job
        );
        return;
    };
    let result = match &ping.body {
        None => courier
            .agent
            .get(&ping.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call(),
        Some(body) => courier
            .agent
            .post(&ping.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body.as_bytes()),
    };
    match result {
        Ok(_) => debug!("[{}] pinged {host}", ping.job),
        Err(e) => warn!("[{}] healthcheck ping to {host} failed: {e}", ping.job),
    }
}

/// `https://hc-ping.com/UUID/start` → `https://hc-ping.com/…`.
fn without_path(url: &str) -> String {
    let host_start = url.find("://").map_or(0, |i| i + 3);
    match url[host_start..].find('/') {
        Some(slash) => format!("{}/…", &url[..host_start + slash]),
        None => url.to_string(),
    }
}

/// Checks a `Healthcheck` value from a job file.
pub fn validate_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn run(outcome: Outcome, exit_code: Option<i32>) -> RunRecord {
        RunRecord {
            start: Timestamp::UNIX_EPOCH,
            end: Timestamp::UNIX_EPOCH,
            outcome,
            exit_code,
            error: None,
            output_tail: "x".repeat(BODY_BYTES + 10),
            summary: None,
            reason: crate::job::outcome::Reason::Schedule,
            snapshot: None,
            hooks: Vec::new(),
        }
    }

    #[test]
    fn end_pings_follow_the_protocol() {
        let base = "https://hc-ping.com/uuid/";
        let url = |o, c| Ping::end("j", base, &run(o, c)).url;
        assert_eq!(Ping::start("j", base).url, "https://hc-ping.com/uuid/start");
        assert_eq!(url(Outcome::Success, Some(0)), "https://hc-ping.com/uuid/0");
        assert_eq!(url(Outcome::Warning, Some(3)), "https://hc-ping.com/uuid/3");
        assert_eq!(url(Outcome::Failure, Some(1)), "https://hc-ping.com/uuid/1");
        assert_eq!(
            url(Outcome::Locked, Some(11)),
            "https://hc-ping.com/uuid/11"
        );
        assert_eq!(url(Outcome::Failure, None), "https://hc-ping.com/uuid/fail");
        assert_eq!(
            url(Outcome::Timeout, Some(130)),
            "https://hc-ping.com/uuid/fail"
        );
        assert_eq!(
            url(Outcome::Stopped, Some(130)),
            "https://hc-ping.com/uuid/fail"
        );
        let body = Ping::end("j", base, &run(Outcome::Success, Some(0)))
            .body
            .unwrap();
        assert_eq!(body.len(), BODY_BYTES);
        assert_eq!(join("http://h/p?rid=1", "start"), "http://h/p/start?rid=1");
        assert_eq!(
            without_path("https://hc-ping.com/uuid/0"),
            "https://hc-ping.com/…"
        );
    }

    #[test]
    fn threads_start_with_the_first_ping_of_each_job() {
        let pinger = Pinger::spawn().unwrap();
        assert_eq!(pinger.pool.threads_started(), 0, "no thread before a ping");
        // Port 9 on localhost: refused at once, so the thread is quick.
        let url = "http://127.0.0.1:9/uuid";
        pinger.sender().send(Ping::start("a", url));
        pinger.sender().send(Ping::start("a", url));
        assert_eq!(pinger.pool.threads_started(), 1, "one thread per job");
        pinger.sender().send(Ping::start("b", url));
        assert_eq!(pinger.pool.threads_started(), 2, "one thread per job");
    }

    #[test]
    fn urls_are_checked() {
        assert!(validate_url("https://hc-ping.com/x").is_ok());
        assert!(validate_url("http://127.0.0.1:8000/x").is_ok());
        assert!(validate_url("ftp://x").is_err());
        assert!(validate_url("https:///x").is_err());
    }
}
