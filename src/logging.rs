//! Logging: simplelog to stderr and to `LogDir/restic-cronned.log`, which
//! file-rotate rotates at `MaxSize` MB and prunes after `MaxAge` days or
//! when the rotated files pass ten times `MaxSize`; and a rate limit for the
//! output lines of runs, so that a child that floods output cannot flood
//! the log.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, FileLimit, SuffixScheme, TimestampSuffix};
use file_rotate::{ContentLimit, FileRotate, SuffixInfo};
use simplelog::{CombinedLogger, ConfigBuilder, LevelFilter, SharedLogger, WriteLogger};

use crate::config::Config;
use crate::files;

/// The log file's name inside `LogDir`.
pub const LOG_FILE: &str = "restic-cronned.log";

/// Rotated files kept at most: with each about `MaxSize`, their total stays
/// within ten times `MaxSize`, however fast the log grows.
const MAX_ROTATED_FILES: usize = 9;

/// The log file cannot be opened safely.
#[derive(Debug)]
pub struct LogFileError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for LogFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = self.source.raw_os_error() == Some(libc::ELOOP);
        let why = if link {
            "it is a symbolic link, which the daemon does not write through".to_string()
        } else {
            self.source.to_string()
        };
        write!(f, "cannot open log file {}: {why}", self.path.display())
    }
}

impl std::error::Error for LogFileError {}

/// The log targets of the HTTP client, whose own lines (at debug and
/// trace) carry the URLs and headers of healthcheck pings and
/// notifications: secrets. They are never logged.
const HTTP_CLIENT_TARGETS: [&str; 2] = ["ureq", "rustls"];

fn is_http_client(target: &str) -> bool {
    HTTP_CLIENT_TARGETS.iter().any(|t| target.starts_with(t))
}

/// Starts logging to stderr only, at `level`: `--run`, in the foreground
/// beside a daemon that owns the log file.
pub fn init_stderr(level: LevelFilter) {
    let _ = CombinedLogger::init(vec![WriteLogger::new(
        level,
        line_format(),
        lines(io::stderr()),
    )]);
}

/// One `write` per log line: simplelog writes a line in a dozen pieces (the
/// time alone in eight), each a system call on an unbuffered stderr or log
/// file, and all of them on the thread that logs (the supervisor, too).
fn lines<W: Write>(out: W) -> io::LineWriter<W> {
    // Room for a long restic line, so that it too is one write (whole in
    // the O_APPEND log file).
    io::LineWriter::with_capacity(8 << 10, out)
}

/// Time, level and message: what every line of ours carries.
fn line_format() -> simplelog::Config {
    let mut builder = ConfigBuilder::new();
    builder
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_ignore_str(HTTP_CLIENT_TARGETS[0])
        .add_filter_ignore_str(HTTP_CLIENT_TARGETS[1]);
    let _ = builder.set_time_offset_to_local();
    builder.build()
}

/// Starts logging to stderr and to the log file in `LogDir`, which the
/// caller has checked ([`files::check_private_dir`]). Call it before any
/// thread starts (the local UTC offset is read here).
pub fn init(config: &Config) -> Result<(), LogFileError> {
    let format = line_format();
    let level = config.log_level;
    let path = config.log_dir.join(LOG_FILE);
    // file-rotate opens the file itself (and again after each rotation)
    // with the options below; opening it once here first turns a link
    // planted at its name into a start-up error instead of a log that
    // silently goes nowhere.
    let error = |source| LogFileError {
        path: path.clone(),
        source,
    };
    let mut options = files::private_open_options();
    options.read(true).create(true).append(true);
    let file = options.open(&path).map_err(error)?;
    // A log file from before (0644 in v1) becomes private too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(error)?;
    let file = FileRotate::new(
        path,
        Pruned(AppendTimestamp::default(FileLimit::Age(
            chrono::Duration::days(i64::from(config.log_max_age_days)),
        ))),
        // Saturating: a large MaxSize must not wrap on 32-bit ARM.
        ContentLimit::BytesSurpassed(
            usize::try_from(config.log_max_size_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        ),
        Compression::None,
        Some(options),
    );
    let stderr: Box<dyn SharedLogger> = if stderr_is_the_journal() {
        Box::new(JournalLogger { level })
    } else {
        WriteLogger::new(level, format.clone(), lines(io::stderr()))
    };
    let loggers: Vec<Box<dyn SharedLogger>> =
        vec![stderr, WriteLogger::new(level, format, lines(file))];
    // A second init (tests calling `run` twice) keeps the first logger.
    let _ = CombinedLogger::init(loggers);
    Ok(())
}

/// Whether stderr is a stream to journald: systemd then sets
/// `JOURNAL_STREAM` to its `DEVICE:INODE` (`systemd.exec(5)`); a child whose
/// stderr was redirected elsewhere inherits the variable, hence the check.
fn stderr_is_the_journal() -> bool {
    let Some((device, inode)) = std::env::var("JOURNAL_STREAM").ok().and_then(|value| {
        let (device, inode) = value.split_once(':')?;
        Some((device.parse::<u64>().ok()?, inode.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    let stderr = io::stderr();
    let Ok(fd) = stderr.as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == device && m.ino() == inode)
}

/// Log lines for journald on stderr: a `<N>` syslog priority in front
/// (`sd-daemon(3)`), so `journalctl -p warning` finds failures, and no
/// time of our own (the journal keeps its own).
struct JournalLogger {
    level: LevelFilter,
}

impl log::Log for JournalLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level && !is_http_client(metadata.target())
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let priority = match record.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        // One write per line, so lines of different threads never mix.
        let line = format!("<{priority}>{}\n", record.args());
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = io::stderr().flush();
    }
}

impl SharedLogger for JournalLogger {
    fn level(&self) -> LevelFilter {
        self.level
    }

    fn config(&self) -> Option<&simplelog::Config> {
        None
    }

    fn as_log(self: Box<Self>) -> Box<dyn log::Log> {
        self
    }
}

/// file-rotate's timestamp suffixes, pruned by age (`MaxAge`) as file-rotate
/// does, and also by number, which file-rotate cannot do at the same time.
struct Pruned(AppendTimestamp);

impl SuffixScheme for Pruned {
    type Repr = TimestampSuffix;

    fn rotate_file(
        &mut self,
        basepath: &Path,
        newest_suffix: Option<&TimestampSuffix>,
        suffix: &Option<TimestampSuffix>,
    ) -> io::Result<TimestampSuffix> {
        self.0.rotate_file(basepath, newest_suffix, suffix)
    }

    fn parse(&self, suffix: &str) -> Option<TimestampSuffix> {
        self.0.parse(suffix)
    }

    fn too_old(&self, suffix: &TimestampSuffix, file_number: usize) -> bool {
        file_number >= MAX_ROTATED_FILES || self.0.too_old(suffix, file_number)
    }

    fn scan_suffixes(&self, basepath: &Path) -> BTreeSet<SuffixInfo<TimestampSuffix>> {
        self.0.scan_suffixes(basepath)
    }
}

/// Output bytes a run may log in a burst, and per second after it.
const LOG_BURST: f64 = 256.0 * 1024.0;
const LOG_RATE: f64 = 64.0 * 1024.0;
/// How often the lines left out are summed up in the log.
const DROPPED_REPORT_EVERY: Duration = Duration::from_secs(1);

/// A token bucket for one run's output lines in the log: a normal run logs
/// every line; a flood logs its first lines and then a steady trickle, and
/// the lines left out are counted and summed up about once a second.
pub struct LineRateLimit {
    allowance: f64,
    refilled: Instant,
    dropped_lines: u64,
    dropped_bytes: u64,
    dropped_since: Option<Instant>,
}

/// Lines a [`LineRateLimit`] kept out of the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    pub lines: u64,
    pub bytes: u64,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} output line(s) ({} bytes) not logged: more than {} KiB per second",
            self.lines,
            self.bytes,
            LOG_RATE as u64 / 1024
        )
    }
}

impl Default for LineRateLimit {
    fn default() -> LineRateLimit {
        LineRateLimit::new(Instant::now())
    }
}

impl LineRateLimit {
    fn new(now: Instant) -> LineRateLimit {
        LineRateLimit {
            allowance: LOG_BURST,
            refilled: now,
            dropped_lines: 0,
            dropped_bytes: 0,
            dropped_since: None,
        }
    }

    /// Whether a line of `len` bytes may be logged now; counts it if not.
    pub fn admit(&mut self, len: usize) -> bool {
        self.admit_at(len, Instant::now())
    }

    fn admit_at(&mut self, len: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.allowance = (self.allowance + elapsed * LOG_RATE).min(LOG_BURST);
        self.refilled = now;
        // The log line's own prefix costs too, so empty lines are not free.
        let cost = len as f64 + 64.0;
        if self.allowance >= cost {
            self.allowance -= cost;
            return true;
        }
        self.dropped_lines += 1;
        self.dropped_bytes += len as u64;
        self.dropped_since.get_or_insert(now);
        false
    }

    /// The lines left out, once a second while they keep coming.
    pub fn report_due(&mut self) -> Option<Dropped> {
        let since = self.dropped_since?;
        (since.elapsed() >= DROPPED_REPORT_EVERY).then(|| self.take())?
    }

    /// The lines left out since the last report, if any (at a run's end).
    pub fn take(&mut self) -> Option<Dropped> {
        self.dropped_since = None;
        let dropped = Dropped {
            lines: std::mem::take(&mut self.dropped_lines),
            bytes: std::mem::take(&mut self.dropped_bytes),
        };
        (dropped.lines > 0).then_some(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_a_burst_then_a_trickle_and_counts_the_rest() {
        let start = Instant::now();
        let mut limit = LineRateLimit::new(start);
        let line = 1000;
        let mut logged = 0u32;
        // Ten seconds of a 100 MB/s flood, one line every 10 µs.
        for i in 0..1_000_000u64 {
            if limit.admit_at(line, start + Duration::from_micros(10 * i)) {
                logged += 1;
            }
        }
        let most = (LOG_BURST + 10.0 * LOG_RATE) / (line as f64 + 64.0);
        assert!(f64::from(logged) <= most + 1.0, "{logged} > {most}");
        assert!(f64::from(logged) >= most - 2.0, "{logged} < {most}");
        let dropped = limit.take().unwrap();
        assert_eq!(dropped.lines, 1_000_000 - u64::from(logged));
        assert_eq!(limit.take(), None);
    }

    #[test]
    fn a_normal_run_logs_every_line() {
        let start = Instant::now();
        let mut limit = LineRateLimit::new(start);
        // A chatty backup: 200 lines of 100 bytes a second for a minute.
        for i in 0..12_000u64 {
            assert!(limit.admit_at(100, start + Duration::from_millis(5 * i)));
        }
        assert_eq!(limit.take(), None);
    }
}
