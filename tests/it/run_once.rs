//! `restic-cronned --run NAME` (SPEC §1.1): one run in the foreground, as
//! the daemon would run it, with its one line on stdout and its exit code;
//! no state file written, no follow-up job, no server; SIGINT and SIGTERM
//! stop it like `/stop` (with real restic 0.14 and 0.18: no lock is left).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::hooks::{HookEnv, KernelEntry};
use crate::real_restic::{Repo, Restic, test_with_each_restic};
use crate::support::{PATIENCE, TestEnv, process_alive, wait_run_once};

/// A healthchecks.io stand-in that answers 200 and records each path.
fn ping_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record
                .lock()
                .unwrap()
                .push(line.split(' ').nth(1).unwrap_or("").to_string());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (addr, seen)
}

#[test]
fn a_successful_run_prints_its_line_exits_0_and_leaves_the_schedule_and_next_job_alone() {
    let h = HookEnv::new();
    let (addr, pings) = ping_server();
    h.write_job(
        "nightly",
        &h.job(
            "nightly",
            &["out=hello-from-restic"],
            json!({
                "regularTimer": "1d", "NextJob": "forget",
                "Healthcheck": format!("http://{addr}/nightly"),
                "Before": h.hook("before", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    h.write_job(
        "forget",
        &h.job("forget", &[], json!({"regularTimer": "1d"})),
    );
    // The daemon's state for the job: tomorrow's slot.
    let state = r#"{"NextTrigger":"2031-05-04T03:00:00+02:00"}"#;
    h.env.write_state("nightly", state);

    let ran = h.env.run_once("nightly");
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(ran.stdout, "nightly: success (exit code 0)\n", "{ran:#?}");
    // Its output and the hooks' lines are logged on stderr.
    assert!(
        ran.stderr.contains("[nightly] hello-from-restic"),
        "{ran:#?}"
    );
    assert!(
        ran.stderr.contains("[nightly] hook Before: started"),
        "{ran:#?}"
    );
    assert!(
        !ran.stderr.contains("listening on"),
        "a server started: {ran:#?}"
    );
    assert_eq!(h.sequence(), ["before", "restic", "after"], "{ran:#?}");
    assert_eq!(h.hook_env("before", 1)["RESTIC_CRONNED_REASON"], "run");
    assert_eq!(h.hook_env("after", 1)["RESTIC_CRONNED_REASON"], "run");
    // The schedule is the daemon's: not moved, and no state for anyone else.
    assert_eq!(
        fs::read_to_string(h.env.state_file("nightly")).unwrap(),
        state
    );
    let mut files: Vec<String> = fs::read_dir(&h.env.state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["history", "nightly"], "--run wrote state files");
    // The run is in the job's history, as the daemon's runs are.
    let history = fs::read_to_string(h.env.state.join("history/nightly.jsonl")).unwrap();
    let runs: Vec<Value> = history
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(runs.len(), 1, "{history}");
    assert_eq!(runs[0]["reason"], "run");
    assert_eq!(runs[0]["outcome"], "success");
    assert!(h.env.starts("forget").is_empty(), "NextJob ran after --run");
    // The healthcheck hears of it, as from the daemon.
    let pings = pings.lock().unwrap().clone();
    assert_eq!(pings, ["/nightly/start", "/nightly/0"], "{ran:#?}");
}

#[test]
fn a_run_that_does_not_succeed_exits_1_with_its_outcome_and_error() {
    let h = HookEnv::new();
    let usb = h.env.dir.path().join("usb");
    fs::create_dir(&usb).unwrap();
    h.write_job(
        "broken",
        &h.job(
            "broken",
            &["exit=1", "err=Fatal: unable to save snapshot: disk full"],
            json!({}),
        ),
    );
    h.write_job("partial", &h.job("partial", &["exit=3"], json!({})));
    h.write_job(
        "nodump",
        &h.job(
            "nodump",
            &[],
            json!({"Before": h.hook("before", &["say=pg_dump: no such database", "exit=2"])}),
        ),
    );
    h.write_job(
        "usb",
        &h.job(
            "usb",
            &[],
            json!({"Preconditions": {"PathesMust": [usb]}, "After": h.hook("usb-after", &[])}),
        ),
    );
    let cases = [
        (
            "broken",
            1,
            "broken: failure (exit code 1): restic exit code 1: unable to save snapshot: disk full",
        ),
        (
            "nodump",
            1,
            "nodump: failure (no exit code): Before hook exited 2: pg_dump: no such database",
        ),
        (
            "usb",
            1,
            &format!(
                "usb: skipped (no exit code): preconditions failed: {}: empty directory",
                usb.display()
            ),
        ),
        // A warning is a success for --run's exit code.
        ("partial", 0, "partial: warning (exit code 3)"),
    ];
    for (name, code, line) in cases {
        let ran = h.env.run_once(name);
        assert_eq!(ran.code, Some(code), "{name}: {ran:#?}");
        assert!(
            ran.stdout.starts_with(line) && ran.stdout.lines().count() == 1,
            "{name}: want {line:?}: {ran:#?}"
        );
    }
    assert_eq!(
        h.env.starts("nodump").len(),
        0,
        "restic ran after a failed Before"
    );
    assert_eq!(h.env.starts("usb").len(), 0, "restic ran on an empty disk");
    assert_eq!(h.runs_of("usb-after"), 0, "a skipped run ran a hook");
}

#[test]
fn a_run_gives_restic_the_kernel_keyrings_password_and_its_hooks_nothing() {
    let password = format!("Zq7-{}-run-once", std::process::id());
    let entry = KernelEntry::new(Some(&password));
    let h = HookEnv::with_config(json!({"Keyring": "keyutils"}));
    let mut job = h.job(
        "keyed",
        &["env=RESTIC_PASSWORD"],
        json!({"Before": h.hook("before", &[]), "After": h.hook("after", &[])}),
    );
    job["Service"] = json!(entry.service);
    job["Username"] = json!(entry.username);
    h.write_job("keyed", &job);
    let ran = h.env.run_once("keyed");
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let record = fs::read_to_string(&h.env.record).unwrap();
    assert!(
        record.contains(&format!("env keyed RESTIC_PASSWORD={password}")),
        "{record}"
    );
    for label in ["before", "after"] {
        assert!(
            !h.hook_env(label, 1).contains_key("RESTIC_PASSWORD"),
            "{label}"
        );
    }
    assert!(!ran.stdout.contains(&password) && !ran.stderr.contains(&password));
}

#[test]
fn an_unknown_or_invalid_job_exits_2_naming_it() {
    let env = TestEnv::new();
    env.write_job("good", &env.fake_job("good", &[], json!({})));
    env.write_job_text("broken", r#"{"JobName": "broken", "regularTimer": "1h"}"#);
    let ran = env.run_once("nosuchjob");
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("nosuchjob"), "{ran:#?}");
    assert!(ran.stdout.is_empty(), "{ran:#?}");
    let ran = env.run_once("broken");
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(
        ran.stderr.contains("broken") && ran.stderr.contains("ResticArguments"),
        "the error names the job and what is wrong: {ran:#?}"
    );
    assert!(env.starts("good").is_empty() && env.starts("broken").is_empty());
    assert!(!env.state.exists() || fs::read_dir(&env.state).unwrap().next().is_none());
}

#[test]
fn sigterm_stops_a_run_and_after_still_runs() {
    let h = HookEnv::new();
    h.write_job(
        "hung",
        &h.job(
            "hung",
            &["exec-sleep=30"],
            json!({
                "OnFailure": h.hook("on-failure", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let child = h.env.run_once_command("hung", &[]).spawn().unwrap();
    let pid = child.id();
    let restic = wait_until("restic to start", || {
        h.env
            .record_lines("hung")
            .iter()
            .find(|w| w[0] == "start")
            .map(|w| w[2].parse::<u32>().unwrap())
    });
    let asked = Instant::now();
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let ran = wait_run_once(child);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.stdout.starts_with("hung: stopped ("), "{ran:#?}");
    assert!(!process_alive(restic), "restic outlived the run");
    let ran_hooks: Vec<String> = h.sequence().into_iter().filter(|s| s != "unlock").collect();
    assert_eq!(ran_hooks, ["restic", "after"], "{ran:#?}");
    assert_eq!(h.hook_env("after", 1)["RESTIC_CRONNED_OUTCOME"], "stopped");
}

#[test]
fn hooks_of_a_run_read_dev_null_not_the_terminal() {
    let h = HookEnv::new();
    h.write_job(
        "asks",
        &h.job(
            "asks",
            &[],
            json!({"Before": h.hook("before", &["read-stdin"])}),
        ),
    );
    // A terminal that never types: --run's stdin stays open.
    let mut command = h.env.run_once_command("asks", &[]);
    command.stdin(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdin = child.stdin.take();
    let ran = wait_run_once(child);
    drop(stdin);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let record = fs::read_to_string(&h.env.record).unwrap();
    assert!(record.contains("stdin before EOF"), "{record}");
}

#[test]
fn sigint_while_waiting_for_a_disk_ends_the_run_at_once() {
    let h = HookEnv::new();
    let usb = h.env.dir.path().join("usb");
    fs::create_dir(&usb).unwrap();
    h.write_job(
        "usb",
        &h.job(
            "usb",
            &[],
            json!({
                "Preconditions": {"PathesMust": [usb]},
                "CheckPrecondsEvery": "1h", "CheckPrecondsMaxTimes": 3,
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let mut child = h.env.run_once_command("usb", &[]).spawn().unwrap();
    let pid = child.id();
    // The first round fails and says so on stderr; then it waits an hour.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("empty directory") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    let asked = Instant::now();
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGINT);
    }
    let ran = wait_run_once(child);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert_eq!(ran.stdout.lines().count(), 1, "{ran:#?}");
    assert!(ran.stdout.starts_with("usb: "), "{ran:#?}");
    assert!(h.env.starts("usb").is_empty());
    assert!(
        h.sequence().is_empty(),
        "a run that never had its turn ran a hook"
    );
}

/// Polls `check` every 10 ms until it gives a value, for at most
/// [`PATIENCE`].
fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

test_with_each_restic!(sigint_to_a_run_during_a_real_backup_stops_it_and_leaves_no_lock);

fn sigint_to_a_run_during_a_real_backup_stops_it_and_leaves_no_lock(restic: &Restic) {
    // The default grace: restic has all the time it needs after SIGINT.
    let h = HookEnv::with_config(json!({"StopGrace": "30s"}));
    let repo = Repo::init(&h.env, restic);
    let mut job = repo.held_backup_job("dump", json!({"After": h.hook("after", &[])}));
    job["Env"]["HOOK_OUT"] = json!(h.env.dir.path());
    job["Env"]["FAKE_RECORD"] = json!(h.env.record);
    h.write_job("dump", &job);
    let _feed = repo.feed();
    let child = h.env.run_once_command("dump", &[]).spawn().unwrap();
    let pid = child.id();
    repo.wait_for_held_backup(|| process_alive(pid));
    // Ctrl-C.
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGINT);
    }
    let ran = wait_run_once(child);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stdout.starts_with(&format!(
            "dump: stopped (exit code {})",
            restic.interrupted_exit_code()
        )),
        "{ran:#?}"
    );
    assert_eq!(repo.locks().trim(), "", "a lock is left behind: {ran:#?}");
    assert!(repo.snapshots().is_empty());
    assert_eq!(h.runs_of("after"), 1, "After did not run: {ran:#?}");
    assert_eq!(h.hook_env("after", 1)["RESTIC_CRONNED_OUTCOME"], "stopped");
}
