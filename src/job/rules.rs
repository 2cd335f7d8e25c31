//! What happens after a run, as a pure function of plain values: the
//! outcome and the job's counters and deadlines in, the next deadlines,
//! retry, give-up, follow-ups and notification events out (SPEC §3, §3.1,
//! §6.5). The job actor applies the decision; the tests here need no
//! thread, no clock and no restic.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::job::outcome::Outcome;
use crate::schedule::{self, Deadlines, RetryTimer, Schedule};

/// The job's retry and follow-up settings.
#[derive(Clone, Copy)]
pub struct Policy<'a> {
    pub schedule: Option<&'a Schedule>,
    pub retry_timer: Option<&'a RetryTimer>,
    /// Retries per failure; negative: until success.
    pub max_failed_retries: i64,
    pub stop_after_failed_retries: bool,
    pub has_next_jobs: bool,
}

/// The job's counters when the run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Retries spent in the current failure cycle.
    pub current_retry: u32,
    /// Failed runs since the last success.
    pub consecutive_failures: u32,
    /// A failure cycle ended without a retry since the last success: the
    /// next success is a recovery.
    pub awaiting_recovery: bool,
}

/// How the run ended, and which deadlines it served.
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    pub outcome: Outcome,
    /// When restic started (or the run began without it).
    pub start: Timestamp,
    pub end: Timestamp,
    /// restic said the password is wrong: no retry can fix that.
    pub wrong_password: bool,
    /// The deadlines that were due when the run started, and that it
    /// consumed.
    pub served: Deadlines,
    /// The daemon's own shutdown stopped the run: it runs again after the
    /// next start.
    pub by_shutdown: bool,
}

/// Why no retry follows a failed run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// `maxFailedRetries` are spent.
    RetriesSpent,
    /// The job has no `retryTimer`.
    NoRetries,
    /// A wrong password.
    WrongPassword,
}

/// What a notification target may hear about (SPEC §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Success,
    Failure,
    /// A failed run after which no retry is scheduled.
    GiveUp,
    /// The first success after a give-up.
    Recovery,
    Skipped,
    /// The last success became older than `StaleAfter` (decided by the
    /// job's timer, not after a run).
    Stale,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::Success,
        Event::Failure,
        Event::GiveUp,
        Event::Recovery,
        Event::Skipped,
        Event::Stale,
    ];

    /// Its name in `On` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Success => "success",
            Event::Failure => "failure",
            Event::GiveUp => "giveup",
            Event::Recovery => "recovery",
            Event::Skipped => "skipped",
            Event::Stale => "stale",
        }
    }
}

/// What to do after a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The deadlines the job waits for now (those the run did not serve are
    /// kept).
    pub deadlines: Deadlines,
    pub counters: Counters,
    /// The run is over for good (`false`: it stays pending in the state
    /// file and runs again after the next start).
    pub finished: bool,
    /// The run counts as the job's last success.
    pub success: bool,
    /// The retry just scheduled: its number and when.
    pub retry: Option<(u32, Timestamp)>,
    pub give_up: Option<GiveUp>,
    /// `StopAfterFailedRetries`: the job stops until someone restarts it.
    pub stop: bool,
    /// Trigger the job's `NextJob`s.
    pub follow_ups: bool,
    pub events: Vec<Event>,
}

/// The rules after a run that `ended`, for a job with `policy` whose
/// counters were `before` and whose deadlines (without those the run
/// served) are `pending`.
pub fn after_run(
    policy: Policy,
    before: Counters,
    pending: Deadlines,
    ended: Ended,
    tz: &TimeZone,
) -> Decision {
    let mut decision = Decision {
        deadlines: pending,
        counters: before,
        finished: true,
        success: false,
        retry: None,
        give_up: None,
        stop: false,
        follow_ups: false,
        events: Vec::new(),
    };
    if ended.outcome == Outcome::Stopped && ended.by_shutdown {
        // What was due stays due, and the run stays pending.
        decision.deadlines.regular = pending.regular.or(ended.served.regular);
        decision.deadlines.retry = pending.retry.or(ended.served.retry);
        decision.finished = false;
        return decision;
    }
    // A served regular slot moves on to the next one after the run; a run
    // longer than the interval skips the slots it overlapped.
    if let (Some(schedule), Some(slot)) = (policy.schedule, ended.served.regular) {
        decision.deadlines.regular = Some(schedule.next_slot(slot, ended.end, tz));
    }
    match ended.outcome {
        // Someone stopped it: over, and nothing is counted.
        Outcome::Stopped => {}
        // Nothing ran: no retry spent, the counters stay, and a retry that
        // was due is dropped; the job waits for its regular slot.
        Outcome::Skipped => {
            decision.events.push(Event::Skipped);
        }
        Outcome::Success | Outcome::Warning => {
            decision.success = true;
            decision.counters = Counters::default();
            decision.deadlines.retry = None;
            decision.follow_ups = policy.has_next_jobs;
            decision.events.push(Event::Success);
            if before.awaiting_recovery {
                decision.events.push(Event::Recovery);
            }
        }
        Outcome::Failure | Outcome::Locked | Outcome::Timeout => {
            decision.counters.consecutive_failures = before.consecutive_failures.saturating_add(1);
            decision.events.push(Event::Failure);
            let retries_left = match policy.max_failed_retries {
                n if n < 0 => true,
                n => i64::from(before.current_retry) < n,
            };
            let give_up = match policy.retry_timer {
                _ if ended.wrong_password => Some(GiveUp::WrongPassword),
                None => Some(GiveUp::NoRetries),
                Some(_) if !retries_left => Some(GiveUp::RetriesSpent),
                Some(timer) => {
                    let number = before.current_retry.saturating_add(1);
                    let at = schedule::retry_deadline(timer, ended.start, ended.end, tz);
                    decision.counters.current_retry = number;
                    decision.deadlines.retry = Some(at);
                    decision.retry = Some((number, at));
                    None
                }
            };
            if let Some(why) = give_up {
                decision.give_up = Some(why);
                decision.counters.current_retry = 0;
                decision.counters.awaiting_recovery = true;
                decision.deadlines.retry = None;
                decision.stop = policy.stop_after_failed_retries;
                decision.events.push(Event::GiveUp);
            }
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    const HOURLY: Schedule = Schedule::Interval(Duration::from_secs(3600));
    const RETRY: RetryTimer = RetryTimer::After(Duration::from_secs(60));

    fn policy() -> Policy<'static> {
        Policy {
            schedule: Some(&HOURLY),
            retry_timer: Some(&RETRY),
            max_failed_retries: 2,
            stop_after_failed_retries: false,
            has_next_jobs: true,
        }
    }

    fn ended(outcome: Outcome) -> Ended {
        Ended {
            outcome,
            start: t(0),
            end: t(10),
            wrong_password: false,
            served: Deadlines {
                regular: Some(t(0)),
                retry: None,
            },
            by_shutdown: false,
        }
    }

    fn decide(policy: Policy, before: Counters, ended: Ended) -> Decision {
        after_run(policy, before, Deadlines::default(), ended, &TimeZone::UTC)
    }

    #[test]
    fn a_success_resets_the_counters_moves_to_the_next_slot_and_triggers_follow_ups() {
        let before = Counters {
            current_retry: 1,
            consecutive_failures: 3,
            awaiting_recovery: false,
        };
        let d = decide(policy(), before, ended(Outcome::Success));
        assert_eq!(d.counters, Counters::default());
        assert_eq!(d.deadlines.regular, Some(t(3600)));
        assert_eq!(d.deadlines.retry, None);
        assert!(d.success && d.follow_ups && d.finished);
        assert_eq!(d.events, [Event::Success]);
    }

    #[test]
    fn a_warning_counts_as_a_success() {
        let d = decide(policy(), Counters::default(), ended(Outcome::Warning));
        assert!(d.success && d.follow_ups);
    }

    #[test]
    fn a_failure_schedules_a_retry_after_the_retry_timer_and_keeps_the_regular_slot() {
        let d = decide(policy(), Counters::default(), ended(Outcome::Failure));
        assert_eq!(d.retry, Some((1, t(70))));
        assert_eq!(d.deadlines.retry, Some(t(70)));
        assert_eq!(d.deadlines.regular, Some(t(3600)));
        assert_eq!(d.counters.current_retry, 1);
        assert_eq!(d.counters.consecutive_failures, 1);
        assert!(!d.follow_ups && !d.success);
        assert_eq!(d.events, [Event::Failure]);
    }

    #[test]
    fn locked_and_timeout_are_failures_too() {
        for outcome in [Outcome::Locked, Outcome::Timeout] {
            let d = decide(policy(), Counters::default(), ended(outcome));
            assert_eq!(d.counters.consecutive_failures, 1, "{outcome:?}");
            assert!(d.retry.is_some(), "{outcome:?}");
        }
    }

    #[test]
    fn when_the_retries_are_spent_the_job_gives_up_and_goes_back_to_its_schedule() {
        let before = Counters {
            current_retry: 2,
            consecutive_failures: 3,
            awaiting_recovery: false,
        };
        let d = decide(policy(), before, ended(Outcome::Failure));
        assert_eq!(d.give_up, Some(GiveUp::RetriesSpent));
        assert_eq!(d.retry, None);
        assert_eq!(d.deadlines.retry, None);
        assert_eq!(d.deadlines.regular, Some(t(3600)));
        assert_eq!(d.counters.current_retry, 0);
        assert_eq!(d.counters.consecutive_failures, 4);
        assert!(d.counters.awaiting_recovery && !d.stop);
        assert_eq!(d.events, [Event::Failure, Event::GiveUp]);
    }

    #[test]
    fn stop_after_failed_retries_stops_the_job_when_it_gives_up() {
        let policy = Policy {
            stop_after_failed_retries: true,
            ..policy()
        };
        let before = Counters {
            current_retry: 2,
            ..Counters::default()
        };
        assert!(decide(policy, before, ended(Outcome::Failure)).stop);
        // Not while retries are left.
        assert!(!decide(policy, Counters::default(), ended(Outcome::Failure)).stop);
    }

    #[test]
    fn unlimited_retries_never_give_up() {
        let policy = Policy {
            max_failed_retries: -1,
            ..policy()
        };
        let before = Counters {
            current_retry: 10_000,
            ..Counters::default()
        };
        let d = decide(policy, before, ended(Outcome::Failure));
        assert_eq!(d.retry.map(|(n, _)| n), Some(10_001));
        assert_eq!(d.give_up, None);
    }

    #[test]
    fn without_a_retry_timer_a_failure_gives_up_at_once() {
        let policy = Policy {
            retry_timer: None,
            ..policy()
        };
        let d = decide(policy, Counters::default(), ended(Outcome::Failure));
        assert_eq!(d.give_up, Some(GiveUp::NoRetries));
        assert_eq!(d.events, [Event::Failure, Event::GiveUp]);
    }

    #[test]
    fn a_wrong_password_spends_no_retry() {
        let d = decide(
            policy(),
            Counters::default(),
            Ended {
                wrong_password: true,
                ..ended(Outcome::Failure)
            },
        );
        assert_eq!(d.give_up, Some(GiveUp::WrongPassword));
        assert_eq!(d.retry, None);
        assert_eq!(d.counters.current_retry, 0);
    }

    #[test]
    fn the_first_success_after_giving_up_is_a_recovery_and_later_ones_are_not() {
        let failed = decide(
            policy(),
            Counters::default(),
            Ended {
                wrong_password: true,
                ..ended(Outcome::Failure)
            },
        );
        let recovered = decide(policy(), failed.counters, ended(Outcome::Success));
        assert_eq!(recovered.events, [Event::Success, Event::Recovery]);
        let again = decide(policy(), recovered.counters, ended(Outcome::Success));
        assert_eq!(again.events, [Event::Success]);
    }

    #[test]
    fn a_success_after_a_retry_is_no_recovery() {
        let failed = decide(policy(), Counters::default(), ended(Outcome::Failure));
        let d = decide(policy(), failed.counters, ended(Outcome::Success));
        assert_eq!(d.events, [Event::Success]);
    }

    #[test]
    fn a_skipped_run_spends_nothing_and_drops_a_due_retry() {
        let before = Counters {
            current_retry: 1,
            consecutive_failures: 2,
            awaiting_recovery: false,
        };
        let ended = Ended {
            served: Deadlines {
                regular: None,
                retry: Some(t(0)),
            },
            ..ended(Outcome::Skipped)
        };
        let pending = Deadlines {
            regular: Some(t(3600)),
            retry: None,
        };
        let d = after_run(policy(), before, pending, ended, &TimeZone::UTC);
        assert_eq!(d.counters, before);
        assert_eq!(d.deadlines, pending);
        assert_eq!(d.events, [Event::Skipped]);
        assert!(d.finished && !d.follow_ups && d.retry.is_none());
    }

    #[test]
    fn a_run_stopped_by_someone_is_over_and_counts_nothing() {
        let before = Counters {
            current_retry: 1,
            consecutive_failures: 1,
            awaiting_recovery: false,
        };
        let d = decide(policy(), before, ended(Outcome::Stopped));
        assert!(d.finished);
        assert_eq!(d.counters, before);
        assert_eq!(d.deadlines.regular, Some(t(3600)));
        assert!(d.events.is_empty());
    }

    #[test]
    fn a_run_the_shutdown_stopped_stays_pending_with_what_it_served_still_due() {
        let served = Deadlines {
            regular: Some(t(0)),
            retry: Some(t(-5)),
        };
        let d = decide(
            policy(),
            Counters::default(),
            Ended {
                served,
                by_shutdown: true,
                ..ended(Outcome::Stopped)
            },
        );
        assert!(!d.finished);
        assert_eq!(d.deadlines, served);
        assert!(d.events.is_empty());
    }

    #[test]
    fn a_run_longer_than_the_interval_skips_the_slots_it_overlapped() {
        let d = decide(
            policy(),
            Counters::default(),
            Ended {
                end: t(3 * 3600 + 5),
                ..ended(Outcome::Success)
            },
        );
        assert_eq!(d.deadlines.regular, Some(t(4 * 3600)));
    }

    #[test]
    fn a_triggered_run_leaves_the_regular_deadline_alone() {
        let pending = Deadlines {
            regular: Some(t(1800)),
            retry: None,
        };
        let ended = Ended {
            served: Deadlines::default(),
            ..ended(Outcome::Success)
        };
        let d = after_run(
            policy(),
            Counters::default(),
            pending,
            ended,
            &TimeZone::UTC,
        );
        assert_eq!(d.deadlines.regular, Some(t(1800)));
    }
}
