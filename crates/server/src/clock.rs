//! The server's clock: wall time in unix milliseconds, the unit the store takes.
//!
//! Every decision that rests on the time of day (a delivery is due, a lease or a signing secret's
//! grace period has run out, a breaker or alert window has passed, a replay key or an API key
//! has expired) reads an [`Clock`], never the system time directly. A real deployment always runs
//! on the [`SystemClock`]: [`crate::start`] uses it, and no configuration key, environment
//! variable, flag or route can change it (time is what grace periods, replay windows and key
//! expiry rest on). [`ManualClock`] exists for in-process tests
//! ([`crate::start_with_clock`]): they set the time instead of sleeping.
//!
//! Loops that wait for their next tick (`tokio::time::interval`, the claim loop's poll) still
//! wait in real time: they are polling, and each poll reads the clock. None of them sleeps until
//! a computed due time, so a test that advances a manual clock sees the effect within one poll
//! interval. Monotonic measurements (request durations, cache freshness, the rate limiter's
//! spacing) stay on `std::time::Instant`: they measure, they do not decide what the time is.

use hookwarden_store::Millis;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Wall time in unix milliseconds.
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> Millis;
}

/// How the server holds its clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock: what every real deployment runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        hookwarden_store::now_millis()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to. **For tests only**: it lets an in-process test (see
/// [`crate::start_with_clock`]) cross a grace period, a breaker or alert window or a retry delay
/// by setting the time rather than waiting for it. Nothing in a deployment can install one.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `start` (unix milliseconds).
    pub fn new(start: Millis) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: AtomicI64::new(start),
        })
    }

    /// A clock stopped at the current wall time (signatures made under it still verify against
    /// a receiver's real clock within their tolerance).
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::new(hookwarden_store::now_millis())
    }

    /// Sets the time.
    pub fn set(&self, at: Millis) {
        self.now.store(at, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`; returns the new time.
    pub fn advance(&self, by: Duration) -> Millis {
        let ms = Millis::try_from(by.as_millis()).unwrap_or(Millis::MAX);
        self.now.fetch_add(ms, Ordering::SeqCst).saturating_add(ms)
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_millis(), 1_000);
        assert_eq!(c.now_millis(), 1_000);
        assert_eq!(c.advance(Duration::from_millis(2_500)), 3_500);
        assert_eq!(c.now_millis(), 3_500);
        c.set(10);
        assert_eq!(c.now_millis(), 10);
        let shared: SharedClock = c;
        assert_eq!(shared.now_millis(), 10);
    }

    #[test]
    fn the_system_clock_is_wall_time() {
        let before = hookwarden_store::now_millis();
        let t = system().now_millis();
        assert!(t >= before && t <= hookwarden_store::now_millis());
    }
}
