//! Running under systemd without systemd: the notify messages on a
//! `NOTIFY_SOCKET` of the test's own, the watchdog going quiet while the
//! supervisor hangs, and journald's priority prefixes on stderr.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Daemon, PATIENCE, TestEnv, http};

/// What the daemon told "systemd", with when it arrived.
struct Systemd {
    socket: UnixDatagram,
    heard: Vec<(Instant, String)>,
}

impl Systemd {
    fn listen(env: &TestEnv) -> (Systemd, String) {
        let path = env.dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let heard = Vec::new();
        (Systemd { socket, heard }, path.display().to_string())
    }

    /// Reads until a message satisfies `wanted`; returns it.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.heard.push((Instant::now(), message.clone()));
                if wanted(&message) {
                    return message;
                }
            }
        }
        panic!("systemd never heard {what}; it heard: {:#?}", self.heard);
    }

    /// When each `WATCHDOG=1` arrived.
    fn watchdog_times(&self) -> Vec<Instant> {
        self.heard
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(at, _)| *at)
            .collect()
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

#[test]
fn systemd_hears_ready_reloads_the_status_the_watchdog_and_stopping() {
    let env = TestEnv::new();
    env.write_job(
        "a",
        &env.fake_job("a", &["env=NOTIFY_SOCKET", "env=WATCHDOG_USEC"], json!({})),
    );
    env.write_job_text("bad", "{ not json");
    let (mut systemd, socket) = Systemd::listen(&env);
    let mut command = env.daemon_command(&[]);
    // A beat every 100 ms.
    command
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "200000");
    let daemon = Daemon::spawn(command);

    let ready = systemd.wait_for("READY=1", |m| has_line(m, "READY=1"));
    assert!(
        has_line(&ready, "STATUS=2 jobs, 0 running, 0 failing, 1 invalid"),
        "{ready}"
    );
    systemd.wait_for("a WATCHDOG=1", |m| has_line(m, "WATCHDOG=1"));

    // A failing run shows in the status line; restic does not inherit the
    // protocol's variables.
    env.write_job(
        "a",
        &env.fake_job(
            "a",
            &["env=NOTIFY_SOCKET", "env=WATCHDOG_USEC", "exit=1"],
            json!({}),
        ),
    );
    let (status, body) = daemon.get("/reload?name=a");
    assert_eq!(status, 200, "{body}");
    systemd.wait_for("RELOADING=1", |m| has_line(m, "RELOADING=1"));
    systemd.wait_for("READY=1 after the reload", |m| has_line(m, "READY=1"));
    assert_eq!(daemon.get("/trigger?name=a").0, 200);
    daemon.wait_outcome("a", "failure");
    systemd.wait_for("a failing job in STATUS", |m| {
        m.contains("STATUS=2 jobs, 0 running, 1 failing, 1 invalid")
    });
    let record = std::fs::read_to_string(&env.record).unwrap();
    assert!(record.contains("env a NOTIFY_SOCKET=<unset>"), "{record}");
    assert!(record.contains("env a WATCHDOG_USEC=<unset>"), "{record}");

    // A supervisor that does not answer sends no beat: systemd would
    // restart it. The API's reads go on meanwhile.
    let addr = daemon.addr.clone();
    let hang = thread::spawn(move || http(&addr, "GET", "/debug/hang-supervisor?ms=1000", &[]));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(daemon.get("/healthz").0, 200);
    assert_eq!(hang.join().unwrap().unwrap().0, 200);
    let resumed = Instant::now();
    systemd.wait_for("a WATCHDOG=1 after the hang", |m| has_line(m, "WATCHDOG=1"));
    let beats = systemd.watchdog_times();
    let longest = beats
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("several beats");
    assert!(
        longest >= Duration::from_millis(800),
        "beats never paused: {longest:?}"
    );
    let after: Vec<_> = beats.iter().filter(|at| **at >= resumed).collect();
    assert!(!after.is_empty(), "no beat after the hang");

    daemon.signal(libc::SIGHUP);
    systemd.wait_for("RELOADING=1 on SIGHUP", |m| has_line(m, "RELOADING=1"));
    systemd.wait_for("READY=1 after SIGHUP", |m| has_line(m, "READY=1"));
    let mut daemon = daemon;
    daemon.signal(libc::SIGTERM);
    systemd.wait_for("STOPPING=1", |m| has_line(m, "STOPPING=1"));
    assert!(daemon.wait_exit().success());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_nothing_breaks() {
    let env = TestEnv::new();
    env.write_job("a", &env.fake_job("a", &["env=NOTIFY_SOCKET"], json!({})));
    let (systemd, socket) = Systemd::listen(&env);
    // WATCHDOG_USEC alone (no socket) starts no watchdog.
    let mut command = env.daemon_command(&[]);
    command.env("WATCHDOG_USEC", "200000");
    let daemon = Daemon::spawn(command);
    assert_eq!(daemon.get("/trigger?name=a").0, 200);
    daemon.wait_outcome("a", "success");
    let mut buf = [0; 64];
    assert!(
        systemd.socket.recv(&mut buf).is_err(),
        "{socket} heard something"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn on_the_journal_lines_carry_priorities_and_no_timestamp() {
    let env = TestEnv::new();
    env.write_job(
        "broken",
        &json!({"JobName": "broken", "ResticPath": "/nonexistent/restic", "ResticArguments": ["backup"]}),
    );
    let mut fds = [0; 2];
    // SAFETY: a plain syscall filling two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these two descriptors, owned by nobody.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let writer = File::from(writer);
    let meta = writer.metadata().unwrap();
    let mut command = env.daemon_command(&[]);
    command
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer);
    let mut child = command.spawn().unwrap();
    drop(command);
    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(File::from(reader))
            .lines()
            .map_while(Result::ok)
        {
            let _ = sender.send(line);
        }
    });
    let mut seen = Vec::new();
    let next_line = |seen: &mut Vec<String>| {
        let line = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no more lines; saw {seen:#?}"));
        seen.push(line.clone());
        line
    };
    let listening = loop {
        let line = next_line(&mut seen);
        if let Some(addr) = line.strip_prefix("<6>listening on ") {
            break addr.to_string();
        }
    };
    let (status, _) = http(&listening, "GET", "/trigger?name=broken", &[]).unwrap();
    assert_eq!(status, 200);
    let warning = loop {
        let line = next_line(&mut seen);
        if line.contains("cannot start /nonexistent/restic") {
            break line;
        }
    };
    assert!(warning.starts_with("<4>[broken] "), "{warning}");
    // SAFETY: a plain syscall on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    for line in &seen {
        let prefix_ok = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(prefix_ok, "a line without a priority: {line:?}");
        assert!(
            !line[3..].starts_with("20"),
            "a timestamp of our own: {line:?}"
        );
    }
    // The log file keeps its timestamps.
    let log = std::fs::read_to_string(env.logs.join("restic-cronned.log")).unwrap();
    assert!(log.starts_with("20"), "{log}");
}
