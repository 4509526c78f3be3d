//! Where the shim's time comes from: the monotonic [`Instant`] fed to the core with every input
//! and the wall-clock [`Timestamp`] put on events.
//!
//! The core never reads a clock (ARCHITECTURE.md); this is the one place the shim does, behind a
//! trait so that loom models and tests can substitute their own.

use qmp_core::server::{Instant, Timestamp};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync {
    /// Monotonic nanoseconds since an origin of the clock's choosing.
    fn now(&self) -> Instant;
    /// Wall-clock time, as QEMU stamps events (`g_get_real_time()`).
    fn wall(&self) -> Timestamp;
}

/// The real clocks of the host.
#[derive(Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> Self {
        SystemClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        // u64 nanoseconds cover 584 years of uptime; saturate rather than wrap beyond that.
        let ns = self.origin.elapsed().as_nanos();
        Instant(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn wall(&self) -> Timestamp {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                microseconds: i64::from(d.subsec_micros()),
            },
            // A clock set before 1970: QEMU would print the negative value; zero is as good.
            Err(_) => Timestamp::default(),
        }
    }
}
