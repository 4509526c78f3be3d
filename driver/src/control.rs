//! What a handler may do besides computing its result: the small control interface every
//! adapter implements ([`Control`]) and the per-call view of it ([`CallContext`]).
//!
//! Handlers are written once against this interface, so the demo machine and an embedder's
//! commands run unchanged on every adapter (std threads, a plain `poll` loop, the simulator).
//! Every method may be called from a handler's thread with no lock held; the adapter turns it
//! into a driver input.

use std::any::Any;

use qmp_core::json::Object;
use qmp_core::server::{Call, CallId, Lane, MonitorId, RunState, TakeFdError};

use crate::conn::ConnId;
use crate::fds::Descriptor;

/// A descriptor a handler took by name ([`CallContext::take_named_fd`]): the adapter's own
/// descriptor type (`OwnedFd` for qmp-io), behind a type-erased box so that handlers stay
/// adapter-independent. Dropping it drops (closes) the descriptor; [`TakenFd::downcast`] gives
/// the real one to a handler that knows its adapter.
pub struct TakenFd {
    number: u64,
    fd: Box<dyn Any + Send>,
}

impl TakenFd {
    /// Wrap the adapter's descriptor.
    pub fn new<F: Descriptor + Send + 'static>(fd: F) -> Self {
        TakenFd {
            number: fd.number(),
            fd: Box::new(fd),
        }
    }

    /// The host's number for it.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The descriptor, when it is an `F`; itself back otherwise.
    pub fn downcast<F: 'static>(self) -> Result<F, Self> {
        let number = self.number;
        self.fd
            .downcast::<F>()
            .map(|b| *b)
            .map_err(|fd| TakenFd { number, fd })
    }
}

impl std::fmt::Debug for TakenFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TakenFd").field(&self.number).finish()
    }
}

/// What [`Control::add_client`] came to. On every outcome but `Added` the descriptor is closed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AddClient {
    /// The stream is a new client of the chardev's listener.
    Added(ConnId),
    /// No listener has that chardev id.
    NoSuchChardev,
    /// The listener takes no client now (every slot busy, the connection limit, shutdown), or
    /// the descriptor is not a stream socket the adapter can serve.
    Refused,
}

/// The runtime side of a handler's actions.
pub trait Control: Send + Sync {
    /// Emit an event now (stamped with the wall clock, throttled and broadcast by the core).
    fn emit_event(&self, name: &str, data: Object);
    /// Tell the core the VM run state changed.
    fn set_run_state(&self, state: RunState);
    /// Stop serving once the current replies are out (QEMU's `quit`).
    fn request_shutdown(&self);
    /// The chardev ids of the listeners, in order (what `query-yank` lists).
    fn chardevs(&self) -> Vec<String>;
    /// Drop the clients of chardev `id` (QEMU's chardev yank); false when there is none.
    fn yank_chardev(&self, id: &str) -> bool;
    /// Whether the connection `session` is still open (a handler that blocks on behalf of its
    /// client uses it with [`crate::Registry::on_session_closed`]).
    fn session_open(&self, session: ConnId) -> bool;

    /// QEMU's `monitor_suspend` from an HMP command handler: suspend the human monitor that
    /// `call` came from (for good: nothing resumes it). False, and nothing done, when the call
    /// runs on a non-interactive monitor (`human-monitor-command`: QEMU's `-ENOTTY`) or is not
    /// an HMP call; adapters without human monitors keep this default.
    fn suspend_hmp_caller(&self, call: CallId) -> bool {
        let _ = call;
        false
    }
    /// Take `monitor`'s fd named `name` (QEMU's `monitor_get_fd`; see
    /// [`crate::Driver::take_named_fd`]): the caller owns the descriptor from then on.
    fn take_named_fd(&self, monitor: MonitorId, name: &str) -> Result<TakenFd, TakeFdError>;
    /// Make the connected stream `fd` a client of chardev `chardev`'s listener (QEMU's
    /// `qemu_chr_add_client`; see [`crate::Driver::handle_added`]).
    fn add_client(&self, chardev: &str, fd: TakenFd) -> AddClient;
}

/// One handler call as its handler sees it.
pub struct CallContext<'a> {
    control: &'a dyn Control,
    call: &'a Call,
    session: ConnId,
}

impl<'a> CallContext<'a> {
    /// The context of `call`, made by `session`, acting through `control`.
    pub fn new(control: &'a dyn Control, call: &'a Call, session: ConnId) -> Self {
        CallContext {
            control,
            call,
            session,
        }
    }

    /// The monitor the request came from.
    pub fn monitor(&self) -> MonitorId {
        self.call.monitor
    }

    /// The connection the request came on (distinct for every connection, unlike monitors,
    /// which successive connections of one listener slot share).
    pub fn session(&self) -> ConnId {
        self.session
    }

    /// The lane the call runs on.
    pub fn lane(&self) -> Lane {
        self.call.lane
    }

    /// The command name.
    pub fn command(&self) -> &str {
        &self.call.command
    }

    /// Emit an event now. Events emitted by an in-band handler reach the wire before its reply,
    /// as in QEMU (`stop` → STOP, then the return).
    pub fn emit_event(&self, name: &str, data: Object) {
        self.control.emit_event(name, data);
    }

    /// Tell the core the VM run state changed (fd-set cleanup and preconfig depend on it).
    pub fn set_run_state(&self, state: RunState) {
        self.control.set_run_state(state);
    }

    /// Suspend the human monitor this HMP command came from, as QEMU's `monitor_suspend`
    /// (e.g. `quit`, so no prompt follows); false when it runs non-interactively
    /// (`human-monitor-command`), where QEMU refuses too.
    pub fn suspend_hmp_monitor(&self) -> bool {
        self.control.suspend_hmp_caller(self.call.id)
    }

    /// Stop the server once this call's reply has been produced.
    pub fn request_shutdown(&self) {
        self.control.request_shutdown();
    }

    /// The chardev ids of the listeners (what `query-yank` lists).
    pub fn chardevs(&self) -> Vec<String> {
        self.control.chardevs()
    }

    /// Drop the clients of chardev `id`; false when there is no such chardev.
    pub fn yank_chardev(&self, id: &str) -> bool {
        self.control.yank_chardev(id)
    }

    /// Whether this call's connection is still open.
    pub fn session_open(&self) -> bool {
        self.control.session_open(self.session)
    }

    /// Take this call's monitor's fd named `name` (QEMU's `monitor_get_fd`): the descriptor,
    /// or the error whose `Display` is QEMU's text ("File descriptor named '…' has not been
    /// found"; [`TakeFdError::to_call_result`] makes it the reply).
    pub fn take_named_fd(&self, name: &str) -> Result<TakenFd, TakeFdError> {
        self.control.take_named_fd(self.call.monitor, name)
    }

    /// Make the connected stream `fd` a client of chardev `chardev` (QEMU's
    /// `qemu_chr_add_client`).
    pub fn add_client(&self, chardev: &str, fd: TakenFd) -> AddClient {
        self.control.add_client(chardev, fd)
    }
}
