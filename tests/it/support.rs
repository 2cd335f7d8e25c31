//! Test support: a temp environment with a job directory and a fake restic,
//! the real daemon binary started on port 0, a small HTTP client, and
//! bounded waits on the API.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// The programs under test: cargo's builds of this checkout, or the ones in
/// the folder that `RESTIC_CRONNED_BIN_DIR` names. scripts/test runs the
/// suite a second time that way, against the small-machine build (static
/// musl, profile `small`) with the `test-hooks` feature.
pub static DAEMON: LazyLock<PathBuf> =
    LazyLock::new(|| program("restic-cronned", env!("CARGO_BIN_EXE_restic-cronned")));
pub static RCKEYUTIL: LazyLock<PathBuf> =
    LazyLock::new(|| program("rckeyutil", env!("CARGO_BIN_EXE_rckeyutil")));
pub static RCCOMMAND: LazyLock<PathBuf> =
    LazyLock::new(|| program("rccommand", env!("CARGO_BIN_EXE_rccommand")));

fn program(name: &str, cargo_built: &str) -> PathBuf {
    let Some(dir) = std::env::var_os("RESTIC_CRONNED_BIN_DIR") else {
        return PathBuf::from(cargo_built);
    };
    let path = Path::new(&dir).join(name);
    assert!(
        path.is_file(),
        "RESTIC_CRONNED_BIN_DIR has no {name}: {} is missing",
        path.display()
    );
    path
}

/// How long any wait may take before the test fails: a safety net only.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A fake restic, driven by its arguments so that each job file says what
/// it does. Every start and every normal end is appended to `$FAKE_RECORD`.
///
/// - `tag=NAME`        names the run in the record
/// - `sleep=S`         sleeps S seconds (fractions allowed)
/// - `exec-sleep=S`    becomes `sleep S` (one process, as restic is)
/// - `setsid-sleep=S`  leaves `sleep S` running outside its process group,
///   holding stdout and stderr open, and exits
/// - `exit=N`          exits with N
/// - `fail-times=N`    exits 1 the first N times (counts in `$FAKE_RECORD.NAME.count`)
/// - `locked-times=N`  the same, saying "repository is already locked" as restic 0.14 does
/// - `ignore-int`      ignores SIGINT (so a stop needs SIGTERM)
/// - `out=TEXT`/`err=TEXT` prints TEXT on stdout/stderr
/// - `env=VAR`         records VAR's value
/// - `pwd`             records the working directory
/// - `fail-if=FILE`    while FILE exists, says `Fatal: <FILE's first line>`
///   on stderr and exits 1 (a fault the test switches on and off)
const FAKE_RESTIC: &str = r#"#!/bin/sh
rec="$FAKE_RECORD"
tag=run; code=0
for a in "$@"; do case "$a" in tag=*) tag="${a#tag=}";; esac; done
echo "start $tag $$ $(date +%s%N) $*" >> "$rec"
for a in "$@"; do
  case "$a" in
    sleep=*) sleep "${a#sleep=}";;
    exec-sleep=*) exec sleep "${a#exec-sleep=}";;
    setsid-sleep=*) setsid sleep "${a#setsid-sleep=}" & ;;
    exit=*) code="${a#exit=}";;
    ignore-int) trap '' INT;;
    out=*) echo "${a#out=}";;
    err=*) echo "${a#err=}" >&2;;
    env=*) v="${a#env=}"; eval "echo \"env $tag $v=\${$v-<unset>}\"" >> "$rec";;
    pwd) echo "pwd $tag $(pwd)" >> "$rec";;
    fail-if=*)
      if [ -e "${a#fail-if=}" ]; then
        echo "Fatal: $(head -n 1 "${a#fail-if=}")" >&2
        code=1
      fi;;
    fail-times=*)
      n=$(cat "$rec.$tag.count" 2>/dev/null || echo 0)
      echo $((n + 1)) > "$rec.$tag.count"
      [ "$n" -lt "${a#fail-times=}" ] && code=1;;
    locked-times=*)
      n=$(cat "$rec.$tag.count" 2>/dev/null || echo 0)
      echo $((n + 1)) > "$rec.$tag.count"
      if [ "$n" -lt "${a#locked-times=}" ]; then
        echo "unable to create lock in backend: repository is already locked by PID 1" >&2
        code=1
      fi;;
  esac
done
echo "end $tag $$ $(date +%s%N) $code" >> "$rec"
exit "$code"
"#;

/// A temp directory with `jobs/`, `state/`, `log/`, a config file and the
/// fake restic.
pub struct TestEnv {
    pub dir: TempDir,
    pub jobs: PathBuf,
    pub state: PathBuf,
    pub logs: PathBuf,
    pub config: PathBuf,
    pub fake: PathBuf,
    pub record: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        Self::with_config(json!({}))
    }

    /// `extra` is merged over the test defaults (state and log dirs in the
    /// temp dir, a 300 ms stop grace).
    pub fn with_config(extra: Value) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let jobs = root.join("jobs");
        fs::create_dir(&jobs).unwrap();
        fs::set_permissions(&jobs, fs::Permissions::from_mode(0o755)).unwrap();
        let state = root.join("state");
        let logs = root.join("log");
        let mut config = json!({
            "StateDir": state,
            "LogConf": {"LogDir": logs},
            "StopGrace": "300ms",
        });
        for (k, v) in extra.as_object().expect("config is an object") {
            config[k] = v.clone();
        }
        let config_path = root.join("config.json");
        fs::write(&config_path, config.to_string()).unwrap();
        let fake = root.join("fake-restic");
        fs::write(&fake, FAKE_RESTIC).unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let record = root.join("record");
        fs::write(&record, "").unwrap();
        TestEnv {
            dir,
            jobs,
            state,
            logs,
            config: config_path,
            fake,
            record,
        }
    }

    /// Writes `jobs/FILE.json` (mode 0644).
    pub fn write_job(&self, file: &str, job: &Value) -> PathBuf {
        self.write_job_text(file, &serde_json::to_string_pretty(job).unwrap())
    }

    pub fn write_job_text(&self, file: &str, text: &str) -> PathBuf {
        let path = self.jobs.join(format!("{file}.json"));
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// A job running the fake restic with `args` (a `tag=NAME` is added),
    /// with `extra` keys merged in.
    pub fn fake_job(&self, name: &str, args: &[&str], extra: Value) -> Value {
        let mut arguments = vec![format!("tag={name}")];
        arguments.extend(args.iter().map(|s| s.to_string()));
        let mut job = json!({
            "JobName": name,
            "ResticPath": self.fake,
            "ResticArguments": arguments,
            "Env": {"FAKE_RECORD": self.record},
        });
        for (k, v) in extra.as_object().expect("extra is an object") {
            job[k] = v.clone();
        }
        job
    }

    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    /// Starts the daemon on port 0 with `extra` arguments before JOBDIR.
    pub fn start_with(&self, extra: &[&str]) -> Daemon {
        Daemon::spawn(self.daemon_command(extra))
    }

    /// Starts the daemon on port 0 with `vars` added to its environment,
    /// such as `TZ`.
    pub fn start_with_env(&self, vars: &[(&str, &str)]) -> Daemon {
        let mut command = self.daemon_command(&[]);
        command.envs(vars.iter().copied());
        Daemon::spawn(command)
    }

    /// The daemon's command line, for tests that add to its environment
    /// before [`Daemon::spawn`].
    pub fn daemon_command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(&*DAEMON);
        command
            .arg("--config")
            .arg(&self.config)
            .args(extra)
            .arg(&self.jobs)
            .arg("127.0.0.1:0");
        command
    }

    /// Every `start`/`end` line of the record for `tag`.
    pub fn record_lines(&self, tag: &str) -> Vec<Vec<String>> {
        fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|w| w.len() > 1 && w[1] == tag)
            .collect()
    }

    /// Start times (Unix ms) of the fake restic runs tagged `tag`.
    pub fn starts(&self, tag: &str) -> Vec<i64> {
        self.record_lines(tag)
            .iter()
            .filter(|w| w[0] == "start")
            .map(|w| w[3].parse::<i64>().unwrap() / 1_000_000)
            .collect()
    }

    /// `(start ns, end ns)` of every run tagged `tag` that ended normally.
    pub fn spans(&self, tag: &str) -> Vec<(i64, i64)> {
        let lines = self.record_lines(tag);
        let mut spans = Vec::new();
        for start in lines.iter().filter(|w| w[0] == "start") {
            if let Some(end) = lines.iter().find(|w| w[0] == "end" && w[2] == start[2]) {
                spans.push((start[3].parse().unwrap(), end[3].parse().unwrap()));
            }
        }
        spans
    }

    pub fn state_file(&self, job: &str) -> PathBuf {
        self.state.join(job)
    }

    pub fn write_state(&self, job: &str, text: &str) {
        fs::create_dir_all(&self.state).unwrap();
        fs::write(self.state_file(job), text).unwrap();
    }

    /// `restic-cronned --check` on the job directory: its exit code and
    /// stdout. Bounded by [`PATIENCE`], so a check that hangs fails the test
    /// instead of hanging it.
    pub fn check(&self) -> (i32, String) {
        self.check_with(&[])
    }

    /// [`TestEnv::check`] with `extra` options after `--check`.
    pub fn check_with(&self, extra: &[&str]) -> (i32, String) {
        let child = Command::new(&*DAEMON)
            .arg("--config")
            .arg(&self.config)
            .arg("--check")
            .args(extra)
            .arg(&self.jobs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the daemon");
        let pid = child.id();
        let (sender, receiver) = std::sync::mpsc::channel();
        thread::spawn(move || sender.send(child.wait_with_output()));
        match receiver.recv_timeout(PATIENCE) {
            Ok(Ok(output)) => (
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            ),
            Ok(Err(e)) => panic!("--check: {e}"),
            Err(_) => {
                // SAFETY: plain syscall on our own child, which the thread
                // above reaps once it dies.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
                panic!("--check did not finish");
            }
        }
    }

    pub fn read_state(&self, job: &str) -> Value {
        let text = fs::read_to_string(self.state_file(job)).expect("state file");
        serde_json::from_str(&text).expect("state file is JSON")
    }
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn spawn(mut command: Command) -> Daemon {
        let description = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_sender, addr) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on ") {
                    let _ = addr_sender.send(line[i + 13..].trim().to_string());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match addr.recv_timeout(PATIENCE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not say where it listens\ncommand: {description}\nstderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let daemon = Daemon {
            child: Some(child),
            addr,
            stderr,
        };
        // The daemon binds before it loads the jobs and serves after: the
        // first answer means every job file has been read.
        daemon.wait_for("the first answer", |d| {
            http(&d.addr, "GET", "/healthz", &[]).ok().map(|_| ())
        });
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a request; returns the status and the body.
    pub fn request(&self, method: &str, path: &str) -> (u16, String) {
        http(&self.addr, method, path, &[])
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}\nstderr:\n{}", self.stderr()))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path)
    }

    pub fn queue(&self) -> Value {
        let (status, body) = self.get("/queue");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/queue is JSON")
    }

    /// The `/queue` entry of `name`.
    pub fn job(&self, name: &str) -> Value {
        let queue = self.queue();
        queue["Jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["JobName"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not in /queue: {queue}"))
    }

    /// Polls `check` until it returns `Some`, failing after [`PATIENCE`].
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Daemon) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            if Instant::now() > deadline {
                let queue = http(&self.addr, "GET", "/queue", &[]);
                panic!(
                    "timed out waiting for {what}\nqueue: {queue:?}\nstderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// When the daemon started restic for each of `name`'s last runs, in
    /// Unix ms, oldest first (from `/job`). Unlike the fake restic's own
    /// record, this leaves out its shell's start-up, which a loaded machine
    /// stretches.
    pub fn run_starts(&self, name: &str) -> Vec<i64> {
        let (_, body) = self.get(&format!("/job?name={name}"));
        let job: Value = serde_json::from_str(&body).expect("/job is JSON");
        let mut starts: Vec<i64> = job["runs"]
            .as_array()
            .map(|runs| runs.iter().map(|r| rfc3339_ms(&r["start"])).collect())
            .unwrap_or_default();
        starts.reverse();
        starts
    }

    /// Waits until the daemon's stderr holds `text` (our copy of it may lag
    /// a little behind what the API already shows).
    pub fn wait_stderr(&self, text: &str) {
        self.wait_for(&format!("{text:?} on stderr"), |d| {
            d.stderr().contains(text).then_some(())
        });
    }

    /// Waits until the job `name` has status `status`.
    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        self.wait_for(&format!("{name} to be {status}"), |d| {
            let job = d.job(name);
            (job["status"] == status).then_some(job)
        })
    }

    /// Waits until `name` has a last run with `outcome`.
    pub fn wait_outcome(&self, name: &str, outcome: &str) -> Value {
        self.wait_for(&format!("{name} to end with {outcome}"), |d| {
            let job = d.job(name);
            (job["lastRun"]["outcome"] == outcome && job["status"] != "working").then_some(job)
        })
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: plain syscall on our own child.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Waits (bounded) for the daemon to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!("the daemon did not exit\nstderr:\n{}", self.stderr());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.0 client: enough for our API, and able to send headers
/// that a library would refuse.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Whether a process with `pid` exists (zombies count as gone).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Unix time in ms now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Parses an RFC 3339 time from the API into Unix ms.
pub fn rfc3339_ms(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    let t: jiff::Timestamp = text.parse().unwrap();
    t.as_millisecond()
}

/// Sends raw bytes as a request and returns the whole answer as text: for
/// requests no client library would send. A failed write is ignored (the
/// server may refuse before reading everything); the answer is what counts.
pub fn raw_http(addr: &str, request: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The status code of a raw answer; 0 when there is none.
pub fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// How a foreground `restic-cronned --run` ended.
#[derive(Debug)]
pub struct RunOnce {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl TestEnv {
    /// `restic-cronned --config CONFIG --run NAME JOBDIR` with `vars` added
    /// to its environment, stdin from /dev/null.
    pub fn run_once_command(&self, name: &str, vars: &[(&str, &str)]) -> Command {
        let mut command = Command::new(&*DAEMON);
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--run")
            .arg(name)
            .arg(&self.jobs)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `restic-cronned --run NAME` to its end, bounded by [`PATIENCE`].
    pub fn run_once(&self, name: &str) -> RunOnce {
        wait_run_once(self.run_once_command(name, &[]).spawn().expect("run --run"))
    }
}

/// Waits (bounded by [`PATIENCE`]) for a `--run` child and collects what it
/// printed; kills it and fails the test when it does not end.
pub fn wait_run_once(child: Child) -> RunOnce {
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(PATIENCE) {
        Ok(Ok(output)) => RunOnce {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("--run: {e}"),
        Err(_) => {
            // SAFETY: plain syscall on our own child, which the thread
            // above reaps once it dies.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("--run did not finish");
        }
    }
}

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// Header names lower-cased, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When the request was complete.
    pub at: Instant,
}

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; fails the test when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {:?}", self.path, self.body))
    }
}

/// How a [`Receiver`] answers.
#[derive(Clone, Copy, PartialEq)]
pub enum Answer {
    /// `status` with a short body.
    Status(u16),
    /// Accepts the connection, reads the request, and never answers (the
    /// connection stays open as long as the receiver lives).
    Silent,
}

/// A local stand-in for a notification service (ntfy, Gotify, a webhook):
/// a `TcpListener` on 127.0.0.1:0 that records every request, each
/// connection on its own thread.
pub struct Receiver {
    pub addr: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Answers every request 200.
    pub fn start() -> Receiver {
        Self::answering(Answer::Status(200))
    }

    pub fn answering(answer: Answer) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let record = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let record = record.clone();
                thread::spawn(move || serve_one(stream, answer, record));
            }
        });
        Receiver { addr, seen }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn on(&self, prefix: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits (bounded, through `daemon`'s [`Daemon::wait_for`]) until
    /// `prefix` has received at least `n` requests; returns them all.
    pub fn wait_on(&self, daemon: &Daemon, prefix: &str, n: usize) -> Vec<Received> {
        daemon.wait_for(
            &format!("{n} notification(s) on {prefix}; got {:?}", self.on(prefix)),
            |_| {
                let got = self.on(prefix);
                (got.len() >= n).then_some(got)
            },
        )
    }
}

fn serve_one(stream: TcpStream, answer: Answer, record: Arc<Mutex<Vec<Received>>>) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.trim_end().split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let mut body = Vec::new();
    if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let size =
                usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            if size == 0 {
                let mut end = String::new();
                let _ = reader.read_line(&mut end);
                break;
            }
            let mut chunk = vec![0; size];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            let _ = reader.read_line(&mut crlf);
        }
    } else if let Some(length) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
    }
    record.lock().unwrap().push(Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let mut stream = stream;
    match answer {
        Answer::Status(code) => {
            let _ = stream.write_all(
                format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .as_bytes(),
            );
        }
        Answer::Silent => {
            // Hold the connection open without a word until the peer gives
            // up (or the test process ends).
            let mut sink = [0u8; 256];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            drop(stream);
        }
    }
}

/// A loopback port on which nothing listens (bound, then closed).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The value of the `/metrics` sample that starts with `prefix` (such as
/// `restic_cronned_job_stale{job="a"}`); `None` when there is none.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl TestEnv {
    /// The daemon's log file (`LogDir/restic-cronned.log`), empty when it
    /// is not there.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.logs.join("restic-cronned.log")).unwrap_or_default()
    }
}

impl Daemon {
    /// `/metrics` as text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `/job?name=NAME` as JSON.
    pub fn job_details(&self, name: &str) -> Value {
        let (status, body) = self.get(&format!("/job?name={name}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/job is JSON")
    }

    /// Waits until `name` has `n` runs in `/job` and is not running: the
    /// way to wait for the n-th run when several end alike.
    pub fn wait_runs(&self, name: &str, n: usize) -> Value {
        self.wait_for(&format!("{name} to have {n} runs"), |d| {
            let job = d.job_details(name);
            let runs = job["runs"].as_array().map_or(0, Vec::len);
            (runs >= n && d.job(name)["status"] != "working" && d.job(name)["status"] != "checking")
                .then_some(job)
        })
    }
}

impl TestEnv {
    /// Starts the daemon on a free port chosen here rather than by the
    /// daemon: for a `Level` that hides the `listening on` line.
    pub fn start_quiet(&self) -> Daemon {
        let addr = format!("127.0.0.1:{}", closed_port());
        let mut command = Command::new(&*DAEMON);
        command
            .arg("--config")
            .arg(&self.config)
            .arg(&self.jobs)
            .arg(&addr);
        Daemon::spawn_at(command, addr)
    }
}

impl Daemon {
    /// [`Daemon::spawn`] for a daemon that listens on `addr`, known in
    /// advance: waits for its first answer there.
    pub fn spawn_at(mut command: Command, addr: String) -> Daemon {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let daemon = Daemon {
            child: Some(child),
            addr,
            stderr,
        };
        daemon.wait_for("the first answer", |d| {
            http(&d.addr, "GET", "/healthz", &[]).ok().map(|_| ())
        });
        daemon
    }
}
