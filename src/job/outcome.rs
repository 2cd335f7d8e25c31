//! What a run was for and how it ended: the values the job actor produces
//! and the board, the healthcheck pings, the hooks and the history read.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::job::hook::HookName;
use crate::restic::progress::Summary;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// restic exit 3 (a snapshot was written but some files were
    /// unreadable), or a success whose `OnSuccess` or `After` hook failed.
    Warning,
    Failure,
    Locked,
    Timeout,
    Stopped,
    /// Its preconditions did not hold: nothing ran (SPEC §3.1).
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::Warning,
        Outcome::Failure,
        Outcome::Locked,
        Outcome::Timeout,
        Outcome::Stopped,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Warning => "warning",
            Outcome::Failure => "failure",
            Outcome::Locked => "locked",
            Outcome::Timeout => "timeout",
            Outcome::Stopped => "stopped",
            Outcome::Skipped => "skipped",
        }
    }

    /// Whether the run counts as a success for scheduling and `NextJob`.
    pub fn succeeded(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Warning)
    }
}

/// Why a run started (`RESTIC_CRONNED_REASON`, the history's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Its regular deadline came.
    Schedule,
    /// A retry after a failed run.
    Retry,
    /// `/trigger`.
    Trigger,
    /// Another job's `NextJob` after its success.
    NextJob,
    /// Due when the daemon started: a missed deadline, or the run the
    /// daemon's end interrupted.
    CatchUp,
    /// `restic-cronned --run NAME`.
    Run,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Schedule => "schedule",
            Reason::Retry => "retry",
            Reason::Trigger => "trigger",
            Reason::NextJob => "next-job",
            Reason::CatchUp => "catch-up",
            Reason::Run => "run",
        }
    }
}

/// One hook of a run, as its record keeps it (SPEC §4.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    pub hook: HookName,
    #[serde(rename = "exitCode")]
    pub exit_code: Option<i32>,
    /// Seconds.
    #[serde(with = "seconds")]
    pub duration: Duration,
    /// Why it failed; `None` when it exited 0.
    pub error: Option<String>,
}

/// A duration as seconds with three decimals.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(d)?;
        Ok(Duration::try_from_secs_f64(seconds).unwrap_or_default())
    }
}

/// One finished run.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// When restic started (SPEC §8); when the run began if restic never
    /// started.
    pub start: Timestamp,
    /// When restic was reaped, or the run ended without it.
    pub end: Timestamp,
    pub reason: Reason,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The last 64 KiB of the output of restic and the hooks.
    pub output_tail: String,
    /// restic's `summary` line, for a backup run with `--json`.
    pub summary: Option<Summary>,
    /// The snapshot restic reported: the full id from a `--json` summary,
    /// else the short one from its text output.
    pub snapshot: Option<String>,
    pub hooks: Vec<HookRecord>,
}

impl RunRecord {
    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unsigned_abs()
    }
}
