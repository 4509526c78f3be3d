//! The embedder's commands: specs for the core and handler closures for the shim, and the
//! context a handler can act through.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use qmp_core::json::Object;
use qmp_core::server::{Call, CallResult, CommandSpec, ErrorClass, Lane, MonitorId, RunState};

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

    /// Run `call`'s handler. A handler that panics yields a GenericError instead of taking its
    /// thread down; a command the shim does not know (the core only calls registered ones)
    /// yields QEMU's CommandNotFound.
    pub fn run(&self, shared: &Shared, call: &Call) -> CallResult {
        let Some(handler) = self.handlers.get(call.command.as_str()) else {
            return CallResult::Error {
                class: ErrorClass::CommandNotFound,
                desc: format!("The command {} has not been found", call.command),
            };
        };
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
