//! Run history (SPEC §6.6): each job's runs, appended one JSON object per
//! line to `StateDir/history/<JobName>.jsonl`, so that what shows past runs
//! still shows them after a restart. At most `HistoryRuns` runs are kept:
//! the file is rewritten atomically with the newest ones when it holds
//! twice that. A torn last line (a power cut during an append) is skipped.

use std::fmt;
use std::io::{self, Read as _, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use log::warn;

use crate::api::Run;
use crate::files::{self, CappedReadError};
use crate::job::outcome::RunRecord;
use crate::restic::process;

/// How much of a run's output a history line keeps.
pub const OUTPUT_BYTES: usize = 4 * 1024;
/// The most one line may take on reading (the output tail, an error and
/// a summary are a few KiB): a longer one is not ours.
const MAX_LINE: u64 = 64 * 1024;

/// The folder in the StateDir that holds the history files (so no job may
/// be called that).
pub const DIR: &str = "history";

/// The history file of job `name`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(DIR).join(format!("{name}.jsonl"))
}

/// One line of a history file: the run as `/job` shows it, with at most
/// [`OUTPUT_BYTES`] of its output.
fn line_of(run: &RunRecord, tz: &TimeZone) -> String {
    let tail = process::last_bytes(&run.output_tail, OUTPUT_BYTES);
    serde_json::to_string(&Run::of(run, Some(tail), tz)).expect("a history line serializes")
}

/// A history file that could not be read or written.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub source: CappedReadError,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history file {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for Error {}

/// What a history file holds.
struct Read {
    /// The runs, oldest first, at most `keep`.
    runs: Vec<RunRecord>,
    lines: usize,
    /// Where a torn last line starts.
    torn_at: Option<u64>,
}

/// Reads the runs of the history at `path`, oldest first, at most `keep`;
/// none when there is no file. Lines that are not runs are skipped. For
/// readers other than the job's thread (`/job?runs=K`): it changes nothing.
pub fn read(path: &Path, keep: usize) -> Result<Vec<RunRecord>, Error> {
    read_file(path, keep.max(1)).map(|read| read.runs)
}

fn read_file(path: &Path, keep: usize) -> Result<Read, Error> {
    // Twice `keep` lines before the rewrite, each at most MAX_LINE.
    let cap = MAX_LINE.saturating_mul(2 * keep as u64 + 1);
    let bytes = match files::read_capped(path, cap, false) {
        Ok((bytes, _)) => bytes,
        // Larger than `keep` allows (HistoryRuns was lowered): its end
        // holds the runs that are kept.
        Err(CappedReadError::TooLarge { .. }) => read_end(path, cap).map_err(|e| Error {
            path: path.to_path_buf(),
            source: CappedReadError::Io(e),
        })?,
        Err(CappedReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Read {
                runs: Vec::new(),
                lines: 0,
                torn_at: None,
            });
        }
        Err(source) => {
            return Err(Error {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let torn_at = bytes.last().is_some_and(|&b| b != b'\n').then(|| {
        bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i as u64 + 1)
    });
    let text = String::from_utf8_lossy(&bytes);
    let mut runs: Vec<RunRecord> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Run>(line).ok())
        .map(Run::into_record)
        .collect();
    let surplus = runs.len().saturating_sub(keep);
    runs.drain(..surplus);
    Ok(Read {
        runs,
        lines: text.lines().count(),
        torn_at,
    })
}

/// The last `cap` bytes of the regular file at `path`, from the first
/// whole line on.
fn read_end(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut file = files::private_open_options().read(true).open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(cap)))?;
    let mut bytes = Vec::new();
    file.take(cap).read_to_end(&mut bytes)?;
    if len > cap
        && let Some(end) = bytes.iter().position(|&b| b == b'\n')
    {
        bytes.drain(..=end);
    }
    Ok(bytes)
}

/// A job's history file, as its job thread holds it.
pub struct History {
    path: PathBuf,
    /// `HistoryRuns`.
    keep: usize,
    /// Lines in the file (read or appended since).
    lines: usize,
    /// The file ends in a torn line: the next append starts a new one.
    torn: bool,
}

impl History {
    /// Opens the history at `path` that keeps `keep` runs, and reads the
    /// runs it holds, oldest first, at most `keep`. A missing file is an
    /// empty history; a torn last line (a power cut) is cut off. Runs on the
    /// job's own thread, the file's one writer: the file may be large.
    pub fn open(path: PathBuf, keep: usize) -> (History, Result<Vec<RunRecord>, Error>) {
        let keep = keep.max(1);
        let mut history = History {
            path,
            keep,
            lines: 0,
            torn: false,
        };
        let read = match read_file(&history.path, keep) {
            Ok(read) => read,
            Err(e) => return (history, Err(e)),
        };
        history.lines = read.lines;
        if let Some(whole) = read.torn_at {
            // Cut the torn line off, so the file holds whole runs only; if
            // that fails, the next append starts a new line after it.
            let cut = files::private_open_options()
                .write(true)
                .open(&history.path)
                .and_then(|file| file.set_len(whole));
            history.torn = cut.is_err();
        }
        (history, Ok(read.runs))
    }

    /// Appends `run`; once the file holds twice `keep` lines, rewrites it
    /// with the newest `keep`. Never through a link; mode 0600 in a 0700
    /// directory.
    pub fn append(&mut self, run: &RunRecord) -> Result<(), Error> {
        let mut line = line_of(run, &TimeZone::system());
        line.push('\n');
        if self.torn {
            line.insert(0, '\n');
        }
        let io_error = |path: &Path, e| Error {
            path: path.to_path_buf(),
            source: CappedReadError::Io(e),
        };
        if self.lines + 1 >= 2 * self.keep {
            match read(&self.path, self.keep) {
                Ok(runs) => return self.rewrite(runs, &line),
                // Never cut to nothing what could not be read: append, and
                // try again next time.
                Err(e) => warn!("{e}; the file is not cut to HistoryRuns this time"),
            }
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        files::make_dirs_private(dir).map_err(|e| io_error(dir, e))?;
        let mut options = files::private_open_options();
        // Never blocks: a FIFO planted at its name fails the open (ENXIO)
        // instead of holding the job's thread until someone reads it.
        options
            .append(true)
            .create(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
        options
            .open(&self.path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .map_err(|e| io_error(&self.path, e))?;
        self.lines += 1;
        self.torn = false;
        Ok(())
    }

    /// Rewrites the file with the newest `keep` of `runs` and `line`.
    fn rewrite(&mut self, runs: Vec<RunRecord>, line: &str) -> Result<(), Error> {
        let tz = TimeZone::system();
        let mut runs: Vec<String> = runs.iter().map(|run| line_of(run, &tz)).collect();
        runs.push(line.trim().to_string());
        let surplus = runs.len().saturating_sub(self.keep);
        runs.drain(..surplus);
        let mut text = runs.join("\n");
        text.push('\n');
        files::write_private_atomically(&self.path, text.as_bytes()).map_err(|e| Error {
            path: self.path.clone(),
            source: CappedReadError::Io(e),
        })?;
        self.lines = runs.len();
        self.torn = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use jiff::Timestamp;

    use crate::job::hook::HookName;
    use crate::job::outcome::{HookRecord, Outcome, Reason};

    fn run(second: i64, outcome: Outcome) -> RunRecord {
        RunRecord {
            start: Timestamp::from_second(1_700_000_000 + second).unwrap(),
            end: Timestamp::from_second(1_700_000_001 + second).unwrap(),
            reason: Reason::Schedule,
            outcome,
            exit_code: Some(if outcome.succeeded() { 0 } else { 1 }),
            error: (!outcome.succeeded()).then(|| format!("run {second} failed")),
            output_tail: format!("{}line {second}\n", "x".repeat(10_000)),
            summary: None,
            snapshot: Some("1eea1f6b".into()),
            hooks: vec![HookRecord {
                hook: HookName::Before,
                exit_code: Some(0),
                duration: Duration::from_millis(1500),
                error: None,
            }],
        }
    }

    #[test]
    fn runs_come_back_after_a_reopen_with_their_fields_and_a_short_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "job");
        let (mut history, runs) = History::open(path.clone(), 100);
        assert!(runs.unwrap().is_empty());
        history.append(&run(0, Outcome::Success)).unwrap();
        history.append(&run(10, Outcome::Failure)).unwrap();
        let (_, runs) = History::open(path.clone(), 100);
        let runs = runs.unwrap();
        assert_eq!(runs.len(), 2);
        let last = &runs[1];
        let want = run(10, Outcome::Failure);
        assert_eq!(
            (last.start, last.end, last.outcome, last.exit_code),
            (want.start, want.end, want.outcome, want.exit_code)
        );
        assert_eq!(last.error.as_deref(), Some("run 10 failed"));
        assert_eq!(last.hooks, want.hooks);
        assert_eq!(last.snapshot.as_deref(), Some("1eea1f6b"));
        assert_eq!(last.output_tail.len(), OUTPUT_BYTES);
        assert!(last.output_tail.ends_with("line 10\n"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn the_file_is_cut_to_the_newest_runs_when_it_holds_twice_as_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "job");
        let (mut history, _) = History::open(path.clone(), 3);
        for i in 0..5 {
            history.append(&run(i * 10, Outcome::Success)).unwrap();
        }
        let lines = || fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines(), 5);
        // The sixth line makes twice three: the file is rewritten.
        history.append(&run(50, Outcome::Success)).unwrap();
        assert_eq!(lines(), 3);
        let (_, runs) = History::open(path.clone(), 3);
        let starts: Vec<i64> = runs
            .unwrap()
            .iter()
            .map(|r| r.start.as_second() - 1_700_000_000)
            .collect();
        assert_eq!(starts, [30, 40, 50]);
        // Reading never gives more than `keep`, even before a rewrite.
        let (mut history, _) = History::open(path.clone(), 3);
        history.append(&run(60, Outcome::Success)).unwrap();
        let (_, runs) = History::open(path.clone(), 2);
        assert_eq!(runs.unwrap().len(), 2);
    }

    #[test]
    fn a_file_larger_than_history_runs_allows_is_cut_to_its_newest_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "job");
        let (mut history, _) = History::open(path.clone(), 1000);
        for i in 0..300 {
            history.append(&run(i * 10, Outcome::Success)).unwrap();
        }
        // HistoryRuns lowered to 5: far more than twice 5 lines of 64 KiB.
        let (mut history, runs) = History::open(path.clone(), 5);
        assert_eq!(runs.unwrap().len(), 5);
        history.append(&run(3000, Outcome::Failure)).unwrap();
        let (_, runs) = History::open(path.clone(), 5);
        let starts: Vec<i64> = runs
            .unwrap()
            .iter()
            .map(|r| r.start.as_second() - 1_700_000_000)
            .collect();
        assert_eq!(starts, [2960, 2970, 2980, 2990, 3000]);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "job");
        let (mut history, _) = History::open(path.clone(), 10);
        history.append(&run(0, Outcome::Success)).unwrap();
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"start":"2026-12-01T03:00:00+01:00","en"#)
            .unwrap();
        let (mut history, runs) = History::open(path.clone(), 10);
        assert_eq!(runs.unwrap().len(), 1);
        // The torn line is cut off: the file holds whole runs only.
        assert!(fs::read_to_string(&path).unwrap().ends_with("}\n"));
        history.append(&run(10, Outcome::Failure)).unwrap();
        let (_, runs) = History::open(path.clone(), 10);
        let outcomes: Vec<Outcome> = runs.unwrap().iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [Outcome::Success, Outcome::Failure]);
    }

    #[test]
    fn a_fifo_planted_at_the_history_file_fails_the_append_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "job");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let fifo = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let (mut history, runs) = History::open(path.clone(), 10);
        assert!(runs.unwrap_err().to_string().contains("FIFO"));
        // No reader: a blocking open would wait here for ever.
        assert!(history.append(&run(0, Outcome::Success)).is_err());
    }

    #[test]
    fn a_link_planted_at_the_history_file_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "job");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let (mut history, runs) = History::open(path.clone(), 10);
        assert!(runs.unwrap_err().to_string().contains("symbolic link"));
        assert!(history.append(&run(0, Outcome::Success)).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    }
}
