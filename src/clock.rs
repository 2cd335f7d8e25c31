//! Watches the wall clock for jumps. Jobs sleep on the monotonic clock until
//! their wall-clock deadline, so that a thousand idle jobs wake no one; but
//! the monotonic clock stands still during a suspend and ignores a clock
//! that is set. One thread compares the two clocks once a minute, and when
//! the wall clock has moved by more than the monotonic one (or less), it
//! says so, and every job re-reads the wall clock: a deadline that passed
//! during a suspend fires within a minute of resume (SPEC §3).

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, tick};
use jiff::{SignedDuration, Timestamp};

/// How often the clocks are compared.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// A difference smaller than this is NTP's slewing, not a jump.
const TOLERANCE: SignedDuration = SignedDuration::from_secs(2);

/// Both clocks at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub wall: Timestamp,
    pub monotonic: Instant,
}

impl Reading {
    pub fn now() -> Reading {
        Reading {
            wall: Timestamp::now(),
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
