//! Preconditions (SPEC §3.1) with the real daemon: a backup source on a disk
//! that is not mounted skips the run (and real restic's snapshots stay as
//! they were), every failing check is named, rounds wait and then let the
//! run go, a stop interrupts the checks, triggers merge, no repository turn
//! is held while checking, and a skipped run spends no retry and sends no
//! ping.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestEnv;

/// A local port that refuses connections: bound, then let go.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn metrics_line(text: &str, prefix: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .to_string()
}

#[test]
fn every_failing_check_is_named_and_a_skipped_run_spends_no_retry_and_sends_no_ping() {
    let env = TestEnv::new();
    let empty = env.dir.path().join("usb");
    fs::create_dir(&empty).unwrap();
    let missing = env.dir.path().join("nas-share");
    let port = closed_port();
    // A healthcheck receiver that must hear nothing.
    let pings = TcpListener::bind("127.0.0.1:0").unwrap();
    pings.set_nonblocking(true).unwrap();
    let ping_url = format!("http://{}/check", pings.local_addr().unwrap());
    env.write_job(
        "guarded",
        &env.fake_job(
            "guarded",
            &[],
            json!({
                "retryTimer": "100ms", "maxFailedRetries": 3, "Healthcheck": ping_url,
                "Preconditions": {
                    "PathesMust": [empty, missing],
                    "HostsMustRoute": ["localhost", "no-such-host.invalid"],
                    "HostsMustConnect": [{"Host": "127.0.0.1", "Port": port}],
                },
            }),
        ),
    );
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=guarded").0, 200);
    let job = daemon.wait_outcome("guarded", "skipped");
    let error = job["lastRun"]["error"].as_str().unwrap();
    for part in [
        format!("{}: empty directory", empty.display()),
        format!("{}: no such directory", missing.display()),
        // "no such host", or "cannot resolve: …" where no DNS answers.
        "no-such-host.invalid: ".to_string(),
        format!("127.0.0.1:{port}: connection refused"),
    ] {
        assert!(error.contains(&part), "{part:?} missing in {error}");
    }
    assert!(
        !error.contains("localhost"),
        "a check that held is named: {error}"
    );
    assert_eq!(job["error"], job["lastRun"]["error"]);
    assert_eq!(job["CurrentRetry"], 0, "{job}");
    assert_eq!(job["consecutiveFailures"], 0, "{job}");
    assert!(job["nextRun"].is_null(), "a retry was scheduled: {job}");
    assert!(job["lastRun"]["exitCode"].is_null(), "{job}");
    assert!(env.starts("guarded").is_empty(), "restic was started");
    assert!(
        pings.accept().is_err(),
        "a skipped run sent a healthcheck ping"
    );
    let (_, metrics) = daemon.get("/metrics");
    assert_eq!(
        metrics_line(
            &metrics,
            "restic_cronned_job_runs_total{job=\"guarded\",outcome=\"skipped\"}"
        ),
        "restic_cronned_job_runs_total{job=\"guarded\",outcome=\"skipped\"} 1"
    );
    daemon.wait_stderr("[guarded] run skipped: preconditions failed: ");
}

#[test]
fn rounds_wait_then_a_disk_that_appears_lets_one_run_go_and_triggers_merge() {
    let env = TestEnv::new();
    let usb = env.dir.path().join("usb");
    fs::create_dir(&usb).unwrap();
    env.write_job(
        "photos",
        &env.fake_job(
            "photos",
            &[],
            json!({
                "CheckPrecondsEvery": "100ms", "CheckPrecondsMaxTimes": 1000,
                "Preconditions": {"PathsMust": [usb]},
            }),
        ),
    );
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=photos").0, 200);
    let job = daemon.wait_for("a failed round", |d| {
        let job = d.job("photos");
        (job["status"] == "checking" && job["error"].is_string()).then_some(job)
    });
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{}: empty directory", usb.display())),
        "{job}"
    );
    // Triggers while checking are this same run.
    for _ in 0..3 {
        assert_eq!(daemon.get("/trigger?name=photos").0, 200);
    }
    // The disk is mounted.
    fs::write(usb.join("IMG_0001.jpg"), "jpeg").unwrap();
    let job = daemon.wait_outcome("photos", "success");
    assert!(job["error"].is_null(), "{job}");
    assert_eq!(env.starts("photos").len(), 1, "the triggers made more runs");
}

#[test]
fn a_stop_interrupts_the_checks_and_checking_holds_no_repository_turn() {
    let env = TestEnv::new();
    let usb = env.dir.path().join("usb");
    fs::create_dir(&usb).unwrap();
    let repo = env.dir.path().join("repo").display().to_string();
    env.write_job(
        "waiting",
        &env.fake_job(
            "waiting",
            &["-r", &repo],
            json!({
                "CheckPrecondsEvery": "50ms", "CheckPrecondsMaxTimes": 100000,
                "Preconditions": {"PathesMust": [usb]},
            }),
        ),
    );
    env.write_job(
        "same-repo",
        &env.fake_job("same-repo", &["-r", &repo], json!({})),
    );
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=waiting").0, 200);
    daemon.wait_status("waiting", "checking");
    assert_eq!(daemon.get("/trigger?name=same-repo").0, 200);
    let other = daemon.wait_outcome("same-repo", "success");
    assert!(other["WaitingFor"].is_null(), "{other}");
    assert_eq!(daemon.job("waiting")["status"], "checking");
    assert_eq!(daemon.get("/stop?name=waiting").0, 200);
    let job = daemon.wait_status("waiting", "stopped");
    assert!(env.starts("waiting").is_empty(), "{job}");
    // A stopped job does not go on checking in the background.
    fs::write(usb.join("file"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(env.starts("waiting").is_empty());
}

/// A repository made with the real restic (Debian's), with its password in
/// a file, and a job that backs up `source` into it.
fn real_backup_job(env: &TestEnv, source: &Path, extra: Value) -> (Value, impl Fn() -> usize) {
    let repo = env.dir.path().join("repo");
    let password = env.dir.path().join("password");
    fs::write(&password, "correct horse battery staple\n").unwrap();
    let restic = |args: &[&str]| {
        let output = Command::new("restic")
            .arg("-r")
            .arg(&repo)
            .arg("--password-file")
            .arg(&password)
            .args(args)
            .output()
            .expect("restic is installed (scripts/test installs it)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    restic(&["init"]);
    let mut job = json!({
        "JobName": "usb",
        "ResticArguments": ["-r", repo, "backup", source],
        "Env": {"RESTIC_PASSWORD_FILE": password},
    });
    for (k, v) in extra.as_object().unwrap() {
        job[k] = v.clone();
    }
    let (repo, password) = (repo.clone(), password.clone());
    let snapshots = move || {
        let output = Command::new("restic")
            .arg("-r")
            .arg(&repo)
            .arg("--password-file")
            .arg(&password)
            .args(["snapshots", "--json"])
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&output.stdout).unwrap();
        list.as_array().unwrap().len()
    };
    (job, snapshots)
}

#[test]
fn a_disk_that_is_not_mounted_leaves_the_real_snapshots_alone() {
    let env = TestEnv::new();
    // The mount point of a USB disk, with the disk mounted: files in it.
    let mount = env.dir.path().join("mnt-usb");
    fs::create_dir(&mount).unwrap();
    fs::write(mount.join("photo.jpg"), "a photo").unwrap();
    let (job, snapshots) = real_backup_job(
        &env,
        &mount,
        json!({"Preconditions": {"PathesMust": [mount]}, "CheckPrecondsMaxTimes": 1}),
    );
    env.write_job("usb", &job);
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=usb").0, 200);
    daemon.wait_outcome("usb", "success");
    assert_eq!(snapshots(), 1);
    // Unmounted: the mount point is an empty directory. Without the check,
    // restic would save an empty snapshot, and `forget --keep-last` would
    // then drop the real ones.
    fs::remove_file(mount.join("photo.jpg")).unwrap();
    assert_eq!(daemon.get("/trigger?name=usb").0, 200);
    let job = daemon.wait_outcome("usb", "skipped");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert_eq!(
        error,
        format!("preconditions failed: {}: empty directory", mount.display())
    );
    assert_eq!(snapshots(), 1, "the skipped run saved a snapshot");
}
