//! The wall clock jumping under the daemon, as after a suspend: jobs sleep
//! on the monotonic clock until their deadline (no wake-ups while idle), and
//! the clock watcher makes them look at the wall clock again. Both tests
//! move the daemon's wall clock while its monotonic clock goes on, which is
//! what a suspend looks like from inside a process: one with the real
//! libfaketime, the other with the test builds' offset file (src/schedule/clock.rs),
//! which reaches the static small-machine build that libfaketime's
//! `LD_PRELOAD` cannot (scripts/test skips the libfaketime test there).

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::{DAEMON, TestEnv};

/// Debian's libfaketime (package faketime).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[test]
fn a_deadline_that_passed_during_a_suspend_runs_soon_after_resume_under_libfaketime() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime (scripts/test does)"
    );
    let ldd = Command::new("ldd").arg(&*DAEMON).output().unwrap();
    assert!(
        ldd.status.success(),
        "{} is not dynamically linked, so LD_PRELOAD cannot reach it; \
         the offset-file test covers the static build",
        DAEMON.display()
    );
    a_deadline_that_passed_during_a_suspend_runs_soon_after_resume(|offset_file| {
        vec![
            ("LD_PRELOAD", LIBFAKETIME.to_string()),
            ("FAKETIME_TIMESTAMP_FILE", offset_file.to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
    });
}

#[test]
fn a_deadline_that_passed_during_a_suspend_runs_soon_after_resume_with_the_offset_file() {
    a_deadline_that_passed_during_a_suspend_runs_soon_after_resume(|offset_file| {
        vec![("RESTIC_CRONNED_FAKE_CLOCK_FILE", offset_file.to_string())]
    });
}

/// `fake_clock` gives the daemon's environment that moves its wall clock
/// by the libfaketime offset in the file it is given.
fn a_deadline_that_passed_during_a_suspend_runs_soon_after_resume(
    fake_clock: impl Fn(&str) -> Vec<(&'static str, String)>,
) {
    let env = TestEnv::new();
    env.write_job(
        "nightly",
        &env.fake_job("nightly", &[], json!({"regularTimer": "1h"})),
    );
    // Due in 30 minutes: the job sleeps that long on the monotonic clock.
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(30);
    env.write_state("nightly", &format!("{{\"NextTrigger\":\"{at}\"}}"));
    let offset = env.dir.path().join("faketime");
    set_offset(&offset, "+0");
    let mut vars = fake_clock(&offset.display().to_string());
    vars.push(("RESTIC_CRONNED_CLOCK_CHECK_MS", "100".to_string()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let daemon = env.start_with_env(&vars);
    daemon.wait_for("the job to wait for its deadline", |d| {
        d.job("nightly")["nextRun"].is_string().then_some(())
    });
    assert!(env.starts("nightly").is_empty(), "it ran before its time");
    // A 31-minute suspend: the wall clock moves on, the monotonic does not.
    set_offset(&offset, "+31m");
    daemon.wait_stderr("the wall clock jumped by 31m");
    daemon.wait_outcome("nightly", "success");
    assert_eq!(
        env.starts("nightly").len(),
        1,
        "one run for the missed deadline"
    );
}

/// Writes the offset whole (a new file renamed over the old one): the
/// daemon reads the file at every clock reading and must never see it
/// empty halfway through a write.
fn set_offset(file: &Path, offset: &str) {
    let new = file.with_extension("new");
    fs::write(&new, format!("{offset}\n")).unwrap();
    fs::rename(&new, file).unwrap();
}
