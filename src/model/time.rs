//! Time as the sidecar counts it: milliseconds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time, in milliseconds since an epoch the caller chooses (the sidecar's start, a trace's zero).
///
/// The policy never reads a clock: every decision is a function of the `Millis` it is handed, which is what
/// makes it replayable and testable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The latest time the policy accepts (about 292 years after its epoch); later times are taken as this.
    /// It keeps the throttle's nanosecond arithmetic far from overflow.
    pub const MAX: Millis = Millis(u64::MAX / 2 / 1_000_000);

    /// `self + d`, saturating; a sub-millisecond rest rounds up so a wait is never shorter than configured.
    pub fn after(self, d: Duration) -> Millis {
        let ms = d.as_nanos().div_ceil(1_000_000);
        Millis(self.0.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)))
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Milliseconds since the Unix epoch now, by the wall clock (0 for a clock set before 1970): the unit of Flink's
/// timestamps and the sidecar's own. The one place the wall clock is read; the run loop anchors its monotonic
/// clock here once.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
