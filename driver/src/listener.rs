//! The accept policy: which listener may accept now, which monitor a new connection gets, and
//! what a failed accept means.
//!
//! A listener with `clients = N` owns N monitors (slots), numbered when the driver is built;
//! a new connection takes the lowest free slot of its listener and its monitor, which the next
//! connection on that slot reuses (QEMU's monitor belongs to its chardev). A listener accepts
//! while it has a free slot, the driver holds fewer than `max_connections` connections, it may
//! have a client waiting (its *backlog* flag: set by a readiness event and whenever a slot is
//! freed, cleared only by an accept that says would-block) and it is not backing off. Accept
//! failing for lack of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs the listener off for
//! [`ACCEPT_BACKOFF_NS`] or until a connection closes, instead of retrying in a tight loop.

use qmp_core::server::{Instant, MonitorId, MonitorOptions};

use crate::conn::ConnId;

/// How long a listener waits after accept failed for lack of descriptors, unless a connection
/// closes first: long enough not to spin, short enough that a client is served soon after the
/// shortage ends.
pub const ACCEPT_BACKOFF_NS: u64 = 100_000_000;

/// One listener's configuration.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Its chardev id (`query-yank`, `yank`).
    pub chardev: String,
    /// Clients served at once (monitor slots).
    pub clients: usize,
    /// The options of its monitors (QMP).
    pub options: MonitorOptions,
    /// Its monitors are human monitors (QEMU's `mode=readline`): opened with
    /// [`qmp_core::server::Input::OpenHmp`], `options` unused.
    pub readline: bool,
}

/// What one accept attempt came to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AcceptFact {
    /// No client is waiting (EAGAIN): wait for the listener's next readiness event. (A
    /// successful accept is reported with [`crate::Driver::handle_accepted`].)
    WouldBlock,
    /// Interrupted, or the client left before it was accepted: try again.
    Retry,
    /// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): back off.
    OutOfResources,
    /// Any other failure: the listener waits for its next readiness event.
    Failed(std::io::ErrorKind),
}

#[derive(Debug)]
pub(crate) struct Listener {
    pub config: ListenerConfig,
    /// Monitor of slot 0; slot `i` has `first_monitor + i`.
    pub first_monitor: u64,
    pub slots: Vec<Option<ConnId>>,
    pub backlog: bool,
    pub backoff_until: Option<Instant>,
}

impl Listener {
    pub fn new(config: ListenerConfig, first_monitor: u64) -> Self {
        let slots = vec![None; config.clients.max(1)];
        Listener {
            config,
            first_monitor,
            slots,
            backlog: true,
            backoff_until: None,
        }
    }

    pub fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    pub fn monitor(&self, slot: usize) -> MonitorId {
        MonitorId(self.first_monitor + slot as u64)
    }

    pub fn backing_off(&self, now: Instant) -> bool {
        self.backoff_until.is_some_and(|t| now < t)
    }
}
