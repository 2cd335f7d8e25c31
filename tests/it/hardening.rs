//! SPEC §9 and the bounded output of §4, each against the real daemon: a
//! flood of output, links planted where the daemon writes, a task limit, a
//! repository file that would block, and a log that rotates within a cap.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{DAEMON, Daemon, PATIENCE, TestEnv, process_alive};

/// A restic that floods: `zero` writes `/dev/zero` to stdout, `yes` short
/// lines to stdout, `both` lines to stdout and zeros to stderr. It writes its
/// pid to `$FLOOD_PID` first; `unlock` (after a stop) ends at once.
const FLOODING_RESTIC: &str = r#"#!/bin/sh
for a in "$@"; do [ "$a" = unlock ] && exit 0; done
echo $$ > "$FLOOD_PID"
case "$1" in
  zero) exec cat /dev/zero;;
  yes) exec yes "a line of restic output, over and over";;
  both) cat /dev/zero >&2 & exec yes "stdout line";;
esac
"#;

/// The daemon's resident memory in bytes, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn log_size(env: &TestEnv) -> u64 {
    fs::metadata(env.logs.join("restic-cronned.log")).map_or(0, |m| m.len())
}

/// Floods for `flood_for` while sampling the daemon's memory, then stops
/// the run; returns the largest RSS seen and how long the stop took until
/// the run was recorded as stopped and the flooding process was gone.
fn flood_then_stop(
    env: &TestEnv,
    daemon: &Daemon,
    job: &str,
    flood_for: Duration,
) -> (u64, Duration) {
    let pid_file = env.dir.path().join(format!("{job}.pid"));
    assert_eq!(daemon.get(&format!("/trigger?name={job}")).0, 200);
    let restic_pid: u32 = daemon.wait_for("the flood to start", |_| {
        fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let mut peak = 0;
    let until = Instant::now() + flood_for;
    while Instant::now() < until {
        peak = peak.max(rss_bytes(daemon.pid()));
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(daemon.job(job)["status"], "working");
    let asked = Instant::now();
    assert_eq!(daemon.get(&format!("/stop?name={job}")).0, 200);
    daemon.wait_outcome(job, "stopped");
    daemon.wait_for("the flooding restic to be gone", |_| {
        (!process_alive(restic_pid)).then_some(())
    });
    let took = asked.elapsed();
    peak = peak.max(rss_bytes(daemon.pid()));
    fs::remove_file(&pid_file).unwrap();
    (peak, took)
}

#[test]
fn an_output_flood_keeps_memory_and_the_log_bounded_and_stops_at_once() {
    let env = TestEnv::new();
    let restic = env.dir.path().join("flooding-restic");
    write_script(&restic, FLOODING_RESTIC);
    for mode in ["zero", "yes", "both"] {
        env.write_job(
            mode,
            &json!({
                "JobName": mode,
                "ResticPath": restic,
                "ResticArguments": [mode],
                "Env": {"FLOOD_PID": env.dir.path().join(format!("{mode}.pid"))},
            }),
        );
    }
    let daemon = env.start();
    let idle = rss_bytes(daemon.pid());
    for mode in ["zero", "yes", "both"] {
        let log_before = log_size(&env);
        let (peak, took) = flood_then_stop(&env, &daemon, mode, Duration::from_millis(1500));
        let logged = log_size(&env) - log_before;
        eprintln!(
            "{mode}: idle RSS {} kB, peak {} kB, /stop to stopped {took:?}, {logged} bytes logged",
            idle / 1024,
            peak / 1024
        );
        // Before the output was bounded, one second of `yes` took the daemon
        // from 4 MB to 365 MB and /stop waited behind the queued lines.
        assert!(peak < 32 << 20, "{mode}: RSS peaked at {} kB", peak / 1024);
        assert!(
            took < Duration::from_secs(5),
            "{mode}: the stop took {took:?}"
        );
        // A burst of 256 KiB, then 64 KiB a second, plus the run's own lines.
        assert!(logged < 1 << 20, "{mode}: {logged} bytes of log in 1.5 s");
    }
    let log = fs::read_to_string(env.logs.join("restic-cronned.log")).unwrap();
    assert!(
        log.contains("not logged: more than 64 KiB per second"),
        "{log:.2000}"
    );
    assert!(!log.contains('\0'), "NUL bytes reached the log");
    // The tail of a run stays bounded too.
    let (_, body) = daemon.get("/job?name=yes");
    let job: Value = serde_json::from_str(&body).unwrap();
    let tail = job["runs"][0]["outputTail"].as_str().unwrap();
    assert!(tail.len() <= 64 * 1024, "tail of {} bytes", tail.len());
    assert!(tail.len() > 60 * 1024, "tail of {} bytes", tail.len());
    assert!(tail.contains("\na line of restic output, over and over\n"));
}

#[test]
fn sigterm_during_a_flood_ends_the_daemon_promptly() {
    let env = TestEnv::new();
    let restic = env.dir.path().join("flooding-restic");
    write_script(&restic, FLOODING_RESTIC);
    let pid_file = env.dir.path().join("zero.pid");
    env.write_job(
        "zero",
        &json!({
            "JobName": "zero",
            "ResticPath": restic,
            "ResticArguments": ["both"],
            "Env": {"FLOOD_PID": pid_file},
        }),
    );
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=zero").0, 200);
    let restic_pid: u32 = daemon.wait_for("the flood to start", |_| {
        fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    daemon.wait_for("a second of flood", |d| {
        (rss_bytes(d.pid()) > 0 && log_size(&env) > 256 << 10).then_some(())
    });
    let asked = Instant::now();
    let status = daemon.terminate();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(!process_alive(restic_pid));
}

#[test]
fn ansi_escapes_and_control_characters_never_reach_the_log_or_the_api() {
    let env = TestEnv::new();
    env.write_job(
        "esc",
        &env.fake_job(
            "esc",
            &[
                "err=\u{1b}[2Ksignal interrupt received",
                "out=\u{1b}[31mred\u{1b}[0m and a\u{7} bell",
                "exit=1",
            ],
            json!({}),
        ),
    );
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=esc").0, 200);
    daemon.wait_outcome("esc", "failure");
    daemon.wait_stderr("red and a bell");
    let log = fs::read_to_string(env.logs.join("restic-cronned.log")).unwrap();
    assert!(log.contains("stderr: signal interrupt received"), "{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "{log:?}");
    let (_, body) = daemon.get("/job?name=esc");
    let job: Value = serde_json::from_str(&body).unwrap();
    let tail = job["runs"][0]["outputTail"].as_str().unwrap();
    // stdout and stderr are read on their own threads, in either order.
    let mut lines: Vec<&str> = tail.lines().collect();
    lines.sort();
    assert_eq!(lines, ["red and a bell", "signal interrupt received"]);
}

#[test]
fn links_planted_in_state_dir_and_log_dir_are_not_written_through() {
    let env = TestEnv::new();
    env.write_job("planted", &env.fake_job("planted", &[], json!({})));
    let victim = env.dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    fs::create_dir_all(&env.state).unwrap();
    fs::set_permissions(&env.state, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&victim, env.state.join(".planted.tmp")).unwrap();
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=planted").0, 200);
    daemon.wait_outcome("planted", "success");
    env.read_state("planted");
    assert!(
        !fs::symlink_metadata(env.state_file("planted"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    drop(daemon);

    // A link at the log file's name: the daemon refuses to start.
    let log = env.logs.join("restic-cronned.log");
    fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let output = run_to_end(&env);
    assert_eq!(output.0, Some(2), "{}", output.1);
    assert!(
        output.1.contains(&log.display().to_string()),
        "{}",
        output.1
    );
    assert!(output.1.contains("symbolic link"), "{}", output.1);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// Runs the daemon until it exits by itself (a start-up error): its exit
/// code and stderr. A daemon that starts instead is killed after
/// [`PATIENCE`] (no exit code then).
fn run_to_end(env: &TestEnv) -> (Option<i32>, String) {
    let mut child = Command::new(&*DAEMON)
        .arg("--config")
        .arg(&env.config)
        .arg(&env.jobs)
        .arg("127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn state_and_log_dirs_that_others_can_write_are_refused_at_start() {
    for (key, dir) in [("StateDir", "state"), ("LogDir", "log")] {
        let env = TestEnv::new();
        let shared = env.dir.path().join(dir);
        fs::create_dir_all(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let (code, stderr) = run_to_end(&env);
        assert_eq!(code, Some(2), "{key}: {stderr}");
        assert!(stderr.contains(key), "{stderr}");
        assert!(stderr.contains(&shared.display().to_string()), "{stderr}");
        assert!(stderr.contains("chmod go-w"), "{stderr}");
        // --check says so before a start would fail.
        let (code, stdout) = env.check();
        assert_eq!(code, 1, "{stdout}");
        assert!(
            stdout.contains(&format!("error: {key} {}", shared.display())),
            "{stdout}"
        );
    }
}

#[test]
fn the_log_file_is_private_and_rotated_files_are_capped_in_number() {
    let env = TestEnv::with_config(json!({"LogConf": {"MaxSize": 1, "MaxAge": 30}}));
    // The config's LogConf replaces the test default: put LogDir back.
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(&env.config).unwrap()).unwrap();
    config["LogConf"]["LogDir"] = json!(env.logs);
    fs::write(&env.config, config.to_string()).unwrap();
    fs::create_dir_all(&env.logs).unwrap();
    fs::set_permissions(&env.logs, fs::Permissions::from_mode(0o700)).unwrap();
    // Twelve rotated files from the last minutes (young enough for MaxAge),
    // and a current file just past MaxSize, so the first line rotates it.
    let now = jiff::Timestamp::now();
    let local = jiff::tz::TimeZone::system();
    let rotated: Vec<PathBuf> = (1..=12)
        .map(|minutes| {
            let at = local.to_datetime(now - jiff::SignedDuration::from_mins(minutes));
            let name = format!("restic-cronned.log.{}", at.strftime("%Y%m%dT%H%M%S"));
            let path = env.logs.join(name);
            fs::write(&path, "old\n").unwrap();
            path
        })
        .collect();
    fs::write(
        env.logs.join("restic-cronned.log"),
        vec![b'x'; (1 << 20) + 1],
    )
    .unwrap();
    let daemon = env.start();
    let count_rotated = || {
        fs::read_dir(&env.logs)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("restic-cronned.log.")
            })
            .count()
    };
    daemon.wait_for("the rotation", |_| (count_rotated() == 9).then_some(()));
    // The newest are kept, the oldest go.
    assert!(rotated[..8].iter().all(|p| p.exists()));
    assert!(rotated[8..].iter().all(|p| !p.exists()));
    let mode = fs::metadata(env.logs.join("restic-cronned.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_repository_file_that_would_block_fails_only_its_own_run() {
    let env = TestEnv::new();
    let fifo = env.dir.path().join("repository-fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let big = env.dir.path().join("big-repository-file");
    fs::write(&big, "x".repeat(5000)).unwrap();
    let cases: [(&str, &Path, &str); 3] = [
        ("fifo", &fifo, "is a FIFO, not a regular file"),
        (
            "zero",
            Path::new("/dev/zero"),
            "is a character device, not a regular file",
        ),
        ("big", &big, "is larger than 4 KiB"),
    ];
    for (name, file, _) in &cases {
        let file = file.display().to_string();
        let args = ["--repository-file", file.as_str()];
        env.write_job(name, &env.fake_job(name, &args, json!({})));
    }
    env.write_job("fine", &env.fake_job("fine", &[], json!({})));
    // Before, the supervisor read the FIFO while starting the jobs: the
    // daemon never answered, and SIGTERM was ignored.
    let daemon = env.start();
    for (name, file, why) in &cases {
        assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
        let job = daemon.wait_outcome(name, "failure");
        let error = job["lastRun"]["error"].as_str().unwrap();
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains(why), "{error}");
        assert!(env.starts(name).is_empty(), "{name}: restic was started");
    }
    assert_eq!(daemon.get("/trigger?name=fine").0, 200);
    daemon.wait_outcome("fine", "success");
    assert_eq!(daemon.get("/stop?name=fifo").0, 200);
    let asked = Instant::now();
    assert!(daemon.terminate().success());
    assert!(asked.elapsed() < PATIENCE);
}

/// A pids cgroup (what systemd's `TasksMax` sets) holding one process,
/// removed again when dropped.
struct TaskLimit {
    dir: PathBuf,
}

impl TaskLimit {
    fn new(pid: u32) -> TaskLimit {
        // cgroup v1 has a pids hierarchy of its own; v2 has one tree.
        let root = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .into_iter()
            .map(PathBuf::from)
            .find(|root| {
                root.join("cgroup.procs").exists() && fs::create_dir(root.join("rc-probe")).is_ok()
            })
            .expect("a writable pids cgroup (tests run as root, as in CI)");
        fs::remove_dir(root.join("rc-probe")).unwrap();
        let dir = root.join(format!("restic-cronned-test-{pid}"));
        fs::create_dir(&dir).unwrap();
        assert!(
            dir.join("pids.max").exists(),
            "{} has no pids controller",
            root.display()
        );
        fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
        TaskLimit { dir }
    }

    fn current(&self) -> u64 {
        fs::read_to_string(self.dir.join("pids.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn set(&self, max: &str) {
        fs::write(self.dir.join("pids.max"), max).unwrap();
    }
}

impl Drop for TaskLimit {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("pids.max"), "max");
        // Empty once the daemon is gone; a cgroup with tasks cannot go.
        let deadline = Instant::now() + PATIENCE;
        while fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn a_task_limit_makes_new_jobs_invalid_instead_of_taking_the_daemon_down() {
    let env = TestEnv::new();
    env.write_job("old", &env.fake_job("old", &[], json!({})));
    let mut daemon = env.start();
    let limit = TaskLimit::new(daemon.pid());
    for name in ["new1", "new2"] {
        env.write_job(name, &env.fake_job(name, &[], json!({})));
    }
    // Room for the connection thread of the /reload request, none for jobs.
    let steady = daemon.wait_for("the thread count to settle", |_| {
        let before = limit.current();
        thread::sleep(Duration::from_millis(50));
        (limit.current() == before).then_some(before)
    });
    limit.set(&(steady + 1).to_string());
    let (status, body) = daemon.get("/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("cannot start a thread for job new1"),
        "{body}"
    );
    limit.set("max");
    assert_eq!(daemon.get("/healthz").0, 200);
    let job = daemon.job("new1");
    assert_eq!(job["status"], "invalid", "{job}");
    assert!(job["error"].as_str().unwrap().contains("TasksMax"), "{job}");
    // The old job runs on, and a reload with room starts the new ones.
    assert_eq!(daemon.get("/trigger?name=old").0, 200);
    daemon.wait_outcome("old", "success");
    let (status, body) = daemon.get("/reload");
    assert_eq!(status, 200, "{body}");
    for name in ["new1", "new2"] {
        assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
        daemon.wait_outcome(name, "success");
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success());
}

#[test]
fn a_restic_that_closes_its_output_early_runs_to_its_end() {
    // A wrapper used as ResticPath that sends everything to its own log.
    let env = TestEnv::new();
    let wrapper = env.dir.path().join("quiet-wrapper");
    write_script(
        &wrapper,
        "#!/bin/sh\nexec >/dev/null 2>&1\nsleep 0.3\nexit 3\n",
    );
    env.write_job(
        "quiet",
        &json!({"JobName": "quiet", "ResticPath": wrapper, "ResticArguments": ["backup"]}),
    );
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=quiet").0, 200);
    let job = daemon.wait_outcome("quiet", "warning");
    assert_eq!(job["lastRun"]["exitCode"], 3, "{job}");
}
