//! What we know about restic itself: how its exit codes and messages map to
//! outcomes (old 0.14 and new 0.17+), which repository a job's arguments and
//! environment name, and which of its options an `unlock` needs.
//!
//! The child processes (`process`: started through the exec shim, bounded
//! output, the stop ladder) and restic's `--json` progress lines
//! (`progress`).

pub mod process;
pub mod progress;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::files::SlowRead;
use crate::job::outcome::Outcome;
use crate::restic::process::Spec;
use crate::secrets::keyring::Password;

/// Where else restic could take its password from; restic prefers these to
/// `RESTIC_PASSWORD`, so they must not reach a run that has a keyring entry.
const OTHER_PASSWORD_SOURCES: &[&str] = &["RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND"];

/// A repository file holds one location; more than this is not one.
const MAX_REPOSITORY_FILE: u64 = 4 * 1024;
/// How long reading a repository file may take (it may sit on a network
/// mount that is down).
const REPOSITORY_FILE_TIME: Duration = Duration::from_secs(5);

/// Backends that are not a local path (`local:` is one).
const REMOTE_PREFIXES: &[&str] = &[
    "sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:",
];

/// A repository's identity: two jobs with equal identities use the same
/// repository. Local paths are absolute; `Display` masks passwords in URLs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Repository(String);

impl Repository {
    /// Builds the identity of `location` as restic would read it in `cwd`.
    pub fn new(location: &str, cwd: &Path) -> Repository {
        let location = location.trim();
        if REMOTE_PREFIXES.iter().any(|p| location.starts_with(p)) {
            return Repository(location.to_string());
        }
        let path = Path::new(location.strip_prefix("local:").unwrap_or(location));
        let absolute = normalize(&cwd.join(path));
        // The same directory through a symlink is the same repository.
        let resolved = absolute.canonicalize().unwrap_or(absolute);
        Repository(resolved.display().to_string())
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_credentials(&self.0))
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repository({self})")
    }
}

/// `rest:https://user:secret@host/` → `rest:https://user:***@host/`;
/// anything without a password in a URL stays as it is (and is not copied).
pub fn mask_credentials(location: &str) -> Cow<'_, str> {
    let Some(scheme_end) = location.find("://") else {
        return Cow::Borrowed(location);
    };
    let authority_start = scheme_end + 3;
    let rest = &location[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority
        .rfind('@')
        .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)))
    {
        Some((colon, at)) => Cow::Owned(format!(
            "{}{}:***{}",
            &location[..authority_start],
            &authority[..colon],
            &location[authority_start + at..]
        )),
        None => Cow::Borrowed(location),
    }
}

/// Removes `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The value of the last `-r`/`--repo` (or `--repository-file`) option in
/// `args`: restic, like every pflag program, takes the last one.
fn option_value<'a>(args: &'a [String], short: Option<&str>, long: &str) -> Option<&'a str> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "--" {
            break;
        }
        if Some(arg) == short || arg == long {
            found = args.get(i + 1).map(String::as_str);
            i += 1;
        } else if let Some(value) = arg.strip_prefix(long).and_then(|v| v.strip_prefix('=')) {
            found = Some(value);
        } else if let Some(value) = short
            .and_then(|s| arg.strip_prefix(s))
            .filter(|v| !v.is_empty())
        {
            found = Some(value.strip_prefix('=').unwrap_or(value));
        }
        i += 1;
    }
    found
}

/// Where a job names its repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositorySource {
    Named(Repository),
    /// A repository file (absolute), which counts by its content. Reading
    /// it may block (a FIFO, a dead network mount), so it is read on the
    /// job's own thread, with [`RepositorySource::resolve`].
    File(PathBuf),
}

impl RepositorySource {
    /// The repository; for a file, its trimmed content, read with a size
    /// cap and a time bound. `pending` holds a read of the file that has
    /// not answered yet: it is waited on again instead of starting another.
    /// `Err` says why the file cannot be used.
    pub fn resolve(
        &self,
        cwd: &Path,
        pending: &mut Option<SlowRead>,
    ) -> Result<Repository, String> {
        let path = match self {
            RepositorySource::Named(repository) => return Ok(repository.clone()),
            RepositorySource::File(path) => path,
        };
        let failed = |e: &dyn fmt::Display| format!("repository file {}: {e}", path.display());
        let read = match pending.take() {
            Some(read) if read.path == *path => read,
            _ => SlowRead::start(path, MAX_REPOSITORY_FILE).map_err(|e| failed(&e))?,
        };
        let bytes = match read.wait(REPOSITORY_FILE_TIME) {
            Ok(answer) => answer.map_err(|e| failed(&e))?,
            Err(read) => {
                *pending = Some(read);
                return Err(failed(&format_args!(
                    "no answer within {} s (a network mount that is down?)",
                    REPOSITORY_FILE_TIME.as_secs()
                )));
            }
        };
        let content = String::from_utf8_lossy(&bytes);
        if content.trim().is_empty() {
            return Err(format!("repository file {} is empty", path.display()));
        }
        Ok(Repository::new(&content, cwd))
    }
}

/// Where the repository a job uses is named: `-r`/`--repo`, else
/// `--repository-file`, else `RESTIC_REPOSITORY`/`RESTIC_REPOSITORY_FILE`
/// from the job's `Env`, else from the daemon's environment. Relative paths
/// are taken against `cwd` (restic's working directory). Reads no file.
pub fn repository_source(
    args: &[String],
    job_env: &BTreeMap<String, String>,
    daemon_env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Option<RepositorySource> {
    let file = |file: &str| RepositorySource::File(normalize(&cwd.join(file)));
    if let Some(location) = option_value(args, Some("-r"), "--repo") {
        return Some(RepositorySource::Named(Repository::new(location, cwd)));
    }
    if let Some(path) = option_value(args, None, "--repository-file") {
        return Some(file(path));
    }
    let env = |key: &str| job_env.get(key).cloned().or_else(|| daemon_env(key));
    if let Some(location) = env("RESTIC_REPOSITORY").filter(|s| !s.is_empty()) {
        return Some(RepositorySource::Named(Repository::new(&location, cwd)));
    }
    env("RESTIC_REPOSITORY_FILE")
        .filter(|s| !s.is_empty())
        .map(|path| file(&path))
}

/// Global options that take a value (`--opt value`, `--opt=value`, and for
/// the short ones `-r value` or `-rvalue`). They say where the repository
/// is and how to open it, so an `unlock` needs them too.
const GLOBAL_WITH_VALUE: &[&str] = &[
    "-r",
    "--repo",
    "--repository-file",
    "-p",
    "--password-file",
    "--password-command",
    "--key-hint",
    "--cacert",
    "--tls-client-cert",
    "--cache-dir",
    "-o",
    "--option",
    "--limit-upload",
    "--limit-download",
    "--pack-size",
    "--compression",
];

/// Global options without a value that change how the repository is reached.
const GLOBAL_FLAGS: &[&str] = &["--no-cache", "--insecure-tls", "--cleanup-cache"];

/// The outcome of a run that ended by itself with `code` (`None`: killed by
/// a signal) and `output` (its last lines).
pub fn classify(code: Option<i32>, output: &str) -> Outcome {
    match code {
        Some(0) => Outcome::Success,
        Some(3) => Outcome::Warning,
        Some(11) => Outcome::Locked,
        Some(1) if output.contains("repository is already locked") => Outcome::Locked,
        _ => Outcome::Failure,
    }
}

/// What restic said on stderr that explains how a run ended: its last
/// `Fatal:` line, else its last non-empty line (SPEC §4, "Why a run
/// failed"); when Go crashed, the `panic: …` line that starts the stack
/// trace. Lines arrive cleaned of escapes ([`crate::restic::process::clean_line`]);
/// any that are not are cleaned here, so no error holds a control character.
#[derive(Clone, Debug, Default)]
pub struct Stderr {
    last_fatal: Option<String>,
    last_line: Option<String>,
    /// The first `panic: ` or `fatal error: ` line: what the goroutine
    /// dump after it explains.
    crash: Option<String>,
}

/// How Go starts the message of a crash, before its stack traces.
const CRASH_PREFIXES: &[&str] = &["panic: ", "fatal error: "];

impl Stderr {
    pub fn push(&mut self, line: &str) {
        let cleaned;
        let line = if line.chars().any(char::is_control) {
            cleaned = crate::restic::process::clean_line(line.as_bytes());
            cleaned.trim()
        } else {
            line.trim()
        };
        if line.is_empty() {
            return;
        }
        if self.crash.is_none() && CRASH_PREFIXES.iter().any(|p| line.starts_with(p)) {
            self.crash = Some(line.to_string());
        }
        if line.starts_with("Fatal:") {
            self.last_fatal = Some(line.to_string());
        }
        self.last_line = Some(line.to_string());
    }

    /// The line that says why, without restic's `Fatal: ` in front.
    pub fn said(&self) -> Option<&str> {
        let line = self
            .crash
            .as_deref()
            .or(self.last_fatal.as_deref())
            .or(self.last_line.as_deref())?;
        Some(line.strip_prefix("Fatal:").map_or(line, str::trim_start))
    }
}

/// The one-line `error` of a run that ended by itself with `outcome` (not
/// one the daemon interrupted): our classification in front where we have
/// one, then what restic said, passwords in URLs masked. `status` describes
/// how restic ended (`exit code 1`), for when it said nothing; `output` is
/// the run's output tail, where the classifying messages are found.
///
/// The classes, measured with restic 0.14.0 and 0.18.0: `wrong password`,
/// `repository unreachable` (a network error, which 0.14 reports as a
/// missing repository), `repository does not exist`, `disk full` (in the
/// repository, restic's cache or its temporary directory: the path restic
/// names says which), `restic crashed` (a Go panic: its message, not the
/// goroutine dump after it), `repository is locked by …`.
pub fn failure_reason(
    outcome: Outcome,
    code: Option<i32>,
    status: &str,
    stderr: &Stderr,
    output: &str,
) -> Option<String> {
    let said = stderr.said().map(|s| mask_credentials(s).into_owned());
    let with_class = |class: &str| match &said {
        Some(said) if said.starts_with(class) => said.clone(),
        Some(said) => format!("{class}: {said}"),
        None => format!("{class} (restic {status})"),
    };
    let said_is = |test: fn(&str) -> bool| said.as_deref().is_some_and(test);
    Some(match outcome {
        Outcome::Success | Outcome::Stopped | Outcome::Timeout | Outcome::Skipped => return None,
        Outcome::Warning => match said {
            Some(said) => format!("some files could not be read: {said}"),
            None => format!("some files could not be read (restic {status})"),
        },
        // restic names the holder on the line after "locked by".
        Outcome::Locked => match output
            .lines()
            .rev()
            .find_map(|l| l.split_once("locked by "))
        {
            Some((_, holder)) => format!(
                "repository is locked by {}",
                mask_credentials(holder.trim())
            ),
            None => with_class("repository is locked"),
        },
        Outcome::Failure if wrong_password(code, output) => with_class("wrong password"),
        // Before the missing repository: restic 0.14 asks "Is there a
        // repository at the following location?" when the server is down.
        Outcome::Failure if said_is(network_error) => with_class("repository unreachable"),
        Outcome::Failure if missing_repository(code, output) => {
            with_class("repository does not exist")
        }
        Outcome::Failure if said_is(no_space) => with_class("disk full"),
        Outcome::Failure if stderr.crash.is_some() => with_class("restic crashed"),
        Outcome::Failure => match said {
            Some(said) => format!("restic {status}: {said}"),
            None => format!("restic failed ({status})"),
        },
    })
}

/// Whether restic's message is Go's for a server it could not reach (the
/// words of Go's `net` and `net/http`, and of the system's errors).
fn network_error(said: &str) -> bool {
    const NETWORK_ERRORS: &[&str] = &[
        "connection refused",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "no route to host",
        "connection reset by peer",
        "tls handshake timeout",
        "server misbehaving",
        "client.timeout exceeded",
    ];
    let said = said.to_ascii_lowercase();
    NETWORK_ERRORS.iter().any(|e| said.contains(e))
}

/// Whether restic's message is the system's ENOSPC (or EDQUOT, a quota
/// that is used up, which is as full for restic).
fn no_space(said: &str) -> bool {
    said.contains("no space left on device") || said.contains("disk quota exceeded")
}

/// Whether a failed run found no repository: restic 0.17+ exits 10; 0.14
/// exits 1 and asks whether there is one.
fn missing_repository(code: Option<i32>, output: &str) -> bool {
    code == Some(10) || output.contains("Is there a repository at the following location?")
}

/// The snapshot a `restic backup` (or `copy`) names in its plain-text
/// output, `snapshot 1a2b3c4d saved` (0.14 and 0.18 alike): the short id.
/// `--json` output names it in its summary instead
/// ([`crate::restic::progress::read_line`]).
pub fn snapshot_in_line(line: &str) -> Option<&str> {
    let id = line
        .trim()
        .strip_prefix("snapshot ")?
        .strip_suffix(" saved")?;
    let hex = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && (8..=64).contains(&id.len())).then_some(id)
}

/// Whether a failed run failed on the password, which no retry can fix
/// (restic 0.14 says so on stderr with exit 1; 0.17+ exits 12).
pub fn wrong_password(code: Option<i32>, output: &str) -> bool {
    code == Some(12) || output.contains("wrong password or no key found")
}

/// Hands `password` to restic as `RESTIC_PASSWORD` in its environment
/// (never in argv, which every user can read), and removes the other
/// password sources, inherited or from the job's `Env`.
pub fn give_password(spec: &mut Spec, password: &Password) {
    spec.env.retain(|(key, _)| {
        key != "RESTIC_PASSWORD" && !OTHER_PASSWORD_SOURCES.contains(&key.as_str())
    });
    spec.env_remove
        .extend(OTHER_PASSWORD_SOURCES.iter().map(|key| key.to_string()));
    spec.env
        .push(("RESTIC_PASSWORD".into(), password.expose().to_string()));
}

/// The arguments for `restic unlock` on the repository that `args` use:
/// their global options, then `unlock`. Without `--remove-all`, restic
/// removes only stale locks (of dead processes on this host, or old ones), so
/// this never breaks a lock that a live restic holds.
pub fn unlock_arguments(args: &[String]) -> Vec<String> {
    let mut kept = repository_arguments(args);
    kept.push("unlock".into());
    kept
}

/// The global options of `args` that reach the repository (`-r`,
/// `--password-file`, `-o`, `--no-cache`, …), in their order, without the
/// command and its own options: what another command on the same
/// repository needs.
pub fn repository_arguments(args: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            break;
        }
        if GLOBAL_FLAGS.contains(&arg.as_str()) {
            kept.push(arg.clone());
        } else if GLOBAL_WITH_VALUE.contains(&arg.as_str()) {
            kept.push(arg.clone());
            if let Some(value) = args.get(i + 1) {
                kept.push(value.clone());
            }
            i += 1;
        } else if GLOBAL_WITH_VALUE.iter().any(|o| {
            let long_with_value = o.starts_with("--") && arg.starts_with(&format!("{o}="));
            let short_joined =
                o.len() == 2 && arg.len() > 2 && arg.starts_with(o) && !arg.starts_with("--");
            long_with_value || short_joined
        }) {
            kept.push(arg.clone());
        }
        i += 1;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_of(args: &[&str], job_env: &[(&str, &str)], daemon: &[(&str, &str)]) -> Option<String> {
        let job_env: BTreeMap<String, String> = job_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let daemon: Vec<(String, String)> = daemon
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let daemon_env = move |key: &str| {
            daemon
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let cwd = Path::new("/nonexistent/jobs");
        repository_source(&strings(args), &job_env, &daemon_env, cwd)
            .map(|source| source.resolve(cwd, &mut None).unwrap().to_string())
    }

    #[test]
    fn repository_identity_from_every_argument_form() {
        let want = Some("/srv/repo".to_string());
        assert_eq!(repo_of(&["-r", "/srv/repo", "backup"], &[], &[]), want);
        assert_eq!(repo_of(&["-r/srv/repo", "backup"], &[], &[]), want);
        assert_eq!(repo_of(&["--repo", "/srv/repo"], &[], &[]), want);
        assert_eq!(repo_of(&["--repo=/srv/repo"], &[], &[]), want);
        assert_eq!(
            repo_of(&["backup", "-r", "/srv//x/../repo/"], &[], &[]),
            want
        );
        assert_eq!(repo_of(&["-r", "local:/srv/repo"], &[], &[]), want);
        // The last one wins, as in restic.
        assert_eq!(repo_of(&["-r", "/a", "-r", "/srv/repo"], &[], &[]), want);
        // Relative to the job directory, restic's working directory.
        assert_eq!(
            repo_of(&["-r", "../repo"], &[], &[]),
            Some("/nonexistent/repo".into())
        );
        assert_eq!(
            repo_of(&["-r", "sftp:u@h:/r"], &[], &[]),
            Some("sftp:u@h:/r".into())
        );
        assert_eq!(repo_of(&["snapshots"], &[], &[]), None);
    }

    #[test]
    fn repository_identity_from_the_environment() {
        let env = [("RESTIC_REPOSITORY", "/srv/repo")];
        assert_eq!(repo_of(&["backup"], &env, &[]), Some("/srv/repo".into()));
        assert_eq!(repo_of(&["backup"], &[], &env), Some("/srv/repo".into()));
        // The job's Env wins over the daemon's, and an option over both.
        assert_eq!(
            repo_of(&["backup"], &env, &[("RESTIC_REPOSITORY", "/x")]),
            Some("/srv/repo".into())
        );
        assert_eq!(repo_of(&["-r", "/y"], &env, &[]), Some("/y".into()));
    }

    #[test]
    fn repository_files_count_by_their_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("where"), "  rest:http://u:pw@nas:8000/r \n").unwrap();
        let file = dir.path().join("where").display().to_string();
        let cwd = Path::new("/");
        let none = |_: &str| None;
        let resolve = |args: &[&str], env: &BTreeMap<String, String>| {
            repository_source(&strings(args), env, &none, cwd)
                .unwrap()
                .resolve(cwd, &mut None)
        };
        let via_option = resolve(&["--repository-file", &file], &BTreeMap::new());
        let env = BTreeMap::from([("RESTIC_REPOSITORY_FILE".to_string(), file.clone())]);
        let via_env = resolve(&["backup"], &env);
        let direct = Repository::new("rest:http://u:pw@nas:8000/r", cwd);
        assert_eq!(via_option.as_ref(), Ok(&direct));
        assert_eq!(via_env.as_ref(), Ok(&direct));
        // Too large, a FIFO, missing or empty: the run that reads it fails.
        std::fs::write(dir.path().join("big"), "x".repeat(5000)).unwrap();
        let big = dir.path().join("big").display().to_string();
        let error = resolve(&["--repository-file", &big], &BTreeMap::new()).unwrap_err();
        assert!(error.contains("larger than 4 KiB"), "{error}");
        let error = resolve(&["--repository-file", "/nonexistent"], &BTreeMap::new()).unwrap_err();
        assert!(error.contains("/nonexistent"), "{error}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = dir.path().join("empty").display().to_string();
        let error = resolve(&["--repository-file", &empty], &BTreeMap::new()).unwrap_err();
        assert!(error.contains("is empty"), "{error}");
        assert_eq!(direct.to_string(), "rest:http://u:***@nas:8000/r");
        assert!(!format!("{direct:?}").contains("pw"));
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classifies_exit_codes_of_old_and_new_restic() {
        assert_eq!(classify(Some(0), ""), Outcome::Success);
        assert_eq!(classify(Some(3), ""), Outcome::Warning);
        assert_eq!(classify(Some(11), ""), Outcome::Locked);
        let old = "unable to create lock in backend: repository is already locked by PID 7";
        assert_eq!(classify(Some(1), old), Outcome::Locked);
        assert_eq!(classify(Some(1), "Fatal: wrong password"), Outcome::Failure);
        assert_eq!(classify(None, ""), Outcome::Failure);
        assert!(wrong_password(
            Some(1),
            "Fatal: wrong password or no key found"
        ));
        assert!(wrong_password(Some(12), ""));
        assert!(!wrong_password(
            Some(1),
            "Fatal: unable to open config file"
        ));
    }

    /// The reason of a run that ended with `code` and printed `stderr`.
    fn reason(code: i32, stderr: &str) -> Option<String> {
        let mut said = Stderr::default();
        stderr.lines().for_each(|line| said.push(line));
        let outcome = classify(Some(code), stderr);
        failure_reason(
            outcome,
            Some(code),
            &format!("exit code {code}"),
            &said,
            stderr,
        )
    }

    #[test]
    fn reasons_say_what_restic_said_with_our_class_in_front() {
        // Measured with Debian 12's restic 0.14.0 and Debian 13's 0.18.0.
        let missing_014 = "Fatal: unable to open config file: stat /r/config: no such file or \
                           directory\nIs there a repository at the following location?\n/r";
        let missing_018 = "Fatal: repository does not exist: unable to open config file: stat \
                           /r/config: no such file or directory\nIs there a repository at the \
                           following location?\n/r";
        let want = "repository does not exist: unable to open config file: stat /r/config: no \
                    such file or directory";
        assert_eq!(reason(1, missing_014).as_deref(), Some(want));
        assert_eq!(reason(10, missing_018).as_deref(), Some(want));
        let wrong = "Fatal: wrong password or no key found";
        assert_eq!(
            reason(1, wrong).as_deref(),
            Some("wrong password or no key found")
        );
        assert_eq!(
            reason(12, wrong).as_deref(),
            Some("wrong password or no key found")
        );
        let locked = "unable to create lock in backend: repository is already locked by PID 7 \
                      on nas by root (UID 0, GID 0)\nlock was created at 2026-12-01 03:00:00 \
                      (2m ago)\nstorage ID 1a2b3c4d";
        assert_eq!(
            reason(1, locked).as_deref(),
            Some("repository is locked by PID 7 on nas by root (UID 0, GID 0)")
        );
        let unreachable = "Fatal: unable to open repository at rest:http://u:secret@nas:8000/r: \
                           Get \"http://u:***@nas:8000/r/config\": dial tcp: connection refused";
        let text = reason(1, unreachable).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.starts_with("repository unreachable: unable to open repository at"),
            "{text}"
        );
        // Anything else: how restic ended and what it said.
        assert_eq!(
            reason(1, "Fatal: no matching ID found for prefix \"x\"").as_deref(),
            Some("restic exit code 1: no matching ID found for prefix \"x\"")
        );
        assert_eq!(
            reason(2, "").as_deref(),
            Some("restic failed (exit code 2)")
        );
        assert_eq!(reason(0, "all good"), None);
        assert_eq!(
            reason(3, "error: open /x: permission denied").as_deref(),
            Some("some files could not be read: error: open /x: permission denied")
        );
    }

    /// restic's stderr as measured, one sample per version and failure:
    /// Debian 12's restic 0.14.0 and restic 0.18.0 (2026-12, by hand and
    /// through the daemon; /work/evidence/reasons.sh).
    const FULL_014: &str = "Fatal: unable to save snapshot: write \
        /tmp/r/014/full/repo/data/44/44b63c3c8ea1f9d7e799ff8d6545cd95f4b6f909ee6428285a8a1e7a499d786c\
        -tmp-2333194255: no space left on device\n";
    const FULL_018: &str = "Save(<data/98e73bb614>) failed: write \
        /tmp/r/018/full/repo/data/98/98e73bb61459b4debeb42de5bacb9be8609233642dbc60ea154bfe82e112d87f\
        -tmp-2676926244: no space left on device\n\
        Fatal: unable to save snapshot: write \
        /tmp/r/018/full/repo/data/98/98e73bb61459b4debeb42de5bacb9be8609233642dbc60ea154bfe82e112d87f\
        -tmp-2676926244: no space left on device\n";
    const WRONG_PASSWORD: &str = "Fatal: wrong password or no key found\n";
    const UNREACHABLE_014: &str = "Fatal: unable to open config file: client.Head: Head \
        \"http://127.0.0.1:9/repo/config\": dial tcp 127.0.0.1:9: connect: connection refused\n\
        Is there a repository at the following location?\n\
        rest:http://127.0.0.1:9/repo/\n";
    /// 0.18 retries for 15 minutes (19 retries, 897 s), then gives up with
    /// exit 1.
    const UNREACHABLE_018: &str = "Stat(<config/>) returned error, retrying after 709.612247ms: \
        Head \"http://:***@127.0.0.1:9/repo/config\": dial tcp 127.0.0.1:9: connect: connection \
        refused\n\
        Stat(<config/>) returned error, retrying after 1m17.470120934s: Head \
        \"http://:***@127.0.0.1:9/repo/config\": dial tcp 127.0.0.1:9: connect: connection \
        refused\n\
        Stat(<config/>) failed: Head \"http://:***@127.0.0.1:9/repo/config\": dial tcp \
        127.0.0.1:9: connect: connection refused\n\
        Fatal: unable to open config file: Head \"http://:***@127.0.0.1:9/repo/config\": dial \
        tcp 127.0.0.1:9: connect: connection refused\n\
        Is there a repository at the following location?\n\
        rest:http://127.0.0.1:9/repo/\n";

    #[test]
    fn a_full_disk_says_so_in_front_and_keeps_the_path() {
        let want = |v: &str, id: &str, n: &str| {
            format!(
                "disk full: unable to save snapshot: write /tmp/r/{v}/full/repo/data/{}/{id}-tmp-{n}: \
                 no space left on device",
                &id[..2]
            )
        };
        assert_eq!(
            reason(1, FULL_014),
            Some(want(
                "014",
                "44b63c3c8ea1f9d7e799ff8d6545cd95f4b6f909ee6428285a8a1e7a499d786c",
                "2333194255"
            ))
        );
        // 0.18 says it twice; the Fatal line counts.
        assert_eq!(
            reason(1, FULL_018),
            Some(want(
                "018",
                "98e73bb61459b4debeb42de5bacb9be8609233642dbc60ea154bfe82e112d87f",
                "2676926244"
            ))
        );
        let quota = "Fatal: unable to save snapshot: write /srv/r/data/x: disk quota exceeded";
        assert!(reason(1, quota).unwrap().starts_with("disk full: unable"));
    }

    #[test]
    fn a_wrong_password_is_the_same_on_both_versions() {
        for code in [1, 12] {
            assert_eq!(
                reason(code, WRONG_PASSWORD).as_deref(),
                Some("wrong password or no key found")
            );
        }
    }

    #[test]
    fn an_unreachable_server_is_not_a_missing_repository() {
        assert_eq!(
            reason(1, UNREACHABLE_014).as_deref(),
            Some(
                "repository unreachable: unable to open config file: client.Head: Head \
                 \"http://127.0.0.1:9/repo/config\": dial tcp 127.0.0.1:9: connect: connection refused"
            )
        );
        assert_eq!(
            reason(1, UNREACHABLE_018).as_deref(),
            Some(
                "repository unreachable: unable to open config file: Head \
                 \"http://:***@127.0.0.1:9/repo/config\": dial tcp 127.0.0.1:9: connect: \
                 connection refused"
            )
        );
        for error in [
            "dial tcp: lookup nas.invalid on 127.0.0.53:53: no such host",
            "dial tcp 10.0.0.9:8000: i/o timeout",
            "dial tcp 10.0.0.9:8000: connect: no route to host",
            "net/http: TLS handshake timeout",
        ] {
            let text = reason(1, &format!("Fatal: unable to open config file: {error}")).unwrap();
            assert!(text.starts_with("repository unreachable: "), "{text}");
        }
        // A server that answers, without a repository, is a missing one.
        let missing = "Fatal: repository does not exist: unable to open config file: \
                       <config/> does not exist\nIs there a repository at the following location?";
        assert!(
            reason(10, missing)
                .unwrap()
                .starts_with("repository does not exist: ")
        );
    }

    #[test]
    fn a_go_crash_is_its_panic_line_not_the_stack_trace() {
        let crash = "panic: runtime error: invalid memory address or nil pointer dereference\n\
                     [signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x5d1b2a]\n\
                     \n\
                     goroutine 1 [running]:\n\
                     main.runBackup(...)\n\
                     \t/build/restic/cmd/restic/cmd_backup.go:512 +0x6a\n\
                     main.main()\n\
                     \t/build/restic/cmd/restic/main.go:98 +0x25\n";
        assert_eq!(
            reason(2, crash).as_deref(),
            Some(
                "restic crashed: panic: runtime error: invalid memory address or nil pointer \
                 dereference"
            )
        );
        let oom = "runtime: out of memory: cannot allocate 4194304-byte block (3925016576 in use)\n\
                   fatal error: out of memory\n\nruntime stack:\nruntime.throw(...)\n";
        assert_eq!(
            reason(2, oom).as_deref(),
            Some("restic crashed: fatal error: out of memory")
        );
    }

    #[test]
    fn no_error_holds_a_control_character() {
        // Lines that did not go through clean_line are cleaned here.
        let raw = "\u{1b}[2Ksignal terminated received, cleaning up\n\
                   Fatal: unable to open config file: \u{1b}[31mcontext canceled\u{1b}[0m\u{7}\n\
                   Is there a repository at the following location?\n";
        for code in [1, 2, 10] {
            let text = reason(code, raw).unwrap();
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(
                text.ends_with("unable to open config file: context canceled"),
                "{text}"
            );
        }
        let mut said = Stderr::default();
        said.push("progress\r\u{1b}[2KFatal: wrong\tpassword or no key found");
        let text = failure_reason(Outcome::Failure, Some(12), "exit code 12", &said, "").unwrap();
        assert_eq!(text, "wrong password or no key found");
    }

    #[test]
    fn the_snapshot_of_a_plain_text_backup() {
        // The last line of `restic backup` without --json, 0.14.0 and 0.18.0
        // (and of each snapshot 0.18's `copy` copied).
        assert_eq!(
            snapshot_in_line("snapshot 9139004e saved"),
            Some("9139004e")
        );
        assert_eq!(
            snapshot_in_line("snapshot 1b6db6fe saved"),
            Some("1b6db6fe")
        );
        assert_eq!(
            snapshot_in_line("snapshot 47ed446d saved\n"),
            Some("47ed446d")
        );
        for not_one in [
            "",
            "snapshot saved",
            "using parent snapshot 9139004e",
            "no parent snapshot found, will read all files",
            "skipped creating snapshot",
            "snapshot c0e32295 of [/tmp/rr/small] at 2026-12-01 18:17:11 +0000 UTC by root@vm",
            // -vv names files; a file may be called anything.
            "new       /home/snapshot 9139004e saved, saved in 0.001s (3 B added)",
            "snapshot 9139004E saved",
            "snapshot 9139 saved",
            "snapshot ../etc/passwd saved",
        ] {
            assert_eq!(snapshot_in_line(not_one), None, "{not_one:?}");
        }
    }

    #[test]
    fn unlock_keeps_the_options_that_reach_the_repository() {
        let args = strings(&[
            "-r",
            "/srv/repo",
            "--password-file=/etc/pw",
            "backup",
            "--exclude",
            "*.tmp",
            "-o",
            "s3.storage-class=STANDARD",
            "--no-cache",
            "/home",
            "-v",
        ]);
        assert_eq!(
            unlock_arguments(&args),
            strings(&[
                "-r",
                "/srv/repo",
                "--password-file=/etc/pw",
                "-o",
                "s3.storage-class=STANDARD",
                "--no-cache",
                "unlock"
            ])
        );
        let joined = strings(&[
            "-r/srv/repo",
            "forget",
            "--keep-last",
            "3",
            "--repository-file",
            "f",
        ]);
        assert_eq!(
            unlock_arguments(&joined),
            strings(&["-r/srv/repo", "--repository-file", "f", "unlock"])
        );
        assert_eq!(
            unlock_arguments(&strings(&["snapshots"])),
            strings(&["unlock"])
        );
    }

    #[test]
    fn the_password_goes_to_the_environment_and_other_sources_go_away() {
        let mut spec = Spec {
            program: "restic".into(),
            args: strings(&["-r", "/srv/repo", "backup", "/home"]),
            cwd: "/".into(),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), "k".into()),
                ("RESTIC_PASSWORD_FILE".into(), "/etc/pw".into()),
                ("RESTIC_PASSWORD".into(), "old".into()),
            ],
            env_remove: Vec::new(),
        };
        give_password(&mut spec, &Password::new("from the keyring".into()));
        assert_eq!(spec.args, strings(&["-r", "/srv/repo", "backup", "/home"]));
        assert_eq!(
            spec.env,
            [
                ("AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
                (
                    "RESTIC_PASSWORD".to_string(),
                    "from the keyring".to_string()
                )
            ]
        );
        assert_eq!(
            spec.env_remove,
            strings(&["RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND"])
        );
        assert!(
            !format!("{spec:?}").contains("from the keyring"),
            "{spec:?}"
        );
    }
}
