//! Calendar schedules: cron expressions matched against the local wall clock,
//! with the daylight-saving rules of SPEC §2.
//!
//! Like `schedule`, this is pure: the time zone and the instant to search from
//! are parameters, so every rule is tested with plain values.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// How far ahead a search for the next match looks. The Gregorian calendar
/// repeats every 400 years, so a pattern that matches nothing in 400 years
/// matches nothing ever; the rarest patterns that do match (29 February on a
/// given weekday) are at most 40 years apart, so searches that succeed stop
/// long before this.
const SEARCH_YEARS: i16 = 400;

/// A parsed cron expression: the set of allowed values of each field as bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// The expression as written (trimmed), for display.
    expression: String,
    seconds: Bits,
    minutes: Bits,
    hours: Bits,
    days_of_month: Bits,
    months: Bits,
    /// 0 = Sunday … 6 = Saturday (7 is folded into 0 when parsing).
    days_of_week: Bits,
    /// Whether the day-of-month field starts with `*` or `?`. With both day
    /// fields restricted a day matches when either matches (as Vixie cron
    /// decides it); otherwise both must.
    day_of_month_star: bool,
    day_of_week_star: bool,
}

/// What is wrong with a calendar expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalendarError {
    /// Not 5 or 6 fields.
    FieldCount { expression: String, found: usize },
    /// An `@` word that is not one of the shorthands.
    UnknownShorthand { expression: String },
    /// One field item is not allowed; `problem` follows the quoted value.
    Field {
        field: &'static str,
        value: String,
        problem: String,
        expression: String,
    },
    /// A well-formed expression that no date matches, such as `0 0 30 2 *`.
    NeverFires { expression: String },
}

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalendarError::FieldCount { expression, found } => write!(
                f,
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 \
                 (with seconds first), found {found} in {expression:?}"
            ),
            CalendarError::UnknownShorthand { expression } => write!(
                f,
                "unknown schedule {expression:?}; expected @hourly, @daily, @midnight, \
                 @weekly, @monthly, @yearly, @annually or @every DURATION"
            ),
            CalendarError::Field {
                field,
                value,
                problem,
                expression,
            } => write!(f, "{field} {value:?} {problem} in {expression:?}"),
            CalendarError::NeverFires { expression } => write!(
                f,
                "{expression:?} never fires: no month it allows has such a day"
            ),
        }
    }
}

impl std::error::Error for CalendarError {}

/// The allowed values of one field, bit `n` standing for the value `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    fn contains(self, value: u8) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }

    /// The smallest allowed value that is at least `value`.
    fn first_from(self, value: u8) -> Option<u8> {
        if value >= 64 {
            return None;
        }
        let rest = self.0 & (u64::MAX << value);
        (rest != 0).then(|| rest.trailing_zeros() as u8)
    }
}

/// The shape of one field: its name in errors, its range and its names.
struct FieldSpec {
    name: &'static str,
    min: u8,
    max: u8,
    /// Three-letter names for `min`, `min + 1`, … (months and weekdays).
    names: &'static [&'static str],
    /// What a value should look like, for errors.
    expected: &'static str,
    /// Whether `?` may stand for `*` (only in the two day fields).
    question_mark: bool,
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    expected: "a number 0-59",
    question_mark: false,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    expected: "a number 0-59",
    question_mark: false,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    expected: "a number 0-23",
    question_mark: false,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    expected: "a number 1-31",
    question_mark: true,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    expected: "a number 1-12 or a name jan-dec",
    question_mark: false,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    expected: "a number 0-7 (0 and 7 are Sunday) or a name sun-sat",
    question_mark: true,
};

impl Calendar {
    /// Parses 5-field cron (`min hour dom month dow`), 6-field cron with
    /// seconds first (`sec min hour dom month dow`, as the Go original read
    /// it) or one of the `@` shorthands. `@every` is an interval, not a
    /// calendar: `schedule::parse_schedule` handles it before calling this.
    pub fn parse(expression: &str) -> Result<Calendar, CalendarError> {
        let expression = expression.trim();
        let mut fields: Vec<&str> = match expression.strip_prefix('@') {
            Some(word) => match word.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => vec!["0", "0", "0", "1", "1", "*"],
                "monthly" => vec!["0", "0", "0", "1", "*", "*"],
                "weekly" => vec!["0", "0", "0", "*", "*", "0"],
                "daily" | "midnight" => vec!["0", "0", "0", "*", "*", "*"],
                "hourly" => vec!["0", "0", "*", "*", "*", "*"],
                _ => {
                    return Err(CalendarError::UnknownShorthand {
                        expression: expression.to_string(),
                    });
                }
            },
            None => expression.split_whitespace().collect(),
        };
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 => {}
            found => {
                return Err(CalendarError::FieldCount {
                    expression: expression.to_string(),
                    found,
                });
            }
        }
        let field = |index: usize, spec: &FieldSpec| parse_field(fields[index], spec, expression);
        let is_star = |index: usize| fields[index].starts_with(['*', '?']);
        let mut days_of_week = field(5, &DAY_OF_WEEK)?;
        if days_of_week.contains(7) {
            days_of_week = Bits((days_of_week.0 | 1) & !(1 << 7));
        }
        let calendar = Calendar {
            expression: expression.to_string(),
            seconds: field(0, &SECOND)?,
            minutes: field(1, &MINUTE)?,
            hours: field(2, &HOUR)?,
            days_of_month: field(3, &DAY_OF_MONTH)?,
            months: field(4, &MONTH)?,
            days_of_week,
            day_of_month_star: is_star(3),
            day_of_week_star: is_star(5),
        };
        // Any start will do: the calendar repeats every SEARCH_YEARS.
        let start = Date::constant(2000, 1, 1).at(0, 0, 0, 0);
        if calendar.next_match(start, 2000 + SEARCH_YEARS).is_none() {
            return Err(CalendarError::NeverFires {
                expression: calendar.expression,
            });
        }
        Ok(calendar)
    }

    /// The first instant strictly after `t` at which the wall clock of `tz`
    /// shows a matching time.
    ///
    /// A matching time that the clock skips (spring forward) fires once, at
    /// the first instant after the gap; a matching time that the clock shows
    /// twice (fall back) fires once, the first time. `None` only near the end
    /// of the representable time.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let wall = tz.to_datetime(t);
        let whole_second = wall.with().subsec_nanosecond(0).build().ok()?;
        let mut from = whole_second
            .checked_add(SignedDuration::from_secs(1))
            .ok()?;
        if let Some(end) = end_of_repeat(tz, t) {
            // The second pass through a repeated hour: every wall-clock time
            // before its end already had its turn in the first pass.
            from = from.max(end);
        }
        let last_year = from.year().saturating_add(SEARCH_YEARS).min(9999);
        loop {
            let candidate = self.next_match(from, last_year)?;
            let at = first_instant(tz, candidate)?;
            if at > t {
                return Some(at);
            }
            // A wall-clock time whose first occurrence already passed (a
            // repeated time the jump above did not cover, as with two
            // transitions close together): look further.
            from = candidate.checked_add(SignedDuration::from_secs(1)).ok()?;
        }
    }

    /// The first matching wall-clock time at or after `from`, looking no
    /// further than the end of `last_year`.
    ///
    /// Works field by field from the month down: when a field has no allowed
    /// value left, the next larger field moves on by one and the smaller ones
    /// start from their minimum. A value past its field's end (hour 24, day
    /// 32, month 13) has no allowed value, so carrying needs no special case.
    fn next_match(&self, from: DateTime, last_year: i16) -> Option<DateTime> {
        let mut year = from.year();
        let [mut month, mut day, mut hour, mut minute, mut second] = [
            from.month(),
            from.day(),
            from.hour(),
            from.minute(),
            from.second(),
        ]
        .map(|v| v as u8);
        while year <= last_year {
            match self.months.first_from(month) {
                Some(m) if m == month => {}
                Some(m) => (month, day, hour, minute, second) = (m, 1, 0, 0, 0),
                None => {
                    (year, month, day, hour, minute, second) = (year + 1, 1, 1, 0, 0, 0);
                    continue;
                }
            }
            let length = days_in_month(year, month);
            match (day..=length).find(|&d| self.day_matches(year, month, d)) {
                Some(d) if d == day => {}
                Some(d) => (day, hour, minute, second) = (d, 0, 0, 0),
                None => {
                    (month, day, hour, minute, second) = (month + 1, 1, 0, 0, 0);
                    continue;
                }
            }
            match self.hours.first_from(hour) {
                Some(h) if h == hour => {}
                Some(h) => (hour, minute, second) = (h, 0, 0),
                None => {
                    (day, hour, minute, second) = (day + 1, 0, 0, 0);
                    continue;
                }
            }
            match self.minutes.first_from(minute) {
                Some(m) if m == minute => {}
                Some(m) => (minute, second) = (m, 0),
                None => {
                    (hour, minute, second) = (hour + 1, 0, 0);
                    continue;
                }
            }
            match self.seconds.first_from(second) {
                Some(s) => second = s,
                None => {
                    (minute, second) = (minute + 1, 0);
                    continue;
                }
            }
            let [month, day, hour, minute, second] =
                [month, day, hour, minute, second].map(|v| v as i8);
            return DateTime::new(year, month, day, hour, minute, second, 0).ok();
        }
        None
    }

    fn day_matches(&self, year: i16, month: u8, day: u8) -> bool {
        let by_date = self.days_of_month.contains(day);
        let both = self.day_of_month_star || self.day_of_week_star;
        if both && !by_date {
            return false;
        }
        if !both && by_date {
            return true;
        }
        Date::new(year, month as i8, day as i8).is_ok_and(|date| {
            self.days_of_week
                .contains(date.weekday().to_sunday_zero_offset() as u8)
        })
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

fn days_in_month(year: i16, month: u8) -> u8 {
    Date::new(year, month as i8, 1).map_or(0, |date| date.days_in_month() as u8)
}

/// The first instant at which the wall clock of `tz` shows `wall` or a later
/// time: `wall` itself when it exists once, its first occurrence when the
/// clock shows it twice, and the end of the gap when the clock skips it.
fn first_instant(tz: &TimeZone, wall: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(wall).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(wall).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset after the gap, `wall` is an instant just
            // before the transition; the transition is the end of the gap.
            let before_gap = after.to_timestamp(wall).ok()?;
            tz.following(before_gap).next().map(|t| t.timestamp())
        }
    }
}

/// When `t` lies in the second pass through wall-clock times that the clock
/// shows twice (fall back), the wall-clock time at which the repetition ends.
fn end_of_repeat(tz: &TimeZone, t: Timestamp) -> Option<DateTime> {
    let wall = tz.to_datetime(t);
    let AmbiguousOffset::Fold { before, after } = tz.to_ambiguous_timestamp(wall).offset() else {
        return None;
    };
    if tz.to_offset(t) != after {
        return None;
    }
    // The transition at or before `t` is where the clock went back.
    let just_after = t.checked_add(SignedDuration::from_nanos(1)).ok()?;
    let transition = tz.preceding(just_after).next()?.timestamp();
    Some(before.to_datetime(transition))
}

/// Parses one field into its allowed values, naming the field, the item and
/// the expression in errors.
fn parse_field(text: &str, spec: &FieldSpec, expression: &str) -> Result<Bits, CalendarError> {
    let error = |value: &str, problem: String| CalendarError::Field {
        field: spec.name,
        value: value.to_string(),
        problem,
        expression: expression.to_string(),
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(error(text, "has an empty list item".into()));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let step_given = step.is_some();
        let step = match step.map(str::parse::<usize>) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => {
                return Err(error(
                    item,
                    "has a step that is not a whole number of at least 1".into(),
                ));
            }
        };
        // An empty part (`-5`, `5-`) is reported with its whole item.
        let value = |text: &str| {
            parse_value(text, spec)
                .map_err(|problem| error(if text.is_empty() { item } else { text }, problem))
        };
        let (low, high) = if range == "*" || (range == "?" && spec.question_mark) {
            (spec.min, spec.max)
        } else if range == "?" {
            return Err(error(
                item,
                "is only allowed in day-of-month and day-of-week".into(),
            ));
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (value(low)?, value(high)?);
            if low > high {
                return Err(error(item, "is a range that runs backwards".into()));
            }
            (low, high)
        } else {
            let low = value(range)?;
            // `a/n` means `a-max/n`, as in Vixie cron and robfig/cron.
            (low, if step_given { spec.max } else { low })
        };
        for v in (low..=high).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok(Bits(bits))
}

/// A number in the field's range or one of its names; the error is phrased
/// to follow the quoted value.
fn parse_value(text: &str, spec: &FieldSpec) -> Result<u8, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u8>() {
            Ok(n) if (spec.min..=spec.max).contains(&n) => Ok(n),
            _ => Err(format!("is out of range {}-{}", spec.min, spec.max)),
        };
    }
    let lower = text.to_ascii_lowercase();
    match spec.names.iter().position(|name| *name == lower) {
        Some(index) => Ok(spec.min + index as u8),
        None => Err(format!("is not {}", spec.expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> TimeZone {
        if name == "UTC" {
            return TimeZone::UTC;
        }
        TimeZone::get(name).unwrap_or_else(|e| panic!("time zone {name}: {e}"))
    }

    fn local(t: Timestamp, tz: &TimeZone) -> String {
        t.display_with_offset(tz.to_offset(t)).to_string()
    }

    /// Checks that the runs after `start` (an RFC 3339 time with offset)
    /// are `want`, each searched from the one before.
    fn check_runs(expression: &str, zone_name: &str, start: &str, want: &[&str]) {
        let calendar = Calendar::parse(expression)
            .unwrap_or_else(|e| panic!("{expression:?} does not parse: {e}"));
        let tz = zone(zone_name);
        let mut t: Timestamp = start.parse().expect("start is RFC 3339");
        let mut got = Vec::new();
        for _ in want {
            match calendar.next_after(t, &tz) {
                Some(next) => {
                    assert!(next > t, "{expression:?} went back from {t} to {next}");
                    got.push(local(next, &tz));
                    t = next;
                }
                None => break,
            }
        }
        assert_eq!(got, want, "{expression:?} in {zone_name} after {start}");
    }

    #[test]
    fn every_field_form() {
        let cases: &[(&str, &str, &[&str])] = &[
            // Wildcards, 5 and 6 fields; always strictly after the start.
            (
                "* * * * *",
                "2024-01-01T00:00:30Z",
                &["2024-01-01T00:01:00+00:00", "2024-01-01T00:02:00+00:00"],
            ),
            (
                "* * * * * *",
                "2024-01-01T00:00:00.5Z",
                &["2024-01-01T00:00:01+00:00", "2024-01-01T00:00:02+00:00"],
            ),
            (
                "* * * * * *",
                "2024-12-31T23:59:59Z",
                &["2025-01-01T00:00:00+00:00"],
            ),
            // Plain numbers; a start on a slot gives the next one.
            (
                "30 3 * * *",
                "2024-01-01T03:30:00Z",
                &["2024-01-02T03:30:00+00:00", "2024-01-03T03:30:00+00:00"],
            ),
            (
                "0 30 3 * * *",
                "2024-01-01T00:00:00Z",
                &["2024-01-01T03:30:00+00:00", "2024-01-02T03:30:00+00:00"],
            ),
            (
                "15 30 3 * * *",
                "2024-01-01T03:30:15.000000001Z",
                &["2024-01-02T03:30:15+00:00"],
            ),
            // Ranges and lists.
            (
                "0 9-11 * * *",
                "2024-01-01T08:59:59Z",
                &[
                    "2024-01-01T09:00:00+00:00",
                    "2024-01-01T10:00:00+00:00",
                    "2024-01-01T11:00:00+00:00",
                    "2024-01-02T09:00:00+00:00",
                ],
            ),
            (
                "0,30 8,20 * * *",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-01T08:00:00+00:00",
                    "2024-01-01T08:30:00+00:00",
                    "2024-01-01T20:00:00+00:00",
                    "2024-01-01T20:30:00+00:00",
                    "2024-01-02T08:00:00+00:00",
                ],
            ),
            (
                "0 1-2,22 * * *",
                "2024-01-01T02:00:00Z",
                &["2024-01-01T22:00:00+00:00", "2024-01-02T01:00:00+00:00"],
            ),
            // Steps: `*/n`, `a-b/n` and `a/n` (= `a-max/n`).
            (
                "*/20 * * * *",
                "2024-01-01T00:00:30Z",
                &[
                    "2024-01-01T00:20:00+00:00",
                    "2024-01-01T00:40:00+00:00",
                    "2024-01-01T01:00:00+00:00",
                ],
            ),
            (
                "10-50/20 * * * *",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-01T00:10:00+00:00",
                    "2024-01-01T00:30:00+00:00",
                    "2024-01-01T00:50:00+00:00",
                    "2024-01-01T01:10:00+00:00",
                ],
            ),
            (
                "5/25 * * * *",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-01T00:05:00+00:00",
                    "2024-01-01T00:30:00+00:00",
                    "2024-01-01T00:55:00+00:00",
                    "2024-01-01T01:05:00+00:00",
                ],
            ),
            (
                "*/15 * * * * *",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-01T00:00:15+00:00",
                    "2024-01-01T00:00:30+00:00",
                    "2024-01-01T00:00:45+00:00",
                    "2024-01-01T00:01:00+00:00",
                ],
            ),
            (
                "0 0 0 */10 * *",
                "2024-01-25T00:00:00Z",
                &["2024-01-31T00:00:00+00:00", "2024-02-01T00:00:00+00:00"],
            ),
            (
                "0 0 1 */5 *",
                "2024-01-01T00:00:00Z",
                &["2024-06-01T00:00:00+00:00", "2024-11-01T00:00:00+00:00"],
            ),
            (
                "0 0 1 1 *",
                "2024-06-15T12:00:00Z",
                &["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"],
            ),
            (
                "59 23 31 12 *",
                "2024-12-31T23:59:00Z",
                &["2025-12-31T23:59:00+00:00"],
            ),
        ];
        for (expression, start, want) in cases {
            check_runs(expression, "UTC", start, want);
        }
    }

    #[test]
    fn month_and_weekday_names() {
        // 2024-01-05 is a Friday.
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "0 0 1 jan,JUL *",
                "2024-02-01T00:00:00Z",
                &["2024-07-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"],
            ),
            (
                "0 0 1 Mar-May *",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-03-01T00:00:00+00:00",
                    "2024-04-01T00:00:00+00:00",
                    "2024-05-01T00:00:00+00:00",
                    "2025-03-01T00:00:00+00:00",
                ],
            ),
            (
                "0 12 * * MON-fri",
                "2024-01-05T13:00:00Z",
                &["2024-01-08T12:00:00+00:00", "2024-01-09T12:00:00+00:00"],
            ),
            (
                "0 0 * jan-dec/6 sat",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-06T00:00:00+00:00",
                    "2024-01-13T00:00:00+00:00",
                    "2024-01-20T00:00:00+00:00",
                    "2024-01-27T00:00:00+00:00",
                    "2024-07-06T00:00:00+00:00",
                ],
            ),
            // Sunday is 0 and 7.
            (
                "0 0 * * 7",
                "2024-01-01T00:00:00Z",
                &["2024-01-07T00:00:00+00:00", "2024-01-14T00:00:00+00:00"],
            ),
            (
                "0 0 * * 0",
                "2024-01-01T00:00:00Z",
                &["2024-01-07T00:00:00+00:00", "2024-01-14T00:00:00+00:00"],
            ),
            (
                "0 0 * * 5-7",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-05T00:00:00+00:00",
                    "2024-01-06T00:00:00+00:00",
                    "2024-01-07T00:00:00+00:00",
                    "2024-01-12T00:00:00+00:00",
                ],
            ),
            (
                "0 0 0 * * sun",
                "2024-01-01T00:00:00Z",
                &["2024-01-07T00:00:00+00:00"],
            ),
        ];
        for (expression, start, want) in cases {
            check_runs(expression, "UTC", start, want);
        }
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_as_cron_does() {
        // January 2024: Fridays are the 5th, 12th, 19th and 26th.
        let cases: &[(&str, &str, &[&str])] = &[
            // Both restricted: either matches.
            (
                "0 0 13 * fri",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-05T00:00:00+00:00",
                    "2024-01-12T00:00:00+00:00",
                    "2024-01-13T00:00:00+00:00",
                    "2024-01-19T00:00:00+00:00",
                ],
            ),
            (
                "0 0 0 1,15 * mon",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-08T00:00:00+00:00",
                    "2024-01-15T00:00:00+00:00",
                    "2024-01-22T00:00:00+00:00",
                ],
            ),
            // A field starting with `*` (even `*/2`) makes both required.
            (
                "0 0 */2 * fri",
                "2024-01-01T00:00:00Z",
                &[
                    "2024-01-05T00:00:00+00:00",
                    "2024-01-19T00:00:00+00:00",
                    "2024-02-09T00:00:00+00:00",
                ],
            ),
            (
                "0 0 13 * *",
                "2024-01-01T00:00:00Z",
                &["2024-01-13T00:00:00+00:00", "2024-02-13T00:00:00+00:00"],
            ),
            // `?` is `*` in the day fields.
            (
                "0 0 0 ? * fri",
                "2024-01-01T00:00:00Z",
                &["2024-01-05T00:00:00+00:00", "2024-01-12T00:00:00+00:00"],
            ),
            (
                "0 0 0 13 * ?",
                "2024-01-01T00:00:00Z",
                &["2024-01-13T00:00:00+00:00", "2024-02-13T00:00:00+00:00"],
            ),
            // 29 February on a Sunday (both required): 28 years apart.
            (
                "0 0 29 2 */7",
                "2024-01-01T00:00:00Z",
                &["2032-02-29T00:00:00+00:00", "2060-02-29T00:00:00+00:00"],
            ),
        ];
        for (expression, start, want) in cases {
            check_runs(expression, "UTC", start, want);
        }
    }

    #[test]
    fn month_ends_and_leap_years() {
        let cases: &[(&str, &str, &[&str])] = &[
            // Months without a 31st are skipped.
            (
                "0 0 31 * *",
                "2024-01-31T01:00:00Z",
                &[
                    "2024-03-31T00:00:00+00:00",
                    "2024-05-31T00:00:00+00:00",
                    "2024-07-31T00:00:00+00:00",
                    "2024-08-31T00:00:00+00:00",
                ],
            ),
            (
                "0 0 30 * *",
                "2024-01-31T00:00:00Z",
                &["2024-03-30T00:00:00+00:00"],
            ),
            (
                "0 0 28-31 2 *",
                "2023-02-27T00:00:00Z",
                &[
                    "2023-02-28T00:00:00+00:00",
                    "2024-02-28T00:00:00+00:00",
                    "2024-02-29T00:00:00+00:00",
                    "2025-02-28T00:00:00+00:00",
                ],
            ),
            // 29 February: every four years, but not in 2100.
            (
                "0 0 29 2 *",
                "2024-03-01T00:00:00Z",
                &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
            ),
            (
                "0 0 0 29 2 *",
                "2096-03-01T00:00:00Z",
                &["2104-02-29T00:00:00+00:00"],
            ),
            (
                "0 0 29 2 *",
                "1999-01-01T00:00:00Z",
                &["2000-02-29T00:00:00+00:00", "2004-02-29T00:00:00+00:00"],
            ),
            // Both day fields restricted: the 31st never comes in February,
            // but Mondays do.
            (
                "0 0 31 2 mon",
                "2024-01-31T00:00:00Z",
                &["2024-02-05T00:00:00+00:00", "2024-02-12T00:00:00+00:00"],
            ),
        ];
        for (expression, start, want) in cases {
            check_runs(expression, "UTC", start, want);
        }
    }

    #[test]
    fn shorthands() {
        // 2024-01-03 is a Wednesday.
        let start = "2024-01-03T10:20:30Z";
        let cases: &[(&str, &[&str])] = &[
            (
                "@hourly",
                &["2024-01-03T11:00:00+00:00", "2024-01-03T12:00:00+00:00"],
            ),
            ("@daily", &["2024-01-04T00:00:00+00:00"]),
            ("@midnight", &["2024-01-04T00:00:00+00:00"]),
            (
                "@weekly",
                &["2024-01-07T00:00:00+00:00", "2024-01-14T00:00:00+00:00"],
            ),
            ("@monthly", &["2024-02-01T00:00:00+00:00"]),
            (
                "@yearly",
                &["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"],
            ),
            ("@annually", &["2025-01-01T00:00:00+00:00"]),
            ("@Daily", &["2024-01-04T00:00:00+00:00"]),
        ];
        for (expression, want) in cases {
            check_runs(expression, "UTC", start, want);
        }
    }

    #[test]
    fn daylight_saving_time() {
        // Europe/Berlin: 2024-03-31 02:00 CET becomes 03:00 CEST, 2024-10-27
        // 03:00 CEST becomes 02:00 CET (at 01:00 UTC both times).
        // America/New_York: 2024-03-10 02:00 EST becomes 03:00 EDT,
        // 2024-11-03 02:00 EDT becomes 01:00 EST (at 2 a.m. local time).
        let cases: &[(&str, &str, &str, &[&str])] = &[
            // A time in the spring gap runs once, when the gap ends.
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2024-03-30T12:00:00+01:00",
                &["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
            ),
            (
                "0 30 2 * * *",
                "Europe/Berlin",
                "2024-03-30T12:00:00+01:00",
                &["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
            ),
            (
                "30 30 2 * * *",
                "Europe/Berlin",
                "2024-03-31T00:00:00+01:00",
                &["2024-03-31T03:00:00+02:00"],
            ),
            // Every gap minute and 03:00 itself are one run.
            (
                "* * * * *",
                "Europe/Berlin",
                "2024-03-31T01:58:30+01:00",
                &[
                    "2024-03-31T01:59:00+01:00",
                    "2024-03-31T03:00:00+02:00",
                    "2024-03-31T03:01:00+02:00",
                ],
            ),
            (
                "0 2,3 * * *",
                "Europe/Berlin",
                "2024-03-31T00:00:00+01:00",
                &["2024-03-31T03:00:00+02:00", "2024-04-01T02:00:00+02:00"],
            ),
            // A repeated time runs once, the first time.
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2024-10-26T12:00:00+02:00",
                &["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"],
            ),
            (
                "*/30 * * * *",
                "Europe/Berlin",
                "2024-10-27T01:45:00+02:00",
                &[
                    "2024-10-27T02:00:00+02:00",
                    "2024-10-27T02:30:00+02:00",
                    "2024-10-27T03:00:00+01:00",
                    "2024-10-27T03:30:00+01:00",
                ],
            ),
            // Starting in the second pass: its times already ran.
            (
                "0 */30 * * * *",
                "Europe/Berlin",
                "2024-10-27T02:10:00+01:00",
                &["2024-10-27T03:00:00+01:00"],
            ),
            (
                "0 0 * * * *",
                "Europe/Berlin",
                "2024-10-27T01:30:00+02:00",
                &["2024-10-27T02:00:00+02:00", "2024-10-27T03:00:00+01:00"],
            ),
            // New York's rules: other dates, and the change at 2 a.m. local.
            (
                "30 2 * * *",
                "America/New_York",
                "2024-03-09T12:00:00-05:00",
                &["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
            ),
            (
                "0 30 2 * * *",
                "America/New_York",
                "2024-03-09T12:00:00-05:00",
                &["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
            ),
            (
                "30 2 * * *",
                "America/New_York",
                "2024-03-30T12:00:00-04:00",
                &["2024-03-31T02:30:00-04:00"],
            ),
            (
                "30 1 * * *",
                "America/New_York",
                "2024-11-02T12:00:00-04:00",
                &["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
            ),
            (
                "0 */20 * * * *",
                "America/New_York",
                "2024-11-03T00:50:00-04:00",
                &[
                    "2024-11-03T01:00:00-04:00",
                    "2024-11-03T01:20:00-04:00",
                    "2024-11-03T01:40:00-04:00",
                    "2024-11-03T02:00:00-05:00",
                ],
            ),
            (
                "*/20 * * * *",
                "America/New_York",
                "2024-11-03T01:10:00-05:00",
                &["2024-11-03T02:00:00-05:00"],
            ),
            (
                "0 2 * * *",
                "America/New_York",
                "2024-11-03T00:00:00-04:00",
                &["2024-11-03T02:00:00-05:00", "2024-11-04T02:00:00-05:00"],
            ),
            // Santiago springs forward at midnight: that day's midnight is
            // 01:00, and the day still counts as a Sunday.
            (
                "0 0 * * sun",
                "America/Santiago",
                "2024-09-07T12:00:00-04:00",
                &["2024-09-08T01:00:00-03:00", "2024-09-15T00:00:00-03:00"],
            ),
            // Lord Howe moves by half an hour.
            (
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2024-10-05T12:00:00+10:30",
                &["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"],
            ),
            (
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2024-04-06T12:00:00+11:00",
                &["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"],
            ),
        ];
        for (expression, zone, start, want) in cases {
            check_runs(expression, zone, start, want);
        }
    }

    #[test]
    fn far_searches_are_quick() {
        // Jumping by fields: a search that crosses a century of non-matching
        // days takes microseconds, not a minute-by-minute walk.
        let calendar = Calendar::parse("0 0 29 2 */7").unwrap();
        let start = std::time::Instant::now();
        let mut t: Timestamp = "2061-01-01T00:00:00Z".parse().unwrap();
        for _ in 0..100 {
            t = calendar.next_after(t, &TimeZone::UTC).unwrap();
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn nothing_after_the_end_of_time() {
        let calendar = Calendar::parse("0 0 1 1 *").unwrap();
        let t: Timestamp = "9999-06-01T00:00:00Z".parse().unwrap();
        assert_eq!(calendar.next_after(t, &TimeZone::UTC), None);
    }

    #[test]
    fn displays_the_expression_as_written() {
        for (written, shown) in [
            ("  0 30 3 * * *  ", "0 30 3 * * *"),
            ("30 3 * * MON-Fri", "30 3 * * MON-Fri"),
            ("@Daily", "@Daily"),
        ] {
            assert_eq!(Calendar::parse(written).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn parse_errors_name_the_field_and_the_value() {
        let cases = [
            (
                "0 0 32 * *",
                r#"day-of-month "32" is out of range 1-31 in "0 0 32 * *""#,
            ),
            (
                "60 * * * *",
                r#"minute "60" is out of range 0-59 in "60 * * * *""#,
            ),
            (
                "* 24 * * *",
                r#"hour "24" is out of range 0-23 in "* 24 * * *""#,
            ),
            (
                "0 0 1 13 *",
                r#"month "13" is out of range 1-12 in "0 0 1 13 *""#,
            ),
            (
                "0 0 * * 8",
                r#"day-of-week "8" is out of range 0-7 in "0 0 * * 8""#,
            ),
            (
                "61 0 0 * * *",
                r#"second "61" is out of range 0-59 in "61 0 0 * * *""#,
            ),
            (
                "0 0 0 0 * *",
                r#"day-of-month "0" is out of range 1-31 in "0 0 0 0 * *""#,
            ),
            (
                "0 0 1 foo *",
                r#"month "foo" is not a number 1-12 or a name jan-dec in "0 0 1 foo *""#,
            ),
            (
                "0 0 * * funday",
                r#"day-of-week "funday" is not a number 0-7 (0 and 7 are Sunday) or a name sun-sat in "0 0 * * funday""#,
            ),
            (
                "0 0 * * jan",
                r#"day-of-week "jan" is not a number 0-7 (0 and 7 are Sunday) or a name sun-sat in "0 0 * * jan""#,
            ),
            (
                "mon * * * *",
                r#"minute "mon" is not a number 0-59 in "mon * * * *""#,
            ),
            (
                "5-3 * * * *",
                r#"minute "5-3" is a range that runs backwards in "5-3 * * * *""#,
            ),
            (
                "0 0 * * fri-mon",
                r#"day-of-week "fri-mon" is a range that runs backwards in "0 0 * * fri-mon""#,
            ),
            (
                "*/0 * * * *",
                r#"minute "*/0" has a step that is not a whole number of at least 1 in "*/0 * * * *""#,
            ),
            (
                "0 */x * * *",
                r#"hour "*/x" has a step that is not a whole number of at least 1 in "0 */x * * *""#,
            ),
            (
                "? * * * *",
                r#"minute "?" is only allowed in day-of-month and day-of-week in "? * * * *""#,
            ),
            (
                "1,,2 * * * *",
                r#"minute "1,,2" has an empty list item in "1,,2 * * * *""#,
            ),
            (
                "-1 * * * *",
                r#"minute "-1" is not a number 0-59 in "-1 * * * *""#,
            ),
            (
                "0 0 1-99 * *",
                r#"day-of-month "99" is out of range 1-31 in "0 0 1-99 * *""#,
            ),
            (
                "0 3 * *",
                r#"expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), found 4 in "0 3 * *""#,
            ),
            (
                "0 0 3 * * * *",
                r#"expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), found 7 in "0 0 3 * * * *""#,
            ),
            (
                "@often",
                r#"unknown schedule "@often"; expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually or @every DURATION"#,
            ),
        ];
        for (expression, want) in cases {
            match Calendar::parse(expression) {
                Ok(calendar) => panic!("{expression:?} parsed: {calendar:?}"),
                Err(e) => assert_eq!(e.to_string(), want, "{expression:?}"),
            }
        }
    }

    #[test]
    fn expressions_that_never_fire_are_errors() {
        for expression in [
            "0 0 30 2 *",
            "0 0 31 4 *",
            "0 0 31 2,4,6,9,11 *",
            "0 0 0 30 feb *",
            "0 0 30 2 */2",
            "0 0 30-31 2 ?",
        ] {
            assert_eq!(
                Calendar::parse(expression),
                Err(CalendarError::NeverFires {
                    expression: expression.to_string()
                }),
                "{expression:?}"
            );
        }
        assert_eq!(
            CalendarError::NeverFires {
                expression: "0 0 30 2 *".into()
            }
            .to_string(),
            r#""0 0 30 2 *" never fires: no month it allows has such a day"#
        );
        // Rare is not never.
        for expression in ["0 0 29 2 *", "0 0 29 2 */7", "0 0 31 2 mon", "0 0 31 * *"] {
            assert!(Calendar::parse(expression).is_ok(), "{expression:?}");
        }
    }
}
