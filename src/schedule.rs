//! Schedules and the pure deadline arithmetic that drives every job.
//!
//! Nothing here reads the clock or touches a file: every function takes `now`
//! and the saved state as plain values, so the rules of SPEC §3 are tested
//! with plain values (see the tests at the bottom).
//!
//! Cron expressions (`cron`) and the clock watcher (`clock`).

pub mod clock;
pub mod cron;

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

use crate::config::json::describe;
use crate::schedule::cron::Calendar;

/// When a job runs by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every `Duration`, on the phase of the first deadline.
    Interval(Duration),
    /// A cron expression in the local time zone.
    Calendar(Calendar),
}

impl Schedule {
    /// The interval, for `/queue`'s `regularTimer`; `None` for calendar
    /// schedules.
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Schedule::Interval(d) => Some(*d),
            Schedule::Calendar(_) => None,
        }
    }

    /// The first slot strictly after `now` on the phase of `anchor`.
    ///
    /// `anchor` is a deadline of this schedule (the one that just fired, or
    /// the one read from a state file); the result is `anchor + k × interval`
    /// for the smallest `k ≥ 1` that lies in the future. A run that overlaps
    /// several slots therefore skips them instead of bursting.
    ///
    /// Calendar schedules are always on phase: their next slot is the next
    /// occurrence after `now` on the wall clock of `tz`, whatever `anchor`.
    pub fn next_slot(&self, anchor: Timestamp, now: Timestamp, tz: &TimeZone) -> Timestamp {
        match self {
            Schedule::Interval(interval) => {
                let step = interval.as_nanos().max(1) as i128;
                let anchor_ns = anchor.as_nanosecond();
                let now_ns = now.as_nanosecond();
                let k = if now_ns < anchor_ns {
                    1
                } else {
                    (now_ns - anchor_ns) / step + 1
                };
                timestamp_from_nanos(anchor_ns.saturating_add(k.saturating_mul(step)))
            }
            // Parsing made sure the expression fires; only the end of time
            // has no next occurrence.
            Schedule::Calendar(calendar) => calendar.next_after(now, tz).unwrap_or(Timestamp::MAX),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "every {}", format_duration(*d)),
            Schedule::Calendar(calendar) => write!(f, "{calendar}"),
        }
    }
}

fn timestamp_from_nanos(ns: i128) -> Timestamp {
    Timestamp::from_nanosecond(ns).unwrap_or(if ns < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `t + d`, saturating at the end of time.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `deadline` (zero when it has passed).
pub fn until(deadline: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Formats a duration compactly, the way users write them: `1d 12h`, `90s`,
/// `250ms`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    let millis = d.subsec_millis();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if millis > 0 || parts.is_empty() {
        parts.push(format!("{millis}ms"));
    }
    parts.join(" ")
}

/// The longest duration we accept: a century. Longer ones are typos, and
/// they would overflow the clock arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Rejects durations over [`MAX_DURATION`].
fn at_most_a_century(d: Duration) -> Result<Option<Duration>, String> {
    if d > MAX_DURATION {
        Err(format!("{} is longer than 100 years", format_duration(d)))
    } else {
        Ok(Some(d))
    }
}

/// Parses a duration the way job files give them: an integer number of
/// seconds, or a string such as `"90s"`, `"1d 12h"` or `"250ms"`.
///
/// `Ok(None)` means "none": a negative number. Errors are phrased to follow
/// `KEY: `.
pub fn parse_duration(value: &Value) -> Result<Option<Duration>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(s) if s < 0 => Ok(None),
            Some(s) => at_most_a_century(Duration::from_secs(s as u64)),
            None => match n.as_u64() {
                Some(s) => at_most_a_century(Duration::from_secs(s)),
                None => Err(format!(
                    "expected whole seconds or a duration string such as \"90s\", found {n}"
                )),
            },
        },
        Value::String(s) => parse_duration_str(s).map_err(|e| {
            if looks_like_calendar(s.trim()) {
                calendar_where_a_duration_belongs(s)
            } else {
                format!("{e} in {s:?}")
            }
        }),
        other => Err(format!(
            "expected whole seconds or a duration string such as \"90s\", found {}",
            describe(other)
        )),
    }
}

/// Whether a string that is no duration was meant as a calendar expression:
/// a shorthand, a `*` or `?`, or the five or six fields of cron. Durations
/// have at most a few words and neither character, so a cron typo gets a
/// cron error and a cron value in a duration field gets told where it
/// belongs.
fn looks_like_calendar(s: &str) -> bool {
    s.starts_with('@') || s.contains(['*', '?']) || s.split_whitespace().count() >= 5
}

/// The error for a calendar expression in a field that takes a duration
/// (`Timeout`, `StopGrace`, …). The later Go original's files hold cron
/// strings, and its 5-field form meant something else (seconds first), so
/// the message says both where calendars go and what 5 fields mean here.
fn calendar_where_a_duration_belongs(s: &str) -> String {
    format!(
        "{s:?} is a calendar expression, not a duration; calendar expressions are \
         accepted in regularTimer and retryTimer only (5 fields: minute hour day-of-month \
         month day-of-week, as in crontab; 6 fields: seconds first, as the later Go \
         original wrote them); here write a duration such as \"2h\" or whole seconds \
         such as 7200"
    )
}

fn parse_duration_str(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return match parse_duration_str(rest) {
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(n) => at_most_a_century(Duration::from_secs(n)),
            Err(_) => Err("number too large".to_string()),
        };
    }
    match humantime::parse_duration(s) {
        Ok(d) => at_most_a_century(d),
        Err(e) => Err(format!("not a duration ({e})")),
    }
}

/// The shortest interval a `regularTimer` may have. The Go original took
/// `"1ms"` and ran restic a thousand times a second; nobody backs up more
/// often than every second on purpose (SPEC §2).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Parses `@every DURATION` (the text after `@every`) into a positive
/// duration; `spelled` is the whole value, for errors.
fn parse_every(every: &str, spelled: &str) -> Result<Duration, String> {
    match parse_duration_str(every) {
        Ok(Some(d)) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("@every needs a positive duration in {spelled:?}")),
        Err(e) => Err(format!("{e} in {spelled:?}")),
    }
}

/// Parses a `regularTimer` value. `Ok(None)` means "only when triggered"
/// (absent, zero, negative, or `""`, the later Go original's "no timer").
/// An interval under [`MIN_INTERVAL`] is an error.
pub fn parse_schedule(value: &Value) -> Result<Option<Schedule>, String> {
    let too_short = || format!("{value} is shorter than 1 s, the shortest interval allowed");
    if let Value::String(s) = value {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if let Some(every) = s.strip_prefix("@every") {
            return match parse_every(every, s)? {
                d if d >= MIN_INTERVAL => Ok(Some(Schedule::Interval(d))),
                _ => Err(too_short()),
            };
        }
        if looks_like_calendar(s) {
            return Calendar::parse(s)
                .map(|calendar| Some(Schedule::Calendar(calendar)))
                .map_err(|e| e.to_string());
        }
    }
    match parse_duration(value)? {
        Some(d) if d.is_zero() => Ok(None),
        Some(d) if d < MIN_INTERVAL => Err(too_short()),
        d => Ok(d.map(Schedule::Interval)),
    }
}

/// How long a failed run waits for its retry (`retryTimer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryTimer {
    /// This long after the failure: a duration, or `@every DURATION`.
    After(Duration),
    /// The calendar's next slot after the failure, as the later Go original
    /// read its `"0 0 * * * *"`.
    Calendar(Calendar),
}

impl RetryTimer {
    /// The delay, for `/queue`'s `retryTimer`; `None` for a calendar.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            RetryTimer::After(d) => Some(*d),
            RetryTimer::Calendar(_) => None,
        }
    }
}

/// Parses a `retryTimer` value. `Ok(None)` means "no retries" (absent,
/// negative, or `""`, the later Go original's "no timer"); zero means at
/// once, which [`retry_deadline`] spaces to one retry a second.
pub fn parse_retry_timer(value: &Value) -> Result<Option<RetryTimer>, String> {
    if let Value::String(s) = value {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if let Some(every) = s.strip_prefix("@every") {
            return parse_every(every, s).map(|d| Some(RetryTimer::After(d)));
        }
        if looks_like_calendar(s) {
            return Calendar::parse(s)
                .map(|calendar| Some(RetryTimer::Calendar(calendar)))
                .map_err(|e| e.to_string());
        }
    }
    Ok(parse_duration(value)?.map(RetryTimer::After))
}

/// What the state file said when the job started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// No state file: the job has never been scheduled.
    Missing,
    /// A state file that could not be read or decoded.
    Unreadable,
    /// A decoded state file.
    Found {
        next_trigger: Timestamp,
        /// The regular slot when `next_trigger` is a retry (our field; the
        /// original's files don't have it).
        next_regular: Option<Timestamp>,
        current_retry: u32,
    },
}

/// The deadlines a job waits for. A run consumes every deadline that is due
/// when it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    pub regular: Option<Timestamp>,
    pub retry: Option<Timestamp>,
}

impl Deadlines {
    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Timestamp> {
        match (self.regular, self.retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The start rules of SPEC §3: where a job's deadlines lie when it starts (or
/// restarts), and the retry counter it resumes with.
pub fn start_deadlines(
    schedule: Option<&Schedule>,
    saved: &Saved,
    now: Timestamp,
    tz: &TimeZone,
) -> (Deadlines, u32) {
    match (schedule, saved) {
        (Some(_), Saved::Missing) => (
            Deadlines {
                regular: Some(now),
                retry: None,
            },
            0,
        ),
        (Some(schedule), Saved::Unreadable) => (
            Deadlines {
                regular: Some(schedule.next_slot(now, now, tz)),
                retry: None,
            },
            0,
        ),
        (
            Some(schedule),
            Saved::Found {
                next_trigger,
                next_regular,
                current_retry,
            },
        ) => {
            // A saved slot later than the schedule's next one means the
            // schedule changed (the file was edited): the new one counts.
            let next_on_schedule = schedule.next_slot(now, now, tz);
            match next_regular {
                Some(regular) if *current_retry > 0 && regular != next_trigger => (
                    Deadlines {
                        regular: Some((*regular).min(next_on_schedule)),
                        retry: Some(*next_trigger),
                    },
                    *current_retry,
                ),
                _ => (
                    Deadlines {
                        regular: Some((*next_trigger).min(next_on_schedule)),
                        retry: None,
                    },
                    0,
                ),
            }
        }
        (
            None,
            Saved::Found {
                next_trigger,
                current_retry,
                ..
            },
        ) if *current_retry > 0 => (
            Deadlines {
                regular: None,
                retry: Some(*next_trigger),
            },
            *current_retry,
        ),
        (None, _) => (Deadlines::default(), 0),
    }
}

/// The first `count` regular runs of a job started at `now` with `saved`
/// state, as the start rules and `next_slot` place them when every run takes
/// no time. A run at `now` is one that is due at start. For `--check`.
pub fn upcoming_runs(
    schedule: &Schedule,
    saved: &Saved,
    now: Timestamp,
    tz: &TimeZone,
    count: usize,
) -> Vec<Timestamp> {
    let (deadlines, _) = start_deadlines(Some(schedule), saved, now, tz);
    let mut runs = Vec::with_capacity(count);
    let Some(mut slot) = deadlines.regular else {
        return runs;
    };
    let mut run = slot.max(now);
    while runs.len() < count {
        runs.push(run);
        slot = schedule.next_slot(slot, run, tz);
        run = slot;
    }
    runs
}

/// When to retry after a failed run that started at `run_start` and ended
/// at `now`: `retryTimer` after the end, or the calendar's first slot after
/// it, in `tz`. Never sooner than a second after the failed run started (a
/// zero timer or an every-second calendar must not spin); a calendar retry
/// then takes the first slot from that second on, so it stays on a slot.
pub fn retry_deadline(
    retry_timer: &RetryTimer,
    run_start: Timestamp,
    now: Timestamp,
    tz: &TimeZone,
) -> Timestamp {
    let earliest = add(run_start, Duration::from_secs(1));
    match retry_timer {
        RetryTimer::After(delay) => add(now, *delay).max(earliest),
        RetryTimer::Calendar(calendar) => {
            // `next_after` is strictly after its argument: from a nanosecond
            // before `earliest`, a slot at `earliest` itself still counts.
            let just_before = earliest
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(earliest);
            // Parsing made sure the expression fires; only the end of time
            // has no next occurrence.
            calendar
                .next_after(now.max(just_before), tz)
                .unwrap_or(Timestamp::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const UTC: &TimeZone = &TimeZone::UTC;

    #[test]
    fn parses_seconds_strings_and_none() {
        let cases = [
            (json!(86400), Some(Duration::from_secs(86400))),
            (json!("86400"), Some(Duration::from_secs(86400))),
            (json!("24h"), Some(Duration::from_secs(86400))),
            (json!("1d 12h"), Some(Duration::from_secs(129_600))),
            (json!("90min"), Some(Duration::from_secs(5400))),
            (json!("1500ms"), Some(Duration::from_millis(1500))),
            (json!("1s"), Some(Duration::from_secs(1))),
            (json!("@every 2s"), Some(Duration::from_secs(2))),
            (json!("@every 1000ms"), Some(Duration::from_secs(1))),
            (json!(0), None),
            (json!(-1), None),
            (json!("-1"), None),
            (json!(null), None),
        ];
        for (value, want) in cases {
            let got = parse_schedule(&value).unwrap().and_then(|s| s.interval());
            assert_eq!(got, want, "{value}");
        }
    }

    #[test]
    fn rejects_bad_schedules_with_the_value() {
        for value in [
            json!(1.5),
            json!("soon"),
            json!(true),
            json!([1]),
            json!("@every 0s"),
        ] {
            let err = parse_schedule(&value).unwrap_err();
            assert!(!err.is_empty(), "{value}");
        }
        assert!(
            parse_schedule(&json!("soon"))
                .unwrap_err()
                .contains("\"soon\"")
        );
        assert!(parse_schedule(&json!(1.5)).unwrap_err().contains("1.5"));
    }

    #[test]
    fn intervals_under_a_second_are_refused_with_the_value() {
        for value in ["1ms", "999ms", "@every 500ms", " @every 1ms "] {
            let err = parse_schedule(&json!(value)).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "{} is shorter than 1 s, the shortest interval allowed",
                    json!(value)
                ),
            );
        }
        // Retries stay as short as asked: retry_deadline spaces them.
        assert_eq!(
            parse_duration(&json!("1ms")),
            Ok(Some(Duration::from_millis(1)))
        );
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(
            Schedule::Interval(Duration::from_secs(86400)).to_string(),
            "every 1d"
        );
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn next_slot_keeps_the_phase_and_skips_overlapped_slots() {
        let s = Schedule::Interval(HOUR);
        // Just after the anchor: the next slot.
        assert_eq!(s.next_slot(ts(0), ts(10), UTC), ts(3600));
        // Exactly on a slot: strictly after it.
        assert_eq!(s.next_slot(ts(0), ts(3600), UTC), ts(7200));
        // Ten and a half hours late: one slot, on the old phase.
        assert_eq!(s.next_slot(ts(0), ts(37_800), UTC), ts(39_600));
        // Anchor in the future (clock stepped back): one interval after it.
        assert_eq!(s.next_slot(ts(100), ts(0), UTC), ts(3700));
    }

    #[test]
    fn start_rules() {
        let s = Schedule::Interval(HOUR);
        let now = ts(0);
        // No state file: run now.
        assert_eq!(
            start_deadlines(Some(&s), &Saved::Missing, now, UTC)
                .0
                .regular,
            Some(now)
        );
        // Unreadable: one full period.
        assert_eq!(
            start_deadlines(Some(&s), &Saved::Unreadable, now, UTC)
                .0
                .regular,
            Some(ts(3600))
        );
        // Future and past NextTrigger are kept as they are; a past one is
        // due at once and the next slot follows its phase.
        for t in [ts(600), ts(-7000)] {
            let saved = Saved::Found {
                next_trigger: t,
                next_regular: None,
                current_retry: 0,
            };
            let (d, retry) = start_deadlines(Some(&s), &saved, now, UTC);
            assert_eq!((d.regular, d.retry, retry), (Some(t), None, 0));
        }
        // A persisted retry resumes as a retry, with its counter.
        let saved = Saved::Found {
            next_trigger: ts(60),
            next_regular: Some(ts(3000)),
            current_retry: 2,
        };
        let (d, retry) = start_deadlines(Some(&s), &saved, now, UTC);
        assert_eq!(
            (d.regular, d.retry, retry),
            (Some(ts(3000)), Some(ts(60)), 2)
        );
        assert_eq!(d.next(), Some(ts(60)));
        // Trigger-only jobs wait for nothing unless a retry was pending.
        assert_eq!(
            start_deadlines(None, &Saved::Missing, now, UTC).0,
            Deadlines::default()
        );
        assert_eq!(
            start_deadlines(None, &saved, now, UTC).0.retry,
            Some(ts(60))
        );
    }

    #[test]
    fn catch_up_keeps_the_phase() {
        // The state said 03:00 yesterday-ish; the daemon comes back 10.5 h
        // later, runs once, and the next slot stays on the :00 phase.
        let s = Schedule::Interval(HOUR);
        let old = ts(0);
        let restart = ts(37_800);
        assert_eq!(
            s.next_slot(old, add(restart, Duration::from_secs(5)), UTC),
            ts(39_600)
        );
    }

    fn calendar(expression: &str) -> Schedule {
        match parse_schedule(&json!(expression)) {
            Ok(Some(schedule @ Schedule::Calendar(_))) => schedule,
            other => panic!("{expression:?} is not a calendar schedule: {other:?}"),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn parses_calendar_schedules_as_written() {
        for expression in [
            "30 3 * * *",
            "0 30 3 * * *",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "*/5 * * * * ?",
        ] {
            let schedule = calendar(expression);
            assert_eq!(schedule.to_string(), expression);
            assert_eq!(schedule.interval(), None, "{expression}");
        }
        // `@every` stays an interval.
        assert_eq!(
            parse_schedule(&json!("@every 90m")).unwrap(),
            Some(Schedule::Interval(Duration::from_secs(5400)))
        );
    }

    #[test]
    fn calendar_errors_reach_the_job_file() {
        for (value, want) in [
            (
                "0 0 32 * *",
                r#"day-of-month "32" is out of range 1-31 in "0 0 32 * *""#,
            ),
            ("0 0 30 2 *", r#""0 0 30 2 *" never fires"#),
            ("0 3 * *", "found 4 in \"0 3 * *\""),
            ("@often", r#"unknown schedule "@often""#),
        ] {
            let err = parse_schedule(&json!(value)).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }

    #[test]
    fn a_calendar_slot_is_the_next_occurrence_whatever_the_anchor() {
        let s = calendar("30 3 * * *");
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let now = at("2024-06-10T12:00:00Z");
        for anchor in [at("2024-06-10T01:30:00Z"), at("2024-05-01T07:00:00Z"), now] {
            assert_eq!(
                s.next_slot(anchor, now, &berlin),
                at("2024-06-11T01:30:00Z"),
                "anchor {anchor}"
            );
        }
        assert_eq!(s.next_slot(now, now, UTC), at("2024-06-11T03:30:00Z"));
    }

    #[test]
    fn calendar_start_rules() {
        let s = calendar("0 3 * * *");
        let now = at("2024-06-10T12:00:00Z");
        let tomorrow = at("2024-06-11T03:00:00Z");
        // No state file: run now.
        assert_eq!(
            start_deadlines(Some(&s), &Saved::Missing, now, UTC)
                .0
                .regular,
            Some(now)
        );
        // Unreadable: wait for the next occurrence.
        assert_eq!(
            start_deadlines(Some(&s), &Saved::Unreadable, now, UTC)
                .0
                .regular,
            Some(tomorrow)
        );
        // A missed slot days ago: one run now, then the next occurrence.
        let missed = Saved::Found {
            next_trigger: at("2024-06-07T03:00:00Z"),
            next_regular: None,
            current_retry: 0,
        };
        assert_eq!(
            upcoming_runs(&s, &missed, now, UTC, 3),
            [now, tomorrow, at("2024-06-12T03:00:00Z")]
        );
        // A future slot is waited for.
        let future = Saved::Found {
            next_trigger: tomorrow,
            next_regular: None,
            current_retry: 0,
        };
        assert_eq!(
            upcoming_runs(&s, &future, now, UTC, 2),
            [tomorrow, at("2024-06-12T03:00:00Z")]
        );
    }

    #[test]
    fn upcoming_interval_runs_keep_the_phase() {
        let s = Schedule::Interval(HOUR);
        let now = ts(0);
        assert_eq!(
            upcoming_runs(&s, &Saved::Missing, now, UTC, 3),
            [now, ts(3600), ts(7200)]
        );
        let missed = Saved::Found {
            next_trigger: ts(-5400),
            next_regular: None,
            current_retry: 0,
        };
        assert_eq!(
            upcoming_runs(&s, &missed, now, UTC, 3),
            [now, ts(1800), ts(5400)]
        );
    }

    #[test]
    fn retry_deadline_never_spins() {
        let after = RetryTimer::After;
        let start = ts(0);
        assert_eq!(
            retry_deadline(&after(Duration::ZERO), start, start, UTC),
            ts(1)
        );
        assert_eq!(
            retry_deadline(&after(Duration::ZERO), start, ts(5), UTC),
            ts(5)
        );
        assert_eq!(retry_deadline(&after(HOUR), start, ts(5), UTC), ts(3605));
        // A run that fails at once with a 1 ms timer: the next attempt is a
        // second after this one started, not a millisecond after it ended.
        let millis = Duration::from_millis(1);
        let ended = add(start, Duration::from_millis(3));
        assert_eq!(retry_deadline(&after(millis), start, ended, UTC), ts(1));
    }

    fn retry_calendar(expression: &str) -> RetryTimer {
        match parse_retry_timer(&json!(expression)) {
            Ok(Some(timer @ RetryTimer::Calendar(_))) => timer,
            other => panic!("{expression:?} is not a calendar retry: {other:?}"),
        }
    }

    #[test]
    fn retry_timers_of_both_originals() {
        let after = |secs| Ok(Some(RetryTimer::After(Duration::from_secs(secs))));
        let cases = [
            // v0.0.5: whole seconds; ours: duration strings.
            (json!(3600), after(3600)),
            (json!(0), after(0)),
            (json!("90s"), after(90)),
            (json!("1d 2h 3m 4s"), after(93_784)),
            // The later original: `@every` is a delay after the failure.
            (json!("@every 1s"), after(1)),
            (json!(" @every 3m "), after(180)),
            // None: absent, negative, or the later original's "".
            (json!(null), Ok(None)),
            (json!(-1), Ok(None)),
            (json!(""), Ok(None)),
            (json!("  "), Ok(None)),
        ];
        for (value, want) in cases {
            assert_eq!(parse_retry_timer(&value), want, "{value}");
        }
        // Retries stay as short as asked: retry_deadline spaces them.
        assert_eq!(
            parse_retry_timer(&json!("1ms")),
            Ok(Some(RetryTimer::After(Duration::from_millis(1))))
        );
        for expression in ["0 0 * * * *", "30 3 * * *", "@hourly", "* * * * * *"] {
            let RetryTimer::Calendar(calendar) = retry_calendar(expression) else {
                unreachable!()
            };
            assert_eq!(calendar.to_string(), expression);
        }
        assert_eq!(retry_calendar("@hourly").delay(), None);
        for (value, want) in [
            (
                "@every 0s",
                "@every needs a positive duration in \"@every 0s\"",
            ),
            (
                "0 0 32 * *",
                r#"day-of-month "32" is out of range 1-31 in "0 0 32 * *""#,
            ),
            ("soon", "not a duration"),
        ] {
            let err = parse_retry_timer(&json!(value)).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }

    #[test]
    fn an_empty_regular_timer_means_none() {
        for value in [json!(""), json!(" ")] {
            assert_eq!(parse_schedule(&value), Ok(None), "{value}");
        }
    }

    #[test]
    fn a_calendar_in_a_duration_field_says_where_calendars_go() {
        for value in ["0 0 * * *", "0 0 * * * *", "@daily", "@every 1h", "*/5"] {
            let err = parse_duration(&json!(value)).unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "{value:?} is a calendar expression, not a duration"
                )),
                "{value}: {err}"
            );
            assert!(
                err.contains("accepted in regularTimer and retryTimer only")
                    && err.contains("5 fields: minute hour day-of-month month day-of-week")
                    && err.contains("6 fields: seconds first")
                    && err.contains("such as \"2h\""),
                "{value}: {err}"
            );
        }
        // A duration of five words is still a duration, and other mistakes
        // keep the duration error.
        assert_eq!(
            parse_duration(&json!("1d 2h 3m 4s 5ms")),
            Ok(Some(Duration::from_millis(93_784_005)))
        );
        assert_eq!(
            parse_duration(&json!("soon")).unwrap_err(),
            "not a duration (expected number at 0) in \"soon\""
        );
    }

    #[test]
    fn a_calendar_retry_waits_for_the_next_slot_after_the_failure() {
        let hourly = retry_calendar("0 0 * * * *");
        let start = at("2024-06-10T10:20:00Z");
        let end = at("2024-06-10T10:20:30Z");
        assert_eq!(
            retry_deadline(&hourly, start, end, UTC),
            at("2024-06-10T11:00:00Z")
        );
        // A failure on the slot itself waits for the next one.
        let on_slot = at("2024-06-10T11:00:00Z");
        assert_eq!(
            retry_deadline(&hourly, at("2024-06-10T10:59:00Z"), on_slot, UTC),
            at("2024-06-10T12:00:00Z")
        );
        // In local time: the hour of Kathmandu (+05:45) is not UTC's.
        let kathmandu = TimeZone::get("Asia/Kathmandu").unwrap();
        assert_eq!(
            retry_deadline(&hourly, start, end, &kathmandu),
            at("2024-06-10T11:15:00Z")
        );
    }

    #[test]
    fn an_every_second_calendar_retry_stays_on_whole_seconds_and_never_spins() {
        let every_second = retry_calendar("* * * * * *");
        let start = at("2024-06-10T10:00:00Z");
        // Failed after 200 ms: the next whole second, a second after start.
        let end = at("2024-06-10T10:00:00.2Z");
        assert_eq!(
            retry_deadline(&every_second, start, end, UTC),
            at("2024-06-10T10:00:01Z")
        );
        // Started mid-second: the first whole second a full second after
        // the start, not the one just after the end.
        let start = at("2024-06-10T10:00:00.5Z");
        let end = at("2024-06-10T10:00:00.6Z");
        assert_eq!(
            retry_deadline(&every_second, start, end, UTC),
            at("2024-06-10T10:00:02Z")
        );
        // A long run: the slot after its end.
        let end = at("2024-06-10T10:07:03.25Z");
        assert_eq!(
            retry_deadline(&every_second, start, end, UTC),
            at("2024-06-10T10:07:04Z")
        );
    }

    #[test]
    fn calendar_retries_across_daylight_saving_changes() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let half_past_two = retry_calendar("0 30 2 * * *");
        // Spring forward: 02:30 does not exist on 31 March 2024; the retry
        // is at the first instant after the gap, 03:00 CEST.
        let start = at("2024-03-31T00:20:00Z");
        let end = at("2024-03-31T00:25:00Z");
        assert_eq!(
            retry_deadline(&half_past_two, start, end, &berlin),
            at("2024-03-31T01:00:00Z")
        );
        // Fall back: 02:30 comes twice on 27 October 2024. A failure before
        // it retries at the first 02:30 (CEST) ...
        let start = at("2024-10-27T00:00:00Z");
        let end = at("2024-10-27T00:10:00Z");
        assert_eq!(
            retry_deadline(&half_past_two, start, end, &berlin),
            at("2024-10-27T00:30:00Z")
        );
        // ... and one in the repeated hour after it waits for the next day:
        // the repeated 02:30 (CET) had its turn already.
        let start = at("2024-10-27T01:05:00Z");
        let end = at("2024-10-27T01:10:00Z");
        assert_eq!(
            retry_deadline(&half_past_two, start, end, &berlin),
            at("2024-10-28T01:30:00Z")
        );
    }
}
