//! Per-job state files (`StateDir/<JobName>`): the next trigger survives a
//! restart. Written atomically (temp file, fsync, rename) and never through
//! a link; files written by the Go original (`{"NextTrigger": "…"}`, perhaps
//! with stale bytes after it) are read correctly.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::files::{self, CappedReadError};
use crate::schedule::Saved;

/// A state file is a few hundred bytes; anything much larger is not ours.
const MAX_STATE_FILE: u64 = 64 * 1024;

/// What a job persists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The earliest pending deadline (a regular slot or a retry).
    pub next_trigger: Option<Timestamp>,
    /// The pending regular slot, when `next_trigger` is a retry.
    pub next_regular: Option<Timestamp>,
    pub current_retry: u32,
    pub last_run: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    /// Failed runs since the last success, for `/queue` and `/metrics`.
    pub consecutive_failures: u32,
    /// The job stopped itself (`StopAfterFailedRetries`): it stays stopped
    /// across a daemon restart until someone restarts it.
    pub gave_up: bool,
    /// The last failure cycle ended without a retry: the next success is
    /// a recovery (SPEC §6.5).
    pub awaiting_recovery: bool,
    /// When the daemon first saw the job: a job that never succeeded is
    /// stale `StaleAfter` after this.
    pub first_seen: Option<Timestamp>,
    /// The `stale` notification went out; not again until a success.
    pub stale_notified: bool,
    /// Why a run was started that has no recorded outcome yet: written
    /// before restic starts, cleared with its outcome. Found at start, it is
    /// a run the daemon's end interrupted (SIGTERM, a crash, a power cut),
    /// which runs again once.
    pub pending_run: Option<String>,
}

/// The file itself. What the Go original wrote (`NextTrigger` alone) reads
/// with every other field at its default, and fields we do not know (a
/// newer version's) are skipped.
#[derive(Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct StateFile {
    next_trigger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_regular: Option<String>,
    current_retry: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_success: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    consecutive_failures: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    gave_up: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    awaiting_recovery: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stale_notified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_run: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A state file that exists but cannot be used.
#[derive(Debug)]
pub struct ReadError {
    pub path: PathBuf,
    pub kind: ReadErrorKind,
}

#[derive(Debug)]
pub enum ReadErrorKind {
    /// Not readable as a state file: missing rights, a link, a FIFO, too
    /// large.
    Read(CappedReadError),
    /// No JSON object of ours at its start.
    Decode(serde_json::Error),
    Empty,
    /// A time field holds something that is not an RFC 3339 time.
    Time {
        key: &'static str,
        value: String,
        source: jiff::Error,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            ReadErrorKind::Read(e) => write!(f, "cannot read {path}: {e}"),
            ReadErrorKind::Decode(e) => write!(f, "cannot decode {path}: {e}"),
            ReadErrorKind::Empty => write!(f, "{path} is empty"),
            ReadErrorKind::Time { key, value, source } => {
                write!(
                    f,
                    "{path}: {key} {value:?} is not an RFC 3339 time: {source}"
                )
            }
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ReadErrorKind::Read(e) => Some(e),
            ReadErrorKind::Decode(e) => Some(e),
            ReadErrorKind::Empty => None,
            ReadErrorKind::Time { source, .. } => Some(source),
        }
    }
}

/// A state file that could not be written.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot write state file {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for WriteError {}

/// The state file of `job` in `dir`.
pub fn path(dir: &Path, job: &str) -> PathBuf {
    dir.join(job)
}

/// Reads a state file; `Ok(None)` when there is none. The supervisor reads
/// these, so the read cannot block (a FIFO planted there) or grow without
/// bound, and a link is not followed.
pub fn read(path: &Path) -> Result<Option<State>, ReadError> {
    let error = |kind| ReadError {
        path: path.to_path_buf(),
        kind,
    };
    let bytes = match files::read_capped(path, MAX_STATE_FILE, false) {
        Ok((bytes, _)) => bytes,
        Err(CappedReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(ReadErrorKind::Read(e))),
    };
    // The original never truncated the file, so stale bytes may follow the
    // first JSON value: only that value counts.
    let file = match serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<StateFile>()
        .next()
    {
        Some(Ok(file)) => file,
        Some(Err(e)) => return Err(error(ReadErrorKind::Decode(e))),
        None => return Err(error(ReadErrorKind::Empty)),
    };
    let time = |key: &'static str, value: Option<String>| match value {
        None => Ok(None),
        Some(value) => match value.parse::<Timestamp>() {
            Ok(t) => Ok(Some(t)),
            Err(source) => Err(error(ReadErrorKind::Time { key, value, source })),
        },
    };
    Ok(Some(State {
        next_trigger: time("NextTrigger", file.next_trigger)?,
        next_regular: time("NextRegular", file.next_regular)?,
        current_retry: file.current_retry,
        last_run: time("LastRun", file.last_run)?,
        last_success: time("LastSuccess", file.last_success)?,
        consecutive_failures: file.consecutive_failures,
        gave_up: file.gave_up,
        awaiting_recovery: file.awaiting_recovery,
        first_seen: time("FirstSeen", file.first_seen)?,
        stale_notified: file.stale_notified,
        pending_run: file.pending_run,
    }))
}

impl State {
    /// What the start rules need from this state.
    pub fn saved(&self) -> Saved {
        match self.next_trigger {
            Some(next_trigger) => Saved::Found {
                next_trigger,
                next_regular: self.next_regular,
                current_retry: self.current_retry,
            },
            None => Saved::Missing,
        }
    }
}

/// Formats an instant as RFC 3339 with the local UTC offset, as the original
/// wrote it.
pub fn local_rfc3339(t: Timestamp) -> String {
    let offset = jiff::tz::TimeZone::system().to_offset(t);
    t.display_with_offset(offset).to_string()
}

/// Writes `state` to `path` atomically with mode 0600, creating the directory
/// with mode 0700 when it is missing.
pub fn write(path: &Path, state: &State) -> Result<(), WriteError> {
    let file = StateFile {
        next_trigger: state.next_trigger.map(local_rfc3339),
        next_regular: state.next_regular.map(local_rfc3339),
        current_retry: state.current_retry,
        last_run: state.last_run.map(local_rfc3339),
        last_success: state.last_success.map(local_rfc3339),
        consecutive_failures: state.consecutive_failures,
        gave_up: state.gave_up,
        awaiting_recovery: state.awaiting_recovery,
        first_seen: state.first_seen.map(local_rfc3339),
        stale_notified: state.stale_notified,
        pending_run: state.pending_run.clone(),
    };
    let mut text = serde_json::to_string(&file).expect("a state file always serializes");
    text.push('\n');
    files::write_private_atomically(path, text.as_bytes()).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_the_originals_file_with_trailing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ExampleBackup");
        fs::write(
            &path,
            "{\"NextTrigger\":\"2018-08-20T02:00:00.123456789+02:00\"}\n:00:00+02:00\"}\n",
        )
        .unwrap();
        let state = read(&path).unwrap().unwrap();
        let want: Timestamp = "2018-08-20T00:00:00.123456789Z".parse().unwrap();
        assert_eq!(state.next_trigger, Some(want));
        assert_eq!(state.current_retry, 0);
    }

    #[test]
    fn fields_we_do_not_know_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job");
        fs::write(
            &path,
            r#"{"NextTrigger":"2026-01-01T00:00:00Z","FromTheFuture":{"a":[1]},"CurrentRetry":2}"#,
        )
        .unwrap();
        let state = read(&path).unwrap().unwrap();
        assert_eq!(state.current_retry, 2);
        assert!(state.next_trigger.is_some());
    }

    #[test]
    fn garbage_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&dir.path().join("none")).unwrap(), None);
        for garbage in ["", "garbage", "[1]", "{\"NextTrigger\": \"yesterday\"}"] {
            let path = dir.path().join("g");
            fs::write(&path, garbage).unwrap();
            assert!(read(&path).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn writes_atomically_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("job");
        let t: Timestamp = "2026-12-01T02:00:00Z".parse().unwrap();
        let state = State {
            next_trigger: Some(t),
            next_regular: None,
            current_retry: 2,
            last_run: Some(t),
            last_success: None,
            consecutive_failures: 3,
            gave_up: true,
            awaiting_recovery: true,
            first_seen: Some(t),
            stale_notified: true,
            pending_run: Some("trigger".into()),
        };
        write(&path, &state).unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), state);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temp file is gone");
    }

    #[test]
    fn links_planted_at_the_temp_file_or_the_state_file_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("job");
        std::os::unix::fs::symlink(&victim, dir.path().join(".job.tmp")).unwrap();
        write(&path, &State::default()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(read(&path).unwrap().is_some());
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        // Replacing the state file replaces the link, not its target.
        write(&path, &State::default()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!fs::symlink_metadata(&path).unwrap().is_symlink());
    }
}
