//! Calendar (cron) schedules through the real daemon: runs on the second
//! boundary, one catch-up run for missed slots, and `--check` showing the
//! next runs.

use std::process::Command;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::json;

use crate::support::{DAEMON, TestEnv, rfc3339_ms};

/// The instants at `hour:minute` local time in `zone` on the days from
/// `from`'s date on that lie after `from` (`count` of them). The times used
/// here exist exactly once every day.
fn daily_after(
    zone: &TimeZone,
    from: Timestamp,
    hour: i8,
    minute: i8,
    count: usize,
) -> Vec<Timestamp> {
    let mut day: Date = zone.to_datetime(from).date();
    let mut times = Vec::new();
    while times.len() < count {
        let at = zone.to_timestamp(day.at(hour, minute, 0, 0)).unwrap();
        if at > from {
            times.push(at);
        }
        day = day.tomorrow().unwrap();
    }
    times
}

fn local(zone: &TimeZone, t: Timestamp) -> String {
    t.display_with_offset(zone.to_offset(t)).to_string()
}

#[test]
fn an_every_second_job_runs_on_second_boundaries() {
    let env = TestEnv::new();
    env.write_job(
        "tick",
        &env.fake_job("tick", &[], json!({"regularTimer": "* * * * * *"})),
    );
    let daemon = env.start();
    let starts = daemon.wait_for("five runs", |d| {
        let starts = d.run_starts("tick");
        (starts.len() >= 5).then_some(starts)
    });
    // The first run is the one due at start (there is no state file); the
    // others are the schedule's.
    let scheduled = &starts[1..5];
    for start in scheduled {
        assert!(
            start % 1000 < 250,
            "a run started {} ms after the second: {starts:?}",
            start % 1000
        );
    }
    for pair in scheduled.windows(2) {
        assert!(
            (750..1250).contains(&(pair[1] - pair[0])),
            "runs are a second apart: {starts:?}"
        );
    }
    let job = daemon.job("tick");
    assert_eq!(job["regularTimer"], 0, "{job}");
    assert_eq!(job["schedule"], "* * * * * *", "{job}");
}

#[test]
fn a_missed_calendar_slot_runs_once_then_the_next_occurrence_is_waited_for() {
    let env = TestEnv::new();
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    // A daily time about twelve hours away, so that no regular slot falls
    // inside the test.
    let now = Timestamp::now();
    let hour = match (berlin.to_datetime(now).hour() + 12) % 24 {
        // 02:30 is skipped or repeated on the days the clocks change.
        2 => 3,
        hour => hour,
    };
    let expression = format!("30 {hour} * * *");
    env.write_job(
        "nightly",
        &env.fake_job("nightly", &[], json!({"regularTimer": expression})),
    );
    // Three days of missed slots: one catch-up run, not three.
    let missed = daily_after(
        &berlin,
        now - jiff::SignedDuration::from_hours(80),
        hour,
        30,
        1,
    )[0];
    env.write_state(
        "nightly",
        &format!("{{\"NextTrigger\":\"{}\"}}", local(&berlin, missed)),
    );
    let daemon = env.start_with_env(&[("TZ", "Europe/Berlin")]);
    let job = daemon.wait_outcome("nightly", "success");
    assert_eq!(env.starts("nightly").len(), 1, "exactly one catch-up run");
    let end = rfc3339_ms(&job["lastRun"]["end"]);
    let end = Timestamp::from_millisecond(end).unwrap();
    let next = daily_after(&berlin, end, hour, 30, 1)[0];
    assert_eq!(
        rfc3339_ms(&job["nextRun"]),
        next.as_millisecond(),
        "the next run is the schedule's next slot: {job}"
    );
    assert_eq!(
        env.read_state("nightly")["NextTrigger"],
        local(&berlin, next),
        "the state file holds it, in local time"
    );
    assert_eq!(job["regularTimer"], 0, "{job}");
    assert_eq!(job["schedule"], expression.as_str(), "{job}");
}

#[test]
fn check_prints_the_next_three_runs() {
    let env = TestEnv::new();
    let new_york = TimeZone::get("America/New_York").unwrap();
    env.write_job(
        "fresh",
        &env.fake_job("fresh", &[], json!({"regularTimer": "0 30 3 * * *"})),
    );
    env.write_job(
        "known",
        &env.fake_job("known", &[], json!({"regularTimer": "30 3 * * *"})),
    );
    env.write_job("manual", &env.fake_job("manual", &[], json!({})));
    let now = Timestamp::now();
    let runs = daily_after(&new_york, now, 3, 30, 4);
    env.write_state(
        "known",
        &format!("{{\"NextTrigger\":\"{}\"}}", local(&new_york, runs[0])),
    );
    let output = Command::new(&*DAEMON)
        .env("TZ", "America/New_York")
        .arg("--config")
        .arg(&env.config)
        .arg("--check")
        .arg(&env.jobs)
        .output()
        .expect("run the daemon");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let after = |prefix: &str| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{out}"));
        lines.get(i + 1).copied().unwrap_or_default()
    };
    // A job with a state file waits for its NextTrigger, then follows the
    // schedule, in local time with the offset.
    let want: Vec<String> = runs[..3].iter().map(|t| local(&new_york, *t)).collect();
    assert_eq!(
        after("ok: known"),
        format!("  next runs: {}", want.join(", ")),
        "{out}"
    );
    // A new job runs at once when the daemon starts.
    let next_after_now = daily_after(&new_york, Timestamp::now(), 3, 30, 2);
    let want: Vec<String> = next_after_now
        .iter()
        .map(|t| local(&new_york, *t))
        .collect();
    assert_eq!(
        after("ok: fresh"),
        format!("  next runs: now, {}", want.join(", ")),
        "{out}"
    );
    assert!(
        !after("ok: manual").contains("next runs"),
        "a job without a schedule has no next runs: {out}"
    );
}
