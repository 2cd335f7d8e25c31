//! Healthcheck pings, in the protocol of healthchecks.io: `GET URL/start`
//! when a run starts, `POST URL/<exit code>` (or `URL/fail`) with the end of
//! the output when it ends. A few threads send them (each job's in order),
//! so a slow or dead ping URL never delays a job; every request has a 10 s
//! timeout, and a failed ping is logged, never fatal.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use log::{debug, warn};

use crate::outcome::{Outcome, RunRecord};
use crate::process;

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
/// one, in order; a dead ping host holds up only the jobs that share its
/// thread, and never a job itself.
const SENDERS: usize = 4;

/// Where jobs queue their pings (cheap to clone).
#[derive(Clone)]
pub struct PingSender {
    shared: Arc<Shared>,
}

impl PingSender {
    /// Queues `ping` on its job's thread, starting that thread with the
    /// first ping it gets (never blocks).
    pub fn send(&self, ping: Ping) {
        let index = ping
            .job
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
            % SENDERS;
        let mut workers = self.shared.workers();
        if workers.closed {
            warn!(
                "[{}] shutting down: healthcheck ping to {} not sent",
                ping.job,
                without_path(&ping.url)
            );
            return;
        }
        let queue = match &workers.queues[index] {
            Some(queue) => queue.clone(),
            None => match start_thread(&self.shared, &mut workers, index) {
                Ok(queue) => queue,
                Err(e) => {
                    // A thread limit (systemd TasksMax) costs this ping,
                    // not the job.
                    warn!(
                        "[{}] healthcheck ping to {} not sent: cannot start a thread: {e}",
                        ping.job,
                        without_path(&ping.url)
                    );
                    return;
                }
            },
        };
        // Unbounded: never blocks.
        let _ = queue.send(ping);
    }
}

/// What the pinger, its senders and its threads share.
struct Shared {
    /// Set at shutdown: pings still queued after this are dropped, so a
    /// dead ping URL cannot hold the daemon's exit up for long.
    give_up_at: OnceLock<Instant>,
    /// Locked only to queue a ping or start a thread, never while one is
    /// sent.
    workers: Mutex<Workers>,
}

impl Shared {
    fn workers(&self) -> MutexGuard<'_, Workers> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending threads, started one by one as pings need them: most
/// daemons have no job with a `Healthcheck` and start none (as
/// notifications do, src/notify.rs).
struct Workers {
    /// Set when the pinger is dropped: nothing more is queued.
    closed: bool,
    /// Built with the first thread, shared by all.
    agent: Option<ureq::Agent>,
    /// Each thread's queue; `None` until its first ping.
    queues: Vec<Option<Sender<Ping>>>,
    threads: Vec<JoinHandle<()>>,
}

/// The threads that send pings. Dropping it sends what is queued (for at
/// most [`TIMEOUT`] more), then joins them.
pub struct Pinger {
    shared: Arc<Shared>,
}

impl Pinger {
    /// A pinger; it starts no thread until the first ping.
    pub fn spawn() -> std::io::Result<Pinger> {
        Ok(Pinger {
            shared: Arc::new(Shared {
                give_up_at: OnceLock::new(),
                workers: Mutex::new(Workers {
                    closed: false,
                    agent: None,
                    queues: vec![None; SENDERS],
                    threads: Vec::new(),
                }),
            }),
        })
    }

    /// Where jobs queue their pings.
    pub fn sender(&self) -> PingSender {
        PingSender {
            shared: self.shared.clone(),
        }
    }

    #[cfg(test)]
    fn threads_started(&self) -> usize {
        self.shared.workers().threads.len()
    }
}

impl Pinger {
    /// At shutdown: what is not sent by `at` is dropped (the first deadline
    /// set counts; dropping the pinger sets one [`TIMEOUT`] from then).
    pub fn give_up_at(&self, at: Instant) {
        let _ = self.shared.give_up_at.set(at);
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let shared = &self.shared;
        let _ = shared.give_up_at.set(Instant::now() + TIMEOUT);
        let threads = {
            let mut workers = shared.workers();
            workers.closed = true;
            // Senders held by jobs that outlive us queue nothing more, so
            // dropping these queues ends each thread once it is empty.
            workers.queues.clear();
            std::mem::take(&mut workers.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Starts sending thread `index` and returns its queue.
fn start_thread(
    shared: &Arc<Shared>,
    workers: &mut Workers,
    index: usize,
) -> std::io::Result<Sender<Ping>> {
    let agent = workers.agent.get_or_insert_with(agent).clone();
    let (queue, pings) = unbounded();
    let thread_shared = shared.clone();
    let thread = thread::Builder::new()
        .name(format!("healthcheck {index}"))
        .spawn(move || send_all(&agent, pings, &thread_shared.give_up_at))?;
    workers.threads.push(thread);
    workers.queues[index] = Some(queue.clone());
    Ok(queue)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .user_agent(concat!("restic-cronned/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn send_all(agent: &ureq::Agent, pings: Receiver<Ping>, give_up_at: &OnceLock<Instant>) {
    for ping in pings {
        // At shutdown a ping gets what is left of the grace, not a fresh
        // timeout.
        let left = match give_up_at.get() {
            None => Some(TIMEOUT),
            Some(at) => at
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .map(|left| left.min(TIMEOUT)),
        };
        let Some(timeout) = left else {
            warn!(
                "[{}] shutting down: healthcheck ping to {} not sent",
                ping.job,
                without_path(&ping.url)
            );
            continue;
        };
        let result = match &ping.body {
            None => agent
                .get(&ping.url)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call(),
            Some(body) => agent
                .post(&ping.url)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(body.as_bytes()),
        };
        // The path holds the check's secret UUID: logs name the host only.
        let host = without_path(&ping.url);
        match result {
            Ok(_) => debug!("[{}] pinged {host}", ping.job),
            Err(e) => warn!("[{}] healthcheck ping to {host} failed: {e}", ping.job),
        }
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
            reason: crate::outcome::Reason::Schedule,
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
    fn threads_start_with_the_first_ping_and_end_with_the_pinger() {
        let pinger = Pinger::spawn().unwrap();
        assert_eq!(pinger.threads_started(), 0, "no thread before a ping");
        // Port 9 on localhost: refused at once, so the thread is quick.
        let url = "http://127.0.0.1:9/uuid";
        pinger.sender().send(Ping::start("a", url));
        pinger.sender().send(Ping::start("a", url));
        assert_eq!(pinger.threads_started(), 1, "one thread per queue");
        let sender = pinger.sender();
        drop(pinger);
        // A job that outlives the pinger queues nothing and starts nothing.
        sender.send(Ping::start("b", url));
        assert!(sender.shared.workers().threads.is_empty());
    }

    #[test]
    fn urls_are_checked() {
        assert!(validate_url("https://hc-ping.com/x").is_ok());
        assert!(validate_url("http://127.0.0.1:8000/x").is_ok());
        assert!(validate_url("ftp://x").is_err());
        assert!(validate_url("https:///x").is_err());
    }
}
