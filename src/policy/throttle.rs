//! The start throttle: a governor token bucket driven by the time the policy is given, never by a clock.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::model::Millis;

/// A governor clock that only moves when the policy sets it to the `now` it was handed.
///
/// An atomic rather than a `Cell` keeps the policy `Send + Sync`; there is never contention.
#[derive(Debug, Default)]
struct PassedClock {
    nanos: AtomicU64,
}

impl Clock for PassedClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// Limits job starts across all tables to `per_minute` with bursts of `burst`.
#[derive(Debug)]
pub(super) struct StartThrottle {
    limiter: RateLimiter<NotKeyed, InMemoryState, PassedClock, NoOpMiddleware<Duration>>,
}

impl StartThrottle {
    /// The bucket starts full. Zero values are raised to one
    /// (`Config::validate` rejects them; the policy still must not panic on a hand-built setting).
    pub(super) fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            limiter: RateLimiter::direct_with_clock(quota, PassedClock::default()),
        }
    }

    /// Takes one token at `now`, or says when the next one is due (rounded up to the millisecond, so a
    /// retry at that time succeeds).
    pub(super) fn try_take(&self, now: Millis) -> Result<(), Millis> {
        let nanos = now.0.saturating_mul(1_000_000);
        self.limiter.clock().nanos.store(nanos, Ordering::Relaxed);
        self.limiter.check().map_err(|not_until| {
            let due = not_until.earliest_possible().as_nanos();
            let ms = due.div_ceil(1_000_000);
            Millis(u64::try_from(ms).unwrap_or(u64::MAX).max(now.0.saturating_add(1)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_token_per_interval() {
        let throttle = StartThrottle::new(10, 3);
        for _ in 0..3 {
            assert_eq!(throttle.try_take(Millis(1_000)), Ok(()));
        }
        // 10 per minute: one token every 6 s, refilling from the first take at 1 s.
        assert_eq!(throttle.try_take(Millis(1_000)), Err(Millis(7_000)));
        assert_eq!(throttle.try_take(Millis(6_999)), Err(Millis(7_000)));
        assert_eq!(throttle.try_take(Millis(7_000)), Ok(()));
        assert_eq!(throttle.try_take(Millis(7_000)), Err(Millis(13_000)));
    }

    #[test]
    fn a_full_bucket_does_not_overflow_after_a_long_pause() {
        let throttle = StartThrottle::new(60, 2);
        let later = Millis(3_600_000);
        assert_eq!(throttle.try_take(later), Ok(()));
        assert_eq!(throttle.try_take(later), Ok(()));
        assert!(throttle.try_take(later).is_err());
    }
}
