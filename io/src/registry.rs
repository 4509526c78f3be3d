//! The embedder's commands: specs for the core and handler closures for the shim, and the
//! context a handler can act through.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use qmp_core::json::Object;
use qmp_core::server::{
    Call, CallResult, CommandName, CommandSpec, ErrorClass, Lane, MonitorId, RunState,
};

use crate::shared::Shared;

/// A command handler: runs without any lock held, on the dispatcher thread (in-band) or the IO
/// thread (out-of-band, must not block). Arguments were checked by the core against the spec.
pub type Handler = Arc<dyn Fn(&CallContext<'_>, &Object) -> CallResult + Send + Sync>;

/// What a handler can see and do besides computing its result.
pub struct CallContext<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) call: &'a Call,
}

impl CallContext<'_> {
    /// The monitor the request came from.
    pub fn monitor(&self) -> MonitorId {
        self.call.monitor
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
        self.shared.emit_event(name, data);
    }

    /// Tell the core the VM run state changed (fd-set cleanup and preconfig depend on it).
    pub fn set_run_state(&self, state: RunState) {
        self.shared.set_run_state(state);
    }

    /// Stop the server once this call's reply has been produced: pending output is flushed,
    /// then every connection is closed (QEMU's `quit`).
    pub fn request_shutdown(&self) {
        self.shared.request_shutdown();
    }

    /// The chardev ids of the listeners (what `query-yank` lists).
    pub fn chardevs(&self) -> &[String] {
        self.shared.chardevs()
    }

    /// Drop the clients of chardev `id` (QEMU's `yank` of a chardev instance); false when there
    /// is no such chardev.
    pub fn yank_chardev(&self, id: &str) -> bool {
        self.shared.yank(id)
    }
}

/// Registered commands by name.
#[derive(Clone, Default)]
pub struct Registry {
    specs: Vec<CommandSpec>,
    handlers: BTreeMap<String, Handler>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a command.
    pub fn insert(&mut self, spec: CommandSpec, handler: Handler) {
        self.specs.retain(|s| s.name != spec.name);
        self.handlers.insert(spec.name.clone(), handler);
        self.specs.push(spec);
    }

    /// The specs, in registration order.
    pub fn specs(&self) -> &[CommandSpec] {
        &self.specs
    }

    /// The handler of command `name`.
    pub fn handler(&self, name: &str) -> Option<Handler> {
        self.handlers.get(name).cloned()
    }

    /// Run `call`'s handler. A handler that panics yields a GenericError instead of taking its
    /// thread down; a command the shim does not know (the core only calls registered ones)
    /// yields QEMU's CommandNotFound.
    pub fn run(&self, shared: &Shared, call: &Call) -> CallResult {
        match self.handlers.get(call.command.as_str()) {
            Some(handler) => Self::call(handler, shared, call),
            None => not_found(call),
        }
    }

    /// [`Registry::run`] for a thread that runs many calls: the handler of the last command is
    /// remembered in `cache`, so that a stream of calls of one command skips the name lookup.
    pub fn run_cached(&self, cache: &mut HandlerCache, shared: &Shared, call: &Call) -> CallResult {
        let handler = match &cache.last {
            Some((name, handler)) if same_name(name, &call.command) => handler,
            _ => match self.handlers.get(call.command.as_str()) {
                Some(handler) => &cache.last.insert((call.command.clone(), handler.clone())).1,
                None => return not_found(call),
            },
        };
        Self::call(handler, shared, call)
    }

    /// Run `handler` for `call`, turning a panic into a GenericError.
    fn call(handler: &Handler, shared: &Shared, call: &Call) -> CallResult {
        let ctx = CallContext { shared, call };
        match catch_unwind(AssertUnwindSafe(|| handler(&ctx, &call.arguments))) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(command = %call.command, "handler panicked");
                CallResult::Error {
                    class: ErrorClass::GenericError,
                    desc: format!("Command {} failed unexpectedly", call.command),
                }
            }
        }
    }
}

/// The reply to a call of a command the shim has no handler for (the core only calls
/// registered ones, so this is a registration mismatch).
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
    last: Option<(CommandName, Handler)>,
}

/// Pointer identity of two command names (see [`HandlerCache`]).
fn same_name(a: &CommandName, b: &CommandName) -> bool {
    std::ptr::eq(a.as_str(), b.as_str())
}

#[cfg(test)]
mod tests {
    use qmp_core::json::{Object, Value};
    use qmp_core::server::{
        Call, CallId, CallResult, CommandName, CommandSpec, Config, Lane, MonitorId, Server,
    };

    use super::{HandlerCache, Registry};
    use crate::clock::SystemClock;
    use crate::shared::{Shared, Wake};
    use crate::sync::Arc;

    struct NoWake;

    impl Wake for NoWake {
        fn wake(&self) {}
    }

    fn answer(text: &'static str) -> super::Handler {
        Arc::new(move |_, _| CallResult::Return(Value::string(text)))
    }

    fn call(command: &CommandName) -> Call {
        Call {
            id: CallId(1),
            monitor: MonitorId(1),
            lane: Lane::InBand,
            command: command.clone(),
            arguments: Object::new(),
        }
    }

    #[test]
    fn the_cached_handler_is_the_one_of_the_calls_command() {
        let mut registry = Registry::new();
        for name in ["a", "b"] {
            let spec = CommandSpec {
                name: name.into(),
                ..CommandSpec::default()
            };
            registry.insert(spec, answer(name));
        }
        let shared = Shared::new(
            Server::new(Config::default()),
            Box::new(NoWake),
            Box::new(SystemClock::new()),
            Vec::new(),
        );
        let (a, b) = (CommandName::from("a"), CommandName::from("b"));
        let mut cache = HandlerCache::default();
        let ran = |cache: &mut HandlerCache, name: &CommandName| {
            registry.run_cached(cache, &shared, &call(name))
        };
        for name in [&a, &a, &b, &a, &b, &b] {
            assert_eq!(
                ran(&mut cache, name),
                CallResult::Return(Value::string(name.as_str())),
                "{name}"
            );
        }
        // The same text in another allocation misses the cache and is looked up by name.
        let a_again = CommandName::from("a");
        assert_eq!(
            ran(&mut cache, &a_again),
            CallResult::Return(Value::string("a"))
        );
        match ran(&mut cache, &CommandName::from("c")) {
            CallResult::Error { desc, .. } => {
                assert_eq!(desc, "The command c has not been found")
            }
            other => panic!("{other:?}"),
        }
    }
}
