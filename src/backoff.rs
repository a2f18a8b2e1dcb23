//! Exponential backoff, the one rule every retry and poll in the sidecar follows: the first delay, doubling per
//! attempt, capped.

use std::time::Duration;

/// Delays that start at `initial` and double per attempt up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The delay before attempt `attempt` (1-based): `initial * 2^(attempt - 1)`, capped at `max`; attempt 0 counts
    /// as the first. Saturates instead of overflowing, whatever the count.
    pub fn delay(self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }

    /// The delays of attempts 1, 2, 3, ..., forever.
    pub fn delays(self) -> impl Iterator<Item = Duration> {
        (1u32..)
            .map(move |attempt| self.delay(attempt))
            .chain(std::iter::repeat(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_for_any_number_of_attempts() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.delay(0), Duration::from_secs(1));
        for attempt in [31, 32, 33, 1000, u32::MAX] {
            assert_eq!(b.delay(attempt), b.max);
        }
        assert_eq!(Backoff::new(Duration::MAX, Duration::MAX).delay(2), Duration::MAX);
    }

    #[test]
    fn the_iterator_yields_the_same_delays() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = b.delays().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500, 500]);
    }
}
