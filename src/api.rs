//! The HTTP API's JSON — `/queue`, `/job` and the runs in them — as types
//! the daemon serializes (`board`) and `rccommand` deserializes (`client`),
//! so that a renamed field is a compile error on both sides. The history
//! file keeps its runs as the same [`Run`].
//!
//! Names and encodings are a contract with the Go original's clients
//! (SPEC §5): its keys spelled as it spelled them, the wait in Unix
//! nanoseconds, other times RFC 3339 in the daemon's offset, -1 s for "no
//! timer", Go's `null` for an empty list. The daemon fills the `Cow`s with
//! borrowed text, so a `/queue` of a thousand jobs copies no string; the
//! client reads owned ones. Keys a reader does not know are skipped, so an
//! older `rccommand` reads a newer daemon.
//!
//! The HTTP server (`http`), the status board it reads (`board`), `/metrics`,
//! and the `rccommand` client (`client`).

pub mod board;
pub mod client;
pub mod http;
pub mod metrics;

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use jiff::fmt::temporal::Pieces;
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::job::outcome::{HookRecord, Outcome, Reason, RunRecord};
use crate::restic::progress::{Progress, Summary};

/// A job's status as `/queue` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    /// Its preconditions are being checked (SPEC §3.1).
    Checking,
    Working,
    Stopped,
    Invalid,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Checking => "checking",
            Status::Working => "working",
            Status::Stopped => "stopped",
            Status::Invalid => "invalid",
        }
    }
}

/// The body of `/queue`, its keys in the original's order. The daemon
/// writes its frame (`J` = `()`, no jobs) and splices in each job's JSON
/// as it made it before (`board::Board::queue_pieces`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Queue<'a, J = QueueEntry<'a>> {
    #[serde(rename = "Jobs")]
    pub jobs: Vec<J>,
    #[serde(rename = "Wg", default)]
    pub wait_group: WaitGroup,
    #[serde(rename = "Directory")]
    pub directory: Cow<'a, str>,
}

/// `"Wg": {}` in `/queue`. The Go original serialised its queue struct
/// whole, `sync.WaitGroup` included, which has no exported fields; clients
/// that decode into that struct may expect the key (SPEC §5). Braces, not
/// a unit struct: serde writes a unit struct as `null`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WaitGroup {}

/// The body of `/job?name=NAME`: the job's `/queue` entry plus its runs,
/// newest first, with their output tails.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobDetail<'a> {
    #[serde(flatten)]
    pub entry: QueueEntry<'a>,
    pub runs: Vec<Run<'a>>,
}

/// One job of `/queue`: the original's keys, then ours.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueueEntry<'a> {
    #[serde(rename = "JobName")]
    pub job_name: Cow<'a, str>,
    pub status: Status,
    /// Nanoseconds of an interval, 0 for a calendar schedule (see
    /// `schedule`), [`NO_TIMER`] for none.
    #[serde(rename = "regularTimer")]
    pub regular_timer: i64,
    /// As `regularTimer`, for retries.
    #[serde(rename = "retryTimer")]
    pub retry_timer: i64,
    #[serde(rename = "maxFailedRetries")]
    pub max_failed_retries: i64,
    #[serde(rename = "CurrentRetry")]
    pub current_retry: u32,
    /// restic's `percent_done` (0 to 1) while a `--json` backup runs.
    pub progress: f64,
    #[serde(rename = "progressDetail", default)]
    pub progress_detail: Option<Cow<'a, Progress>>,
    /// Unix nanoseconds, 0 for none, as the original wrote them (Go's
    /// `int64`, as the timers: `i128` would not pass through the
    /// `#[serde(flatten)]` of [`JobDetail`]).
    #[serde(rename = "WaitStart")]
    pub wait_start: i64,
    #[serde(rename = "WaitEnd")]
    pub wait_end: i64,
    #[serde(rename = "NextJob", default)]
    pub next_job: NextJob<'a>,
    #[serde(rename = "Username")]
    pub username: Cow<'a, str>,
    #[serde(rename = "Service")]
    pub service: Cow<'a, str>,
    /// Empty for `restic` from `PATH`.
    #[serde(rename = "ResticPath")]
    pub restic_path: Cow<'a, str>,
    /// With passwords in repository URLs masked; `null` for an invalid job.
    #[serde(rename = "ResticArguments")]
    pub restic_arguments: Option<Vec<Cow<'a, str>>>,
    /// The later original's precondition keys, where it put them, for jobs
    /// that have preconditions only (SPEC §5).
    #[serde(rename = "Preconditions", skip_serializing_if = "Option::is_none")]
    pub preconditions: Option<Preconditions<'a>>,
    /// Seconds, as the original's integer; a fraction only when the job
    /// file gave one (`"1500ms"`).
    #[serde(rename = "CheckPrecondsEvery", skip_serializing_if = "Option::is_none")]
    pub check_preconds_every: Option<serde_json::Number>,
    #[serde(
        rename = "CheckPrecondsMaxTimes",
        skip_serializing_if = "Option::is_none"
    )]
    pub check_preconds_max_times: Option<u32>,
    /// `every 1d`, a cron line; `null` when the job runs only when
    /// triggered.
    pub schedule: Option<Cow<'a, str>>,
    #[serde(rename = "nextRun")]
    pub next_run: Option<Time>,
    /// The repository, credentials masked.
    pub repository: Option<Cow<'a, str>>,
    /// The job holding the repository this job waits for.
    #[serde(rename = "WaitingFor")]
    pub waiting_for: Option<Cow<'a, str>>,
    /// Without its output tail.
    #[serde(rename = "lastRun")]
    pub last_run: Option<Run<'a>>,
    #[serde(rename = "lastSuccess")]
    pub last_success: Option<Time>,
    #[serde(rename = "consecutiveFailures")]
    pub consecutive_failures: u32,
    /// The last success is older than `StaleAfter` (SPEC §6.5).
    #[serde(default)]
    pub stale: bool,
    /// When the running job's run began (absent when it is not running).
    #[serde(rename = "runningSince", skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Time>,
    pub error: Option<Cow<'a, str>>,
}

/// `regularTimer` and `retryTimer` for a job without that timer: -1 s.
pub const NO_TIMER: i64 = -1_000_000_000;

/// `NextJob` as the job file gave it: a name (`""` for none) or a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NextJob<'a> {
    Name(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
}

impl Default for NextJob<'_> {
    fn default() -> Self {
        NextJob::Name(Cow::Borrowed(""))
    }
}

/// `Preconditions` in `/queue`, in the original's encoding: an empty list
/// is `null`, as Go wrote its nil slices.
#[derive(Debug, Serialize, Deserialize)]
pub struct Preconditions<'a> {
    #[serde(rename = "PathesMust")]
    pub paths: Option<Vec<Cow<'a, str>>>,
    #[serde(rename = "HostsMustRoute")]
    pub hosts_route: Option<Cow<'a, [String]>>,
    #[serde(rename = "HostsMustConnect")]
    pub hosts_connect: Option<Vec<HostAndPort<'a>>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HostAndPort<'a> {
    #[serde(rename = "Host")]
    pub host: Cow<'a, str>,
    #[serde(rename = "Port")]
    pub port: u16,
}

/// A finished run, as `/queue` (`lastRun`), `/job` and the history file
/// show it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Run<'a> {
    /// When restic started (SPEC §8).
    pub start: Time,
    /// When restic was reaped, or the run ended without it.
    pub end: Time,
    pub outcome: Outcome,
    /// `null` when restic did not exit normally.
    #[serde(rename = "exitCode")]
    pub exit_code: Option<i32>,
    pub error: Option<Cow<'a, str>>,
    /// Absent in `lastRun`.
    #[serde(
        rename = "outputTail",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub output_tail: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Cow<'a, Summary>>,
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub hooks: Cow<'a, [HookRecord]>,
}

impl<'a> Run<'a> {
    /// `run` with its times in `tz`, and `output_tail` (a run's tail, or
    /// the end of it) when it is shown.
    pub fn of(run: &'a RunRecord, output_tail: Option<&'a str>, tz: &TimeZone) -> Run<'a> {
        Run {
            start: Time::in_zone(run.start, tz),
            end: Time::in_zone(run.end, tz),
            outcome: run.outcome,
            exit_code: run.exit_code,
            error: run.error.as_deref().map(Cow::Borrowed),
            output_tail: output_tail.map(Cow::Borrowed),
            summary: run.summary.as_ref().map(Cow::Borrowed),
            reason: run.reason,
            snapshot: run.snapshot.as_deref().map(Cow::Borrowed),
            hooks: Cow::Borrowed(&run.hooks),
        }
    }

    /// The record this run was made [`of`](Run::of); a missing output tail
    /// is an empty one.
    pub fn into_record(self) -> RunRecord {
        RunRecord {
            start: self.start.at,
            end: self.end.at,
            reason: self.reason,
            outcome: self.outcome,
            exit_code: self.exit_code,
            error: self.error.map(Cow::into_owned),
            output_tail: self.output_tail.map(Cow::into_owned).unwrap_or_default(),
            summary: self.summary.map(Cow::into_owned),
            snapshot: self.snapshot.map(Cow::into_owned),
            hooks: self.hooks.into_owned(),
        }
    }
}

/// A time as the API writes it: RFC 3339 in the daemon's offset at that
/// time, `2026-12-01T03:00:00+01:00`, with a fraction when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    pub at: Timestamp,
    /// The offset the text shows.
    pub offset: Offset,
}

impl Time {
    /// `at` in `tz`. The caller looks `tz` up once per answer, not once per
    /// time: a thousand jobs have thousands of times.
    pub fn in_zone(at: Timestamp, tz: &TimeZone) -> Time {
        Time {
            at,
            offset: tz.to_offset(at),
        }
    }

    /// This time without its fraction of a second.
    pub fn to_the_second(self) -> Time {
        Time {
            at: Timestamp::from_second(self.at.as_second()).unwrap_or(self.at),
            ..self
        }
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.at.display_with_offset(self.offset), f)
    }
}

impl std::str::FromStr for Time {
    type Err = jiff::Error;

    fn from_str(text: &str) -> Result<Time, jiff::Error> {
        let at: Timestamp = text.parse()?;
        let offset = Pieces::parse(text)?
            .to_numeric_offset()
            .unwrap_or(Offset::UTC);
        Ok(Time { at, offset })
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Straight into the output, no `String` per time.
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_their_offset_and_fraction_both_ways() {
        let tz = TimeZone::fixed(jiff::tz::offset(1));
        let at = Timestamp::new(1_700_000_000, 250_000_000).unwrap();
        let time = Time::in_zone(at, &tz);
        let text = serde_json::to_string(&time).unwrap();
        assert_eq!(text, r#""2023-11-14T23:13:20.25+01:00""#);
        assert_eq!(serde_json::from_str::<Time>(&text).unwrap(), time);
        assert_eq!(
            time.to_the_second().to_string(),
            "2023-11-14T23:13:20+01:00"
        );
        let utc: Time = "2023-11-14T22:13:20Z".parse().unwrap();
        assert_eq!(utc.at, Timestamp::from_second(1_700_000_000).unwrap());
        assert!("yesterday".parse::<Time>().is_err());
    }

    #[test]
    fn next_job_is_a_name_or_a_list() {
        for (text, next) in [
            (r#""""#, NextJob::default()),
            (r#""forget""#, NextJob::Name("forget".into())),
            (r#"["a","b"]"#, NextJob::List(vec!["a".into(), "b".into()])),
        ] {
            assert_eq!(serde_json::to_string(&next).unwrap(), text);
            assert_eq!(serde_json::from_str::<NextJob>(text).unwrap(), next);
        }
    }

    #[test]
    fn a_run_reads_back_as_it_was_written_and_unknown_keys_are_skipped() {
        let tz = TimeZone::UTC;
        let record = RunRecord {
            start: Timestamp::from_second(1_700_000_000).unwrap(),
            end: Timestamp::from_second(1_700_000_060).unwrap(),
            reason: Reason::Retry,
            outcome: Outcome::Warning,
            exit_code: Some(3),
            error: Some("some files were unreadable".into()),
            output_tail: "tail\n".into(),
            summary: None,
            snapshot: Some("1f2e3d4c".into()),
            hooks: Vec::new(),
        };
        let text = serde_json::to_string(&Run::of(&record, Some("tail\n"), &tz)).unwrap();
        assert_eq!(
            text,
            r#"{"start":"2023-11-14T22:13:20+00:00","end":"2023-11-14T22:14:20+00:00","outcome":"warning","exitCode":3,"error":"some files were unreadable","outputTail":"tail\n","reason":"retry","snapshot":"1f2e3d4c"}"#
        );
        let newer = text.replace(r#""reason""#, r#""newKey":[1,{}],"reason""#);
        let read = serde_json::from_str::<Run>(&newer).unwrap().into_record();
        assert_eq!(
            (
                read.start,
                read.end,
                read.exit_code,
                read.error,
                read.output_tail
            ),
            (
                record.start,
                record.end,
                record.exit_code,
                record.error,
                record.output_tail
            )
        );
        assert_eq!(read.snapshot, record.snapshot);
    }
}
