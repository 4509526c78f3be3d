//! The embedder's commands: specs for the core, handler closures, and the hooks told when a
//! connection closes. Handlers act through [`CallContext`] only, so one registry serves every
//! adapter.
//!
//! A handler is synchronous ([`Handler`]) or asynchronous ([`AsyncHandler`]: it returns a boxed
//! future, so the registry stays runtime-agnostic). An adapter with a runtime starts calls with
//! [`Registry::start`] and awaits what is pending; one without ([`Registry::run`]) drives an
//! async handler to completion on the calling thread ([`block_on`]). Either way the in-band
//! lane stays busy until the call completes: the core's rules (one in-band call at a time, the
//! queue bound, suspension) hold while a handler awaits, and out-of-band calls still run.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use qmp_core::hmp::HmpCommand;
use qmp_core::json::Object;
use qmp_core::server::{ApiMisuse, Call, CallResult, CommandName, CommandSpec, ErrorClass, Server};

use crate::conn::ConnId;
use crate::control::{CallContext, Control};

/// A command handler: runs without any lock held, on the in-band lane's thread or (out-of-band,
/// must not block) the IO side. Arguments were checked by the core against the spec.
pub type Handler = Arc<dyn Fn(&CallContext<'_>, &Object) -> CallResult + Send + Sync>;

/// The future of an [`AsyncHandler`] call: it may borrow the call's context and arguments.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = CallResult> + Send + 'a>>;

/// An asynchronous command handler (an `async fn` boxed): the in-band lane is busy until its
/// future completes. Called out-of-band (allow-oob), it must complete without waiting, as a
/// synchronous out-of-band handler must not block: adapters drive it on the spot.
pub type AsyncHandler =
    Arc<dyn for<'a> Fn(CallContext<'a>, &'a Object) -> CallFuture<'a> + Send + Sync>;

/// A registered handler, of either kind.
#[derive(Clone)]
enum Kind {
    Sync(Handler),
    Async(AsyncHandler),
}

/// Told that a connection closed (after the core was told), with no lock held: a handler
/// blocked on behalf of that client lets go (the demo's `x-oob-test` lock, for one).
pub type SessionHook = Arc<dyn Fn(ConnId) + Send + Sync>;

/// Registered commands by name, and the session hooks.
#[derive(Clone, Default)]
pub struct Registry {
    specs: Vec<CommandSpec>,
    /// Human monitor commands; their handlers are under their call names (`hmp stop`).
    hmp: Vec<HmpCommand>,
    /// QMP `human-monitor-command` is the core's, on the HMP table.
    human_monitor_command: bool,
    handlers: BTreeMap<String, Kind>,
    closed_hooks: Vec<SessionHook>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a command.
    pub fn insert(&mut self, spec: CommandSpec, handler: Handler) {
        self.insert_kind(spec, Kind::Sync(handler));
    }

    /// Add (or replace) a command with an asynchronous handler.
    pub fn insert_async(&mut self, spec: CommandSpec, handler: AsyncHandler) {
        self.insert_kind(spec, Kind::Async(handler));
    }

    fn insert_kind(&mut self, spec: CommandSpec, kind: Kind) {
        self.specs.retain(|s| s.name != spec.name);
        self.handlers.insert(spec.name.clone(), kind);
        self.specs.push(spec);
    }

    /// Add (or replace) a human monitor command; its handler gets the arguments the core's
    /// `args_type` parser produced and returns the text to print (a string), or an error
    /// (printed as `Error: <desc>`).
    pub fn insert_hmp(&mut self, cmd: HmpCommand, handler: Handler) {
        self.hmp
            .retain(|c| !(c.name == cmd.name && c.is_info == cmd.is_info));
        self.handlers.insert(cmd.call_name(), Kind::Sync(handler));
        self.hmp.push(cmd);
    }

    /// Serve QMP `human-monitor-command` with the core's built-in, which runs the line on the
    /// human monitor's table (replaces a `human-monitor-command` inserted before).
    pub fn use_core_human_monitor_command(&mut self) {
        self.specs.retain(|s| s.name != "human-monitor-command");
        self.handlers.remove("human-monitor-command");
        self.human_monitor_command = true;
    }

    /// Whether QMP `human-monitor-command` is the core's
    /// ([`Registry::use_core_human_monitor_command`]).
    pub fn uses_core_human_monitor_command(&self) -> bool {
        self.human_monitor_command
    }

    /// The human monitor commands, in registration order.
    pub fn hmp_specs(&self) -> &[HmpCommand] {
        &self.hmp
    }

    /// Register every command with `server`: the QMP specs, the human monitor's commands and,
    /// if asked for, the core's `human-monitor-command`.
    pub fn register_with(&self, server: &mut Server) -> Result<(), ApiMisuse> {
        for spec in &self.specs {
            server.register(spec.clone())?;
        }
        for cmd in &self.hmp {
            server.register_hmp(cmd.clone())?;
        }
        if self.human_monitor_command {
            server.register_human_monitor_command()?;
        }
        Ok(())
    }

    /// Replace the spec of a registered command, keeping its handler and its place; false
    /// (and nothing changed) when no command has `spec.name`.
    pub fn set_spec(&mut self, spec: CommandSpec) -> bool {
        match self.specs.iter_mut().find(|s| s.name == spec.name) {
            Some(s) => {
                *s = spec;
                true
            }
            None => false,
        }
    }

    /// Be told of every connection that closes.
    pub fn on_session_closed(&mut self, hook: SessionHook) {
        self.closed_hooks.push(hook);
    }

    /// The specs, in registration order (register them with the core in this order).
    pub fn specs(&self) -> &[CommandSpec] {
        &self.specs
    }

    /// Tell the hooks that `session` closed (adapters call this for every
    /// [`crate::Action::CloseConn`], outside any lock).
    pub fn session_closed(&self, session: ConnId) {
        for hook in &self.closed_hooks {
            hook(session);
        }
    }

    /// Run `call`'s handler for `session`. A handler that panics yields a GenericError instead
    /// of taking its thread down; a command with no handler yields QEMU's CommandNotFound. An
    /// async handler is driven to completion on this thread ([`block_on`]).
    pub fn run(&self, control: &dyn Control, call: &Call, session: ConnId) -> CallResult {
        match self.handlers.get(call.command.as_str()) {
            Some(kind) => Self::call(kind, control, call, session),
            None => not_found(call),
        }
    }

    /// Start `call`'s handler for `session`: a synchronous handler runs now; an async one
    /// returns its future, which the adapter polls to completion (on its runtime, without
    /// blocking it) and then completes the call with the result. Panics become GenericErrors
    /// in both cases, as with [`Registry::run`].
    pub fn start<'a>(
        &self,
        control: &'a dyn Control,
        call: &'a Call,
        session: ConnId,
    ) -> Started<'a> {
        match self.handlers.get(call.command.as_str()) {
            Some(Kind::Sync(h)) => Started::Done(Self::call_sync(h, control, call, session)),
            Some(Kind::Async(h)) => Started::Pending(Box::pin(CatchUnwind {
                inner: Self::call_async(h, control, call, session),
                command: call,
            })),
            None => Started::Done(not_found(call)),
        }
    }

    /// Whether `command` has an async handler.
    pub fn is_async(&self, command: &str) -> bool {
        matches!(self.handlers.get(command), Some(Kind::Async(_)))
    }

    /// [`Registry::run`] for a thread that runs many calls: the handler of the last command is
    /// remembered in `cache`, so that a stream of calls of one command skips the name lookup.
    pub fn run_cached(
        &self,
        cache: &mut HandlerCache,
        control: &dyn Control,
        call: &Call,
        session: ConnId,
    ) -> CallResult {
        let kind = match &cache.last {
            Some((name, kind)) if same_name(name, &call.command) => kind,
            _ => match self.handlers.get(call.command.as_str()) {
                Some(kind) => &cache.last.insert((call.command.clone(), kind.clone())).1,
                None => return not_found(call),
            },
        };
        Self::call(kind, control, call, session)
    }

    fn call(kind: &Kind, control: &dyn Control, call: &Call, session: ConnId) -> CallResult {
        match kind {
            Kind::Sync(h) => Self::call_sync(h, control, call, session),
            Kind::Async(h) => block_on(CatchUnwind {
                inner: Self::call_async(h, control, call, session),
                command: call,
            }),
        }
    }

    fn call_sync(
        handler: &Handler,
        control: &dyn Control,
        call: &Call,
        session: ConnId,
    ) -> CallResult {
        let ctx = CallContext::new(control, call, session);
        match catch_unwind(AssertUnwindSafe(|| handler(&ctx, &call.arguments))) {
            Ok(result) => result,
            Err(_) => panicked(call),
        }
    }

    /// The handler's future (or, when making it panicked, a ready GenericError).
    fn call_async<'a>(
        handler: &AsyncHandler,
        control: &'a dyn Control,
        call: &'a Call,
        session: ConnId,
    ) -> CallFuture<'a> {
        let ctx = CallContext::new(control, call, session);
        match catch_unwind(AssertUnwindSafe(|| handler(ctx, &call.arguments))) {
            Ok(future) => future,
            Err(_) => Box::pin(std::future::ready(panicked(call))),
        }
    }
}

/// What [`Registry::start`] came to.
pub enum Started<'a> {
    /// The handler finished (a synchronous one, or a command with no handler).
    Done(CallResult),
    /// An async handler's future: poll it to completion, then complete the call with its result.
    Pending(CallFuture<'a>),
}

/// A handler's future whose panics become a GenericError, as a synchronous handler's do.
struct CatchUnwind<'a> {
    inner: CallFuture<'a>,
    command: &'a Call,
}

impl Future for CatchUnwind<'_> {
    type Output = CallResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CallResult> {
        let this = &mut *self;
        match catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(panicked(this.command)),
        }
    }
}

/// The reply to a call whose handler panicked.
fn panicked(call: &Call) -> CallResult {
    tracing::error!(command = %call.command, "handler panicked");
    CallResult::Error {
        class: ErrorClass::GenericError,
        desc: format!("Command {} failed unexpectedly", call.command),
    }
}

/// Drive `future` to completion on this thread, parking it while the future waits: how an
/// adapter without a runtime (qmp-io's dispatcher thread) runs an async handler. Whatever the
/// future awaits must be woken by something else (another thread, a runtime running
/// elsewhere); a future that needs a runtime's reactor on this very thread never completes.
pub fn block_on<F: Future>(future: F) -> F::Output {
    /// Unparks the blocked thread.
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake between the poll and here leaves the park token set: park returns at once.
        std::thread::park();
    }
}

/// The reply to a call of a command with no handler (the core only calls registered ones, so
/// this is a registration mismatch).
fn not_found(call: &Call) -> CallResult {
    CallResult::Error {
        class: ErrorClass::CommandNotFound,
        desc: format!("The command {} has not been found", call.command),
    }
}

/// The handler of the last command a thread ran, remembered by the identity of the command's
/// name: the core makes one shared [`CommandName`] per registered command and hands a clone of
/// it with every call, so one pointer comparison recognises the command (holding the clone
/// keeps the name alive, so its address cannot be reused for another).
#[derive(Default)]
pub struct HandlerCache {
    last: Option<(CommandName, Kind)>,
}

/// Pointer identity of two command names (see [`HandlerCache`]).
fn same_name(a: &CommandName, b: &CommandName) -> bool {
    std::ptr::eq(a.as_str(), b.as_str())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use qmp_core::json::Value;
    use qmp_core::server::{CallId, Lane, MonitorId, RunState};

    use super::*;

    /// A control that records the events emitted through it.
    #[derive(Default)]
    struct Events(Mutex<Vec<String>>);

    impl Control for Events {
        fn emit_event(&self, name: &str, _data: Object) {
            self.0.lock().unwrap().push(name.to_owned());
        }
        fn set_run_state(&self, _state: RunState) {}
        fn request_shutdown(&self) {}
        fn chardevs(&self) -> Vec<String> {
            Vec::new()
        }
        fn yank_chardev(&self, _id: &str) -> bool {
            false
        }
        fn session_open(&self, _session: ConnId) -> bool {
            true
        }
        fn take_named_fd(
            &self,
            _monitor: MonitorId,
            name: &str,
        ) -> Result<crate::TakenFd, qmp_core::server::TakeFdError> {
            Err(qmp_core::server::TakeFdError::NotFound { name: name.into() })
        }
        fn add_client(&self, _chardev: &str, _fd: crate::TakenFd) -> crate::AddClient {
            crate::AddClient::NoSuchChardev
        }
    }

    fn call(command: &str) -> Call {
        Call {
            id: CallId(7),
            monitor: MonitorId(0),
            lane: Lane::InBand,
            command: command.into(),
            arguments: Object::new(),
        }
    }

    /// An async handler that waits for a value sent from another thread, emitting an event
    /// before and after the wait.
    fn waiting_registry(rx: std::sync::mpsc::Receiver<i64>) -> Registry {
        let rx = Arc::new(Mutex::new(rx));
        let mut r = Registry::new();
        r.insert_async(
            CommandSpec::new("wait"),
            Arc::new(move |ctx, _args| {
                let rx = rx.clone();
                Box::pin(async move {
                    ctx.emit_event("BEFORE", Object::new());
                    let v = Recv(rx).await;
                    ctx.emit_event("AFTER", Object::new());
                    CallResult::Return(Value::Int(v))
                })
            }),
        );
        r.insert_async(
            CommandSpec::new("boom"),
            Arc::new(|_ctx, _args| Box::pin(async { panic!("handler bug") })),
        );
        r
    }

    /// A future that polls a channel, asking to be woken again from a helper thread (a test
    /// stand-in for any runtime's wake-up).
    struct Recv(Arc<Mutex<std::sync::mpsc::Receiver<i64>>>);

    impl Future for Recv {
        type Output = i64;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i64> {
            match self.0.lock().unwrap().try_recv() {
                Ok(v) => Poll::Ready(v),
                Err(_) => {
                    let waker = cx.waker().clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        waker.wake();
                    });
                    Poll::Pending
                }
            }
        }
    }

    #[test]
    fn run_drives_an_async_handler_to_completion_on_the_calling_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        let r = waiting_registry(rx);
        let c = call("wait");
        let events = Events::default();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(42).unwrap();
        });
        assert_eq!(
            r.run(&events, &c, ConnId(1)),
            CallResult::Return(Value::Int(42))
        );
        assert_eq!(*events.0.lock().unwrap(), ["BEFORE", "AFTER"]);
        assert!(r.is_async("wait"));
    }

    #[test]
    fn start_hands_an_async_handler_back_pending_and_a_panic_becomes_an_error() {
        let (tx, rx) = std::sync::mpsc::channel();
        let r = waiting_registry(rx);
        let c = call("wait");
        let events = Events::default();
        let Started::Pending(mut fut) = r.start(&events, &c, ConnId(1)) else {
            panic!("an async handler starts pending");
        };
        let waker = Waker::from(Arc::new(Nothing));
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(*events.0.lock().unwrap(), ["BEFORE"], "ran up to its wait");
        tx.send(5).unwrap();
        assert_eq!(
            fut.as_mut().poll(&mut cx),
            Poll::Ready(CallResult::Return(Value::Int(5)))
        );
        drop(fut);
        let boom = call("boom");
        let Started::Pending(fut) = r.start(&events, &boom, ConnId(1)) else {
            panic!("pending");
        };
        assert_eq!(
            block_on(fut),
            CallResult::Error {
                class: ErrorClass::GenericError,
                desc: "Command boom failed unexpectedly".into()
            }
        );
        assert_eq!(
            r.run(&events, &boom, ConnId(1)),
            CallResult::Error {
                class: ErrorClass::GenericError,
                desc: "Command boom failed unexpectedly".into()
            }
        );
    }

    struct Nothing;
    impl Wake for Nothing {
        fn wake(self: Arc<Self>) {}
    }
}
