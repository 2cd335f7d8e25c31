//! Job files: reading a job directory, turning each JSON file into a
//! validated [`Job`], and the checks that need the whole set (duplicate
//! names, unknown or cyclic `NextJob`s).
//!
//! Every problem of a file is reported at once, with the file and, where
//! there is one, the line and column; one bad file never stops the others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::healthcheck;
use crate::json::{self, Object, Position};
use crate::redacted::Redacted;
use crate::schedule::{self, Schedule, describe_json};

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
];

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
    pub retry_timer: Option<Duration>,
    /// Retries per failure; negative means until success.
    pub max_failed_retries: i64,
    pub next_jobs: Vec<JobName>,
    /// `NextJob` as the file gave it (a string or a list), for `/queue`.
    pub next_job_raw: Value,
    pub keyring: Option<KeyringEntry>,
    /// `ResticPath` as given; empty means `restic` from PATH.
    pub restic_path: String,
    pub restic_arguments: Vec<String>,
    /// May hold credentials (S3 keys): never in `Debug`.
    pub env: Redacted<BTreeMap<String, String>>,
    pub timeout: Option<Duration>,
    pub stop_after_failed_retries: bool,
    pub healthcheck: Option<String>,
    pub unlock_stale: bool,
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
        // Follows symlinks: a link to a file is a job, a directory is not.
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
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
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            entry.job = Err(vec![problem(None, format!("cannot read the file: {e}"))]);
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
            describe_json(&value)
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
    let meta = fs::metadata(path).ok();
    let mut parser = Parser {
        object: &object,
        path,
        problems: Vec::new(),
    };
    let job = parser.job(&entry.name);
    if let Some(why) = meta.as_ref().and_then(not_safe) {
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

/// Reads typed fields out of a job object, collecting every problem.
struct Parser<'a, 'o> {
    object: &'a Object<'o>,
    path: &'a Path,
    problems: Vec<Problem>,
}

impl Parser<'_, '_> {
    fn field<T>(
        &mut self,
        key: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let (value, position) = self.object.get(key)?;
        match convert(value) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(position, format!("{key}: {message}"));
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
        self.field(key, |v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("expected a string, found {}", describe_json(other))),
        })
    }

    fn bool(&mut self, key: &str) -> bool {
        self.field(key, |v| match v {
            Value::Bool(b) => Ok(*b),
            other => Err(format!(
                "expected true or false, found {}",
                describe_json(other)
            )),
        })
        .unwrap_or(false)
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
            .field("regularTimer", schedule::parse_schedule)
            .flatten();
        let retry_timer = self.field("retryTimer", schedule::parse_duration).flatten();
        let max_failed_retries = self
            .field("maxFailedRetries", |v| {
                v.as_i64()
                    .ok_or_else(|| format!("expected a whole number, found {}", describe_json(v)))
            })
            .unwrap_or(0);
        let next_job_raw = self
            .object
            .get("NextJob")
            .map_or(Value::Null, |(v, _)| v.clone());
        let next_jobs = self.field("NextJob", parse_next_jobs).unwrap_or_default();
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
        let restic_path = self.string("ResticPath").unwrap_or_default();
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
            Some(_) => self.field("ResticArguments", string_list),
        };
        let env = self.field("Env", string_map).unwrap_or_default();
        let timeout = self.field("Timeout", schedule::parse_duration).flatten();
        let stop_after_failed_retries = self.bool("StopAfterFailedRetries");
        let healthcheck = self
            .field("Healthcheck", |v| match v {
                Value::String(url) if url.is_empty() => Ok(String::new()),
                Value::String(url) => healthcheck::validate_url(url).map(|()| url.clone()),
                other => Err(format!("expected a URL, found {}", describe_json(other))),
            })
            .filter(|url| !url.is_empty());
        let unlock_stale = self.bool("UnlockStale");
        Some(Job {
            name: name?,
            file: self.path.to_path_buf(),
            schedule,
            retry_timer,
            max_failed_retries,
            next_jobs,
            next_job_raw,
            keyring,
            restic_path,
            restic_arguments: restic_arguments?,
            env: Redacted(env),
            timeout: timeout.filter(|t| !t.is_zero()),
            stop_after_failed_retries,
            healthcheck,
            unlock_stale,
        })
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
                describe_json(other)
            ));
        }
    };
    names.iter().map(|n| JobName::new(n)).collect()
}

fn string_list(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "expected a list of strings, found {}",
            describe_json(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "item {i} should be a string, found {}",
                describe_json(other)
            )),
        })
        .collect()
}

fn string_map(value: &Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "expected an object of strings such as {{\"AWS_ACCESS_KEY_ID\": \"…\"}}, found {}",
            describe_json(value)
        ));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) if !k.is_empty() && !k.contains('=') => Ok((k.clone(), s.clone())),
            Value::String(_) => Err(format!("{k:?} is not a valid variable name")),
            other => Err(format!(
                "{k} should be a string, found {}",
                describe_json(other)
            )),
        })
        .collect()
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
        assert_eq!(job.retry_timer, Some(Duration::from_secs(3600)));
        assert_eq!(job.max_failed_retries, 3);
        assert_eq!(job.restic_arguments.len(), 4);
        assert!(job.next_jobs.is_empty());
        assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);
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
}
