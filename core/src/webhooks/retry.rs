//! The one retry decision (in the manner of Svix's `calculate_retry_delay`): after a failed
//! attempt, when the next one is due, or that there is none. Its instant is written to the
//! delivery's row (`next_attempt_at`) and is the time the queue holds the retry for, in both
//! modes: RabbitMQ's retry message carries it and expires at it; the in-process queue's
//! dispatcher sends the row when it falls due.
//!
//! The rules, for the `n`th attempt of a round (1 for the first attempt, or the first after
//! a redelivery):
//! - the delay is step `n` of `WEBHOOK_RETRY_SCHEDULE`, jittered to 80–100% of it
//!   ([`JITTER`]), so that deliveries that failed together do not all come back together.
//!   Svix jitters ±20%; TrueNumber stays below the step because RabbitMQ holds a retry in
//!   the TTL queue of its step and expires messages only at a queue's head: a retry longer
//!   than its step would wait in the next step's queue behind retries of that (much longer)
//!   step, so it could be late by up to that step; below the step it is late by at most 20%
//!   of it;
//! - a `Retry-After` longer than that delay moves the retry to it, but never beyond a day
//!   ([`MAX_RETRY_AFTER`]); a shorter one changes nothing (it never makes a retry sooner);
//! - past the schedule's last step there is no next attempt: the delivery has failed;
//! - the instant is in whole milliseconds (the resolution of a RabbitMQ expiration), so the
//!   row, the message and the log show the same value.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use rand::RngExt;

/// How far below the schedule's step a delay may be jittered (20%: to 80–100% of the step).
pub const JITTER: f64 = 0.2;

/// The longest `Retry-After` honoured beyond the schedule's own delay (one day).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Where the jitter comes from.
pub trait JitterSource {
    /// A number in `[0, 1]`: 0 is the earliest retry (80% of the step), 1 the latest (the
    /// step itself), in proportion between. Values outside are clamped.
    fn sample(&mut self) -> f64;
}

/// Uniform jitter from the thread's random generator (what deliveries use).
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomJitter;

impl JitterSource for RandomJitter {
    fn sample(&mut self) -> f64 {
        rand::rng().random_range(0.0..=1.0)
    }
}

/// The same sample every time: exact, reproducible decisions.
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl JitterSource for FixedJitter {
    fn sample(&mut self) -> f64 {
        self.0
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Attempt again at this instant (whole milliseconds).
    At(DateTime<Utc>),
    /// The schedule is exhausted: the delivery has failed.
    GiveUp,
}

/// When the attempt after attempt `attempt_in_round` of a round (from 1) is due, given the
/// schedule (`WEBHOOK_RETRY_SCHEDULE`), the failed response's `Retry-After` (if any), the
/// current time and a source of jitter. See the module documentation for the rules.
pub fn next_attempt(
    schedule: &[Duration],
    attempt_in_round: u32,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
    jitter: &mut impl JitterSource,
) -> Retry {
    let Some(step) = attempt_in_round
        .checked_sub(1)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| schedule.get(i))
    else {
        return Retry::GiveUp;
    };
    let sample = jitter.sample().clamp(0.0, 1.0);
    let jittered = step.mul_f64(1.0 - JITTER * (1.0 - sample));
    let delay = match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
        None => jittered,
    };
    let at = chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    Retry::At(at.trunc_subsecs(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-08T10:00:00.000Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(offset_ms: i64) -> Retry {
        Retry::At(now() + chrono::Duration::milliseconds(offset_ms))
    }

    #[test]
    fn each_attempt_takes_its_step_of_the_schedule() {
        let schedule = secs(&[5, 30, 120]);
        let full = &mut FixedJitter(1.0);
        assert_eq!(next_attempt(&schedule, 1, None, now(), full), at(5_000));
        assert_eq!(next_attempt(&schedule, 2, None, now(), full), at(30_000));
        assert_eq!(next_attempt(&schedule, 3, None, now(), full), at(120_000));
    }

    #[test]
    fn the_schedule_exhausted_gives_up() {
        let schedule = secs(&[5, 30]);
        let mid = &mut FixedJitter(0.5);
        assert_eq!(next_attempt(&schedule, 3, None, now(), mid), Retry::GiveUp);
        assert_eq!(
            next_attempt(&schedule, 3, Some(Duration::from_secs(10)), now(), mid),
            Retry::GiveUp,
            "a Retry-After does not extend the schedule"
        );
        assert_eq!(next_attempt(&[], 1, None, now(), mid), Retry::GiveUp);
        assert_eq!(
            next_attempt(&schedule, 0, None, now(), mid),
            Retry::GiveUp,
            "there is no attempt 0"
        );
    }

    #[test]
    fn a_fixed_jitter_gives_exact_values_at_both_bounds() {
        let schedule = secs(&[10]);
        assert_eq!(
            next_attempt(&schedule, 1, None, now(), &mut FixedJitter(0.0)),
            at(8_000)
        );
        assert_eq!(
            next_attempt(&schedule, 1, None, now(), &mut FixedJitter(1.0)),
            at(10_000)
        );
        assert_eq!(
            next_attempt(&schedule, 1, None, now(), &mut FixedJitter(0.25)),
            at(8_500)
        );
        // Out of range samples are clamped to the bounds.
        assert_eq!(
            next_attempt(&schedule, 1, None, now(), &mut FixedJitter(-3.0)),
            at(8_000)
        );
        assert_eq!(
            next_attempt(&schedule, 1, None, now(), &mut FixedJitter(7.0)),
            at(10_000)
        );
    }

    #[test]
    fn random_jitter_stays_between_80_and_100_percent_and_varies() {
        let schedule = secs(&[100]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let Retry::At(t) = next_attempt(&schedule, 1, None, now(), &mut RandomJitter) else {
                panic!("a step is left");
            };
            let ms = (t - now()).num_milliseconds();
            assert!((80_000..=100_000).contains(&ms), "{ms}");
            seen.insert(ms);
        }
        assert!(
            seen.len() > 900,
            "jitter spreads retries: {} values",
            seen.len()
        );
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let schedule = secs(&[60]);
        let mid = &mut FixedJitter(0.5);
        let after = |s: u64| Some(Duration::from_secs(s));
        // Below the (jittered) step: the jittered step.
        assert_eq!(next_attempt(&schedule, 1, after(5), now(), mid), at(54_000));
        assert_eq!(
            next_attempt(&schedule, 1, after(50), now(), &mut FixedJitter(0.0)),
            at(50_000),
            "longer than the jittered step (48 s), so it wins"
        );
        // In between: exactly what the receiver asked for, not jittered.
        assert_eq!(
            next_attempt(&schedule, 1, after(600), now(), mid),
            at(600_000)
        );
        // Above a day: a day.
        assert_eq!(
            next_attempt(&schedule, 1, after(3 * 86_400), now(), mid),
            at(86_400_000)
        );
        // A step longer than a day is not shortened by a Retry-After.
        let long = secs(&[2 * 86_400]);
        assert_eq!(
            next_attempt(&long, 1, after(3 * 86_400), now(), &mut FixedJitter(1.0)),
            at(2 * 86_400_000)
        );
    }

    #[test]
    fn instants_are_whole_milliseconds() {
        let now = now() + chrono::Duration::nanoseconds(123_456_789);
        let Retry::At(t) = next_attempt(&secs(&[1]), 1, None, now, &mut FixedJitter(0.123_456_7))
        else {
            panic!("a step is left");
        };
        assert_eq!(t.timestamp_subsec_nanos() % 1_000_000, 0);
        assert!(t <= now + chrono::Duration::seconds(1));
    }
}
