//! The status board: every job publishes its status in an entry of its own,
//! which the HTTP thread reads without ever asking a busy job.
//!
//! One writer per entry: a job's thread writes its [`BoardEntry`] and nobody
//! else does (an invalid file's entry is written once, by the daemon that
//! read the file). The daemon only lists and unlists entries. Entries are
//! listed by file name (the queue's order) and found by job name, the one
//! name the API and the daemon's commands know a job by. No lock is held
//! across I/O.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

pub use crate::api::Status;
use crate::api::{self, JobDetail, NextJob, Queue, QueueEntry, Run, Time, WaitGroup};
use crate::config::job_file::{Entry, Job};
use crate::job::history;
use crate::job::outcome::{Outcome, RunRecord};
use crate::job::preconditions::Preconditions;
use crate::restic;
use crate::restic::progress::Progress;
use crate::schedule::{RetryTimer, Schedule};

/// How many runs `/job` lists.
pub const RUNS_KEPT: usize = 20;

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
    /// The job's name: fixed for the entry's life (a job renamed by a
    /// reload is a new job with a new entry).
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
    pub fn new(job: Arc<Job>) -> JobStatus {
        JobStatus {
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

/// One job's entry: its thread publishes into it, readers lock it briefly.
#[derive(Clone)]
pub struct BoardEntry(Arc<Mutex<Published>>);

struct Published {
    status: JobStatus,
    /// The job's `/queue` JSON, made at the first `/queue` after the job
    /// last published, and the generation of the time zone it was made in
    /// (see `Board::queue_tz`): a thousand idle jobs are not serialized
    /// again for every request.
    queue_json: Option<(u64, Arc<str>)>,
}

impl BoardEntry {
    pub fn new(status: JobStatus) -> BoardEntry {
        BoardEntry(Arc::new(Mutex::new(Published {
            status,
            queue_json: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Published> {
        // A panic while holding the lock leaves plain data behind; keep
        // serving it rather than taking the whole daemon down.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the entry; only the job that owns it calls this.
    pub fn publish(&self, change: impl FnOnce(&mut JobStatus)) {
        let mut published = self.lock();
        change(&mut published.status);
        published.queue_json = None;
    }

    /// Reads the entry.
    pub fn read<R>(&self, read: impl FnOnce(&JobStatus) -> R) -> R {
        read(&self.lock().status)
    }
}

/// The entries the board lists.
#[derive(Default)]
struct Listing {
    /// By file name (the queue's order): the job's name, which never
    /// changes for an entry, and the entry.
    by_file: BTreeMap<String, (String, BoardEntry)>,
    /// (job name, file name): finds a job by the name the API knows it by.
    /// A set of pairs, because two files that claim one `JobName` are both
    /// listed (both invalid).
    by_name: BTreeSet<(String, String)>,
}

/// Every job's entry, listed by the daemon.
#[derive(Clone)]
pub struct Board {
    listing: Arc<Mutex<Listing>>,
    /// The time zone of the entries' `/queue` JSON (its times carry their
    /// offsets) and its generation: JSON of an older one is made again.
    queue_tz: Arc<Mutex<(Option<TimeZone>, u64)>>,
    directory: Arc<str>,
    /// Notifications that failed every attempt, for `/metrics`.
    notifications_failed: Arc<AtomicU64>,
}

impl Board {
    pub fn new(directory: &str) -> Board {
        Board {
            listing: Arc::default(),
            queue_tz: Arc::default(),
            directory: directory.into(),
            notifications_failed: Arc::default(),
        }
    }

    /// The counter of notifications that failed every attempt, which the
    /// notifier counts in and `/metrics` shows.
    pub fn notifications_failed(&self) -> &Arc<AtomicU64> {
        &self.notifications_failed
    }

    fn listing(&self) -> MutexGuard<'_, Listing> {
        self.listing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists `entry` under `file_name`, in place of what was listed there.
    pub fn list(&self, file_name: &str, entry: BoardEntry) {
        let name = entry.read(|s| s.name.clone());
        let mut listing = self.listing();
        let old = listing
            .by_file
            .insert(file_name.to_string(), (name.clone(), entry));
        if let Some((old_name, _)) = old {
            listing.by_name.remove(&(old_name, file_name.to_string()));
        }
        listing.by_name.insert((name, file_name.to_string()));
    }

    /// Takes the entry of `file_name` off the board.
    pub fn unlist(&self, file_name: &str) {
        let mut listing = self.listing();
        if let Some((name, _)) = listing.by_file.remove(file_name) {
            listing.by_name.remove(&(name, file_name.to_string()));
        }
    }

    /// The file name and entry of the job called `name` (the first file
    /// when two files claim the name).
    pub fn find(&self, name: &str) -> Option<(String, BoardEntry)> {
        let listing = self.listing();
        let (found, file_name) = listing
            .by_name
            .range((name.to_string(), String::new())..)
            .next()?;
        let (_, entry) = listing.by_file.get(file_name).filter(|_| found == name)?;
        Some((file_name.clone(), entry.clone()))
    }

    /// Calls `read` with every entry, in queue order, all locked at once so
    /// that the answer is one moment's; nothing is copied. The listing is
    /// not held meanwhile, so the daemon may go on listing.
    pub fn read_all<R>(&self, read: impl FnOnce(&[&JobStatus]) -> R) -> R {
        let entries = self.entries();
        let guards: Vec<MutexGuard<'_, Published>> = entries.iter().map(|e| e.lock()).collect();
        let statuses: Vec<&JobStatus> = guards.iter().map(|g| &g.status).collect();
        read(&statuses)
    }

    /// Every entry, in queue order, with the listing unlocked again.
    fn entries(&self) -> Vec<BoardEntry> {
        let listing = self.listing();
        listing
            .by_file
            .values()
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    /// Counts over every job, and the next one due, for the service's status
    /// line; under the lock, without cloning any entry.
    pub fn overview(&self) -> Overview {
        self.read_all(|entries| {
            let mut overview = Overview::default();
            for entry in entries {
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
        })
    }

    /// The body of `/job?name=NAME&runs=K`: the job's `/queue` entry plus
    /// `runs`, its last K runs (at most `HistoryRuns`; beyond the
    /// [`RUNS_KEPT`] in memory from its history file) newest first with
    /// their output tails. `None` when no job has that name.
    pub fn job_json(&self, name: &str, runs: usize) -> Option<String> {
        // Copy only this entry (its runs are `Arc`s): the history file is
        // read without the entry locked.
        let status = self.find(name)?.1.read(JobStatus::clone);
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
            runs: shown
                .into_iter()
                .map(|r| Run::of(r, Some(&r.output_tail), &tz))
                .collect(),
        };
        let mut body = serde_json::to_string(&detail).expect("a job always serializes");
        body.push('\n');
        Some(body)
    }

    /// The body of `/queue`, whole (the status page inlines it).
    pub fn queue_json(&self) -> String {
        self.queue_pieces().concat()
    }

    /// The body of `/queue` in pieces, to be written one after the other:
    /// each job's JSON as it was made after the job last changed (or the
    /// time zone did), shared with the entry rather than copied, between
    /// the frame of [`Queue`]. No buffer of the answer's size is made: under
    /// musl each one was a fresh mapping whose pages were faulted in and
    /// unmapped again, most of `/queue`'s time with a thousand jobs.
    pub fn queue_pieces(&self) -> Vec<Arc<str>> {
        let tz = TimeZone::system();
        let generation = {
            let mut shown_in = self.queue_tz.lock().unwrap_or_else(|e| e.into_inner());
            if shown_in.0.as_ref() != Some(&tz) {
                *shown_in = (Some(tz.clone()), shown_in.1 + 1);
            }
            shown_in.1
        };
        // The frame as serde writes it for no jobs: `{"Jobs":[` and the
        // rest after the `[]`, which is the first one ("Jobs" comes first).
        let empty: Queue<'_, ()> = Queue {
            jobs: Vec::new(),
            wait_group: WaitGroup {},
            directory: Cow::Borrowed(&self.directory),
        };
        let frame = serde_json::to_string(&empty).expect("the queue always serializes");
        let (head, tail) = frame.split_at(frame.find("[]").expect("Jobs is a list") + 1);
        let comma: Arc<str> = Arc::from(",");
        let entries = self.entries();
        let mut pieces = Vec::with_capacity(2 * entries.len() + 2);
        pieces.push(Arc::from(head));
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                pieces.push(comma.clone());
            }
            let mut published = entry.lock();
            let Published { status, queue_json } = &mut *published;
            let json = match queue_json {
                Some((made_in, json)) if *made_in == generation => json.clone(),
                _ => {
                    let json = serde_json::to_string(&queue_entry(status, &tz));
                    let json: Arc<str> = Arc::from(json.expect("a job always serializes"));
                    // A request that read the zone before another saw it
                    // change does not put its older JSON back.
                    if queue_json
                        .as_ref()
                        .is_none_or(|(made_in, _)| *made_in < generation)
                    {
                        *queue_json = Some((generation, json.clone()));
                    }
                    json
                }
            };
            pieces.push(json);
        }
        pieces.push(Arc::from(format!("{tail}\n")));
        pieces
    }
}

/// Nanoseconds as the original's `/queue` gave durations (Go's
/// `time.Duration`, at most 292 years); -1 s for "none".
fn nanos(d: Option<std::time::Duration>) -> i64 {
    d.map_or(api::NO_TIMER, |d| {
        i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
    })
}

/// Unix nanoseconds as the original's `UnixNano` (until 2262); 0 for none.
fn unix_nanos(t: Option<Timestamp>) -> i64 {
    t.map_or(0, |t| i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX))
}

fn preconditions_json(p: &Preconditions) -> api::Preconditions<'_> {
    api::Preconditions {
        paths: (!p.paths.is_empty()).then(|| p.paths.iter().map(|p| p.to_string_lossy()).collect()),
        hosts_route: (!p.hosts_route.is_empty()).then_some(Cow::Borrowed(p.hosts_route.as_slice())),
        hosts_connect: (!p.hosts_connect.is_empty()).then(|| {
            p.hosts_connect
                .iter()
                .map(|(host, port)| api::HostAndPort {
                    host: Cow::Borrowed(host),
                    port: *port,
                })
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

/// `NextJob` as the file gave it: a valid job's is a string, a list of
/// strings or absent.
fn next_job(raw: &Value) -> NextJob<'_> {
    match raw {
        Value::String(name) => NextJob::Name(Cow::Borrowed(name)),
        Value::Array(names) => NextJob::List(
            names
                .iter()
                .filter_map(Value::as_str)
                .map(Cow::Borrowed)
                .collect(),
        ),
        _ => NextJob::default(),
    }
}

fn queue_entry<'a>(s: &'a JobStatus, tz: &TimeZone) -> QueueEntry<'a> {
    let job = s.job.as_deref();
    let keyring = job.and_then(|j| j.keyring.as_ref());
    let preconditions = job.and_then(|j| j.preconditions.as_ref());
    let borrowed = |text: Option<&'a str>| text.map(Cow::Borrowed);
    QueueEntry {
        job_name: Cow::Borrowed(&s.name),
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
        progress_detail: s.progress_detail.as_ref().map(Cow::Borrowed),
        wait_start: unix_nanos(s.wait_start),
        wait_end: unix_nanos(s.wait_end),
        next_job: job.map_or(NextJob::default(), |j| next_job(&j.next_job_raw)),
        username: Cow::Borrowed(keyring.map_or("", |k| &k.username)),
        service: Cow::Borrowed(keyring.map_or("", |k| &k.service)),
        restic_path: job
            .and_then(|j| j.restic_path.as_deref())
            .map_or(Cow::Borrowed(""), |p| p.to_string_lossy()),
        restic_arguments: job.map(|j| {
            j.restic_arguments
                .iter()
                .map(|a| restic::mask_credentials(a))
                .collect()
        }),
        preconditions: preconditions.map(preconditions_json),
        check_preconds_every: preconditions.map(|p| seconds(p.every)),
        check_preconds_max_times: preconditions.map(|p| p.rounds),
        schedule: job
            .and_then(|j| j.schedule.as_ref())
            .map(|s| Cow::Owned(s.to_string())),
        next_run: s.next_run.map(|t| Time::in_zone(t, tz)),
        repository: borrowed(s.repository.as_deref()),
        waiting_for: borrowed(s.waiting_for.as_deref()),
        last_run: s.runs.front().map(|r| Run::of(r, None, tz)),
        last_success: s.last_success.map(|t| Time::in_zone(t, tz)),
        consecutive_failures: s.consecutive_failures,
        stale: s.stale,
        running_since: s.running_since.map(|t| Time::in_zone(t, tz)),
        error: borrowed(s.error.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` read as `rccommand` reads it and written again is `body`:
    /// every key the daemon writes, the client reads.
    fn reads_back_as_written<'a, T>(body: &'a str)
    where
        T: serde::Serialize + serde::Deserialize<'a>,
    {
        let read: T = serde_json::from_str(body).unwrap();
        let written = serde_json::to_string(&read).unwrap() + "\n";
        assert_eq!(written, body);
    }

    /// Lists a valid job `name` whose file has `keys` beside its
    /// `ResticArguments`.
    fn list_job(board: &Board, dir: &std::path::Path, name: &str, keys: &str) {
        let path = dir.join(format!("{name}.json"));
        let text = format!(r#"{{"ResticArguments": ["x"], {keys}}}"#);
        std::fs::write(&path, text).unwrap();
        let job = crate::config::job_file::load_file(&path).job.unwrap();
        let entry = BoardEntry::new(JobStatus::new(job));
        board.list(&format!("{name}.json"), entry);
    }

    fn invalid(file_name: &str, name: &str) -> BoardEntry {
        BoardEntry::new(JobStatus::invalid(&Entry {
            path: format!("/jobs/{file_name}").into(),
            name: name.into(),
            job: Err(Vec::new()),
            warnings: Vec::new(),
        }))
    }

    #[test]
    fn jobs_are_listed_by_file_and_found_by_name() {
        let board = Board::new("/jobs");
        let b = invalid("b.json", "b");
        board.list("b.json", b.clone());
        // Two files that claim one name are both listed; the first is found.
        board.list("x.json", invalid("x.json", "a"));
        board.list("a.json", invalid("a.json", "a"));
        assert_eq!(
            board.find("a").map(|(file, _)| file).as_deref(),
            Some("a.json")
        );
        assert!(board.find("c").is_none() && board.find("").is_none());
        // What the job publishes is what the board shows.
        b.publish(|s| s.status = Status::Working);
        let (_, found) = board.find("b").unwrap();
        assert_eq!(found.read(|s| s.status), Status::Working);
        let queue: Value = serde_json::from_str(&board.queue_json()).unwrap();
        let names: Vec<&str> = queue["Jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["JobName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "a"], "in file order");
        // `/queue` shows what was published since it last answered.
        assert_eq!(queue["Jobs"][1]["status"], "working");
        b.publish(|s| s.status = Status::Stopped);
        let queue: Value = serde_json::from_str(&board.queue_json()).unwrap();
        assert_eq!(queue["Jobs"][1]["status"], "stopped");
        assert_eq!(queue["Jobs"][0]["regularTimer"], -1_000_000_000);
        assert_eq!(queue["Directory"], "/jobs");
        // A file listed again replaces its entry; an unlisted one is gone.
        board.list("b.json", invalid("b.json", "b"));
        assert_eq!(
            board.find("b").unwrap().1.read(|s| s.status),
            Status::Invalid
        );
        board.unlist("a.json");
        assert_eq!(
            board.find("a").map(|(file, _)| file).as_deref(),
            Some("x.json")
        );
        board.unlist("x.json");
        assert!(board.find("a").is_none());
        assert_eq!(board.overview().jobs, 1);
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
            let keys = format!(r#""regularTimer": {regular}, "retryTimer": {retry}"#);
            list_job(&board, dir.path(), name, &keys);
        }
        let body = board.queue_json();
        reads_back_as_written::<Queue>(&body);
        // In the original's order: Jobs, Wg, Directory.
        let wait_group = body.find(r#"],"Wg":{},"Directory":"/jobs"}"#);
        assert!(
            body.starts_with(r#"{"Jobs":["#) && wait_group.is_some(),
            "{body}"
        );
        let queue: Value = serde_json::from_str(&body).unwrap();
        let timers: Vec<(&str, i64, i64)> = queue["Jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                let ns = |key: &str| j[key].as_i64().unwrap();
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
            list_job(&board, dir.path(), name, keys);
        }
        let body = board.queue_json();
        reads_back_as_written::<Queue>(&body);
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
            reason: crate::job::outcome::Reason::Schedule,
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
        board.list("a.json", BoardEntry::new(status));
        assert_eq!(board.job_json("b", RUNS_KEPT), None);
        reads_back_as_written::<JobDetail>(&board.job_json("a", RUNS_KEPT).unwrap());
        reads_back_as_written::<Queue>(&board.queue_json());
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
