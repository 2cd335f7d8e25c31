//! The real restic against real repositories in temp directories, every test
//! twice: with Debian 12's restic 0.14 (`/usr/bin/restic`) and with restic
//! 0.18 (Debian 13's, which scripts/test fetches): backups and forgets, stops,
//! timeouts and shutdowns that leave no lock, stale locks, progress.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Daemon, PATIENCE, TestEnv, rfc3339_ms};

/// Defines, for each function `name(&Restic)`, a module `name` holding two
/// tests, `restic_0_14` and `restic_0_18`, so that a failure names the
/// version it happened with.
macro_rules! test_with_each_restic {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[test]
            fn restic_0_14() {
                super::$test(&$crate::real_restic::Restic::debian_12());
            }

            #[test]
            fn restic_0_18() {
                super::$test(&$crate::real_restic::Restic::v0_18());
            }
        }
    )+};
}
pub(crate) use test_with_each_restic;

/// One real restic binary.
#[derive(Clone)]
pub struct Restic {
    pub path: PathBuf,
    /// 14 or 18: the minor version, which decides the exit codes.
    minor: u32,
}

impl Restic {
    /// Debian 12's restic 0.14, what most users have.
    pub fn debian_12() -> Restic {
        Self::checked(
            PathBuf::from("/usr/bin/restic"),
            14,
            "install Debian's restic",
        )
    }

    /// restic 0.18: `$RESTIC_0_18`, else where scripts/setup puts it.
    pub fn v0_18() -> Restic {
        let path = std::env::var_os("RESTIC_0_18")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| home().join(".cache"));
                cache.join("restic-cronned-tests/restic-0.18/usr/bin/restic")
            });
        Self::checked(
            path,
            18,
            "run scripts/test (or scripts/setup), which fetch restic 0.18 from Debian 13, \
             or point RESTIC_0_18 at a restic 0.18",
        )
    }

    fn checked(path: PathBuf, minor: u32, fix: &str) -> Restic {
        let output = Command::new(&path)
            .arg("version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {fix}", path.display()));
        let version = String::from_utf8_lossy(&output.stdout);
        assert!(
            version.starts_with(&format!("restic 0.{minor}.")),
            "{} is not restic 0.{minor}: {version:?}; {fix}",
            path.display()
        );
        Restic { path, minor }
    }

    /// The exit code of a lock conflict: 0.14 has none of its own.
    pub fn locked_exit_code(&self) -> i64 {
        if self.minor < 17 { 1 } else { 11 }
    }

    /// The exit code of a wrong password.
    pub fn wrong_password_exit_code(&self) -> i64 {
        if self.minor < 17 { 1 } else { 12 }
    }

    /// The exit code when there is no repository at the location.
    pub fn missing_repository_exit_code(&self) -> i64 {
        if self.minor < 17 { 1 } else { 10 }
    }

    /// The exit code after restic cleaned up on SIGINT: 0.14 exits 130,
    /// 0.18 exits 1 once it holds its lock (130 while it is taking it).
    pub fn interrupted_exit_code(&self) -> i64 {
        if self.minor < 17 { 130 } else { 1 }
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

/// A repository with its password file, a little data to back up, and a
/// FIFO that held backups read.
pub struct Repo {
    pub path: PathBuf,
    pub password_file: PathBuf,
    pub data: PathBuf,
    restic: Restic,
    /// The FIFO a held backup reads its data from ([`Repo::feed`]).
    feed: PathBuf,
    /// Created when restic 0.18 starts the command that reads the feed.
    reading: PathBuf,
    /// For restic 0.14: runs restic, but a `backup --stdin` reads the feed
    /// (the daemon gives restic `/dev/null` as stdin).
    stdin_wrapper: PathBuf,
}

impl Repo {
    pub fn init(env: &TestEnv, restic: &Restic) -> Repo {
        Self::init_named(env, restic, "repo")
    }

    pub fn init_named(env: &TestEnv, restic: &Restic, name: &str) -> Repo {
        let root = env.dir.path().join(name);
        fs::create_dir(&root).unwrap();
        let repo = Repo {
            path: root.join("repo"),
            password_file: root.join("password"),
            data: root.join("data"),
            restic: restic.clone(),
            feed: root.join("feed"),
            reading: root.join("reading"),
            stdin_wrapper: root.join("restic-stdin"),
        };
        fs::write(&repo.password_file, "correct horse battery staple\n").unwrap();
        fs::create_dir(&repo.data).unwrap();
        for i in 0..5 {
            fs::write(
                repo.data.join(format!("file{i}.txt")),
                format!("content {i}\n"),
            )
            .unwrap();
        }
        mkfifo(&repo.feed);
        // `exec`: the process the daemon signals and reaps is restic itself.
        let wrapper = format!(
            "#!/bin/sh\nfor arg in \"$@\"; do\n  if [ \"$arg\" = --stdin ]; then exec '{restic}' \"$@\" <'{feed}'; fi\ndone\nexec '{restic}' \"$@\"\n",
            restic = restic.path.display(),
            feed = repo.feed.display()
        );
        fs::write(&repo.stdin_wrapper, wrapper).unwrap();
        fs::set_permissions(&repo.stdin_wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        repo.restic(&["init"]);
        repo
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.restic.path);
        command
            .arg("-r")
            .arg(&self.path)
            .arg("--password-file")
            .arg(&self.password_file);
        command
    }

    pub fn restic(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}",
            self.restic.path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A job running restic on this repository.
    pub fn job(&self, name: &str, command: &[&str], extra: Value) -> Value {
        let mut args = vec!["-r".to_string(), self.path.display().to_string()];
        args.extend(command.iter().map(|s| s.to_string()));
        let mut job = json!({
            "JobName": name,
            "ResticPath": self.restic.path,
            "ResticArguments": args,
            "Env": {"RESTIC_PASSWORD_FILE": self.password_file},
        });
        for (k, v) in extra.as_object().unwrap() {
            job[k] = v.clone();
        }
        job
    }

    /// A job whose backup reads its data from the repository's feed: it runs,
    /// holding its lock, until the test finishes the [`Feed`] (deterministic,
    /// unlike a big file that takes "long enough").
    ///
    /// restic 0.18 reads it as its users back up a database dump, with
    /// `--stdin-from-command`. It must: a 0.18 blocked reading a `--stdin`
    /// that nobody in its process group writes ignores SIGINT and SIGTERM
    /// until its input ends (measured with 0.18.0), while 0.14 exits on
    /// SIGINT whatever it is doing, and has no `--stdin-from-command`.
    pub fn held_backup_job(&self, name: &str, extra: Value) -> Value {
        if self.restic.minor < 17 {
            let mut job = self.job(
                name,
                &["backup", "--stdin", "--stdin-filename", "dump.sql"],
                extra,
            );
            job["ResticPath"] = json!(self.stdin_wrapper);
            return job;
        }
        let reader = format!(
            "touch '{}' && exec cat '{}'",
            self.reading.display(),
            self.feed.display()
        );
        let command = [
            "backup",
            "--stdin-filename",
            "dump.sql",
            "--stdin-from-command",
            "--",
            "sh",
            "-c",
            &reader,
        ];
        self.job(name, &command, extra)
    }

    /// Waits (bounded) until a held backup holds the repository's lock and
    /// reads its data, while `running` holds.
    pub fn wait_for_held_backup(&self, running: impl FnMut() -> bool) {
        let reading = || self.restic.minor < 17 || self.reading.exists();
        self.wait_until("restic to lock the repository and read", running, || {
            self.has_lock_file() && reading()
        });
    }

    /// Opens the feed, so a held backup can start reading it.
    pub fn feed(&self) -> Feed {
        // Read and write: opening a FIFO so never blocks (Linux), and the
        // reader sees no end of file while this handle is open.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.feed)
            .unwrap();
        Feed { file: Some(file) }
    }

    pub fn snapshots(&self) -> Vec<Value> {
        serde_json::from_str(&self.restic(&["snapshots", "--json"])).unwrap()
    }

    /// Adds a sparse file of `size` bytes: nothing on disk, but restic reads
    /// and hashes every zero.
    pub fn add_sparse(&self, size: u64) {
        File::create(self.data.join("sparse"))
            .unwrap()
            .set_len(size)
            .unwrap();
    }

    /// Starts a `backup --stdin` outside the daemon; it holds its lock until
    /// its stdin is closed (or it is killed).
    pub fn spawn_held_backup(&self) -> Child {
        self.command()
            .args(["backup", "--stdin", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Whether a lock file is in the repository: what `restic list locks`
    /// lists, without a restic that spends half a second on the key each
    /// time (for waits; assertions use [`Repo::locks`]). Only ids count:
    /// restic writes `ID-tmp-N` first and renames it, and a restic killed
    /// before the rename leaves no lock.
    pub fn has_lock_file(&self) -> bool {
        let Ok(dir) = fs::read_dir(self.path.join("locks")) else {
            return false;
        };
        dir.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }

    /// Waits (bounded) for a lock in the repository while `running` holds.
    pub fn wait_for_lock(&self, running: impl FnMut() -> bool) {
        self.wait_until("restic to lock the repository", running, || {
            self.has_lock_file()
        });
    }

    fn wait_until(
        &self,
        what: &str,
        mut running: impl FnMut() -> bool,
        mut done: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(running(), "restic ended before {what}");
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `restic list locks` as restic itself reports them.
    pub fn locks(&self) -> String {
        self.restic(&["list", "locks", "--no-lock"])
    }
}

/// The writing end of a repository's feed: a held backup reads it until
/// [`Feed::finish`] closes it.
pub struct Feed {
    file: Option<File>,
}

impl Feed {
    /// Writes the data to back up and closes the feed: the backup ends.
    pub fn finish(&mut self, data: &[u8]) {
        let mut file = self.file.take().expect("the feed is open");
        file.write_all(data).unwrap();
    }

    /// Writes a line and waits (bounded) until restic has read it: then it
    /// is past taking its lock and handles SIGINT by removing it (restic
    /// 0.14 interrupted while it takes its lock leaves it behind).
    pub fn wait_until_restic_reads(&mut self) {
        use std::os::fd::AsRawFd;
        let file = self.file.as_mut().expect("the feed is open");
        file.write_all(b"-- a line of the dump\n").unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut unread: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int, which we own.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FIONREAD, &mut unread) };
            assert_eq!(rc, 0, "FIONREAD on the feed");
            if unread == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "restic did not read its feed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn mkfifo(path: &Path) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a plain syscall with a NUL-terminated path we own.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The output tail of `name`'s last run, from `/job`.
pub fn last_output(daemon: &Daemon, name: &str) -> String {
    let (_, body) = daemon.get(&format!("/job?name={name}"));
    let job: Value = serde_json::from_str(&body).unwrap();
    job["runs"][0]["outputTail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

test_with_each_restic!(
    a_backup_triggers_a_forget_on_a_real_repository,
    stopping_a_real_backup_leaves_no_lock,
    a_timeout_during_a_real_backup_leaves_no_lock,
    a_daemon_shutdown_during_a_real_backup_leaves_no_lock,
    a_daemon_killed_during_a_real_backup_takes_restic_with_it_and_leaves_no_lock,
    a_backup_and_a_forget_on_one_repository_never_overlap,
    a_stale_lock_from_a_killed_restic_is_locked_and_unlock_stale_recovers,
    a_json_backup_shows_its_progress_and_keeps_its_summary,
);

fn a_backup_triggers_a_forget_on_a_real_repository(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    env.write_job(
        "backup",
        &repo.job(
            "backup",
            &["backup", path_str(&repo.data)],
            json!({"regularTimer": "1h", "NextJob": "forget"}),
        ),
    );
    env.write_job(
        "forget",
        &repo.job(
            "forget",
            &["forget", "--keep-last", "1"],
            json!({"regularTimer": -1}),
        ),
    );
    let daemon = env.start();
    daemon.wait_outcome("backup", "success");
    let forget = daemon.wait_outcome("forget", "success");
    assert_eq!(forget["lastRun"]["exitCode"], 0);
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0]["paths"][0], path_str(&repo.data));
    // A second backup and its forget keep one snapshot.
    daemon.get("/trigger?name=backup");
    daemon.wait_for("a second forget", |d| {
        let job = d.job("forget");
        (job["lastRun"]["start"] != forget["lastRun"]["start"]
            && job["status"] == "waiting"
            && job["lastRun"]["outcome"] == "success")
            .then_some(())
    });
    assert_eq!(repo.snapshots().len(), 1);
    assert_eq!(repo.locks().trim(), "");
}

/// Starts `name` (a [`Repo::held_backup_job`]) and waits until its restic
/// holds the repository's lock and reads its data.
fn start_held_backup(daemon: &Daemon, repo: &Repo, name: &str) {
    assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
    repo.wait_for_held_backup(|| daemon.job(name)["lastRun"].is_null());
}

fn stopping_a_real_backup_leaves_no_lock(restic: &Restic) {
    // The default grace: restic has all the time it needs after SIGINT.
    let env = TestEnv::with_config(json!({"StopGrace": "30s"}));
    let repo = Repo::init(&env, restic);
    env.write_job("dump", &repo.held_backup_job("dump", json!({})));
    let _feed = repo.feed();
    let daemon = env.start();
    start_held_backup(&daemon, &repo, "dump");
    assert_eq!(daemon.get("/stop?name=dump").0, 200);
    let job = daemon.wait_status("dump", "stopped");
    assert_eq!(job["lastRun"]["outcome"], "stopped", "{job}");
    // restic ended on the first step of the ladder: it caught SIGINT, cleaned
    // up and exited by itself (not by SIGTERM or SIGKILL: exit code null).
    assert_eq!(
        job["lastRun"]["exitCode"],
        restic.interrupted_exit_code(),
        "{job}"
    );
    let output = last_output(&daemon, "dump");
    assert!(saw_sigint(&output), "{output}");
    assert_eq!(
        repo.locks().trim(),
        "",
        "a lock is left behind\n{}",
        daemon.stderr()
    );
    assert!(repo.snapshots().is_empty());
    // A stop is not a failure: nothing to retry, nothing counted.
    assert_eq!(job["consecutiveFailures"], 0, "{job}");
}

fn a_timeout_during_a_real_backup_leaves_no_lock(restic: &Restic) {
    let env = TestEnv::with_config(json!({"StopGrace": "30s"}));
    let repo = Repo::init(&env, restic);
    // Long enough for restic to open the repository (its key derivation
    // alone takes half a second) and lock it on a busy machine.
    env.write_job(
        "slow",
        &repo.held_backup_job("slow", json!({"Timeout": "3s"})),
    );
    let _feed = repo.feed();
    let daemon = env.start();
    start_held_backup(&daemon, &repo, "slow");
    // Nothing but the timeout ends this backup: the feed stays open.
    let job = daemon.wait_outcome("slow", "timeout");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(error.contains("timed out after 3s"), "{job}");
    assert_eq!(
        job["lastRun"]["exitCode"],
        restic.interrupted_exit_code(),
        "{job}"
    );
    assert_eq!(
        repo.locks().trim(),
        "",
        "the timeout left a lock\n{}",
        daemon.stderr()
    );
    assert!(repo.snapshots().is_empty());
    assert_eq!(job["consecutiveFailures"], 1, "a timeout is a failure");
}

fn a_daemon_shutdown_during_a_real_backup_leaves_no_lock(restic: &Restic) {
    let env = TestEnv::with_config(json!({"StopGrace": "30s"}));
    let repo = Repo::init(&env, restic);
    env.write_job("long", &repo.held_backup_job("long", json!({})));
    let _feed = repo.feed();
    let mut daemon = env.start();
    start_held_backup(&daemon, &repo, "long");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit().code(), Some(0), "{}", daemon.stderr());
    // The daemon's own record of the run: /queue went with it.
    let ended = format!(
        "run ended: stopped (exit code {})",
        restic.interrupted_exit_code()
    );
    daemon.wait_stderr(&ended);
    daemon.wait_for("restic's own cleanup after SIGINT", |d| {
        saw_sigint(&d.stderr()).then_some(())
    });
    assert_eq!(repo.locks().trim(), "", "the shutdown left a lock");
    assert!(repo.snapshots().is_empty());
    // Not counted as a failure across the restart either.
    let state = env.read_state("long");
    assert!(state.get("ConsecutiveFailures").is_none(), "{state}");
    assert!(state["LastRun"].is_string(), "{state}");
}

/// A crash or `kill -9` of the daemon: restic gets SIGINT from the kernel
/// (its parent-death signal, set before restic's exec), removes its lock and
/// ends, though nobody reads its output any more.
fn a_daemon_killed_during_a_real_backup_takes_restic_with_it_and_leaves_no_lock(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    env.write_job("long", &repo.held_backup_job("long", json!({})));
    let mut feed = repo.feed();
    let mut daemon = env.start();
    start_held_backup(&daemon, &repo, "long");
    feed.wait_until_restic_reads();
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit();
    let deadline = Instant::now() + PATIENCE;
    while repo.has_lock_file() {
        assert!(
            Instant::now() < deadline,
            "restic outlived its daemon or left its lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(repo.locks().trim(), "", "the daemon's death left a lock");
    assert!(repo.snapshots().is_empty());
}

/// Whether restic's output shows it handled the SIGINT itself. The SIGINT
/// goes to the whole process group, so restic 0.18 may first see the
/// command of its `--stdin-from-command` die and say so instead of
/// "signal interrupt received" (seen under load); either way it cleaned up
/// and exited by itself, which the lock check and the exit code confirm.
fn saw_sigint(output: &str) -> bool {
    output.contains("signal interrupt received, cleaning up")
        || output.contains("command failed: signal: interrupt")
}

/// `(start, end)` of a job's last run in Unix ms.
fn last_span(job: &Value) -> (i64, i64) {
    (
        rfc3339_ms(&job["lastRun"]["start"]),
        rfc3339_ms(&job["lastRun"]["end"]),
    )
}

fn a_backup_and_a_forget_on_one_repository_never_overlap(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    env.write_job("backup", &repo.held_backup_job("backup", json!({})));
    env.write_job(
        "forget",
        &repo.job("forget", &["forget", "--keep-last", "1"], json!({})),
    );
    let other = Repo::init_named(&env, restic, "other");
    env.write_job(
        "elsewhere",
        &other.job("elsewhere", &["backup", path_str(&other.data)], json!({})),
    );
    let mut feed = repo.feed();
    let daemon = env.start();
    start_held_backup(&daemon, &repo, "backup");
    assert_eq!(daemon.get("/trigger?name=forget").0, 200);
    let forget = daemon.wait_for("forget to wait for the backup", |d| {
        let job = d.job("forget");
        (job["WaitingFor"] == "backup").then_some(job)
    });
    assert_eq!(forget["status"], "waiting", "{forget}");
    // The other repository is free: its backup runs now, beside the first.
    assert_eq!(daemon.get("/trigger?name=elsewhere").0, 200);
    let elsewhere = last_span(&daemon.wait_outcome("elsewhere", "success"));
    assert_eq!(daemon.job("backup")["status"], "working");
    assert!(daemon.job("forget")["lastRun"].is_null(), "forget ran");
    feed.finish(b"-- a database dump\n");
    let backup = last_span(&daemon.wait_outcome("backup", "success"));
    let forget = last_span(&daemon.wait_outcome("forget", "success"));
    assert!(
        backup.1 <= forget.0,
        "backup {backup:?} and forget {forget:?} overlap"
    );
    assert!(
        elsewhere.1 < backup.1,
        "{elsewhere:?} did not run beside {backup:?}"
    );
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0]["paths"][0], "/dump.sql");
    assert_eq!(repo.locks().trim(), "");
}

fn a_stale_lock_from_a_killed_restic_is_locked_and_unlock_stale_recovers(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    let mut outside = repo.spawn_held_backup();
    repo.wait_for_lock(|| outside.try_wait().unwrap().is_none());
    outside.kill().unwrap(); // SIGKILL: restic leaves its lock behind
    outside.wait().unwrap();
    assert!(!repo.locks().trim().is_empty());
    // forget takes an exclusive lock, so the stale lock is in its way.
    let forget = ["forget", "--keep-last", "1"];
    env.write_job("plain", &repo.job("plain", &forget, json!({})));
    env.write_job(
        "unlocking",
        &repo.job("unlocking", &forget, json!({"UnlockStale": true})),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=plain");
    let plain = daemon.wait_outcome("plain", "locked");
    assert_eq!(
        plain["lastRun"]["exitCode"],
        restic.locked_exit_code(),
        "{plain}"
    );
    // restic names the holder; the reason says who.
    let error = plain["lastRun"]["error"].as_str().unwrap();
    assert!(error.starts_with("repository is locked by PID "), "{error}");
    assert!(
        !repo.locks().trim().is_empty(),
        "without UnlockStale the lock stays"
    );
    daemon.get("/trigger?name=unlocking");
    daemon.wait_outcome("unlocking", "success");
    assert_eq!(repo.locks().trim(), "");
}

fn a_json_backup_shows_its_progress_and_keeps_its_summary(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    // restic reads and hashes every zero: long enough to be seen moving.
    repo.add_sparse(2 << 30);
    let mut job = repo.job(
        "progress",
        &["backup", "--json", path_str(&repo.data)],
        json!({}),
    );
    job["Env"]["RESTIC_PROGRESS_FPS"] = json!("10");
    env.write_job("progress", &job);
    let daemon = env.start();
    daemon.get("/trigger?name=progress");
    // Seen moving: strictly between 0 and 1, with the bytes restic reports.
    let moving = daemon.wait_for("progress between 0 and 1", |d| {
        let job = d.job("progress");
        let p = job["progress"].as_f64().unwrap();
        (p > 0.0 && p < 1.0).then_some(job)
    });
    let detail = &moving["progressDetail"];
    // The sparse file and the five small ones.
    assert!(
        detail["total_bytes"].as_u64().unwrap() > 1 << 30,
        "{moving}"
    );
    assert!(detail["bytes_done"].as_u64().unwrap() > 0, "{moving}");
    let done = daemon.wait_outcome("progress", "success");
    assert_eq!(done["progress"], 0.0, "progress is reset after the run");
    assert!(done["progressDetail"].is_null());
    let (_, body) = daemon.get("/job?name=progress");
    let detail: Value = serde_json::from_str(&body).unwrap();
    let summary = &detail["runs"][0]["summary"];
    let snapshots = repo.snapshots();
    // restic 0.14 names the snapshot by its short id, 0.18 by its full id.
    let id = summary["snapshot_id"].as_str().unwrap();
    assert!(
        id.len() >= 8 && snapshots[0]["id"].as_str().unwrap().starts_with(id),
        "{summary} is not {}",
        snapshots[0]
    );
    assert_eq!(summary["files_new"], 6, "{summary}");
    // Status lines feed the progress, not the log or the output tail.
    let tail = detail["runs"][0]["outputTail"].as_str().unwrap();
    assert!(!tail.contains("\"message_type\":\"status\""), "{tail}");
    // The summary is logged in words; by then every status line came by.
    daemon.wait_stderr("snapshot ");
    assert!(!daemon.stderr().contains("\"message_type\":\"status\""));
}
