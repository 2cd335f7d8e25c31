//! The wall clock jumping under the daemon, as after a suspend: jobs sleep
//! on the monotonic clock until their deadline (no wake-ups while idle), and
//! the clock watcher makes them look at the wall clock again. libfaketime
//! moves the daemon's wall clock while its monotonic clock goes on, which
//! is what a suspend looks like from inside a process.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::support::TestEnv;

/// Debian's libfaketime (package faketime).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[test]
fn a_deadline_that_passed_during_a_suspend_runs_soon_after_resume() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime (scripts/test does)"
    );
    let env = TestEnv::new();
    env.write_job(
        "nightly",
        &env.fake_job("nightly", &[], json!({"regularTimer": "1h"})),
    );
    // Due in 30 minutes: the job sleeps that long on the monotonic clock.
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(30);
    env.write_state("nightly", &format!("{{\"NextTrigger\":\"{at}\"}}"));
    let offset = env.dir.path().join("faketime");
    fs::write(&offset, "+0\n").unwrap();
    let offset_file = offset.display().to_string();
    let daemon = env.start_with_env(&[
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", &offset_file),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("RESTIC_CRONNED_CLOCK_CHECK_MS", "100"),
    ]);
    daemon.wait_for("the job to wait for its deadline", |d| {
        d.job("nightly")["nextRun"].is_string().then_some(())
    });
    assert!(env.starts("nightly").is_empty(), "it ran before its time");
    // A 31-minute suspend: the wall clock moves on, the monotonic does not.
    fs::write(&offset, "+31m\n").unwrap();
    daemon.wait_stderr("the wall clock jumped by 31m");
    daemon.wait_outcome("nightly", "success");
    assert_eq!(
        env.starts("nightly").len(),
        1,
        "one run for the missed deadline"
    );
}
