//! The system under test as the simulator sees it: the server's public API, behind a trait so
//! the world can be driven (and its own tests run) against exactly the calls a shim makes.

use qmp_core::server::{FdId, Input, Instant, MonitorId, Output, TakeFdError};

/// The server operations the simulator uses.
pub trait Core {
    /// Apply one input; `Err` is API misuse reported by the core (text).
    fn handle(&mut self, now: Instant, input: Input) -> Result<(), String>;
    /// Next output, if any.
    fn poll_output(&mut self) -> Option<Output>;
    /// When `Tick` next has work.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Output not yet reported written.
    fn pending_output(&self, m: MonitorId) -> &[u8];
    /// The shim may read from this monitor.
    fn wants_read(&self, m: MonitorId) -> bool;
    /// An in-band request is waiting for the dispatcher.
    fn dispatcher_ready(&self) -> bool;
    /// In-band requests queued on this monitor.
    fn queue_len(&self, m: MonitorId) -> usize;
    /// The monitor's suspend counter.
    fn suspend_count(&self, m: MonitorId) -> i64;
    /// Coverage probes: (name, hits).
    fn probes(&self) -> Vec<(String, u64)>;
    /// The core's estimate of its memory use, bytes.
    fn memory_estimate(&self) -> usize;
    /// The core's own output digest.
    fn digest(&self) -> u64;
    /// The monitor's named fds (`getfd` names), in any order.
    fn named_fds(&self, m: MonitorId) -> Vec<String>;
    /// A handler takes the monitor's named fd (`Server::take_named_fd`); the world records it
    /// as `Input::TakeNamedFd`.
    fn take_named_fd(
        &mut self,
        now: Instant,
        m: MonitorId,
        name: &str,
    ) -> Result<FdId, TakeFdError>;
}
