//! What handlers and [`super::TokioHandle`]s do to the server: requests queued for the event
//! loop, which owns the driver and applies them in order.
//!
//! The driver has one owner, the event loop task, so nothing else ever locks it. A handler's
//! actions (emit an event, set the run state, yank, request shutdown) and an embedder's (from
//! any task or thread) are queued here and applied by the loop: right after the handler returns
//! and before its completion, so an event a handler emits reaches the wire before its reply, as
//! in QEMU. Most questions a handler asks get answers that need no driver: the chardev ids
//! are fixed at build time and the set of open sessions is kept here by the loop. The few that
//! need it (take a named fd, add a client, suspend an HMP caller) are answered with the driver
//! lent by the loop ([`LoopControl`]): at once for a handler in the loop task, through a
//! [`DriverRequest`] the loop answers for a handler on the blocking pool ([`BlockingControl`]).
//!
//! Bounds: the queue holds what handlers and handles push between two turns of the loop;
//! a handler pushes a handful (a handler on the blocking pool at most one driver request at a
//! time: it waits for each answer), and an embedder emitting events faster than the loop turns is
//! what the core's event throttle and output limits are for once they are applied.

use std::collections::{BTreeSet, VecDeque};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use std::os::fd::OwnedFd;

use qmp_core::json::Object;
use qmp_core::server::{CallId, MonitorId, RunState, TakeFdError, Timestamp};
use qmp_driver::{AddClient, ConnId, Control, Driver, ShutdownCause, TakenFd};

use super::socket::Stream;

use crate::clock::{Clock, SystemClock};

/// One request for the event loop.
#[derive(Debug)]
pub(crate) enum Op {
    /// Emit an event stamped `wall`.
    Event {
        name: String,
        data: Object,
        wall: Timestamp,
    },
    /// The VM run state changed.
    RunState(RunState),
    /// Stop serving.
    Shutdown(ShutdownCause),
    /// Drop the clients of a chardev.
    Yank(String),
    /// A synchronous handler on the blocking pool asks what needs the driver at once.
    Driver(DriverRequest),
}

/// What a handler running off the loop ([`BlockingControl`]) asks the loop for, with where
/// the answer goes; the handler's thread waits for it.
#[derive(Debug)]
pub(crate) enum DriverRequest {
    SuspendHmpCaller(CallId, SyncSender<bool>),
    TakeNamedFd(MonitorId, String, SyncSender<Result<TakenFd, TakeFdError>>),
    AddClient(String, TakenFd, SyncSender<AddClient>),
}

impl DriverRequest {
    /// Answer it through `control` (the driver lent by the loop). A handler that stopped
    /// waiting (none does, but the loop must not care) loses the answer: a taken descriptor
    /// is then closed with it.
    pub(crate) fn answer(self, control: &dyn Control) {
        match self {
            DriverRequest::SuspendHmpCaller(call, tx) => {
                let _ = tx.send(control.suspend_hmp_caller(call));
            }
            DriverRequest::TakeNamedFd(monitor, name, tx) => {
                let _ = tx.send(control.take_named_fd(monitor, &name));
            }
            DriverRequest::AddClient(chardev, fd, tx) => {
                let _ = tx.send(control.add_client(&chardev, fd));
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    ops: VecDeque<Op>,
    /// The event loop's waker, set each time it goes to sleep.
    waker: Option<Waker>,
    /// The loop has finished: what is pushed now is dropped at once (a handler on the
    /// blocking pool waiting for an answer then gets none instead of waiting for ever).
    closed: bool,
}

/// The queue between the world and the event loop, and the answers handlers need at once.
pub(crate) struct Inbox {
    queue: Mutex<Queue>,
    chardevs: Vec<String>,
    /// Connections open now (kept by the loop: added on accept, removed before the session
    /// hooks are told of a close).
    open: Mutex<BTreeSet<ConnId>>,
    pub(crate) clock: SystemClock,
}

/// Lock, surviving a panic elsewhere (the data is plain queues).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inbox {
    pub(crate) fn new(chardevs: Vec<String>, clock: SystemClock) -> Self {
        Inbox {
            queue: Mutex::new(Queue::default()),
            chardevs,
            open: Mutex::new(BTreeSet::new()),
            clock,
        }
    }

    /// Queue `op` and wake the loop.
    pub(crate) fn push(&self, op: Op) {
        let waker = {
            let mut q = lock(&self.queue);
            if q.closed {
                return;
            }
            q.ops.push_back(op);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Everything queued, in order; when nothing is, `waker` is kept to wake the loop.
    pub(crate) fn take(&self, waker: &Waker, out: &mut VecDeque<Op>) {
        let mut q = lock(&self.queue);
        if q.ops.is_empty() {
            if !q.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                q.waker = Some(waker.clone());
            }
        } else {
            out.append(&mut q.ops);
        }
    }

    /// The loop has finished: drop what is queued and everything pushed from now on.
    pub(crate) fn close(&self) {
        let ops = {
            let mut q = lock(&self.queue);
            q.closed = true;
            std::mem::take(&mut q.ops)
        };
        drop(ops);
    }

    pub(crate) fn opened(&self, conn: ConnId) {
        lock(&self.open).insert(conn);
    }

    pub(crate) fn closed(&self, conn: ConnId) {
        lock(&self.open).remove(&conn);
    }

    pub(crate) fn event(&self, name: &str, data: Object) {
        self.push(Op::Event {
            name: name.to_owned(),
            data,
            wall: self.clock.wall(),
        });
    }
}

impl Control for Inbox {
    fn emit_event(&self, name: &str, data: Object) {
        self.event(name, data);
    }

    fn set_run_state(&self, state: RunState) {
        self.push(Op::RunState(state));
    }

    fn request_shutdown(&self) {
        self.push(Op::Shutdown(ShutdownCause::Request));
    }

    fn chardevs(&self) -> Vec<String> {
        self.chardevs.clone()
    }

    fn yank_chardev(&self, id: &str) -> bool {
        let known = self.chardevs.iter().any(|c| c == id);
        if known {
            self.push(Op::Yank(id.to_owned()));
        }
        known
    }

    fn session_open(&self, session: ConnId) -> bool {
        lock(&self.open).contains(&session)
    }

    // The two requests that need the driver at once are answered by [`LoopControl`], which
    // sync handlers get. An async handler runs inside the loop's own poll, where the driver
    // cannot be lent: it cannot take a named fd on this adapter (a known gap; qmpd's
    // `add_client` is sync).
    fn take_named_fd(&self, _monitor: MonitorId, name: &str) -> Result<TakenFd, TakeFdError> {
        tracing::warn!(
            name,
            "an async handler asked for a named fd: not on the tokio adapter"
        );
        Err(TakeFdError::NotFound { name: name.into() })
    }

    fn add_client(&self, chardev: &str, _fd: TakenFd) -> AddClient {
        tracing::warn!(
            chardev,
            "an async handler asked to add a client: not on the tokio adapter"
        );
        AddClient::Refused
    }
}

/// The control of a synchronous in-band handler on the blocking pool
/// ([`super::SyncHandlers::Blocking`]): the [`Inbox`] for everything it queues; what needs the
/// driver at once is asked of the loop ([`DriverRequest`]), and the handler's thread waits for
/// the answer, as the std adapter's dispatcher waits for the driver's lock.
pub(crate) struct BlockingControl(pub(crate) Arc<Inbox>);

impl BlockingControl {
    /// Ask the loop and wait for its answer; `None` when the loop finished first.
    fn ask<T>(&self, request: impl FnOnce(SyncSender<T>) -> DriverRequest) -> Option<T> {
        let (tx, rx) = sync_channel(1);
        self.0.push(Op::Driver(request(tx)));
        rx.recv().ok()
    }
}

impl Control for BlockingControl {
    fn emit_event(&self, name: &str, data: Object) {
        self.0.emit_event(name, data);
    }

    fn set_run_state(&self, state: RunState) {
        self.0.set_run_state(state);
    }

    fn request_shutdown(&self) {
        Control::request_shutdown(&*self.0);
    }

    fn chardevs(&self) -> Vec<String> {
        self.0.chardevs()
    }

    fn yank_chardev(&self, id: &str) -> bool {
        self.0.yank_chardev(id)
    }

    fn session_open(&self, session: ConnId) -> bool {
        self.0.session_open(session)
    }

    fn suspend_hmp_caller(&self, call: CallId) -> bool {
        self.ask(|tx| DriverRequest::SuspendHmpCaller(call, tx))
            .unwrap_or(false)
    }

    fn take_named_fd(&self, monitor: MonitorId, name: &str) -> Result<TakenFd, TakeFdError> {
        self.ask(|tx| DriverRequest::TakeNamedFd(monitor, name.to_owned(), tx))
            .unwrap_or_else(|| Err(TakeFdError::NotFound { name: name.into() }))
    }

    fn add_client(&self, chardev: &str, fd: TakenFd) -> AddClient {
        self.ask(|tx| DriverRequest::AddClient(chardev.to_owned(), fd, tx))
            .unwrap_or(AddClient::Refused)
    }
}

/// The control a sync handler running in the loop task gets ([`super::SyncHandlers::Inline`],
/// out-of-band calls), and the one the loop answers a [`DriverRequest`] through: the
/// [`Inbox`] for everything it queues, plus the driver, lent by the loop for the call, for
/// the requests answered at once: take a named fd, add a client.
pub(crate) struct LoopControl<'a> {
    inbox: &'a Inbox,
    driver: Mutex<&'a mut Driver<OwnedFd>>,
    /// Connections `add_client` opened, for the loop to serve once the handler returns
    /// (bounded by the connection limit the driver enforces).
    added: Mutex<Vec<(ConnId, Stream)>>,
}

impl<'a> LoopControl<'a> {
    pub(crate) fn new(inbox: &'a Inbox, driver: &'a mut Driver<OwnedFd>) -> Self {
        LoopControl {
            inbox,
            driver: Mutex::new(driver),
            added: Mutex::new(Vec::new()),
        }
    }

    /// The connections the handler added, with their streams.
    pub(crate) fn into_added(self) -> Vec<(ConnId, Stream)> {
        self.added.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl Control for LoopControl<'_> {
    fn emit_event(&self, name: &str, data: Object) {
        self.inbox.emit_event(name, data);
    }

    fn set_run_state(&self, state: RunState) {
        self.inbox.set_run_state(state);
    }

    fn request_shutdown(&self) {
        Control::request_shutdown(self.inbox);
    }

    fn chardevs(&self) -> Vec<String> {
        self.inbox.chardevs()
    }

    fn yank_chardev(&self, id: &str) -> bool {
        self.inbox.yank_chardev(id)
    }

    fn session_open(&self, session: ConnId) -> bool {
        self.inbox.session_open(session)
    }

    fn suspend_hmp_caller(&self, call: CallId) -> bool {
        let now = self.inbox.clock.now();
        lock(&self.driver).suspend_hmp_caller(now, call)
    }

    fn take_named_fd(&self, monitor: MonitorId, name: &str) -> Result<TakenFd, TakeFdError> {
        let now = self.inbox.clock.now();
        lock(&self.driver)
            .take_named_fd(now, monitor, name)
            .map(TakenFd::new)
    }

    fn add_client(&self, chardev: &str, fd: TakenFd) -> AddClient {
        let mut driver = lock(&self.driver);
        let Some(l) = driver.listener_of(chardev) else {
            return AddClient::NoSuchChardev;
        };
        let Ok(fd) = fd.downcast::<OwnedFd>() else {
            return AddClient::Refused;
        };
        let stream = match Stream::from_fd(fd) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(chardev, error = %e, "add_client: not a stream socket");
                return AddClient::Refused;
            }
        };
        match driver.handle_added(self.inbox.clock.now(), l) {
            Some(conn) => {
                lock(&self.added).push((conn, stream));
                AddClient::Added(conn)
            }
            None => AddClient::Refused,
        }
    }
}
