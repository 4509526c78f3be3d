//! The embedder's commands: specs for the core, handler closures, and the hooks told when a
//! connection closes. Handlers act through [`CallContext`] only, so one registry serves every
//! adapter.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use qmp_core::hmp::HmpCommand;
use qmp_core::json::Object;
use qmp_core::server::{ApiMisuse, Call, CallResult, CommandName, CommandSpec, ErrorClass, Server};

use crate::conn::ConnId;
use crate::control::{CallContext, Control};

/// A command handler: runs without any lock held, on the in-band lane's thread or (out-of-band,
/// must not block) the IO side. Arguments were checked by the core against the spec.
pub type Handler = Arc<dyn Fn(&CallContext<'_>, &Object) -> CallResult + Send + Sync>;

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
    handlers: BTreeMap<String, Handler>,
    closed_hooks: Vec<SessionHook>,
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

    /// Add (or replace) a human monitor command; its handler gets the arguments the core's
    /// `args_type` parser produced and returns the text to print (a string), or an error
    /// (printed as `Error: <desc>`).
    pub fn insert_hmp(&mut self, cmd: HmpCommand, handler: Handler) {
        self.hmp
            .retain(|c| !(c.name == cmd.name && c.is_info == cmd.is_info));
        self.handlers.insert(cmd.call_name(), handler);
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
    /// of taking its thread down; a command with no handler yields QEMU's CommandNotFound.
    pub fn run(&self, control: &dyn Control, call: &Call, session: ConnId) -> CallResult {
        match self.handlers.get(call.command.as_str()) {
            Some(handler) => Self::call(handler, control, call, session),
            None => not_found(call),
        }
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
        let handler = match &cache.last {
            Some((name, handler)) if same_name(name, &call.command) => handler,
            _ => match self.handlers.get(call.command.as_str()) {
                Some(handler) => &cache.last.insert((call.command.clone(), handler.clone())).1,
                None => return not_found(call),
            },
        };
        Self::call(handler, control, call, session)
    }

    fn call(handler: &Handler, control: &dyn Control, call: &Call, session: ConnId) -> CallResult {
        let ctx = CallContext::new(control, call, session);
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
    last: Option<(CommandName, Handler)>,
}

/// Pointer identity of two command names (see [`HandlerCache`]).
fn same_name(a: &CommandName, b: &CommandName) -> bool {
    std::ptr::eq(a.as_str(), b.as_str())
}
