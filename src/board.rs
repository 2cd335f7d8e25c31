//! The status board: every job thread publishes a snapshot of itself here,
//! and the HTTP thread reads snapshots without ever asking a busy job.
//!
//! The mutex is held only to clone or replace an entry, never across I/O.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::Value;

use crate::history;
use crate::job_file::{Entry, Job};
use crate::outcome::{HookRecord, Outcome, Reason, RunRecord};
use crate::preconditions::Preconditions;
use crate::progress::{Progress, Summary};
use crate::restic;
use crate::schedule::{RetryTimer, Schedule};

/// How many runs `/job` lists.
pub const RUNS_KEPT: usize = 20;

/// A job's status as `/queue` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    /// Its preconditions are being checked (SPEC §3.1).
    Checking,
    Working,
    Stopped,
    Invalid,
}

/// What [`Board::overview`] counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overview {
    pub jobs: usize,
    pub running: usize,
    /// Jobs whose last run failed (they have failures in a row).
    pub failing: usize,
    pub invalid: usize,
    /// The waiting job that runs next, and when.
    pub next: Option<(String, Timestamp)>,
}

/// Finished runs by outcome, in the order of [`Outcome::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts([u64; Outcome::ALL.len()]);

impl RunCounts {
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome as usize]
    }

    fn add(&mut self, outcome: Outcome) {
        self.0[outcome as usize] += 1;
    }
}

/// What a job thread publishes about itself.
#[derive(Clone, Debug)]
pub struct JobStatus {
    /// Identifies the thread that owns this entry, so a thread that is
    /// being retired cannot overwrite the entry of its successor.
    pub owner: u64,
    pub name: String,
    pub status: Status,
    pub job: Option<Arc<Job>>,
    pub current_retry: u32,
    pub progress: f64,
    /// restic's latest `status` line while a `--json` backup runs.
    pub progress_detail: Option<Progress>,
    /// Runs since the daemon started, by outcome, for `/metrics`.
    pub runs_total: RunCounts,
    pub wait_start: Option<Timestamp>,
    pub wait_end: Option<Timestamp>,
    pub next_run: Option<Timestamp>,
    pub running_since: Option<Timestamp>,
    /// The repository, credentials masked.
    pub repository: Option<String>,
    /// The job holding the repository this job waits for.
    pub waiting_for: Option<String>,
    pub runs: VecDeque<Arc<RunRecord>>,
    pub last_success: Option<Timestamp>,
    pub consecutive_failures: u32,
    /// The last success is older than `StaleAfter` (SPEC §6.5).
    pub stale: bool,
    /// The job's history file and its `HistoryRuns`, for `/job?runs=K`.
    pub history: Option<(PathBuf, usize)>,
    pub error: Option<String>,
}

impl JobStatus {
    /// An entry named `name` with `status` and nothing else known yet.
    fn empty(name: String, status: Status) -> JobStatus {
        JobStatus {
            owner: 0,
            name,
            status,
            job: None,
            current_retry: 0,
            progress: 0.0,
            progress_detail: None,
            runs_total: RunCounts::default(),
            wait_start: None,
            wait_end: None,
            next_run: None,
            running_since: None,
            repository: None,
            waiting_for: None,
            runs: VecDeque::new(),
            last_success: None,
            consecutive_failures: 0,
            stale: false,
            history: None,
            error: None,
        }
    }

    /// A fresh entry for a valid job.
    pub fn new(owner: u64, job: Arc<Job>) -> JobStatus {
        JobStatus {
            owner,
            job: Some(job.clone()),
            ..JobStatus::empty(job.name.to_string(), Status::Waiting)
        }
    }

    /// An entry for a file that failed validation.
    pub fn invalid(entry: &Entry) -> JobStatus {
        let errors = match &entry.job {
            Ok(_) => String::new(),
            Err(problems) => problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        };
        JobStatus {
            error: Some(errors),
            ..JobStatus::empty(entry.name.clone(), Status::Invalid)
        }
    }

    /// Adds a finished run, keeping the newest [`RUNS_KEPT`].
    pub fn record(&mut self, run: RunRecord) {
        self.runs_total.add(run.outcome);
        self.runs.push_front(Arc::new(run));
        self.runs.truncate(RUNS_KEPT);
    }

    /// Shows the runs of the history (oldest first) from before the
    /// daemon started, without counting them as runs since.
    pub fn restore(&mut self, runs: &[RunRecord]) {
        for run in runs.iter().rev().take(RUNS_KEPT).rev() {
            self.runs.push_front(Arc::new(run.clone()));
        }
        self.runs.truncate(RUNS_KEPT);
        let succeeded = runs.iter().rev().find(|r| r.outcome.succeeded());
        if let Some(run) = succeeded {
            self.last_success = self.last_success.max(Some(run.end));
        }
        if self.error.is_none()
            && let Some(last) = runs.last()
        {
            self.error = last.error.clone();
        }
    }
}

/// Shared snapshots of every job, keyed by file name (the queue's order).
#[derive(Clone)]
pub struct Board {
    entries: Arc<Mutex<BTreeMap<String, JobStatus>>>,
    directory: Arc<str>,
    /// Notifications that failed every attempt, for `/metrics`.
    notifications_failed: Arc<AtomicU64>,
}

impl Board {
    pub fn new(directory: &str) -> Board {
        Board {
            entries: Arc::default(),
            directory: directory.into(),
            notifications_failed: Arc::default(),
        }
    }

    /// The counter of notifications that failed every attempt, which the
    /// notifier counts in and `/metrics` shows.
    pub fn notifications_failed(&self) -> &Arc<AtomicU64> {
        &self.notifications_failed
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, JobStatus>> {
        // A panic while holding the lock leaves plain data behind; keep
        // serving it rather than taking the whole daemon down.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts or replaces the entry for `file_name`.
    pub fn insert(&self, file_name: &str, status: JobStatus) {
        self.lock().insert(file_name.to_string(), status);
    }

    pub fn remove(&self, file_name: &str) {
        self.lock().remove(file_name);
    }

    /// Changes the entry for `file_name` if `owner` still owns it.
    pub fn update(&self, file_name: &str, owner: u64, change: impl FnOnce(&mut JobStatus)) {
        if let Some(entry) = self.lock().get_mut(file_name).filter(|e| e.owner == owner) {
            change(entry);
        }
    }

    /// The status of the job called `name`.
    pub fn status_of(&self, name: &str) -> Option<Status> {
        self.lock()
            .values()
            .find(|e| e.name == name)
            .map(|e| e.status)
    }

    /// A copy of every entry, in queue order.
    pub fn snapshot(&self) -> Vec<JobStatus> {
        self.lock().values().cloned().collect()
    }

    /// Counts over every job, and the next one due, for the service's status
    /// line; under the lock, without cloning any entry.
    pub fn overview(&self) -> Overview {
        let mut overview = Overview::default();
        for entry in self.lock().values() {
            overview.jobs += 1;
            match entry.status {
                Status::Working => overview.running += 1,
                Status::Invalid => overview.invalid += 1,
                Status::Waiting | Status::Checking | Status::Stopped => {}
            }
            if entry.consecutive_failures > 0 {
                overview.failing += 1;
            }
            let next = entry.next_run.filter(|_| entry.status == Status::Waiting);
            if let Some(at) = next
                && overview
                    .next
                    .as_ref()
                    .is_none_or(|(_, soonest)| at < *soonest)
            {
                overview.next = Some((entry.name.clone(), at));
            }
        }
        overview
    }

    /// The body of `/job?name=NAME&runs=K`: the job's `/queue` entry plus
    /// `runs`, its last K runs (at most `HistoryRuns`; beyond the
    /// [`RUNS_KEPT`] in memory from its history file) newest first with
    /// their output tails. `None` when no job has that name.
    pub fn job_json(&self, name: &str, runs: usize) -> Option<String> {
        #[derive(Serialize)]
        struct JobDetail<'a> {
            #[serde(flatten)]
            entry: QueueEntry<'a>,
            runs: Vec<RunJson<'a>>,
        }
        // Clone only this entry (its runs are `Arc`s), then serialize
        // without the lock.
        let status = self.lock().values().find(|e| e.name == name).cloned()?;
        let tz = TimeZone::system();
        // More runs than the board keeps come from the history file (with
        // its shorter output tails), never more than it keeps.
        let runs = match &status.history {
            Some((_, keep)) => runs.min(*keep),
            None => runs,
        };
        let older = match &status.history {
            Some((path, keep)) if runs > status.runs.len() => {
                history::read(path, runs.min(*keep)).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let shown: Vec<&RunRecord> = if older.len() > status.runs.len() {
            older.iter().rev().collect()
        } else {
            status.runs.iter().map(|r| r.as_ref()).take(runs).collect()
        };
        let detail = JobDetail {
            entry: queue_entry(&status, &tz),
            runs: shown.into_iter().map(|r| run_json(r, true, &tz)).collect(),
        };
        let mut body = serde_json::to_string(&detail).expect("a job always serializes");
        body.push('\n');
        Some(body)
    }

    /// The body of `/queue`.
    pub fn queue_json(&self) -> String {
        #[derive(Serialize)]
        struct Queue<'a> {
            #[serde(rename = "Jobs")]
            jobs: Vec<QueueEntry<'a>>,
            #[serde(rename = "Wg")]
            wait_group: WaitGroup,
            #[serde(rename = "Directory")]
            directory: &'a str,
        }
        let snapshot = self.snapshot();
        let tz = TimeZone::system();
        let queue = Queue {
            jobs: snapshot.iter().map(|s| queue_entry(s, &tz)).collect(),
            wait_group: WaitGroup {},
            directory: &self.directory,
        };
        let mut body = serde_json::to_string(&queue).expect("the queue always serializes");
        body.push('\n');
        body
    }
}

/// `"Wg": {}` in `/queue`. The Go original serialised its queue struct
/// whole, `sync.WaitGroup` included, which has no exported fields; clients
/// that decode into that struct may expect the key (SPEC §5). Braces, not
/// a unit struct: serde writes a unit struct as `null`.
#[derive(Serialize)]
struct WaitGroup {}

/// Nanoseconds as the original's `/queue` gave durations; -1 s for "none".
fn nanos(d: Option<std::time::Duration>) -> i128 {
    d.map_or(-1_000_000_000, |d| d.as_nanos() as i128)
}

fn unix_nanos(t: Option<Timestamp>) -> i128 {
    t.map_or(0, |t| t.as_nanosecond())
}

/// RFC 3339 in the local offset; `tz` is looked up once per answer, not
/// once per time (a thousand jobs have thousands of times).
fn time(t: Timestamp, tz: &TimeZone) -> String {
    t.display_with_offset(tz.to_offset(t)).to_string()
}

/// A run as `/queue` (`lastRun`) and `/job` show it.
#[derive(Serialize)]
struct RunJson<'a> {
    start: String,
    end: String,
    outcome: Outcome,
    #[serde(rename = "exitCode")]
    exit_code: Option<i32>,
    error: Option<&'a str>,
    #[serde(rename = "outputTail", skip_serializing_if = "Option::is_none")]
    output_tail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a Summary>,
    reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    hooks: &'a [HookRecord],
}

fn run_json<'a>(run: &'a RunRecord, with_output: bool, tz: &TimeZone) -> RunJson<'a> {
    RunJson {
        start: time(run.start, tz),
        end: time(run.end, tz),
        outcome: run.outcome,
        exit_code: run.exit_code,
        error: run.error.as_deref(),
        output_tail: with_output.then_some(run.output_tail.as_str()),
        summary: run.summary.as_ref(),
        reason: run.reason,
        snapshot: run.snapshot.as_deref(),
        hooks: &run.hooks,
    }
}

/// One job of `/queue`: the original's fields, then ours.
#[derive(Serialize)]
struct QueueEntry<'a> {
    #[serde(rename = "JobName")]
    job_name: &'a str,
    status: Status,
    #[serde(rename = "regularTimer")]
    regular_timer: i128,
    #[serde(rename = "retryTimer")]
    retry_timer: i128,
    #[serde(rename = "maxFailedRetries")]
    max_failed_retries: i64,
    #[serde(rename = "CurrentRetry")]
    current_retry: u32,
    progress: f64,
    #[serde(rename = "progressDetail")]
    progress_detail: Option<&'a Progress>,
    #[serde(rename = "WaitStart")]
    wait_start: i128,
    #[serde(rename = "WaitEnd")]
    wait_end: i128,
    #[serde(rename = "NextJob")]
    next_job: Value,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Service")]
    service: &'a str,
    #[serde(rename = "ResticPath")]
    restic_path: &'a str,
    #[serde(rename = "ResticArguments")]
    /// With passwords in repository URLs masked.
    restic_arguments: Option<Vec<Cow<'a, str>>>,
    /// The later original's precondition keys, where it put them, for jobs
    /// that have preconditions only (SPEC §5).
    #[serde(rename = "Preconditions", skip_serializing_if = "Option::is_none")]
    preconditions: Option<PreconditionsJson<'a>>,
    /// Seconds, as the original's integer; a fraction only when the job
    /// file gave one (`"1500ms"`).
    #[serde(rename = "CheckPrecondsEvery", skip_serializing_if = "Option::is_none")]
    check_preconds_every: Option<serde_json::Number>,
    #[serde(
        rename = "CheckPrecondsMaxTimes",
        skip_serializing_if = "Option::is_none"
    )]
    check_preconds_max_times: Option<u32>,
    schedule: Option<String>,
    #[serde(rename = "nextRun")]
    next_run: Option<String>,
    repository: Option<&'a str>,
    #[serde(rename = "WaitingFor")]
    waiting_for: Option<&'a str>,
    #[serde(rename = "lastRun")]
    last_run: Option<RunJson<'a>>,
    #[serde(rename = "lastSuccess")]
    last_success: Option<String>,
    #[serde(rename = "consecutiveFailures")]
    consecutive_failures: u32,
    stale: bool,
    /// When the running job's run began (absent when it is not running).
    #[serde(rename = "runningSince", skip_serializing_if = "Option::is_none")]
    running_since: Option<String>,
    error: Option<&'a str>,
}

/// `Preconditions` in `/queue`, in the original's encoding: an empty list
/// is `null`, as Go wrote its nil slices.
#[derive(Serialize)]
struct PreconditionsJson<'a> {
    #[serde(rename = "PathesMust")]
    paths: Option<Vec<Cow<'a, str>>>,
    #[serde(rename = "HostsMustRoute")]
    hosts_route: Option<&'a [String]>,
    #[serde(rename = "HostsMustConnect")]
    hosts_connect: Option<Vec<HostAndPortJson<'a>>>,
}

#[derive(Serialize)]
struct HostAndPortJson<'a> {
    #[serde(rename = "Host")]
    host: &'a str,
    #[serde(rename = "Port")]
    port: u16,
}

fn preconditions_json(p: &Preconditions) -> PreconditionsJson<'_> {
    PreconditionsJson {
        paths: (!p.paths.is_empty()).then(|| p.paths.iter().map(|p| p.to_string_lossy()).collect()),
        hosts_route: (!p.hosts_route.is_empty()).then_some(p.hosts_route.as_slice()),
        hosts_connect: (!p.hosts_connect.is_empty()).then(|| {
            p.hosts_connect
                .iter()
                .map(|(host, port)| HostAndPortJson { host, port: *port })
                .collect()
        }),
    }
}

/// Whole seconds as an integer (what the original's clients decode into an
/// `int`), other durations as a fraction.
fn seconds(d: std::time::Duration) -> serde_json::Number {
    if d.subsec_nanos() == 0 {
        d.as_secs().into()
    } else {
        serde_json::Number::from_f64(d.as_secs_f64()).unwrap_or_else(|| d.as_secs().into())
    }
}

fn queue_entry<'a>(s: &'a JobStatus, tz: &TimeZone) -> QueueEntry<'a> {
    let job = s.job.as_deref();
    let keyring = job.and_then(|j| j.keyring.as_ref());
    let next_job = job.map_or(Value::Null, |j| j.next_job_raw.clone());
    let preconditions = job.and_then(|j| j.preconditions.as_ref());
    QueueEntry {
        job_name: &s.name,
        status: s.status,
        regular_timer: match job.and_then(|j| j.schedule.as_ref()) {
            Some(Schedule::Interval(d)) => nanos(Some(*d)),
            Some(Schedule::Calendar(_)) => 0,
            None => nanos(None),
        },
        retry_timer: match job.and_then(|j| j.retry_timer.as_ref()) {
            Some(RetryTimer::After(d)) => nanos(Some(*d)),
            Some(RetryTimer::Calendar(_)) => 0,
            None => nanos(None),
        },
        max_failed_retries: job.map_or(0, |j| j.max_failed_retries),
        current_retry: s.current_retry,
        progress: s.progress,
        progress_detail: s.progress_detail.as_ref(),
        wait_start: unix_nanos(s.wait_start),
        wait_end: unix_nanos(s.wait_end),
        next_job: if next_job.is_null() {
            "".into()
        } else {
            next_job
        },
        username: keyring.map_or("", |k| &k.username),
        service: keyring.map_or("", |k| &k.service),
        restic_path: job.map_or("", |j| &j.restic_path),
        restic_arguments: job.map(|j| {
            j.restic_arguments
                .iter()
                .map(|a| restic::mask_credentials(a))
                .collect()
        }),
        preconditions: preconditions.map(preconditions_json),
        check_preconds_every: preconditions.map(|p| seconds(p.every)),
        check_preconds_max_times: preconditions.map(|p| p.rounds),
        schedule: job.and_then(|j| j.schedule.as_ref()).map(|s| s.to_string()),
        next_run: s.next_run.map(|t| time(t, tz)),
        repository: s.repository.as_deref(),
        waiting_for: s.waiting_for.as_deref(),
        last_run: s.runs.front().map(|r| run_json(r, false, tz)),
        last_success: s.last_success.map(|t| time(t, tz)),
        consecutive_failures: s.consecutive_failures,
        stale: s.stale,
        running_since: s.running_since.map(|t| time(t, tz)),
        error: s.error.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_updates_an_entry() {
        let board = Board::new("/jobs");
        let entry = Entry {
            path: "/jobs/a.json".into(),
            name: "a".into(),
            job: Err(Vec::new()),
            warnings: Vec::new(),
        };
        let mut status = JobStatus::invalid(&entry);
        status.owner = 7;
        board.insert("a.json", status);
        board.update("a.json", 6, |s| s.status = Status::Working);
        assert_eq!(board.status_of("a"), Some(Status::Invalid));
        board.update("a.json", 7, |s| s.status = Status::Working);
        assert_eq!(board.status_of("a"), Some(Status::Working));
        let queue: Value = serde_json::from_str(&board.queue_json()).unwrap();
        assert_eq!(queue["Jobs"][0]["regularTimer"], -1_000_000_000);
        assert_eq!(queue["Directory"], "/jobs");
    }

    #[test]
    fn the_queue_has_the_originals_wait_group_and_timers_in_its_units() {
        let dir = tempfile::tempdir().unwrap();
        let board = Board::new("/jobs");
        let timers = [
            ("calendar", r#""0 0 2 * * *""#, r#""0 0 * * * *""#),
            ("every", r#""@every 4s""#, r#""@every 1s""#),
            ("seconds", "86400", "3600"),
            ("none", r#""""#, r#""""#),
        ];
        for (name, regular, retry) in timers {
            let path = dir.path().join(format!("{name}.json"));
            let text = format!(
                r#"{{"regularTimer": {regular}, "retryTimer": {retry}, "ResticArguments": ["x"]}}"#
            );
            std::fs::write(&path, text).unwrap();
            let job = crate::job_file::load_file(&path).job.unwrap();
            board.insert(&format!("{name}.json"), JobStatus::new(1, job));
        }
        let body = board.queue_json();
        // In the original's order: Jobs, Wg, Directory.
        let wait_group = body.find(r#"],"Wg":{},"Directory":"/jobs"}"#);
        assert!(
            body.starts_with(r#"{"Jobs":["#) && wait_group.is_some(),
            "{body}"
        );
        let queue: Value = serde_json::from_str(&body).unwrap();
        let timers: Vec<(&str, i128, i128)> = queue["Jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                let ns = |key: &str| j[key].as_i64().unwrap() as i128;
                (
                    j["JobName"].as_str().unwrap(),
                    ns("regularTimer"),
                    ns("retryTimer"),
                )
            })
            .collect();
        let s = 1_000_000_000;
        assert_eq!(
            timers,
            [
                ("calendar", 0, 0),
                ("every", 4 * s, s),
                ("none", -s, -s),
                ("seconds", 86_400 * s, 3_600 * s),
            ]
        );
    }

    #[test]
    fn the_queue_has_the_originals_precondition_keys_for_jobs_that_have_them() {
        let dir = tempfile::tempdir().unwrap();
        let board = Board::new("/jobs");
        let jobs = [
            (
                "checked",
                r#""CheckPrecondsEvery": 20, "CheckPrecondsMaxTimes": 100,
                   "Preconditions": {"PathesMust": ["/tmp/backup"],
                       "HostsMustConnect": [{"Host": "nas.local", "Port": 22}]}"#,
            ),
            (
                "fraction",
                r#""CheckPrecondsEvery": "1500ms", "Preconditions": {"HostsMustRoute": ["localhost"]}"#,
            ),
            (
                "unchecked",
                r#""CheckPrecondsEvery": 20, "CheckPrecondsMaxTimes": 100"#,
            ),
        ];
        for (name, keys) in jobs {
            let path = dir.path().join(format!("{name}.json"));
            let text = format!(r#"{{"ResticArguments": ["x"], {keys}}}"#);
            std::fs::write(&path, text).unwrap();
            let job = crate::job_file::load_file(&path).job.unwrap();
            board.insert(&format!("{name}.json"), JobStatus::new(1, job));
        }
        let body = board.queue_json();
        // In the original's place and order: after ResticArguments.
        assert!(
            body.contains(
                r#""ResticArguments":["x"],"Preconditions":{"PathesMust":["/tmp/backup"],"HostsMustRoute":null,"HostsMustConnect":[{"Host":"nas.local","Port":22}]},"CheckPrecondsEvery":20,"CheckPrecondsMaxTimes":100,"#
            ),
            "{body}"
        );
        let queue: Value = serde_json::from_str(&body).unwrap();
        let fraction = &queue["Jobs"][1];
        assert_eq!(fraction["Preconditions"]["PathesMust"], Value::Null);
        assert_eq!(fraction["Preconditions"]["HostsMustRoute"][0], "localhost");
        assert_eq!(fraction["CheckPrecondsEvery"], 1.5);
        assert_eq!(fraction["CheckPrecondsMaxTimes"], 1);
        let unchecked = queue["Jobs"][2].as_object().unwrap();
        for key in [
            "Preconditions",
            "CheckPrecondsEvery",
            "CheckPrecondsMaxTimes",
        ] {
            assert!(!unchecked.contains_key(key), "{key}: {unchecked:?}");
        }
        // `/job` shows them as `/queue` does.
        let job: Value =
            serde_json::from_str(&board.job_json("checked", RUNS_KEPT).unwrap()).unwrap();
        assert_eq!(job["Preconditions"], queue["Jobs"][0]["Preconditions"]);
        assert_eq!(job["CheckPrecondsEvery"], 20);
    }

    fn run(second: i64, outcome: Outcome, output: &str) -> RunRecord {
        RunRecord {
            start: Timestamp::from_second(second).unwrap(),
            end: Timestamp::from_second(second + 1).unwrap(),
            outcome,
            exit_code: Some(if outcome.succeeded() { 0 } else { 1 }),
            error: None,
            output_tail: output.into(),
            summary: None,
            reason: crate::outcome::Reason::Schedule,
            snapshot: None,
            hooks: Vec::new(),
        }
    }

    #[test]
    fn job_json_is_the_queue_entry_plus_the_newest_runs_first() {
        let board = Board::new("/jobs");
        let entry = Entry {
            path: "/jobs/a.json".into(),
            name: "a".into(),
            job: Err(Vec::new()),
            warnings: Vec::new(),
        };
        let mut status = JobStatus::invalid(&entry);
        for i in 0..25 {
            let outcome = if i % 2 == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            status.record(run(1_700_000_000 + i * 10, outcome, &format!("run {i}\n")));
        }
        board.insert("a.json", status);
        assert_eq!(board.job_json("b", RUNS_KEPT), None);
        let job: Value = serde_json::from_str(&board.job_json("a", RUNS_KEPT).unwrap()).unwrap();
        let queue: Value = serde_json::from_str(&board.queue_json()).unwrap();
        for (key, value) in queue["Jobs"][0].as_object().unwrap() {
            assert_eq!(&job[key], value, "{key}");
        }
        let runs = job["runs"].as_array().unwrap();
        assert_eq!(runs.len(), RUNS_KEPT);
        assert_eq!(runs[0]["outputTail"], "run 24\n");
        assert_eq!(runs[0]["outcome"], "success");
        assert_eq!(runs[1]["outcome"], "failure");
        assert_eq!(runs[1]["exitCode"], 1);
        assert_eq!(runs[19]["outputTail"], "run 5\n");
        assert!(queue["Jobs"][0]["lastRun"].get("outputTail").is_none());
        // `runs=K` lists fewer; more than the board keeps needs a history.
        let job: Value = serde_json::from_str(&board.job_json("a", 3).unwrap()).unwrap();
        assert_eq!(job["runs"].as_array().unwrap().len(), 3);
        let job: Value = serde_json::from_str(&board.job_json("a", 50).unwrap()).unwrap();
        assert_eq!(job["runs"].as_array().unwrap().len(), RUNS_KEPT);
    }
}
