//! Job files: reading a job directory, turning each JSON file into a
//! validated [`Job`], and the checks that need the whole set (duplicate
//! names, unknown or cyclic `NextJob`s).
//!
//! Every problem of a file is reported at once, with the file and, where
//! there is one, the line and column; one bad file never stops the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::json::{self, Echo, Object, Position, describe};
use crate::delivery::healthcheck;
use crate::delivery::notify::{self, Target};
use crate::files::{self, CappedReadError};
use crate::job::history;
use crate::job::hook::{self, HookCommand, HookName, Hooks};
use crate::job::preconditions::Preconditions;
use crate::schedule::{self, RetryTimer, Schedule};
use crate::secrets::redacted::Redacted;

/// Every key a job file may have, spelled as the original spelled them.
pub const KNOWN_KEYS: &[&str] = &[
    "JobName",
    "regularTimer",
    "retryTimer",
    "maxFailedRetries",
    "NextJob",
    "Username",
    "Service",
    "ResticPath",
    "ResticArguments",
    "Env",
    "Timeout",
    "StopAfterFailedRetries",
    "Healthcheck",
    "UnlockStale",
    "Preconditions",
    "CheckPrecondsEvery",
    "CheckPrecondsMaxTimes",
    "Before",
    "OnSuccess",
    "OnFailure",
    "After",
    "HookTimeout",
    "Notify",
    "StaleAfter",
];

/// The keys of a `Preconditions` object. `PathsMust` is our spelling of the
/// original's `PathesMust`; either may be used, not both.
const PRECONDITION_KEYS: &[&str] = &[
    "PathesMust",
    "PathsMust",
    "HostsMustRoute",
    "HostsMustConnect",
];

/// The keys of one `HostsMustConnect` item.
const HOST_PORT_KEYS: &[&str] = &["Host", "Port"];

/// `CheckPrecondsEvery` when the file does not set it (SPEC §2).
pub const DEFAULT_CHECK_PRECONDS_EVERY: Duration = Duration::from_secs(60);

/// Keys whose values may hold secrets: S3 keys in `Env`, the check's UUID in
/// a `Healthcheck` URL, tokens in a `Notify` URL or its headers. A problem
/// with one names the file, the position, the key and what was expected,
/// never the value (SPEC §9), since problems go to the log, `/queue` and
/// `--check`.
pub const SECRET_KEYS: &[&str] = &["Env", "Healthcheck", "Notify"];

/// The most a job file may hold. Job files are read on the supervisor
/// thread, and a real one is a few hundred bytes: a bigger one is a mistake
/// (or a link to `/dev/zero`), not a job.
pub const MAX_JOB_FILE_BYTES: u64 = 1 << 20;

/// Keys the Go original put in `/queue` and accepted back from files; they are
/// runtime state, so we ignore them (with a warning).
const RUNTIME_KEYS: &[&str] = &["status", "CurrentRetry", "progress", "WaitStart", "WaitEnd"];

/// A validated job name: `[A-Za-z0-9._-]`, 1–100 characters, not starting
/// with `.`, so it is safe as a file name in the state directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName(String);

impl JobName {
    pub fn new(name: &str) -> Result<JobName, String> {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if name.is_empty() || name.len() > 100 || !ok_chars || name.starts_with('.') {
            return Err(format!(
                "JobName {name:?} is not valid: use 1 to 100 of A-Z a-z 0-9 . _ - \
                 and do not start with a dot"
            ));
        }
        if name == history::DIR {
            // StateDir/history is where the runs of every job are kept.
            return Err(format!(
                "JobName {name:?} is reserved: the StateDir keeps every job's runs in a \
                 folder of that name; choose another name"
            ));
        }
        Ok(JobName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keyring entry that holds a repository's password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringEntry {
    pub service: String,
    pub username: String,
}

/// A validated job definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub name: JobName,
    pub file: PathBuf,
    pub schedule: Option<Schedule>,
    pub retry_timer: Option<RetryTimer>,
    /// Retries per failure; negative means until success.
    pub max_failed_retries: i64,
    pub next_jobs: Vec<JobName>,
    /// `NextJob` as the file gave it (a string or a list), for `/queue`.
    pub next_job_raw: Value,
    pub keyring: Option<KeyringEntry>,
    /// `ResticPath` as given; `None` (absent or empty): `restic` from PATH.
    pub restic_path: Option<PathBuf>,
    pub restic_arguments: Vec<String>,
    /// May hold credentials (S3 keys): never in `Debug`.
    pub env: Redacted<BTreeMap<String, String>>,
    pub timeout: Option<Duration>,
    pub stop_after_failed_retries: bool,
    pub healthcheck: Option<String>,
    pub unlock_stale: bool,
    /// `Preconditions` with `CheckPrecondsEvery` and `CheckPrecondsMaxTimes`.
    pub preconditions: Option<Preconditions>,
    /// `Before`, `OnSuccess`, `OnFailure`, `After` (SPEC §4.1).
    pub hooks: Hooks,
    /// Each hook's limit (`HookTimeout`).
    pub hook_timeout: Duration,
    /// Where its events go (SPEC §6.5): `None` for the config's targets,
    /// `Some(vec![])` for none (`"Notify": []`).
    pub notify: Option<Vec<Target>>,
    /// A job whose last success is older than this is stale (SPEC §6.5).
    pub stale_after: Option<Duration>,
}

/// One problem with a job file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub position: Option<Position>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One `*.json` file of the job directory after loading.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: PathBuf,
    /// The job's name: its `JobName`, or the file name without `.json`.
    pub name: String,
    /// Shared with the job's thread and the board, so a job is in memory
    /// once however many places refer to it.
    pub job: Result<Arc<Job>, Vec<Problem>>,
    pub warnings: Vec<Problem>,
}

impl Entry {
    /// The file name, which orders the queue.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn invalidate(&mut self, message: String) {
        let problem = Problem {
            file: self.path.clone(),
            position: None,
            message,
        };
        match &mut self.job {
            Ok(_) => self.job = Err(vec![problem]),
            Err(problems) => problems.push(problem),
        }
    }
}

/// Why a job directory could not be read at all.
#[derive(Debug)]
pub enum DirError {
    Missing {
        path: PathBuf,
    },
    NotADirectory {
        path: PathBuf,
    },
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for DirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirError::Missing { path } => {
                write!(f, "job directory {} does not exist", path.display())
            }
            DirError::NotADirectory { path } => {
                write!(f, "job directory {} is not a directory", path.display())
            }
            DirError::Read { path, source } => {
                write!(f, "cannot read job directory {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for DirError {}

/// Checks that the job directory exists and is a directory.
pub fn check_dir(dir: &Path) -> Result<(), DirError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DirError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DirError::Missing {
            path: dir.to_path_buf(),
        }),
        Err(source) => Err(DirError::Read {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Loads every job file of `dir` (sorted by file name) and validates the set.
pub fn load_dir(dir: &Path) -> Result<Vec<Entry>, DirError> {
    check_dir(dir)?;
    let read_error = |source| DirError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let dir_problem = fs::metadata(dir)
        .ok()
        .and_then(|m| not_safe(&m))
        .map(|why| format!("the job directory {} {why}", dir.display()));
    let mut paths = Vec::new();
    for dirent in fs::read_dir(dir).map_err(read_error)? {
        let path = dirent.map_err(read_error)?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else { continue };
        if name.starts_with('.') || !name.ends_with(".json") || name == ".json" {
            continue;
        }
        // Follows symlinks: a link to a directory is not a job. A FIFO or a
        // device named *.json is listed, so that `load_file` can say why it
        // is no job instead of leaving the user to wonder.
        if fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
            paths.push(path);
        }
    }
    paths.sort();
    let mut entries: Vec<Entry> = paths.iter().map(|p| load_file(p)).collect();
    if let Some(why) = dir_problem {
        for entry in &mut entries {
            entry.invalidate(why.clone());
        }
    }
    validate_set(&mut entries);
    Ok(entries)
}

/// Why a file or directory may not be trusted, if it may not: a job names a
/// program to run, so nobody but us (or root) may be able to change it.
fn not_safe(meta: &fs::Metadata) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "is writable by other users (mode {mode:04o}); run chmod go-w on it"
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "belongs to uid {}, not to this user (uid {me}) or root",
            meta.uid()
        ));
    }
    None
}

/// Problems reported for one key at most (`Env` with thousands of bad
/// values); the rest are counted.
const MAX_PROBLEMS_PER_KEY: usize = 10;

/// Reads a job file on the supervisor thread, never waiting on a FIFO or a device:
/// only a regular file is read, and at most [`MAX_JOB_FILE_BYTES`] of it.
/// Returns the bytes and the metadata of what was read; an error is a
/// message for a [`Problem`].
fn read_job_file(path: &Path) -> Result<(Vec<u8>, fs::Metadata), String> {
    files::read_capped(path, MAX_JOB_FILE_BYTES, true).map_err(|e| match e {
        CappedReadError::Io(e) => format!("cannot read the file: {e}"),
        CappedReadError::NotRegular(what) => {
            format!("this is {what}, not a regular file; a job file must be a regular file")
        }
        CappedReadError::TooLarge { cap } => format!(
            "the file is larger than {}, the most a job file may hold",
            files::size(cap)
        ),
        // Links are followed.
        CappedReadError::Link => format!("cannot read the file: {e}"),
    })
}

/// Whether this process runs as root, the case where the programs a job
/// names must be safe from other users.
fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// [`resolve_program`] on the `PATH` a job's run has: its `Env`'s, else the
/// daemon's.
pub fn resolve_job_program(
    program: &str,
    job_dir: &Path,
    job_env: &BTreeMap<String, String>,
) -> Option<PathBuf> {
    let search_path = job_env
        .get("PATH")
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"));
    resolve_program(program, job_dir, search_path.as_deref())
}

/// The file that running `program` with `job_dir` as the working directory
/// would execute, as `std::process::Command` finds it: a name with a `/` is
/// a path (relative ones from `job_dir`), a bare name is looked up in
/// `search_path` (the job's `PATH`, else the daemon's). `None` when no such
/// file exists: starting it will fail, and the run says so.
pub fn resolve_program(
    program: &str,
    job_dir: &Path,
    search_path: Option<&OsStr>,
) -> Option<PathBuf> {
    if program.contains('/') {
        let path = job_dir.join(program);
        return path.exists().then_some(path);
    }
    // execvp's default when PATH is not set at all.
    let search_path = search_path.unwrap_or(OsStr::new("/bin:/usr/bin"));
    std::env::split_paths(search_path)
        .map(|dir| job_dir.join(dir).join(program))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// Why a root daemon must not run `program` (`ResticPath`, a hook's
/// program): someone other than root could change what it runs.
/// That is the case when the file does not belong to root or is writable by
/// group or others, or when a directory on its way (as written, or after
/// following links) belongs to someone else or is writable by everyone
/// without the sticky bit, since whoever may rename entries in a directory
/// may put another file in its place. Each problem says how to fix it.
pub fn program_problems_for_root(program: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let shown = program.display();
    let Ok(meta) = fs::metadata(program) else {
        return problems;
    };
    if meta.uid() != 0 {
        problems.push(format!(
            "{shown} belongs to uid {}, not root, and a root daemon runs it; \
             run chown root {shown}",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        problems.push(format!(
            "{shown} is writable by other users (mode {mode:04o}), and a root daemon runs it; \
             run chmod go-w {shown}"
        ));
    }
    let mut directories = BTreeSet::new();
    if let Ok(written) = std::path::absolute(program) {
        directories.extend(written.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(real) = fs::canonicalize(program) {
        directories.extend(real.ancestors().skip(1).map(Path::to_path_buf));
    }
    for directory in &directories {
        let Ok(meta) = fs::metadata(directory) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        let dir = directory.display();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            problems.push(format!(
                "{shown} is in {dir}, which everyone may write to (mode {mode:04o}), and a \
                 root daemon runs it; run chmod o-w {dir}, or move the program"
            ));
        } else if meta.uid() != 0 {
            problems.push(format!(
                "{shown} is in {dir}, which belongs to uid {}, not root, and a root daemon \
                 runs it; move the program to a directory of root's",
                meta.uid()
            ));
        }
    }
    problems
}

/// Loads one job file on its own (set checks are [`validate_set`]'s).
pub fn load_file(path: &Path) -> Entry {
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".json").to_string())
        .unwrap_or_default();
    let mut entry = Entry {
        path: path.to_path_buf(),
        name: stem,
        job: Err(Vec::new()),
        warnings: Vec::new(),
    };
    let problem = |position, message| Problem {
        file: path.to_path_buf(),
        position,
        message,
    };
    let (text, meta) = match read_job_file(path) {
        Ok((bytes, meta)) => (String::from_utf8_lossy(&bytes).into_owned(), meta),
        Err(message) => {
            entry.job = Err(vec![problem(None, message)]);
            return entry;
        }
    };
    let value = match json::parse(&text) {
        Ok(value) => value,
        Err(e) => {
            let message = format!("not valid JSON: {}", e.message);
            entry.job = Err(vec![problem(Some(e.position), message)]);
            return entry;
        }
    };
    let Some(map) = value.as_object() else {
        let message = format!(
            "a job file must hold a JSON object, not {}",
            describe(&value)
        );
        entry.job = Err(vec![problem(None, message)]);
        return entry;
    };
    let object = Object::new(map, Some(&text));
    for unknown in object.unknown_keys(KNOWN_KEYS) {
        let message = if RUNTIME_KEYS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&unknown.key))
        {
            format!("{:?} is runtime state, not a setting; ignored", unknown.key)
        } else {
            format!("{unknown}; ignored")
        };
        entry.warnings.push(problem(unknown.position, message));
    }
    let mut parser = Parser {
        object: &object,
        text: &text,
        path,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let job = parser.job(&entry.name);
    entry.warnings.append(&mut parser.warnings);
    if let Some(why) = not_safe(&meta) {
        parser
            .problems
            .push(problem(None, format!("the job file {why}")));
    }
    if let Some(name) = parser.string("JobName") {
        entry.name = name;
    }
    entry.job = match job {
        Some(job) if parser.problems.is_empty() => Ok(Arc::new(job)),
        _ => Err(parser.problems),
    };
    entry
}

/// Why a key's value was refused.
struct Refusal {
    /// The key inside the value that is at fault (a variable of `Env`),
    /// exactly as written, to find its position.
    inner: Option<String>,
    /// Whether `inner` may be named: a key such as `AWS_SECRET_ACCESS_KEY=…`
    /// holds a secret itself.
    name_inner: bool,
    message: String,
}

/// Every reason a key's value was refused.
struct Refusals(Vec<Refusal>);

impl From<String> for Refusals {
    fn from(message: String) -> Refusals {
        Refusals::from(vec![message])
    }
}

impl From<Vec<String>> for Refusals {
    fn from(messages: Vec<String>) -> Refusals {
        let refusal = |message| Refusal {
            inner: None,
            name_inner: false,
            message,
        };
        Refusals(messages.into_iter().map(refusal).collect())
    }
}

/// Reads typed fields out of a job object, collecting every problem.
struct Parser<'a, 'o> {
    object: &'a Object<'o>,
    /// The file's text, to find the position of a nested key.
    text: &'a str,
    path: &'a Path,
    problems: Vec<Problem>,
    /// Unknown keys inside values (`Preconditions`); the top-level ones
    /// are `load_file`'s.
    warnings: Vec<Problem>,
}

impl Parser<'_, '_> {
    /// Converts `key`'s value when the file has it. `convert` learns from
    /// the [`Echo`] whether its messages may quote the value: not for
    /// [`SECRET_KEYS`].
    fn field<T, E: Into<Refusals>>(
        &mut self,
        key: &str,
        convert: impl FnOnce(&Value, Echo) -> Result<T, E>,
    ) -> Option<T> {
        let (spelled, value, position) = self.object.entry(key)?;
        match convert(value, Echo::for_key(key, SECRET_KEYS)) {
            Ok(v) => Some(v),
            Err(refusals) => {
                // Each position rescans the file: only the problems that are
                // reported one by one get one.
                let text = self.text;
                let refusals = (refusals.into().0.into_iter().enumerate())
                    .map(|(n, refusal)| match &refusal.inner {
                        Some(inner) => {
                            let name = if refusal.name_inner {
                                format!("{key}.{}", key_name(inner))
                            } else {
                                key.to_string()
                            };
                            let at = (n < MAX_PROBLEMS_PER_KEY)
                                .then(|| json::key_position(text, &[spelled, inner]))
                                .flatten()
                                .or(position);
                            (at, format!("{name}: {}", refusal.message))
                        }
                        None => (position, format!("{key}: {}", refusal.message)),
                    })
                    .collect();
                self.errors_capped(key, position, refusals);
                None
            }
        }
    }

    fn error(&mut self, position: Option<Position>, message: String) {
        self.problems.push(Problem {
            file: self.path.to_path_buf(),
            position,
            message,
        });
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.field(key, |v, echo| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("expected a string, found {}", echo.found(other))),
        })
    }

    fn bool(&mut self, key: &str) -> bool {
        self.field(key, |v, echo| match v {
            Value::Bool(b) => Ok(*b),
            other => Err(format!(
                "expected true or false, found {}",
                echo.found(other)
            )),
        })
        .unwrap_or(false)
    }

    /// Reports `program` (run for `key`) when a root daemon must not
    /// run it (see [`program_problems_for_root`]). It is found as running
    /// it would find it: from the job directory, or on the job's `PATH`.
    fn check_program_for_root(&mut self, key: &str, program: &str, env: &BTreeMap<String, String>) {
        let job_dir = self.path.parent().unwrap_or(Path::new("."));
        let Some(resolved) = resolve_job_program(program, job_dir, env) else {
            return;
        };
        let position = self.object.get(key).and_then(|(_, p)| p);
        for why in program_problems_for_root(&resolved) {
            self.error(position, format!("{key}: {why}"));
        }
    }

    fn job(&mut self, stem: &str) -> Option<Job> {
        let name = match self.string("JobName") {
            Some(name) => JobName::new(&name),
            None => JobName::new(stem).map_err(|e| {
                format!("{e} (taken from the file name; set \"JobName\" to choose another)")
            }),
        };
        let name = name
            .map_err(|e| {
                let position = self.object.get("JobName").and_then(|(_, p)| p);
                self.error(position, e)
            })
            .ok();
        let schedule = self
            .field("regularTimer", |v, _| schedule::parse_schedule(v))
            .flatten();
        let retry_timer = self
            .field("retryTimer", |v, _| schedule::parse_retry_timer(v))
            .flatten();
        let max_failed_retries = self
            .field("maxFailedRetries", |v, echo| {
                v.as_i64()
                    .ok_or_else(|| format!("expected a whole number, found {}", echo.found(v)))
            })
            .unwrap_or(0);
        let next_job_raw = self
            .object
            .get("NextJob")
            .map_or(Value::Null, |(v, _)| v.clone());
        let next_jobs = self
            .field("NextJob", |v, _| parse_next_jobs(v))
            .unwrap_or_default();
        let username = self.string("Username");
        let service = self.string("Service");
        let keyring = match (username, service) {
            (Some(username), Some(service)) => Some(KeyringEntry { service, username }),
            (None, None) => None,
            (username, _) => {
                let (have, missing) = if username.is_some() {
                    ("Username", "Service")
                } else {
                    ("Service", "Username")
                };
                let position = self.object.get(have).and_then(|(_, p)| p);
                self.error(
                    position,
                    format!("{have} is set but {missing} is not; the keyring entry needs both"),
                );
                None
            }
        };
        let restic_path = self.string("ResticPath").filter(|p| !p.is_empty());
        let restic_arguments = match self.object.get("ResticArguments") {
            None => {
                self.error(
                    None,
                    "ResticArguments is missing: say what restic should do, \
                     e.g. [\"-r\", \"/srv/repo\", \"backup\", \"/home\"]"
                        .into(),
                );
                None
            }
            Some(_) => self.field("ResticArguments", |v, _| string_list(v)),
        };
        let env = self.field("Env", environment).unwrap_or_default();
        if let Some(program) = &restic_path
            && running_as_root()
        {
            self.check_program_for_root("ResticPath", program, &env);
        }
        let hooks = self.hooks();
        if running_as_root() {
            for (name, command) in hooks.iter() {
                self.check_program_for_root(name.key(), command.program(), &env);
            }
        }
        let hook_timeout = self.hook_timeout();
        let timeout = self
            .field("Timeout", |v, _| schedule::parse_duration(v))
            .flatten();
        let stop_after_failed_retries = self.bool("StopAfterFailedRetries");
        let healthcheck = self
            .field("Healthcheck", |v, echo| match v {
                Value::String(url) if url.is_empty() => Ok(String::new()),
                Value::String(url) => healthcheck::validate_url(url)
                    .map(|()| url.clone())
                    .map_err(|why| match echo {
                        // The path of a ping URL is the check's secret.
                        Echo::TypeOnly => why.replace(&format!("{url:?}"), "the URL"),
                        Echo::Value => why,
                    }),
                other => Err(format!("expected a URL, found {}", echo.found(other))),
            })
            .filter(|url| !url.is_empty());
        let unlock_stale = self.bool("UnlockStale");
        let preconditions = self.preconditions();
        let notify = self.notify();
        let stale_after = self.stale_after();
        Some(Job {
            name: name?,
            file: self.path.to_path_buf(),
            schedule,
            retry_timer,
            max_failed_retries,
            next_jobs,
            next_job_raw,
            keyring,
            restic_path: restic_path.map(PathBuf::from),
            restic_arguments: restic_arguments?,
            env: Redacted(env),
            timeout: timeout.filter(|t| !t.is_zero()),
            stop_after_failed_retries,
            healthcheck,
            unlock_stale,
            preconditions,
            hooks,
            hook_timeout,
            notify,
            stale_after,
        })
    }

    /// `Notify`: `None` when absent or `null` (the config's targets),
    /// `Some(vec![])` for `[]`. Each problem points at the key inside it
    /// that is at fault, and never quotes a URL or a header value (SPEC
    /// §9).
    fn notify(&mut self) -> Option<Vec<Target>> {
        let (spelled, value, position) = self.object.entry("Notify")?;
        if value.is_null() {
            return None;
        }
        let text = self.text;
        // Where a key inside `Notify` stands, else where `Notify` does.
        let at = |path: &[String], reported: usize| {
            if reported >= MAX_PROBLEMS_PER_KEY {
                return position;
            }
            let mut full = vec![spelled];
            full.extend(path.iter().map(String::as_str));
            json::key_position(text, &full).or(position)
        };
        let mut warnings = Vec::new();
        let targets = notify::parse_targets(value, &mut warnings);
        for (n, warning) in warnings.into_iter().enumerate() {
            self.warning(at(&warning.path, n), format!("Notify: {warning}"));
        }
        match targets {
            Ok(targets) => Some(targets),
            Err(problems) => {
                let refusals = (problems.into_iter().enumerate())
                    .map(|(n, p)| (at(&p.path, n), format!("Notify: {p}")))
                    .collect();
                self.errors_capped("Notify", position, refusals);
                None
            }
        }
    }

    /// `StaleAfter`: a positive duration, or `None` (absent or `null`).
    fn stale_after(&mut self) -> Option<Duration> {
        self.field("StaleAfter", |v, echo| {
            if v.is_null() {
                return Ok(None);
            }
            match schedule::parse_duration(v)? {
                Some(after) if !after.is_zero() => Ok(Some(after)),
                // 0, or negative (which `parse_duration` reads as none).
                _ => Err(format!(
                    "expected a positive duration such as \"2d\", found {}",
                    echo.found(v)
                )),
            }
        })
        .flatten()
    }

    /// `Before`, `OnSuccess`, `OnFailure` and `After` (SPEC §4.1).
    fn hooks(&mut self) -> Hooks {
        let mut command = |name: HookName| self.field(name.key(), hook_command).flatten();
        Hooks {
            before: command(HookName::Before),
            on_success: command(HookName::OnSuccess),
            on_failure: command(HookName::OnFailure),
            after: command(HookName::After),
        }
    }

    /// `HookTimeout`: each hook's limit, [`hook::DEFAULT_TIMEOUT`] when
    /// absent or `null`. Unlike `Timeout`, where 0 and negative mean no
    /// limit, those are errors here: a `Before` hook holds the repository's
    /// turn, and one that never ends would keep every job of that
    /// repository from running, without a word.
    fn hook_timeout(&mut self) -> Duration {
        self.field("HookTimeout", |v, echo| {
            if v.is_null() {
                return Ok(hook::DEFAULT_TIMEOUT);
            }
            match schedule::parse_duration(v)? {
                Some(limit) if !limit.is_zero() => Ok(limit),
                // 0, or negative (which `parse_duration` reads as none).
                _ => Err(format!(
                    "expected a positive duration, found {}; a hook with no limit could \
                     hold the repository forever",
                    echo.found(v)
                )),
            }
        })
        .unwrap_or(hook::DEFAULT_TIMEOUT)
    }

    /// `Preconditions` with `CheckPrecondsEvery` and `CheckPrecondsMaxTimes`
    /// (SPEC §3.1). `None` when there is nothing to check, or when
    /// something is wrong (then the job is invalid and the problems say
    /// why).
    fn preconditions(&mut self) -> Option<Preconditions> {
        // Both are read, and their types checked, even without
        // `Preconditions`: the later original's own example files set them
        // on jobs that check nothing, and that is no reason to warn. `null`
        // and negative waits (no duration) mean the default; `0` means
        // rounds back to back.
        let every = self
            .field("CheckPrecondsEvery", |v, _| schedule::parse_duration(v))
            .flatten()
            .unwrap_or(DEFAULT_CHECK_PRECONDS_EVERY);
        // The original skipped the checks entirely when this was 0 or less
        // (its default); we check at least once, since a job that lists
        // preconditions means them. More rounds than a u32 holds are, at
        // one a second, 136 years: the most there is.
        let rounds = self
            .field("CheckPrecondsMaxTimes", |v, _| match v {
                Value::Null => Ok(1),
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n
                    .as_i64()
                    .map_or(u32::MAX, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))),
                other => Err(format!(
                    "expected a whole number of rounds, found {}",
                    describe(other)
                )),
            })
            .unwrap_or(1);
        let (spelled, value, position) = self.object.entry("Preconditions")?;
        let map = match value {
            Value::Null => return None,
            Value::Object(map) => map,
            other => {
                self.error(
                    position,
                    format!(
                        "Preconditions: expected an object such as \
                         {{\"PathesMust\": [\"/mnt/usb/photos\"]}}, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let object = Object::new(map, None);
        let text = self.text;
        // Where a key inside `Preconditions` stands, else where
        // `Preconditions` does.
        let at = |path: &[&str]| {
            let mut full = vec![spelled];
            full.extend_from_slice(path);
            json::key_position(text, &full).or(position)
        };
        let problems_before = self.problems.len();
        for unknown in object.unknown_keys(PRECONDITION_KEYS) {
            let position = at(&[&unknown.key]);
            self.warning(position, format!("Preconditions: {unknown}; ignored"));
        }

        let paths = match (object.entry("PathesMust"), object.entry("PathsMust")) {
            (Some((first, ..)), Some((second, ..))) => {
                self.error(
                    at(&[second]),
                    format!(
                        "Preconditions: both {first:?} and {second:?} are given; they are two \
                         spellings of one list, so keep one"
                    ),
                );
                Vec::new()
            }
            (Some((key, value, _)), None) | (None, Some((key, value, _))) => {
                let name = if key.eq_ignore_ascii_case("PathsMust") {
                    "PathsMust"
                } else {
                    "PathesMust"
                };
                let paths = self.names(
                    value,
                    &format!("Preconditions.{name}"),
                    "a path",
                    at(&[key]),
                );
                // Relative paths are taken from the job directory, restic's
                // working directory, so that `"./data"` means the same to
                // the check as to the backup.
                let job_dir = self.path.parent().unwrap_or(Path::new("."));
                paths
                    .into_iter()
                    .map(|p| {
                        let joined = job_dir.join(p);
                        std::path::absolute(&joined).unwrap_or(joined)
                    })
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        let hosts_route = match object.entry("HostsMustRoute") {
            Some((key, value, _)) => self.names(
                value,
                "Preconditions.HostsMustRoute",
                "a host name",
                at(&[key]),
            ),
            None => Vec::new(),
        };
        let hosts_connect = match object.entry("HostsMustConnect") {
            Some((key, value, _)) => self.hosts_and_ports(value, &[spelled, key]),
            None => Vec::new(),
        };
        if self.problems.len() > problems_before
            || (paths.is_empty() && hosts_route.is_empty() && hosts_connect.is_empty())
        {
            return None;
        }
        Some(Preconditions {
            paths,
            hosts_route,
            hosts_connect,
            every,
            rounds,
        })
    }

    /// A list of non-empty strings (paths, host names) under `key`; `null`
    /// is an empty list, as in the original. Each bad item is reported at
    /// `position` (items have no key of their own to point at).
    fn names(
        &mut self,
        value: &Value,
        key: &str,
        what: &str,
        position: Option<Position>,
    ) -> Vec<String> {
        let items = match value {
            Value::Null => return Vec::new(),
            Value::Array(items) => items,
            other => {
                let message = format!(
                    "{key}: expected a list of strings, found {}",
                    describe(other)
                );
                self.error(position, message);
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        let mut refusals = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) if !s.is_empty() && !s.contains('\0') => names.push(s.clone()),
                other => refusals.push((
                    position,
                    format!(
                        "{key}: item {i}: expected {what}, found {}",
                        describe(other)
                    ),
                )),
            }
        }
        self.errors_capped(key, position, refusals);
        names
    }

    /// `HostsMustConnect`: `[{"Host": "nas.local", "Port": 22}]` (keys in
    /// any case), `null` for none. `path` leads to it from the top level,
    /// as the file spells it.
    fn hosts_and_ports(&mut self, value: &Value, path: &[&str]) -> Vec<(String, u16)> {
        const KEY: &str = "Preconditions.HostsMustConnect";
        let text = self.text;
        let list_position = json::key_position(text, path);
        let items = match value {
            Value::Null => return Vec::new(),
            Value::Array(items) => items,
            other => {
                let message = format!(
                    "{KEY}: expected a list such as [{{\"Host\": \"nas.local\", \"Port\": 22}}], \
                     found {}",
                    describe(other)
                );
                self.error(list_position, message);
                return Vec::new();
            }
        };
        let mut hosts = Vec::new();
        let mut refusals = Vec::new();
        let mut unknown_keys = 0;
        for (i, item) in items.iter().enumerate() {
            let index = i.to_string();
            // Where a key of this item stands, else where the list does.
            // Each lookup rescans the file, so only the problems that are
            // reported one by one get one (a huge list must not stall the
            // supervisor).
            let at = |key: &str, reported: usize| {
                if reported >= MAX_PROBLEMS_PER_KEY {
                    return list_position;
                }
                let mut full = path.to_vec();
                full.push(&index);
                full.push(key);
                json::key_position(text, &full).or(list_position)
            };
            let Value::Object(map) = item else {
                refusals.push((
                    list_position,
                    format!(
                        "{KEY}: item {i}: expected {{\"Host\": …, \"Port\": …}}, found {}",
                        describe(item)
                    ),
                ));
                continue;
            };
            let object = Object::new(map, None);
            for unknown in object.unknown_keys(HOST_PORT_KEYS) {
                let position = at(&unknown.key, unknown_keys);
                unknown_keys += 1;
                self.warning(position, format!("{KEY}: item {i}: {unknown}; ignored"));
            }
            let host = match object.entry("Host") {
                Some((_, Value::String(host), _)) if !host.is_empty() && !host.contains('\0') => {
                    Some(host.clone())
                }
                Some((spelled, other, _)) => {
                    refusals.push((
                        at(spelled, refusals.len()),
                        format!(
                            "{KEY}: item {i}: Host: expected a host name, found {}",
                            describe(other)
                        ),
                    ));
                    None
                }
                None => {
                    refusals.push((list_position, format!("{KEY}: item {i}: Host is missing")));
                    None
                }
            };
            let port = match object.entry("Port") {
                Some((spelled, value, _)) => {
                    let port = value
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|&p| p != 0);
                    if port.is_none() {
                        refusals.push((
                            at(spelled, refusals.len()),
                            format!(
                                "{KEY}: item {i}: Port: expected a whole number from 1 to 65535, \
                                 found {}",
                                describe(value)
                            ),
                        ));
                    }
                    port
                }
                None => {
                    refusals.push((list_position, format!("{KEY}: item {i}: Port is missing")));
                    None
                }
            };
            if let (Some(host), Some(port)) = (host, port) {
                hosts.push((host, port));
            }
        }
        self.errors_capped(KEY, list_position, refusals);
        hosts
    }

    /// Reports the first [`MAX_PROBLEMS_PER_KEY`] of `refusals` (problems
    /// with `key`'s items) and a count of the rest at `position`, as
    /// [`Parser::field`] does.
    fn errors_capped(
        &mut self,
        key: &str,
        position: Option<Position>,
        refusals: Vec<(Option<Position>, String)>,
    ) {
        let more = refusals.len().saturating_sub(MAX_PROBLEMS_PER_KEY);
        for (position, message) in refusals.into_iter().take(MAX_PROBLEMS_PER_KEY) {
            self.error(position, message);
        }
        if more > 0 {
            self.error(
                position,
                format!("{key}: {more} more problem(s) like these"),
            );
        }
    }

    fn warning(&mut self, position: Option<Position>, message: String) {
        self.warnings.push(Problem {
            file: self.path.to_path_buf(),
            position,
            message,
        });
    }
}

/// A hook's command: a string runs as `/bin/sh -c STRING`, a list is the
/// argv of a program started without a shell, and `null` is no hook. Every
/// bad item of a list is reported.
fn hook_command(value: &Value, echo: Echo) -> Result<Option<HookCommand>, Refusals> {
    let items = match value {
        Value::Null => return Ok(None),
        // A blank script would "succeed" at doing nothing, every run.
        Value::String(script) if script.trim().is_empty() => {
            return Err("the command is empty; write one, or null for no hook"
                .to_string()
                .into());
        }
        Value::String(script) if script.contains('\0') => {
            return Err("the command holds a NUL byte, which no command line can"
                .to_string()
                .into());
        }
        Value::String(script) => return Ok(Some(HookCommand::Shell(script.clone()))),
        Value::Array(items) if items.is_empty() => {
            return Err("the list is empty; it needs at least the program to run"
                .to_string()
                .into());
        }
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "expected a command: a string for /bin/sh -c, or a list of strings, found {}",
                echo.found(other)
            )
            .into());
        }
    };
    let mut argv = Vec::new();
    let mut refusals = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if i == 0 && s.is_empty() => {
                refusals.push("item 0: the program to run is empty".to_string());
            }
            Value::String(s) if s.contains('\0') => refusals.push(format!(
                "item {i}: the argument holds a NUL byte, which no command line can"
            )),
            Value::String(s) => argv.push(s.clone()),
            other => refusals.push(format!(
                "item {i}: expected a string, found {}",
                echo.found(other)
            )),
        }
    }
    if refusals.is_empty() {
        Ok(Some(HookCommand::Argv(argv)))
    } else {
        Err(refusals.into())
    }
}

fn parse_next_jobs(value: &Value) -> Result<Vec<JobName>, String> {
    let names: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(_) => string_list(value)?,
        other => {
            return Err(format!(
                "expected a job name or a list of job names, found {}",
                describe(other)
            ));
        }
    };
    names.iter().map(|n| JobName::new(n)).collect()
}

fn string_list(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "expected a list of strings, found {}",
            describe(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "item {i} should be a string, found {}",
                describe(other)
            )),
        })
        .collect()
}

/// `Env`: variable names and their values, every bad one reported. It may
/// hold S3 keys, so with [`Echo::TypeOnly`] no value is ever quoted, and a
/// name only up to a `=` (what follows may be a secret pasted into it).
fn environment(value: &Value, echo: Echo) -> Result<BTreeMap<String, String>, Refusals> {
    let Value::Object(map) = value else {
        return Err(format!(
            "expected an object of strings such as {{\"AWS_ACCESS_KEY_ID\": \"…\"}}, found {}",
            echo.found(value)
        )
        .into());
    };
    let mut env = BTreeMap::new();
    let mut refusals = Vec::new();
    for (name, value) in map {
        let refuse = |name_inner, message| Refusal {
            inner: Some(name.clone()),
            name_inner,
            message,
        };
        if let Some((before, _)) = name.split_once('=') {
            refusals.push(refuse(
                false,
                format!(
                    "the variable name {}=… holds a \"=\"; write it as {{\"NAME\": \"value\"}}",
                    key_name(before)
                ),
            ));
            continue;
        }
        if name.is_empty() || name.contains('\0') {
            refusals.push(refuse(
                true,
                "a variable name cannot be empty or hold a NUL byte".into(),
            ));
            continue;
        }
        match value {
            Value::String(s) if s.contains('\0') => refusals.push(refuse(
                true,
                "the value holds a NUL byte, which no environment variable can".into(),
            )),
            Value::String(s) => {
                env.insert(name.clone(), s.clone());
            }
            other => refusals.push(refuse(
                true,
                format!("expected a string, found {}", echo.found(other)),
            )),
        }
    }
    if refusals.is_empty() {
        Ok(env)
    } else {
        Err(Refusals(refusals))
    }
}

/// A key inside a value as a problem names it: plain when it is a plain
/// name (`AWS_SECRET_ACCESS_KEY`), quoted otherwise.
fn key_name(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The checks that need every job: unique names, `NextJob`s that exist, and
/// no `NextJob` cycles. Failing jobs become invalid; both files of a
/// duplicate name are reported, and every job on a cycle.
pub fn validate_set(entries: &mut [Entry]) {
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        by_name.entry(entry.name.clone()).or_default().push(i);
    }
    let mut messages: Vec<(usize, String)> = Vec::new();
    for indices in by_name.values().filter(|v| v.len() > 1) {
        for &i in indices {
            let others: Vec<String> = indices
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| entries[j].path.display().to_string())
                .collect();
            let message = format!(
                "JobName {:?} is also used by {}; job names must be unique",
                entries[i].name,
                others.join(", ")
            );
            messages.push((i, message));
        }
    }
    for (i, entry) in entries.iter().enumerate() {
        let Ok(job) = &entry.job else { continue };
        for next in &job.next_jobs {
            if !by_name.contains_key(next.as_str()) {
                messages.push((
                    i,
                    format!("NextJob {:?} names no job in this directory", next.as_str()),
                ));
            }
        }
    }
    for (i, cycle) in cycles(entries, &by_name) {
        messages.push((i, format!("NextJob forms a cycle: {}", cycle.join(" -> "))));
    }
    for (i, message) in messages {
        entries[i].invalidate(message);
    }
}

/// For every valid job that lies on a `NextJob` cycle, the cycle as names.
fn cycles(entries: &[Entry], by_name: &HashMap<String, Vec<usize>>) -> Vec<(usize, Vec<String>)> {
    let successors = |i: usize| -> Vec<usize> {
        let Ok(job) = &entries[i].job else {
            return Vec::new();
        };
        job.next_jobs
            .iter()
            .filter_map(|n| by_name.get(n.as_str()))
            .flatten()
            .copied()
            .filter(|&j| entries[j].job.is_ok())
            .collect()
    };
    let mut found = Vec::new();
    for start in 0..entries.len() {
        // Breadth-first search for the shortest way from `start` back to it.
        let mut parent: Vec<Option<usize>> = vec![None; entries.len()];
        let mut visited = vec![false; entries.len()];
        visited[start] = true;
        let mut queue = VecDeque::from([start]);
        'search: while let Some(node) = queue.pop_front() {
            for next in successors(node) {
                if next == start {
                    let mut path = vec![entries[start].name.clone()];
                    let mut at = Some(node);
                    while let Some(i) = at.filter(|&i| i != start) {
                        path.push(entries[i].name.clone());
                        at = parent[i];
                    }
                    path.push(entries[start].name.clone());
                    path.reverse();
                    found.push((start, path));
                    break 'search;
                }
                if !std::mem::replace(&mut visited[next], true) {
                    parent[next] = Some(node);
                    queue.push_back(next);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    fn errors(entry: &Entry) -> String {
        match &entry.job {
            Ok(_) => String::new(),
            Err(p) => p
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn reads_the_original_example_with_any_key_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "b.json",
            r#"{"regulartimer": 86400, "RetryTimer": 3600, "maxfailedretries": 3,
               "JobName": "ExampleBackup", "NextJob": "", "Username": "Apache",
               "Service": "restic-repo1",
               "resticarguments": ["-r", "/tmp/backup", "backup", "/var/www/my-site"]}"#,
        );
        let entry = load_file(&path);
        let job = entry.job.unwrap();
        assert_eq!(job.name.as_str(), "ExampleBackup");
        assert_eq!(
            job.schedule,
            Some(Schedule::Interval(Duration::from_secs(86400)))
        );
        assert_eq!(
            job.retry_timer,
            Some(RetryTimer::After(Duration::from_secs(3600)))
        );
        assert_eq!(job.max_failed_retries, 3);
        assert_eq!(job.restic_arguments.len(), 4);
        assert!(job.next_jobs.is_empty());
        assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);
    }

    #[test]
    fn reads_the_later_originals_cron_and_empty_timers() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "ExampleForget.json",
            r#"{ "regularTimer": "", "retryTimer": "0 0 * * * *", "maxFailedRetries": 3,
                 "JobName": "ExampleForget", "Username": "Apache", "Service": "restic-repo1",
                 "ResticArguments": ["-r", "/tmp/backup", "forget", "--keep-last", "30"] }"#,
        );
        let job = load_file(&path).job.unwrap();
        assert_eq!(job.schedule, None);
        assert!(
            matches!(&job.retry_timer, Some(RetryTimer::Calendar(c)) if c.to_string() == "0 0 * * * *"),
            "{:?}",
            job.retry_timer
        );
        let path = write(
            dir.path(),
            "none.json",
            r#"{"regularTimer": "@every 4s", "retryTimer": "", "ResticArguments": ["x"]}"#,
        );
        let job = load_file(&path).job.unwrap();
        assert_eq!(
            job.schedule,
            Some(Schedule::Interval(Duration::from_secs(4)))
        );
        assert_eq!(job.retry_timer, None);
    }

    #[test]
    fn a_calendar_timeout_names_the_file_key_value_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "t.json",
            "{\n  \"ResticArguments\": [\"x\"],\n  \"Timeout\": \"0 0 * * *\"\n}",
        );
        let text = errors(&load_file(&path));
        assert!(
            text.starts_with(&format!(
                "{}:3:3: Timeout: \"0 0 * * *\" is a calendar expression, not a duration; \
                 calendar expressions are accepted in regularTimer and retryTimer only",
                path.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn reports_every_problem_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "bad.json",
            "{\n  \"maxFailedRetries\": \"3\",\n  \"regularTimer\": \"soon\",\n  \"Username\": \"u\",\n  \"ResticArgs\": []\n}",
        );
        let entry = load_file(&path);
        let text = errors(&entry);
        assert!(
            text.contains(
                "bad.json:2:3: maxFailedRetries: expected a whole number, found string \"3\""
            ),
            "{text}"
        );
        assert!(text.contains("bad.json:3:3: regularTimer:"), "{text}");
        assert!(
            text.contains("Username is set but Service is not"),
            "{text}"
        );
        assert!(text.contains("ResticArguments is missing"), "{text}");
        let warning = entry.warnings[0].to_string();
        assert!(
            warning.contains("bad.json:5:3: unknown key \"ResticArgs\""),
            "{warning}"
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "x.json", "{\n \"JobName\": \"x\",\n}\n");
        let text = errors(&load_file(&path));
        assert!(text.contains("x.json:3:1: not valid JSON"), "{text}");
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(101)] {
            assert!(JobName::new(bad).is_err(), "{bad:?}");
        }
        assert!(JobName::new("Backup_home-1.daily").is_ok());
    }

    #[test]
    fn set_checks_duplicates_unknown_next_jobs_and_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let args = r#""ResticArguments": ["snapshots"]"#;
        write(
            dir.path(),
            "a.json",
            &format!(r#"{{"NextJob": "b", {args}}}"#),
        );
        write(
            dir.path(),
            "b.json",
            &format!(r#"{{"NextJob": ["c"], {args}}}"#),
        );
        write(
            dir.path(),
            "c.json",
            &format!(r#"{{"NextJob": "a", {args}}}"#),
        );
        write(
            dir.path(),
            "d1.json",
            &format!(r#"{{"JobName": "d", {args}}}"#),
        );
        write(
            dir.path(),
            "d2.json",
            &format!(r#"{{"JobName": "d", {args}}}"#),
        );
        write(
            dir.path(),
            "e.json",
            &format!(r#"{{"NextJob": "nope", {args}}}"#),
        );
        write(
            dir.path(),
            "f.json",
            &format!(r#"{{"NextJob": "g", {args}}}"#),
        );
        write(dir.path(), "g.json", &format!(r#"{{{args}}}"#));
        write(dir.path(), "notes.txt", "not a job");
        write(dir.path(), ".hidden.json", "{}");
        let entries = load_dir(dir.path()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "d", "e", "f", "g"]);
        for entry in &entries[..3] {
            assert!(errors(entry).contains("cycle"), "{}", errors(entry));
        }
        assert!(
            errors(&entries[0]).contains("a -> b -> c -> a"),
            "{}",
            errors(&entries[0])
        );
        assert!(
            errors(&entries[3]).contains("d2.json"),
            "{}",
            errors(&entries[3])
        );
        assert!(
            errors(&entries[4]).contains("d1.json"),
            "{}",
            errors(&entries[4])
        );
        assert!(
            errors(&entries[5]).contains("NextJob \"nope\" names no job"),
            "{}",
            errors(&entries[5])
        );
        assert!(entries[6].job.is_ok() && entries[7].job.is_ok());
    }

    #[test]
    fn debug_output_never_shows_env_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "s3.json",
            r#"{"ResticArguments": ["snapshots"], "Env": {"AWS_SECRET_ACCESS_KEY": "xyz123"}}"#,
        );
        let job = load_file(&path).job.unwrap();
        assert_eq!(job.env["AWS_SECRET_ACCESS_KEY"], "xyz123");
        assert!(!format!("{job:?}").contains("xyz123"));
    }

    #[test]
    fn files_writable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "a.json",
            r#"{"ResticArguments": ["snapshots"]}"#,
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let text = errors(&load_file(&path));
        assert!(
            text.contains("writable by other users (mode 0666)"),
            "{text}"
        );
    }

    /// Values no problem may quote: each holds the sentinel.
    const SENTINEL: &str = "918273645";

    #[test]
    fn problems_with_secret_keys_never_quote_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let values = [
            SENTINEL.to_string(),
            format!("\"{SENTINEL}\""),
            format!("\"ftp://hc.example/{SENTINEL}\""),
            format!("\"https:///{SENTINEL}\""),
            format!("[\"{SENTINEL}\"]"),
            format!("{{\"AWS_SECRET_ACCESS_KEY\": {SENTINEL}}}"),
            format!("{{\"AWS_SECRET_ACCESS_KEY\": [\"{SENTINEL}\"]}}"),
            format!("{{\"AWS_SECRET_ACCESS_KEY={SENTINEL}\": \"\"}}"),
            format!("{{\"K\": \"{SENTINEL}\\u0000\"}}"),
        ];
        for key in SECRET_KEYS {
            let mut refused = 0;
            for value in &values {
                let text = format!("{{\"ResticArguments\": [\"x\"], \"{key}\": {value}}}");
                let path = write(dir.path(), "secret.json", &text);
                let problems = errors(&load_file(&path));
                assert!(!problems.contains(SENTINEL), "{key}: {value}: {problems}");
                refused += usize::from(problems.contains(&format!(": {key}")));
            }
            assert!(
                refused >= 3,
                "{key}: too few values refused to prove anything"
            );
        }
    }

    #[test]
    fn env_problems_name_each_variable_where_it_stands() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "s3.json",
            "{\n  \"ResticArguments\": [\"x\"],\n  \"env\": {\"AWS_ACCESS_KEY_ID\": \"AKIA\",\n    \
             \"AWS_SECRET_ACCESS_KEY\": 12345678, \"a b\": true,\n    \"TOKEN=abc\": \"\"}\n}",
        );
        let text = errors(&load_file(&path));
        let lines: Vec<&str> = text.lines().collect();
        let file = path.display();
        assert_eq!(
            lines,
            [
                format!("{file}:4:5: Env.AWS_SECRET_ACCESS_KEY: expected a string, found a number"),
                format!(
                    "{file}:5:5: Env: the variable name TOKEN=… holds a \"=\"; write it as {{\"NAME\": \"value\"}}"
                ),
                format!("{file}:4:40: Env.\"a b\": expected a string, found a boolean"),
            ],
        );
    }

    #[test]
    fn thousands_of_bad_env_values_are_reported_as_ten_and_a_count() {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<String> = (0..20_000).map(|i| format!("\"V{i}\": {i}")).collect();
        let text = format!(
            "{{\"ResticArguments\": [\"x\"], \"Env\": {{{}}}}}",
            env.join(",\n")
        );
        let path = write(dir.path(), "huge.json", &text);
        // Each reported position rescans the file: 20 000 of them took 23 s
        // on the supervisor.
        let text = errors(&load_file(&path));
        assert_eq!(text.lines().count(), MAX_PROBLEMS_PER_KEY + 1, "{text}");
        assert!(
            text.ends_with("Env: 19990 more problem(s) like these"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_healthcheck_url_is_described_without_its_secret_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "hc.json",
            r#"{"ResticArguments": ["x"], "Healthcheck": "ftp://hc-ping.com/uuid-123"}"#,
        );
        let text = errors(&load_file(&path));
        assert!(
            text.ends_with("hc.json:1:28: Healthcheck: the URL is not an http:// or https:// URL"),
            "{text}"
        );
    }

    #[test]
    fn a_schedule_under_a_second_names_the_file_key_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "fast.json",
            r#"{"ResticArguments": ["x"], "regularTimer": "1ms", "retryTimer": "1ms"}"#,
        );
        let text = errors(&load_file(&path));
        assert_eq!(
            text,
            format!(
                "{}:1:28: regularTimer: \"1ms\" is shorter than 1 s, the shortest interval allowed",
                path.display()
            )
        );
    }

    #[test]
    fn hooks_are_shell_strings_or_argv_lists_in_any_key_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "hooks.json",
            r#"{"ResticArguments": ["x"], "before": "pg_dump db > /var/dump.sql",
               "ONSUCCESS": ["curl", "-fsS", "https://example.com/ok"],
               "OnFailure": null, "after": ["umount"], "hooktimeout": "90s"}"#,
        );
        let entry = load_file(&path);
        assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);
        let job = entry.job.unwrap();
        assert_eq!(
            job.hooks,
            Hooks {
                before: Some(HookCommand::Shell("pg_dump db > /var/dump.sql".into())),
                on_success: Some(HookCommand::Argv(
                    ["curl", "-fsS", "https://example.com/ok"]
                        .map(String::from)
                        .to_vec()
                )),
                on_failure: None,
                after: Some(HookCommand::Argv(vec!["umount".into()])),
            }
        );
        assert_eq!(job.hook_timeout, Duration::from_secs(90));

        let path = write(dir.path(), "none.json", r#"{"ResticArguments": ["x"]}"#);
        let job = load_file(&path).job.unwrap();
        assert_eq!(job.hooks, Hooks::default());
        assert_eq!(job.hook_timeout, hook::DEFAULT_TIMEOUT);
        let path = write(
            dir.path(),
            "null.json",
            r#"{"ResticArguments": ["x"], "HookTimeout": null}"#,
        );
        assert_eq!(
            load_file(&path).job.unwrap().hook_timeout,
            hook::DEFAULT_TIMEOUT
        );
    }

    #[test]
    fn each_bad_hook_value_is_named_with_its_key_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "bad.json",
            "{\n  \"ResticArguments\": [\"x\"],\n  \"Before\": 5,\n  \"onsuccess\": \"\",\n  \
             \"OnFailure\": [],\n  \"After\": [\"\", 7, \"a\\u0000b\"]\n}",
        );
        let file = path.display();
        assert_eq!(
            errors(&load_file(&path)).lines().collect::<Vec<_>>(),
            [
                format!(
                    "{file}:3:3: Before: expected a command: a string for /bin/sh -c, or a list \
                     of strings, found number 5"
                ),
                format!(
                    "{file}:4:3: OnSuccess: the command is empty; write one, or null for no hook"
                ),
                format!(
                    "{file}:5:3: OnFailure: the list is empty; it needs at least the program to run"
                ),
                format!("{file}:6:3: After: item 0: the program to run is empty"),
                format!("{file}:6:3: After: item 1: expected a string, found number 7"),
                format!(
                    "{file}:6:3: After: item 2: the argument holds a NUL byte, which no command \
                     line can"
                ),
            ]
        );
        for (value, want) in [
            (
                r#""echo \u0000""#,
                "Before: the command holds a NUL byte, which no command line can",
            ),
            (
                r#""  ""#,
                "Before: the command is empty; write one, or null for no hook",
            ),
            (
                r#"{"sh": "x"}"#,
                "Before: expected a command: a string for /bin/sh -c, or a list of strings, \
                 found an object",
            ),
        ] {
            let text = format!(r#"{{"ResticArguments": ["x"], "Before": {value}}}"#);
            let path = write(dir.path(), "one.json", &text);
            let problems = errors(&load_file(&path));
            assert!(
                problems.ends_with(&format!(":1:28: {want}")),
                "{value}: {problems}"
            );
        }
    }

    #[test]
    fn a_hook_timeout_must_be_a_positive_duration() {
        let dir = tempfile::tempdir().unwrap();
        for (value, found) in [
            ("0", "number 0"),
            ("-5", "number -5"),
            (r#""0s""#, r#"string "0s""#),
            (r#""-5m""#, r#"string "-5m""#),
        ] {
            let text = format!(r#"{{"ResticArguments": ["x"], "HookTimeout": {value}}}"#);
            let path = write(dir.path(), "t.json", &text);
            assert_eq!(
                errors(&load_file(&path)),
                format!(
                    "{}:1:28: HookTimeout: expected a positive duration, found {found}; a hook \
                     with no limit could hold the repository forever",
                    path.display()
                )
            );
        }
        let path = write(
            dir.path(),
            "cron.json",
            r#"{"ResticArguments": ["x"], "HookTimeout": "0 3 * * *"}"#,
        );
        let problems = errors(&load_file(&path));
        assert!(
            problems.contains(":1:28: HookTimeout: \"0 3 * * *\" is a calendar expression"),
            "{problems}"
        );
    }

    #[test]
    fn a_misspelt_hook_key_is_a_warning_that_suggests_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "typo.json",
            r#"{"ResticArguments": ["x"], "OnFailur": "true", "HookTimout": 5}"#,
        );
        let entry = load_file(&path);
        let mut warnings: Vec<String> = entry.warnings.iter().map(|w| w.to_string()).collect();
        warnings.sort();
        let file = path.display();
        assert_eq!(
            warnings,
            [
                format!(
                    "{file}:1:28: unknown key \"OnFailur\" (did you mean \"OnFailure\"?); ignored"
                ),
                format!(
                    "{file}:1:48: unknown key \"HookTimout\" (did you mean \"HookTimeout\"?); \
                     ignored"
                ),
            ]
        );
        assert_eq!(entry.job.unwrap().hooks, Hooks::default());
    }

    /// The later original's `ExampleBackup` (ORIGINAL-BEHAVIOUR §3.3) as it
    /// ships, with or without its `Preconditions`.
    fn later_original_example(preconditions: bool) -> String {
        let checks = if preconditions {
            r#",
    "Preconditions": {
        "HostsMustRoute": ["localhost"],
        "PathesMust": ["/tmp/backup"],
        "HostsMustConnect": [{"Host": "google.com", "Port": 80}]
    }"#
        } else {
            ""
        };
        format!(
            r#"{{
    "regularTimer": "0 0 2 * * *",
    "retryTimer": "0 0 * * * *",
    "maxFailedRetries": 2,
    "JobName": "ExampleBackup",
    "NextJob": "ExampleForget",
    "Username":"Apache",
    "Service": "restic-repo1",
    "ResticArguments": ["-r", "/tmp/backup", "backup", "/var/www/my-site"],
    "CheckPrecondsEvery": 20,
    "CheckPrecondsMaxTimes": 100{checks}
}}"#
        )
    }

    #[test]
    fn reads_the_later_originals_preconditions() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "ExampleBackup.json",
            &later_original_example(true),
        );
        let entry = load_file(&path);
        assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);
        let job = entry.job.unwrap();
        assert_eq!(
            job.preconditions,
            Some(Preconditions {
                paths: vec![PathBuf::from("/tmp/backup")],
                hosts_route: vec!["localhost".into()],
                hosts_connect: vec![("google.com".into(), 80)],
                every: Duration::from_secs(20),
                rounds: 100,
            })
        );
    }

    #[test]
    fn check_preconds_keys_alone_are_fine_and_check_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "ExampleBackup.json",
            &later_original_example(false),
        );
        let entry = load_file(&path);
        assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);
        assert_eq!(entry.job.unwrap().preconditions, None);
        // Nothing to check is no preconditions, however it is written.
        for empty in [
            "{}",
            "null",
            r#"{"PathesMust": null, "HostsMustRoute": [], "HostsMustConnect": null}"#,
        ] {
            let text = format!(r#"{{"ResticArguments": ["x"], "Preconditions": {empty}}}"#);
            let path = write(dir.path(), "e.json", &text);
            let entry = load_file(&path);
            assert!(entry.warnings.is_empty(), "{empty}: {:?}", entry.warnings);
            assert_eq!(entry.job.unwrap().preconditions, None, "{empty}");
        }
    }

    #[test]
    fn preconditions_defaults_aliases_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let job_dir = std::path::absolute(dir.path()).unwrap();
        let path = write(
            dir.path(),
            "usb.json",
            r#"{"ResticArguments": ["x"], "preconditions": {
                "pathsmust": ["photos", "/mnt/usb/../usb"],
                "HOSTSMUSTCONNECT": [{"host": "nas.local", "PORT": 22}]}}"#,
        );
        let entry = load_file(&path);
        assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);
        let preconditions = entry.job.unwrap().preconditions.clone().unwrap();
        assert_eq!(
            preconditions,
            Preconditions {
                paths: vec![job_dir.join("photos"), PathBuf::from("/mnt/usb/../usb")],
                hosts_route: Vec::new(),
                hosts_connect: vec![("nas.local".into(), 22)],
                every: DEFAULT_CHECK_PRECONDS_EVERY,
                rounds: 1,
            }
        );
        // The original checked nothing when the count was 0 or less; we
        // check once. A duration string works as well as seconds.
        for (every, times, expected_every, expected_rounds) in [
            ("\"90s\"", "0", 90, 1),
            ("\"2min\"", "-5", 120, 1),
            ("null", "null", 60, 1),
            ("0", "3", 0, 3),
        ] {
            let text = format!(
                r#"{{"ResticArguments": ["x"], "CheckPrecondsEvery": {every},
                    "CheckPrecondsMaxTimes": {times},
                    "Preconditions": {{"HostsMustRoute": ["localhost"]}}}}"#
            );
            let path = write(dir.path(), "t.json", &text);
            let p = load_file(&path).job.unwrap().preconditions.clone().unwrap();
            assert_eq!(
                (p.every, p.rounds),
                (Duration::from_secs(expected_every), expected_rounds),
                "{every} {times}"
            );
        }
    }

    #[test]
    fn both_spellings_of_the_path_list_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "both.json",
            "{\"ResticArguments\": [\"x\"],\n \"Preconditions\": {\"PathesMust\": [\"/a\"],\n   \"PathsMust\": [\"/b\"]}}",
        );
        assert_eq!(
            errors(&load_file(&path)),
            format!(
                "{}:3:4: Preconditions: both \"PathesMust\" and \"PathsMust\" are given; they \
                 are two spellings of one list, so keep one",
                path.display()
            )
        );
    }

    #[test]
    fn precondition_problems_name_file_line_key_and_expected_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "bad.json",
            "{\n  \"ResticArguments\": [\"x\"],\n  \"CheckPrecondsMaxTimes\": \"100\",\n  \
             \"CheckPrecondsEvery\": \"0 * * * *\",\n  \"Preconditions\": {\n    \
             \"PathesMust\": [\"/mnt/usb\", 7, \"\"],\n    \"HostsMustRoute\": \"nas.local\",\n    \
             \"HostsMustConnect\": [{\"Host\": \"nas\", \"Port\": 70000}, {\"Port\": 22},\n      \
             \"nas:22\", {\"Host\": 5, \"Port\": 1}]\n  }\n}",
        );
        let entry = load_file(&path);
        let text = errors(&entry);
        let lines: Vec<&str> = text.lines().collect();
        let file = path.display();
        assert!(
            lines[0].starts_with(&format!(
                "{file}:4:3: CheckPrecondsEvery: \"0 * * * *\" is a calendar expression, \
                 not a duration;"
            )),
            "{text}"
        );
        assert_eq!(
            lines[1..],
            [
                &format!(
                    "{file}:3:3: CheckPrecondsMaxTimes: expected a whole number of rounds, \
                     found string \"100\""
                ),
                &format!(
                    "{file}:6:5: Preconditions.PathesMust: item 1: expected a path, found number 7"
                ),
                &format!(
                    "{file}:6:5: Preconditions.PathesMust: item 2: expected a path, found string \"\""
                ),
                &format!(
                    "{file}:7:5: Preconditions.HostsMustRoute: expected a list of strings, \
                     found string \"nas.local\""
                ),
                &format!(
                    "{file}:8:42: Preconditions.HostsMustConnect: item 0: Port: expected a whole \
                     number from 1 to 65535, found number 70000"
                ),
                &format!("{file}:8:5: Preconditions.HostsMustConnect: item 1: Host is missing"),
                &format!(
                    "{file}:8:5: Preconditions.HostsMustConnect: item 2: expected \
                     {{\"Host\": …, \"Port\": …}}, found string \"nas:22\""
                ),
                &format!(
                    "{file}:9:18: Preconditions.HostsMustConnect: item 3: Host: expected a host \
                     name, found number 5"
                ),
            ],
            "{text}"
        );
        let path = write(
            dir.path(),
            "string.json",
            r#"{"ResticArguments": ["x"], "Preconditions": ["/mnt/usb"]}"#,
        );
        assert!(
            errors(&load_file(&path)).ends_with(
                "string.json:1:28: Preconditions: expected an object such as \
                 {\"PathesMust\": [\"/mnt/usb/photos\"]}, found an array"
            ),
            "{}",
            errors(&load_file(&path))
        );
    }

    #[test]
    fn unknown_keys_inside_preconditions_are_warnings_with_suggestions() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "typo.json",
            "{\"ResticArguments\": [\"x\"], \"Preconditions\": {\n  \"PathMust\": [\"/a\"],\n  \
             \"HostsMustConnect\": [{\"Host\": \"nas\", \"Port\": 22, \"Timeout\": 5}]}}",
        );
        let entry = load_file(&path);
        let warnings: Vec<String> = entry.warnings.iter().map(|w| w.to_string()).collect();
        let file = path.display();
        assert_eq!(
            warnings,
            [
                format!(
                    "{file}:2:3: Preconditions: unknown key \"PathMust\" (did you mean \
                     \"PathsMust\"?); ignored"
                ),
                format!(
                    "{file}:3:52: Preconditions.HostsMustConnect: item 0: unknown key \
                     \"Timeout\"; ignored"
                ),
            ]
        );
        // The known checks still count.
        let preconditions = entry.job.unwrap().preconditions.clone().unwrap();
        assert_eq!(preconditions.hosts_connect, [("nas".to_string(), 22)]);
    }

    #[test]
    fn notify_and_stale_after_are_read_with_the_configs_default_kept_apart_from_none() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = write(dir.path(), "n.json", text);
            let entry = load_file(&path);
            assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);
            let job = entry.job.unwrap();
            (job.notify.clone(), job.stale_after)
        };
        assert_eq!(load(r#"{"ResticArguments": ["x"]}"#), (None, None));
        assert_eq!(
            load(r#"{"ResticArguments": ["x"], "notify": null, "StaleAfter": null}"#),
            (None, None)
        );
        assert_eq!(
            load(r#"{"ResticArguments": ["x"], "Notify": [], "staleafter": "2d"}"#),
            (Some(Vec::new()), Some(Duration::from_secs(2 * 86400)))
        );
        let (notify, stale_after) = load(
            r#"{"ResticArguments": ["x"], "StaleAfter": 3600,
                "NOTIFY": {"url": "https://ntfy.sh/backups", "Format": "text"}}"#,
        );
        let targets = notify.unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].format, notify::Format::Text);
        assert_eq!(targets[0].url_shown(), "https://ntfy.sh/…");
        assert_eq!(stale_after, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn notify_problems_point_at_the_key_and_never_show_the_url_or_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "tk_918273645";
        let path = write(
            dir.path(),
            "bad.json",
            &format!(
                "{{\n  \"ResticArguments\": [\"x\"],\n  \"StaleAfter\": 0,\n  \
                 \"Notify\": [{{\"Url\": \"ftp://ntfy.sh/{secret}\"}},\n    \
                 {{\"Url\": \"https://ntfy.sh/ok\", \"On\": [\"giveups\"],\n     \
                 \"Headers\": {{\"Authorization\": 5, \"X-Token\": \"{secret}\\n\"}},\n     \
                 \"Formt\": \"text\"}}]\n}}"
            ),
        );
        let entry = load_file(&path);
        let text = errors(&entry);
        assert!(!text.contains(secret), "{text}");
        let file = path.display();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                format!(
                    "{file}:4:15: Notify: item 0: Url: the URL is not an http:// or https:// URL"
                ),
                format!(
                    "{file}:5:35: Notify: item 1: On: item 0: \"giveups\" is not an event (did \
                     you mean \"giveup\"?); the events are success, failure, giveup, recovery, \
                     skipped, stale"
                ),
                format!(
                    "{file}:6:18: Notify: item 1: Headers.Authorization: expected a string, \
                     found a number"
                ),
                format!(
                    "{file}:6:38: Notify: item 1: Headers.X-Token: the value holds a line \
                     break, a control character or a non-ASCII character, which a header \
                     cannot carry"
                ),
                format!(
                    "{file}:3:3: StaleAfter: expected a positive duration such as \"2d\", \
                     found number 0"
                ),
            ]
        );
        let warnings: Vec<String> = entry.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [format!(
                "{file}:7:6: Notify: item 1: unknown key \"Formt\" (did you mean \
                 \"Format\"?); ignored"
            )]
        );
        // A wrong type is named by its type alone.
        let path = write(
            dir.path(),
            "string.json",
            &format!(r#"{{"ResticArguments": ["x"], "Notify": "https://ntfy.sh/{secret}"}}"#),
        );
        assert_eq!(
            errors(&load_file(&path)),
            format!(
                "{}:1:28: Notify: expected a target such as {{\"Url\": \"https://ntfy.sh/…\"}} \
                 or a list of them, found a string",
                path.display()
            )
        );
        let path = write(
            dir.path(),
            "negative.json",
            r#"{"ResticArguments": ["x"], "StaleAfter": "-1h"}"#,
        );
        assert!(
            errors(&load_file(&path)).ends_with(
                "StaleAfter: expected a positive duration such as \"2d\", found string \"-1h\""
            ),
            "{}",
            errors(&load_file(&path))
        );
    }

    /// Runs `load_file` on a thread of its own and fails when it does not
    /// return within a few seconds.
    fn load_file_bounded(path: &Path) -> Entry {
        let (sender, receiver) = std::sync::mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || sender.send(load_file(&path)));
        receiver
            .recv_timeout(Duration::from_secs(5))
            .expect("load_file returned")
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
        let text = errors(&load_file_bounded(&fifo));
        assert!(
            text.ends_with(
                "fifo.json: this is a FIFO, not a regular file; a job file must be a regular file"
            ),
            "{text}"
        );
        let names: Vec<String> = load_dir(dir.path())
            .unwrap()
            .iter()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["fifo.json"]);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        // A valid job padded with spaces to `size` bytes.
        let padded = |size: u64| {
            let head = r#"{"ResticArguments": ["x"]"#;
            format!("{head}{}}}", " ".repeat(size as usize - head.len() - 1))
        };
        let big = write(dir.path(), "big.json", &padded(MAX_JOB_FILE_BYTES + 1));
        let text = errors(&load_file(&big));
        assert!(
            text.ends_with("big.json: the file is larger than 1 MiB, the most a job file may hold"),
            "{text}"
        );
        let fits = write(dir.path(), "fits.json", &padded(MAX_JOB_FILE_BYTES));
        let entry = load_file(&fits);
        assert!(entry.job.is_ok(), "{}", errors(&entry));
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn programs_others_may_change_are_refused_for_root() {
        let dir = tempfile::tempdir().unwrap();
        let program = write(dir.path(), "restic", "#!/bin/sh\n");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        // Not root (a developer's machine), the only problems are owners.
        let owners_only = |problems: Vec<String>| -> Vec<String> {
            problems
                .into_iter()
                .filter(|p| is_root() || !p.contains("not root"))
                .collect()
        };
        assert_eq!(owners_only(program_problems_for_root(&program)), [""; 0]);

        fs::set_permissions(&program, fs::Permissions::from_mode(0o775)).unwrap();
        let shown = program.display();
        assert_eq!(
            owners_only(program_problems_for_root(&program)),
            [format!(
                "{shown} is writable by other users (mode 0775), and a root daemon runs it; \
                 run chmod go-w {shown}"
            )]
        );

        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        let inside = write(&open, "restic", "#!/bin/sh\n");
        fs::set_permissions(&inside, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let problems = owners_only(program_problems_for_root(&inside));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(&format!(
                "is in {}, which everyone may write to (mode 0777)",
                open.display()
            )),
            "{problems:?}"
        );
        // The sticky bit keeps others from replacing root's files (/tmp).
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(owners_only(program_problems_for_root(&inside)), [""; 0]);
        // A link is followed: the directory of its target counts too.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&inside, &link).unwrap();
        assert_eq!(owners_only(program_problems_for_root(&link)).len(), 1);
    }

    #[test]
    fn hook_programs_others_may_change_are_refused_for_root_by_hook_name() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let open = write(&bin, "notify", "#!/bin/sh\n");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let safe = write(&bin, "dump", "#!/bin/sh\n");
        fs::set_permissions(&safe, fs::Permissions::from_mode(0o755)).unwrap();
        // `notify` is found on the job's PATH, `bin/notify` from the job
        // directory; /bin/sh runs the shell hook.
        let path = write(
            dir.path(),
            "hooks.json",
            &format!(
                r#"{{"ResticArguments": ["x"], "Env": {{"PATH": "{}"}},
                   "Before": ["bin/dump"], "OnSuccess": "true",
                   "OnFailure": ["notify", "failed"], "After": ["bin/notify"]}}"#,
                bin.display()
            ),
        );
        let text = errors(&load_file(&path));
        if !is_root() {
            // The rule is a root daemon's; anyone else's may run what it owns.
            assert_eq!(text, "");
            return;
        }
        let shown = open.display();
        let why = format!(
            "{shown} is writable by other users (mode 0777), and a root daemon runs it; \
             run chmod go-w {shown}"
        );
        let file = path.display();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                format!("{file}:3:20: OnFailure: {why}"),
                format!("{file}:3:55: After: {why}"),
            ]
        );
    }

    #[test]
    fn programs_are_found_as_running_them_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let program = write(&bin, "my-restic", "#!/bin/sh\n");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = OsStr::new("/nonexistent:bin");
        let job_dir = dir.path();
        assert_eq!(
            resolve_program("bin/my-restic", job_dir, None),
            Some(job_dir.join("bin/my-restic"))
        );
        assert_eq!(
            resolve_program(program.to_str().unwrap(), Path::new("/elsewhere"), None),
            Some(program.clone())
        );
        assert_eq!(
            resolve_program("my-restic", job_dir, Some(path_var)),
            Some(job_dir.join("bin/my-restic"))
        );
        assert_eq!(resolve_program("my-restic", job_dir, None), None);
        assert_eq!(resolve_program("bin/missing", job_dir, None), None);
    }
}
