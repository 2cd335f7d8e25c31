//! Watches the wall clock for jumps. Jobs sleep on the monotonic clock until
//! their wall-clock deadline, so that a thousand idle jobs wake no one; but
//! the monotonic clock stands still during a suspend and ignores a clock
//! that is set. One thread compares the two clocks once a minute, and when
//! the wall clock has moved by more than the monotonic one (or less), it
//! says so, and every job re-reads the wall clock: a deadline that passed
//! during a suspend fires within a minute of resume (SPEC §3).
//!
//! [`now`] is the wall clock as the daemon reads it, everywhere: the one
//! place where test builds can move it.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, tick};
use jiff::{SignedDuration, Timestamp};

/// How often the clocks are compared.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// A difference smaller than this is NTP's slewing, not a jump.
const TOLERANCE: SignedDuration = SignedDuration::from_secs(2);

/// The wall clock: what every deadline, state file and run record of the
/// daemon is measured against. The daemon reads it only here, so that the
/// tests can move it as a suspend does (see `fake` below). The builds that
/// ship have no fake: there this is `Timestamp::now()`.
pub fn now() -> Timestamp {
    #[cfg(any(debug_assertions, feature = "test-hooks"))]
    if let Some(offset) = fake::offset() {
        return Timestamp::now() + offset;
    }
    Timestamp::now()
}

/// Test builds only (debug, or the `test-hooks` feature): the wall clock
/// moved by the offset in the file that `RESTIC_CRONNED_FAKE_CLOCK_FILE`
/// names, re-read at every [`now`], while the monotonic clock goes on: what
/// a suspend looks like from inside the process. It is what libfaketime
/// does with `FAKETIME_TIMESTAMP_FILE` and `FAKETIME_NO_CACHE`, and
/// tests/it/clock.rs moves the debug build's clock with the real
/// libfaketime too; but libfaketime comes in through `LD_PRELOAD`, which
/// cannot reach the static small-machine build, and the tests run against
/// that build as well (scripts/test).
#[cfg(any(debug_assertions, feature = "test-hooks"))]
mod fake {
    use std::path::Path;

    use jiff::SignedDuration;

    const FILE_VAR: &str = "RESTIC_CRONNED_FAKE_CLOCK_FILE";

    /// The offset, when a test asked for one. A file that cannot be read or
    /// holds no offset is a broken test, not something to run on with the
    /// real clock.
    pub fn offset() -> Option<SignedDuration> {
        let file = std::env::var_os(FILE_VAR)?;
        let file = Path::new(&file);
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("{FILE_VAR}: cannot read {}: {e}", file.display()));
        let offset = parse_offset(text.trim()).unwrap_or_else(|| {
            panic!(
                "{FILE_VAR}: {} holds {text:?}, not an offset like +31m",
                file.display()
            )
        });
        Some(offset)
    }

    /// libfaketime's relative offsets: a sign, a whole number and a unit
    /// (`s`, `m`, `h`, `d`; none means seconds), as in `+0`, `+31m`, `-2h`.
    fn parse_offset(text: &str) -> Option<SignedDuration> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'+' => (false, &text[1..]),
            b'-' => (true, &text[1..]),
            _ => return None,
        };
        let (number, unit) = match rest.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((at, _)) => rest.split_at(at),
            None => (rest, "s"),
        };
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 60 * 60,
            "d" => 24 * 60 * 60,
            _ => return None,
        };
        let seconds = number.parse::<i64>().ok()?.checked_mul(seconds_per_unit)?;
        Some(SignedDuration::from_secs(if negative {
            -seconds
        } else {
            seconds
        }))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_offset_file_takes_libfaketimes_relative_offsets() {
            let offset = |text| parse_offset(text).map(|d| d.as_secs());
            assert_eq!(offset("+0"), Some(0));
            assert_eq!(offset("+31m"), Some(31 * 60));
            assert_eq!(offset("-2h"), Some(-2 * 3600));
            assert_eq!(offset("+1d"), Some(86_400));
            assert_eq!(offset("-90"), Some(-90));
            assert_eq!(offset("+45s"), Some(45));
            // An absolute time, no sign, no number, an unknown unit.
            for text in ["2024-01-01 00:00:00", "31m", "+", "+m", "+3w", "+1.5h", ""] {
                assert_eq!(offset(text), None, "{text:?}");
            }
        }
    }
}

/// Both clocks at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub wall: Timestamp,
    pub monotonic: Instant,
}

impl Reading {
    pub fn now() -> Reading {
        Reading {
            wall: now(),
            monotonic: Instant::now(),
        }
    }
}

/// How far the wall clock moved beyond (or short of) the monotonic clock
/// between `before` and `after`, when that is a jump.
pub fn jump(before: Reading, after: Reading) -> Option<SignedDuration> {
    let wall = after.wall.duration_since(before.wall);
    let monotonic = SignedDuration::try_from(after.monotonic - before.monotonic).ok()?;
    let jump = wall - monotonic;
    (jump.abs() >= TOLERANCE).then_some(jump)
}

/// Starts the watcher: it compares the clocks every `every` and sends each
/// jump on `jumps`, until `jumps` is disconnected or `stop` fires.
pub fn watch(
    every: Duration,
    jumps: Sender<SignedDuration>,
    stop: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("clock".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let ticks = tick(every);
            let mut before = Reading::now();
            loop {
                select! {
                    recv(ticks) -> _ => {}
                    recv(stop) -> _ => return,
                }
                let now = Reading::now();
                if let Some(jump) = jump(before, now)
                    && jumps.send(jump).is_err()
                {
                    return;
                }
                before = now;
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(wall: i64, monotonic: Instant) -> Reading {
        Reading {
            wall: Timestamp::from_second(1_700_000_000 + wall).unwrap(),
            monotonic,
        }
    }

    #[test]
    fn a_suspend_or_a_clock_set_is_a_jump_and_slewing_is_not() {
        let t0 = Instant::now();
        let t60 = t0 + Duration::from_secs(60);
        let before = reading(0, t0);
        // A minute on both clocks.
        assert_eq!(jump(before, reading(60, t60)), None);
        // NTP slewing a second.
        assert_eq!(jump(before, reading(61, t60)), None);
        // A one-hour suspend: the wall clock went on, the monotonic did not.
        assert_eq!(
            jump(before, reading(3660, t60)),
            Some(SignedDuration::from_secs(3600))
        );
        // The clock set back by ten minutes.
        assert_eq!(
            jump(before, reading(-540, t60)),
            Some(SignedDuration::from_secs(-600))
        );
    }
}
