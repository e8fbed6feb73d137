//! Integer time. Every input carries `now` as [`Millis`]; durations are plain `u64`
//! milliseconds with the unit last in their names (`idle_shutdown_ms`). Integer time
//! matters: float seconds make replays drift.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time, in milliseconds since an epoch the driver chooses (the simulator
/// uses the trace's t = 0, the live driver the Unix epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Millis = Millis(0);
    pub const MAX: Millis = Millis(u64::MAX);

    /// `self + ms`, saturating at [`Millis::MAX`] so that "never" stays "never".
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

pub const SECOND_MS: u64 = 1_000;
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_saturates_and_since_clamps() {
        assert_eq!(Millis::MAX.plus(5), Millis::MAX);
        assert_eq!(Millis(10).since(Millis(20)), 0);
        assert_eq!(Millis(20).since(Millis(5)), 15);
        assert_eq!(Millis(61_005).to_string(), "61.005s");
    }
}
