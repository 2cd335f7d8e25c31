//! Scheduling through the real daemon: intervals, the state-file start
//! cases, catch-up, retries, follow-up jobs and trigger coalescing.

use serde_json::json;

use crate::support::{TestEnv, now_ms, rfc3339_ms};

#[test]
fn a_job_runs_on_its_interval_and_keeps_its_phase() {
    let env = TestEnv::new();
    // Each run takes 400 ms of the 1 s period (the shortest allowed): a
    // schedule that counted from the end of a run would drift by 400 ms per
    // run. (A run delayed past its next slot on a loaded machine skips that
    // slot, so only the phase is checked, not that no slot was skipped.)
    env.write_job(
        "tick",
        &env.fake_job("tick", &["sleep=0.4"], json!({"regularTimer": "1s"})),
    );
    let daemon = env.start();
    let starts = daemon.wait_for("three runs", |d| {
        let starts = d.run_starts("tick");
        (starts.len() >= 3).then_some(starts)
    });
    for (i, start) in starts.iter().enumerate().skip(1) {
        let phase = (start - starts[0] + 250).rem_euclid(1000) - 250;
        assert!(
            (-250..250).contains(&phase),
            "run {i} is {phase} ms off phase: {starts:?}"
        );
        assert!(
            start - starts[i - 1] >= 750,
            "runs {} and {i} too close: {starts:?}",
            i - 1
        );
    }
    let state = env.read_state("tick");
    assert!(state["NextTrigger"].is_string(), "{state}");
}

#[test]
fn without_a_state_file_a_job_runs_at_once() {
    let env = TestEnv::new();
    env.write_job(
        "new",
        &env.fake_job("new", &[], json!({"regularTimer": "1h"})),
    );
    let before = now_ms();
    let daemon = env.start();
    let job = daemon.wait_outcome("new", "success");
    // After the run the next slot is one interval after the first.
    let next = rfc3339_ms(&job["nextRun"]);
    let first = env.starts("new")[0];
    assert!(
        (next - first - 3_600_000).abs() < 1_000,
        "next {next}, first {first}"
    );
    assert!(first >= before);
    let written = rfc3339_ms(&env.read_state("new")["NextTrigger"]);
    assert_eq!(written, next, "the state file holds the next trigger");
}

#[test]
fn a_future_next_trigger_is_waited_for() {
    let env = TestEnv::new();
    env.write_job(
        "later",
        &env.fake_job("later", &[], json!({"regularTimer": "1h"})),
    );
    // As the Go original wrote it: local offset, nanoseconds, a newline, and
    // stale bytes from an older, longer record after it.
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(40);
    let text = format!(
        "{{\"NextTrigger\":\"{}\"}}\n4:00+02:00\"}}\n",
        at.display_with_offset(jiff::tz::offset(2))
    );
    env.write_state("later", &text);
    let daemon = env.start();
    let job = daemon.wait_for("the job to be scheduled", |d| {
        let job = d.job("later");
        job["nextRun"].is_string().then_some(job)
    });
    assert_eq!(rfc3339_ms(&job["nextRun"]), at.as_millisecond());
    assert_eq!(
        job["WaitEnd"].as_i64().unwrap() / 1_000_000,
        at.as_millisecond()
    );
    // It is not run now: a trigger shows the daemon is alive and the only
    // run is the triggered one.
    assert_eq!(daemon.get("/trigger?name=later").0, 200);
    daemon.wait_outcome("later", "success");
    assert_eq!(env.starts("later").len(), 1);
    let job = daemon.job("later");
    assert_eq!(
        rfc3339_ms(&job["nextRun"]),
        at.as_millisecond(),
        "a trigger keeps the slot"
    );
}

#[test]
fn an_unreadable_state_file_means_one_full_period() {
    let env = TestEnv::new();
    env.write_job(
        "garbled",
        &env.fake_job("garbled", &[], json!({"regularTimer": "1h"})),
    );
    env.write_state("garbled", "this is not json");
    let before = now_ms();
    let daemon = env.start();
    let job = daemon.wait_for("the job to be scheduled", |d| {
        let job = d.job("garbled");
        job["nextRun"].is_string().then_some(job)
    });
    let next = rfc3339_ms(&job["nextRun"]);
    assert!(
        next >= before + 3_600_000 && next < now_ms() + 3_600_000,
        "{job}"
    );
    daemon.wait_stderr("ignoring the state file");
    // The new deadline replaces the garbage.
    assert_eq!(rfc3339_ms(&env.read_state("garbled")["NextTrigger"]), next);
    assert!(env.starts("garbled").is_empty());
}

#[test]
fn a_missed_deadline_runs_once_and_keeps_the_phase() {
    let env = TestEnv::new();
    env.write_job(
        "missed",
        &env.fake_job("missed", &[], json!({"regularTimer": "1h"})),
    );
    // Ten and a half periods ago: one catch-up run, not ten.
    let old = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(630);
    env.write_state("missed", &format!("{{\"NextTrigger\":\"{old}\"}}"));
    let daemon = env.start();
    let job = daemon.wait_outcome("missed", "success");
    assert_eq!(env.starts("missed").len(), 1, "exactly one catch-up run");
    // The next slot stays on the old phase: old + 11 h, half an hour away.
    let next = rfc3339_ms(&job["nextRun"]);
    assert_eq!(next, old.as_millisecond() + 11 * 3_600_000, "{job}");
}

#[test]
fn retries_follow_the_retry_timer_then_the_job_returns_to_its_schedule() {
    let env = TestEnv::new();
    env.write_job(
        "flaky",
        &env.fake_job(
            "flaky",
            &["exit=1"],
            json!({"regularTimer": "1h", "retryTimer": "100ms", "maxFailedRetries": 2}),
        ),
    );
    let daemon = env.start();
    daemon.wait_for("three failed runs", |d| {
        let job = d.job("flaky");
        (job["consecutiveFailures"] == 3 && job["status"] == "waiting").then_some(())
    });
    let starts = env.starts("flaky");
    assert_eq!(starts.len(), 3, "one run and two retries: {starts:?}");
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= 100,
            "retries wait the retry timer: {starts:?}"
        );
    }
    let job = daemon.job("flaky");
    assert_eq!(job["CurrentRetry"], 0, "{job}");
    assert_eq!(job["status"], "waiting");
    let next = rfc3339_ms(&job["nextRun"]);
    assert!(
        (next - starts[0] - 3_600_000).abs() < 1_000,
        "back on the hourly slot: {job}"
    );
}

#[test]
fn negative_max_retries_retry_until_success_and_reset_the_counter() {
    let env = TestEnv::new();
    env.write_job(
        "stubborn",
        &env.fake_job(
            "stubborn",
            &["fail-times=4"],
            json!({"regularTimer": "1h", "retryTimer": 0, "maxFailedRetries": -1}),
        ),
    );
    let daemon = env.start();
    let job = daemon.wait_outcome("stubborn", "success");
    // When the daemon started restic (the fake's own record adds its
    // shell's start-up, which a loaded machine stretches unevenly).
    let starts = daemon.run_starts("stubborn");
    assert_eq!(starts.len(), 5, "four failures, then a success");
    // A zero retry timer still waits a second between attempts.
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= 990, "{starts:?}");
    }
    assert_eq!(job["CurrentRetry"], 0);
    assert_eq!(job["consecutiveFailures"], 0);
}

#[test]
fn stop_after_failed_retries_stops_the_job() {
    let env = TestEnv::new();
    env.write_job(
        "quitter",
        &env.fake_job(
            "quitter",
            &["exit=1"],
            json!({"regularTimer": "1h", "retryTimer": "50ms", "maxFailedRetries": 1,
                   "StopAfterFailedRetries": true}),
        ),
    );
    let daemon = env.start();
    let job = daemon.wait_status("quitter", "stopped");
    assert_eq!(env.starts("quitter").len(), 2);
    assert!(job["nextRun"].is_null(), "{job}");
    assert_eq!(daemon.get("/trigger?name=quitter").0, 409);
    // It stays stopped, with its failures, across a daemon restart ...
    assert_eq!(daemon.terminate().code(), Some(0));
    let daemon = env.start();
    let job = daemon.wait_status("quitter", "stopped");
    assert_eq!(job["consecutiveFailures"], 2, "{job}");
    assert_eq!(env.starts("quitter").len(), 2, "it did not run again");
    // ... until someone restarts it: back on its schedule, and triggers
    // work again.
    assert_eq!(daemon.get("/restart?name=quitter").0, 200);
    let job = daemon.wait_status("quitter", "waiting");
    assert!(job["nextRun"].is_string(), "{job}");
    assert_eq!(daemon.get("/trigger?name=quitter").0, 200);
    daemon.wait_for("a new round of runs", |_| {
        (env.starts("quitter").len() == 4).then_some(())
    });
}

#[test]
fn next_job_runs_after_success_only() {
    let env = TestEnv::new();
    env.write_job(
        "good",
        &env.fake_job("good", &[], json!({"NextJob": ["after-good"]})),
    );
    env.write_job(
        "bad",
        &env.fake_job("bad", &["exit=1"], json!({"NextJob": "after-bad"})),
    );
    env.write_job(
        "after-good",
        &env.fake_job("after-good", &["sleep=0.2"], json!({})),
    );
    env.write_job("after-bad", &env.fake_job("after-bad", &[], json!({})));
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=bad").0, 200);
    daemon.wait_outcome("bad", "failure");
    assert_eq!(daemon.get("/trigger?name=good").0, 200);
    // Follow-ups are handed on in order, and after-good takes 200 ms: had
    // the failure triggered after-bad, it would have run by now.
    daemon.wait_outcome("after-good", "success");
    assert_eq!(env.starts("after-good").len(), 1);
    assert!(env.starts("after-bad").is_empty());
    assert_eq!(daemon.job("after-bad")["lastRun"], serde_json::Value::Null);
}

#[test]
fn an_exit_code_3_is_a_warning_that_still_triggers_follow_ups() {
    let env = TestEnv::new();
    env.write_job(
        "partial",
        &env.fake_job("partial", &["exit=3"], json!({"NextJob": "then"})),
    );
    env.write_job("then", &env.fake_job("then", &[], json!({})));
    let daemon = env.start();
    daemon.get("/trigger?name=partial");
    let job = daemon.wait_outcome("partial", "warning");
    assert_eq!(job["lastRun"]["exitCode"], 3);
    assert_eq!(job["consecutiveFailures"], 0);
    daemon.wait_outcome("then", "success");
}

#[test]
fn triggers_during_a_run_coalesce_into_one_more_run() {
    let env = TestEnv::new();
    env.write_job("slow", &env.fake_job("slow", &["sleep=0.4"], json!({})));
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=slow").0, 200);
    daemon.wait_status("slow", "working");
    for _ in 0..5 {
        assert_eq!(daemon.get("/trigger?name=slow").0, 200);
    }
    daemon.wait_for("two runs to end", |_| {
        (env.spans("slow").len() == 2).then_some(())
    });
    daemon.wait_status("slow", "waiting");
    let spans = env.spans("slow");
    assert!(
        spans[1].0 >= spans[0].1,
        "the second run starts after the first: {spans:?}"
    );
    // Nothing else is pending: a fresh trigger gives exactly a third run.
    daemon.get("/trigger?name=slow");
    daemon.wait_for("a third run", |_| {
        (env.spans("slow").len() == 3).then_some(())
    });
    assert_eq!(env.starts("slow").len(), 3);
}

#[test]
fn a_timeout_stops_restic_and_counts_as_a_failure() {
    let env = TestEnv::new();
    env.write_job(
        "long",
        &env.fake_job("long", &["sleep=30"], json!({"Timeout": "200ms"})),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=long");
    let job = daemon.wait_outcome("long", "timeout");
    assert!(job["lastRun"]["exitCode"].is_null(), "{job}");
    assert_eq!(job["consecutiveFailures"], 1);
    assert!(
        job["lastRun"]["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 200ms"),
        "{job}"
    );
}
