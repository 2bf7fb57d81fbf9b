//! Reconnect backoff for the lease loop: exponential with jitter and a cap.
//!
//! Jitter matters most after an outage: when the edge or Redis comes back, a fleet of runners
//! that all failed together would otherwise retry in lockstep and hit it at the same instant.

use rand::Rng;
use std::time::Duration;

/// First wait after a failure.
pub const FIRST: Duration = Duration::from_millis(500);
/// No wait grows beyond this.
pub const CAP: Duration = Duration::from_secs(60);

/// The wait before each retry: the ceiling doubles per failure up to [`CAP`], and each wait is
/// drawn uniformly from the upper half of the current ceiling ("equal jitter"), so it never
/// collapses to zero yet spreads a fleet over half the interval.
#[derive(Debug, Clone)]
pub struct Backoff {
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { ceiling: FIRST }
    }
}

impl Backoff {
    /// The next wait; grows the ceiling for the one after.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(CAP);
        let half = ceiling / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }

    /// After a success the next failure starts from [`FIRST`] again.
    pub fn reset(&mut self) {
        self.ceiling = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_jittered_bounds_and_stop_at_the_cap() {
        let mut b = Backoff::default();
        let mut ceiling = FIRST;
        for _ in 0..20 {
            let w = b.next_wait();
            assert!(
                w >= ceiling / 2 && w <= ceiling,
                "{w:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(CAP);
        }
        assert_eq!(ceiling, CAP);
        b.reset();
        assert!(b.next_wait() <= FIRST);
    }

    #[test]
    fn waits_are_spread_not_lockstep() {
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| Backoff::default().next_wait()).collect();
        assert!(
            waits.len() > 1,
            "twenty fresh runners all chose the same wait"
        );
    }
}
