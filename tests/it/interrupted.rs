//! A run the daemon's end interrupts (SIGKILL, SIGTERM) runs again once
//! after the next start, whatever started it; a run someone stopped does
//! not (SPEC §3).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::{Daemon, TestEnv};

/// A restic whose run number `HANG` (counting from 0, per tag) hangs until
/// it is killed and whose run number `FAIL` fails; every other run
/// succeeds. Arguments: `TAG HANG FAIL`. Starts and ends go to
/// `$FAKE_RECORD`; `restic unlock` after an interrupted run is not a run.
const FLAKY_RESTIC: &str = r#"#!/bin/sh
for a in "$@"; do [ "$a" = unlock ] && exit 0; done
tag=$1; rec="$FAKE_RECORD"
n=$(cat "$rec.$tag.count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$rec.$tag.count"
echo "start $tag $n" >> "$rec"
[ "$n" = "$2" ] && exec sleep 60
[ "$n" = "$3" ] && { echo "end $tag $n 1" >> "$rec"; exit 1; }
echo "end $tag $n 0" >> "$rec"
"#;

fn flaky_job(env: &TestEnv, name: &str, hang: &str, fail: &str, extra: Value) -> Value {
    let script = env.dir.path().join("flaky-restic");
    if !script.exists() {
        fs::write(&script, FLAKY_RESTIC).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut job = json!({
        "JobName": name,
        "ResticPath": script,
        "ResticArguments": [name, hang, fail],
        "Env": {"FAKE_RECORD": env.record},
    });
    for (k, v) in extra.as_object().unwrap() {
        job[k] = v.clone();
    }
    job
}

fn record(env: &TestEnv) -> String {
    fs::read_to_string(&env.record).unwrap_or_default()
}

fn starts(env: &TestEnv, name: &str) -> usize {
    record(env)
        .lines()
        .filter(|l| l.starts_with(&format!("start {name} ")))
        .count()
}

fn wait_record(daemon: &Daemon, env: &TestEnv, line: &str) {
    daemon.wait_for(&format!("{line:?} in the record"), |_| {
        record(env).lines().any(|l| l == line).then_some(())
    });
}

fn pending(env: &TestEnv, name: &str) -> Value {
    env.read_state(name)["PendingRun"].clone()
}

#[test]
fn runs_the_daemons_death_interrupted_run_again_once_and_a_stopped_one_never() {
    let env = TestEnv::new();
    let retrying = json!({"retryTimer": "100ms", "maxFailedRetries": 1});
    env.write_job("trig", &flaky_job(&env, "trig", "0", "-", json!({})));
    env.write_job("retr", &flaky_job(&env, "retr", "1", "0", retrying));
    env.write_job(
        "first",
        &flaky_job(&env, "first", "-", "-", json!({"NextJob": "second"})),
    );
    env.write_job("second", &flaky_job(&env, "second", "0", "-", json!({})));
    env.write_job("stopped", &flaky_job(&env, "stopped", "0", "-", json!({})));
    let mut daemon = env.start();
    for name in ["trig", "retr", "first", "stopped"] {
        assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
    }
    for line in [
        "start trig 0",
        "start retr 1",
        "start second 0",
        "start stopped 0",
    ] {
        wait_record(&daemon, &env, line);
    }
    assert_eq!(daemon.get("/stop?name=stopped").0, 200);
    daemon.wait_outcome("stopped", "stopped");
    // A crash (or a power cut): no time to record anything.
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit();
    assert_eq!(pending(&env, "trig"), "trigger");
    assert_eq!(pending(&env, "retr"), "retry");
    assert_eq!(pending(&env, "second"), "next-job");
    assert!(pending(&env, "stopped").is_null());
    assert!(pending(&env, "first").is_null());

    let daemon = env.start();
    for line in ["end trig 1 0", "end retr 2 0", "end second 1 0"] {
        wait_record(&daemon, &env, line);
    }
    for name in ["trig", "retr", "second"] {
        let job = daemon.wait_outcome(name, "success");
        assert!(job["nextRun"].is_null(), "{name} has more to run: {job}");
        assert!(pending(&env, name).is_null(), "{name} is still pending");
    }
    // Exactly one more run each; none for the stopped run and for the run
    // that had ended (`first`).
    let counts: Vec<usize> = ["trig", "retr", "second", "first", "stopped"]
        .iter()
        .map(|name| starts(&env, name))
        .collect();
    assert_eq!(counts, [2, 3, 2, 1, 1], "{}", record(&env));
    assert!(daemon.terminate().success());
}

#[test]
fn a_run_sigterm_interrupted_runs_again_after_the_next_start() {
    let env = TestEnv::new();
    env.write_job("trig", &flaky_job(&env, "trig", "0", "-", json!({})));
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=trig").0, 200);
    wait_record(&daemon, &env, "start trig 0");
    assert!(daemon.terminate().success());
    assert_eq!(pending(&env, "trig"), "trigger");
    let log = fs::read_to_string(env.logs.join("restic-cronned.log")).unwrap();
    assert!(
        log.contains("run ended: stopped") && log.contains("it runs again after the next start"),
        "{log}"
    );

    let daemon = env.start();
    wait_record(&daemon, &env, "end trig 1 0");
    daemon.wait_outcome("trig", "success");
    assert!(pending(&env, "trig").is_null());
    daemon.wait_stderr("the daemon ended during its last run (trigger); it runs again now");
    assert_eq!(starts(&env, "trig"), 2);
    assert!(daemon.terminate().success());
}

#[test]
fn a_run_someone_stopped_stays_stopped_when_the_daemon_ends_during_its_after_hook() {
    let env = TestEnv::new();
    // The After hook outlasts the stop, so the daemon's SIGTERM comes while
    // the stopped run is still ending.
    env.write_job(
        "x",
        &flaky_job(&env, "x", "0", "-", json!({"After": "exec sleep 30"})),
    );
    let mut daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=x").0, 200);
    wait_record(&daemon, &env, "start x 0");
    assert_eq!(daemon.get("/stop?name=x").0, 200);
    daemon.wait_stderr("[x] hook After: started");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success());
    assert!(
        pending(&env, "x").is_null(),
        "the stopped run would run again: {}",
        env.read_state("x")
    );
}

#[test]
fn a_resumed_run_someone_stops_while_it_checks_is_over_for_good() {
    let env = TestEnv::new();
    let unmounted = env.dir.path().join("usb");
    fs::create_dir(&unmounted).unwrap();
    env.write_job(
        "x",
        &flaky_job(
            &env,
            "x",
            "-",
            "-",
            json!({
                "regularTimer": "1h",
                "Preconditions": {"PathsMust": [unmounted]},
                "CheckPrecondsEvery": "1h",
                "CheckPrecondsMaxTimes": 3,
            }),
        ),
    );
    // The daemon's last end interrupted a run of x.
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(30);
    env.write_state(
        "x",
        &format!("{{\"NextTrigger\":\"{at}\",\"PendingRun\":\"trigger\"}}"),
    );
    let daemon = env.start();
    daemon.wait_for("x to check its disk", |d| {
        (d.job("x")["status"] == "checking").then_some(())
    });
    assert_eq!(daemon.get("/stop?name=x").0, 200);
    daemon.wait_for("x to stop", |d| {
        (d.job("x")["status"] == "stopped").then_some(())
    });
    assert!(
        pending(&env, "x").is_null(),
        "the stopped run would run again: {}",
        env.read_state("x")
    );
}
