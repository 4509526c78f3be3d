//! qmpd's demo machine: the commands of QEMU 7.2 `-machine none` that qmpd implements, with
//! QEMU's reply shapes, events and error texts, plus two test-only commands, registered only
//! when asked for (`qmpd --test-commands`):
//!
//! * `x-oob-test {lock: bool}` (QEMU 2.12's test command, allow-oob): in-band `lock: true`
//!   holds the in-band lane until an out-of-band `lock: false` arrives (a semaphore: an unlock
//!   sent first lets the next lock through at once), or until the client that asked for the
//!   lock disconnects, so that a client that dies holding it does not stop every later client
//!   from negotiating. It is an async handler: the lock awaits (on the tokio adapter the
//!   runtime goes on; the std adapter's dispatcher thread parks in it, as it would block).
//! * `x-emit-event {event: str, data?: object}`: emits that event as if the machine had, so
//!   throttling (e.g. `RTC_CHANGE`) can be observed from outside.
//!
//! `add_client` takes a named fd through the control interface and makes it a client of one of
//! qmpd's chardevs.
//!
//! It is written against the driver's [`crate::Control`] interface only, so every adapter (and
//! the simulator) runs the same machine as `qmpd`.
//!
//! The fd commands (`getfd`, `closefd`, `add-fd`, `remove-fd`, `query-fdsets`), `qmp_capabilities`,
//! `query-version` and `query-commands` are built into qmp-core and need nothing here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use crate::{AddClient, CallContext, CallFuture, ConnId, Registry};
use qmp_core::json::{Object, Value};
use qmp_core::server::{
    ArgType, CallResult, CommandSpec, ErrorClass, FlatUnion, Member, RunState, Variant,
};
use serde::Serialize;

use qmp_core::hmp::HmpCommand;

pub mod schema;

/// The machine's state, shared by every handler.
pub struct Machine {
    running: Mutex<bool>,
    /// QEMU's preconfig phase (`-preconfig`): the machine is not initialised yet.
    prelaunch: AtomicBool,
    /// `x-oob-test`'s semaphore: in-band `lock: true` waits for it, out-of-band `lock: false`
    /// posts it (QEMU 2.12's `qemu_sem_wait`/`qemu_sem_post`).
    oob_test: Mutex<OobTest>,
    /// Planted bug (simulator only): a lock outlives its holder's connection.
    #[cfg(feature = "planted")]
    lock_outlives_holder: AtomicBool,
    /// Set at shutdown so a blocked `x-oob-test` lets the dispatcher go.
    stopping: AtomicBool,
    /// `info version` text: `<major>.<minor>.<micro><package>`.
    version_text: String,
}

/// `x-oob-test`'s state.
#[derive(Default)]
struct OobTest {
    /// Posts not yet consumed.
    count: u64,
    /// Sessions whose `lock: true` waits now (bounded by the in-band lanes: one).
    waiting: BTreeSet<ConnId>,
    /// Of those, the ones whose connection closed: their wait ends.
    gone: BTreeSet<ConnId>,
    /// The wakers of the waiting locks (one per session in `waiting`).
    wakers: BTreeMap<ConnId, Waker>,
}

impl OobTest {
    /// Every waiting lock looks again (a post, a close, shutdown).
    fn wake_all(&mut self) {
        for (_, w) in std::mem::take(&mut self.wakers) {
            w.wake();
        }
    }
}

/// A waiting lock whose future was dropped (the adapter cancelled it at shutdown) leaves no
/// trace in the semaphore.
struct Waiting<'a> {
    machine: &'a Machine,
    session: ConnId,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = self.machine.oob_state();
        st.waiting.remove(&self.session);
        st.gone.remove(&self.session);
        st.wakers.remove(&self.session);
    }
}

fn spec(name: &str, allow_oob: bool, allow_preconfig: bool, arguments: Vec<Member>) -> CommandSpec {
    CommandSpec {
        name: name.into(),
        allow_oob,
        allow_preconfig,
        arguments,
        ..CommandSpec::default()
    }
}

fn member(name: &str, ty: ArgType, optional: bool) -> Member {
    match optional {
        true => Member::optional(name, ty),
        false => Member::required(name, ty),
    }
}

fn empty() -> CallResult {
    CallResult::Return(Value::Object(Object::new()))
}

fn generic(desc: impl Into<String>) -> CallResult {
    CallResult::Error {
        class: ErrorClass::GenericError,
        desc: desc.into(),
    }
}

// Results are QAPI structs serialised straight to QEMU's text (`CallResult::serialize`), as a
// QEMU handler's struct goes through the output visitor; members are declared in QAPI's order
// and the serialiser puts them in QEMU's wire order.

/// QAPI `StatusInfo` (`query-status`).
#[derive(Serialize)]
struct StatusInfo {
    running: bool,
    singlestep: bool,
    /// A `RunState` value.
    status: &'static str,
}

/// QAPI `YankInstance` of type `chardev` (`query-yank`).
#[derive(Serialize)]
struct YankInstance<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
}

/// An object of `N` members, built at its final size with the values moved in (handlers build
/// one per call).
fn obj<const N: usize>(members: [(&str, Value); N]) -> Object {
    let mut o = Object::with_capacity(N);
    for (k, v) in members {
        // The demo's member lists are literals with distinct keys: no duplicate scan.
        debug_assert!(!o.contains_key(k), "duplicate member {k}");
        o.push_unchecked(k.into(), v);
    }
    o
}

impl Machine {
    /// A running machine whose `info version` reads from `version` (`query-version`'s object).
    pub fn new(version: &Value) -> Arc<Self> {
        Arc::new(Machine {
            running: Mutex::new(true),
            prelaunch: AtomicBool::new(false),
            oob_test: Mutex::new(OobTest::default()),
            #[cfg(feature = "planted")]
            lock_outlives_holder: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            version_text: version_text(version),
        })
    }

    /// Start in QEMU's preconfig phase (`-preconfig`): not running, status `prelaunch`, until
    /// `x-exit-preconfig` (the server's config must start in [`RunState::Preconfig`] too).
    pub fn start_in_preconfig(&self) {
        self.prelaunch.store(true, Ordering::SeqCst);
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = false;
    }

    /// In the preconfig phase.
    pub fn is_prelaunch(&self) -> bool {
        self.prelaunch.load(Ordering::SeqCst)
    }

    /// `x-exit-preconfig` (`qmp_x_exit_preconfig`): the machine is initialised and, as QEMU
    /// without `-S` does, started (RESUME). Refused once it is initialised.
    pub fn exit_preconfig(&self, ctx: &CallContext<'_>) -> Result<(), String> {
        if !self.prelaunch.swap(false, Ordering::SeqCst) {
            return Err("The command is permitted only before machine initialization".into());
        }
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = true;
        ctx.set_run_state(RunState::Running);
        ctx.emit_event("RESUME", Object::new());
        Ok(())
    }

    /// `VM status: ...` of `info status`.
    fn status_text(&self) -> String {
        let state = if self.is_prelaunch() {
            "paused (prelaunch)"
        } else if self.is_running() {
            "running"
        } else {
            "paused"
        };
        format!("VM status: {state}\n")
    }

    /// Whether the VM runs.
    pub fn is_running(&self) -> bool {
        *self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `info version`'s text.
    pub fn version_text(&self) -> &str {
        &self.version_text
    }

    /// `stop`: QEMU emits STOP only when the VM was running.
    pub fn stop(&self, ctx: &CallContext<'_>) {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if *r {
            *r = false;
            drop(r);
            ctx.set_run_state(RunState::Paused);
            ctx.emit_event("STOP", Object::new());
        }
    }

    /// `cont`: RESUME only when the VM was stopped (QEMU 7.2 answers a plain `{}` otherwise).
    pub fn cont(&self, ctx: &CallContext<'_>) {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !*r {
            *r = true;
            drop(r);
            ctx.set_run_state(RunState::Running);
            ctx.emit_event("RESUME", Object::new());
        }
    }

    /// `system_powerdown`: POWERDOWN (no guest to react in `-machine none`).
    pub fn powerdown(&self, ctx: &CallContext<'_>) {
        ctx.emit_event("POWERDOWN", Object::new());
    }

    /// `quit`: SHUTDOWN, then (once the reply is out) the server stops.
    pub fn quit(&self, ctx: &CallContext<'_>) {
        ctx.emit_event(
            "SHUTDOWN",
            obj([
                ("guest", Value::Bool(false)),
                ("reason", Value::string("host-qmp-quit")),
            ]),
        );
        ctx.request_shutdown();
    }

    /// Release anything a handler blocks on (called at shutdown).
    pub fn release(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.oob_state().wake_all();
    }

    fn oob_state(&self) -> MutexGuard<'_, OobTest> {
        self.oob_test.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Planted bug (simulator only): `x-oob-test`'s lock is not let go when its holder
    /// disconnects, so the in-band lane stays blocked for every later client.
    #[cfg(feature = "planted")]
    pub fn plant_lock_outlives_holder(&self) {
        self.lock_outlives_holder.store(true, Ordering::SeqCst);
    }

    /// `x-oob-test {lock: false}`: post.
    fn oob_unlock(&self) {
        let mut st = self.oob_state();
        st.count = st.count.saturating_add(1);
        st.wake_all();
    }

    /// `x-oob-test {lock: true}`: wait for a post, the holder's close or shutdown.
    async fn oob_lock(&self, ctx: &CallContext<'_>) {
        let session = ctx.session();
        {
            let mut st = self.oob_state();
            st.waiting.insert(session);
            // Registered first, then checked: a close before this look is seen here, one
            // after it is seen by `session_closed` (which finds the session waiting).
            if !ctx.session_open() {
                st.gone.insert(session);
            }
        }
        let _waiting = Waiting {
            machine: self,
            session,
        };
        std::future::poll_fn(|cx| {
            let mut st = self.oob_state();
            if st.count == 0 && !st.gone.contains(&session) && !self.stopping.load(Ordering::SeqCst)
            {
                st.wakers.insert(session, cx.waker().clone());
                return Poll::Pending;
            }
            if !st.gone.contains(&session) {
                st.count = st.count.saturating_sub(1);
            }
            Poll::Ready(())
        })
        .await
    }

    /// A connection closed: a lock it waits for is let go.
    fn session_closed(&self, session: ConnId) {
        #[cfg(feature = "planted")]
        if self.lock_outlives_holder.load(Ordering::SeqCst) {
            return;
        }
        let mut st = self.oob_state();
        if st.waiting.contains(&session) {
            st.gone.insert(session);
            st.wake_all();
        }
    }

    /// Register every command of the demo machine in `r`; the test commands `x-oob-test` and
    /// `x-emit-event` only when `test_commands` is set.
    pub fn register(self: &Arc<Self>, r: &mut Registry, test_commands: bool) {
        let m = self.clone();
        r.on_session_closed(Arc::new(move |s| m.session_closed(s)));
        let b = Builder(r);
        let m = self.clone();
        let b = b.command_with_context(spec("query-status", false, true, vec![]), move |_, _| {
            let running = m.is_running();
            CallResult::serialize(&StatusInfo {
                running,
                singlestep: false,
                status: if m.is_prelaunch() {
                    "prelaunch"
                } else if running {
                    "running"
                } else {
                    "paused"
                },
            })
        });
        let b = b.command(spec("query-name", false, true, vec![]), |_| empty());
        let m = self.clone();
        let b = b.command_with_context(spec("stop", false, false, vec![]), move |ctx, _| {
            m.stop(ctx);
            empty()
        });
        let m = self.clone();
        // Not allowed in preconfig (QEMU 7.2, checked live).
        let b = b.command_with_context(spec("cont", false, false, vec![]), move |ctx, _| {
            m.cont(ctx);
            empty()
        });
        let m = self.clone();
        let b = b.command_with_context(
            spec("system_powerdown", false, false, vec![]),
            move |ctx, _| {
                m.powerdown(ctx);
                empty()
            },
        );
        let m = self.clone();
        let b = b.command_with_context(spec("quit", false, true, vec![]), move |ctx, _| {
            m.quit(ctx);
            empty()
        });
        let b = b.command_with_context(spec("query-yank", true, false, vec![]), |ctx, _| {
            let chardevs = ctx.chardevs();
            let list: Vec<_> = chardevs
                .iter()
                .map(|id| YankInstance {
                    kind: "chardev",
                    id,
                })
                .collect();
            CallResult::serialize(&list)
        });
        // QAPI's YankInstance: a flat union on `type`.
        let variant = |value: &str, members: Vec<Member>| Variant {
            value: value.into(),
            members,
        };
        let instance = ArgType::Union {
            base: vec![member(
                "type",
                ArgType::Enum(vec![
                    "block-node".into(),
                    "chardev".into(),
                    "migration".into(),
                ]),
                false,
            )],
            union: FlatUnion {
                discriminator: "type".into(),
                variants: vec![
                    variant(
                        "block-node",
                        vec![member("node-name", ArgType::String, false)],
                    ),
                    variant("chardev", vec![member("id", ArgType::String, false)]),
                    variant("migration", vec![]),
                ],
            },
        };
        let b = b.command_with_context(
            spec(
                "yank",
                true,
                false,
                vec![member(
                    "instances",
                    ArgType::List(Box::new(instance)),
                    false,
                )],
            ),
            yank,
        );
        let b = b.command_with_context(
            spec(
                "add_client",
                false,
                false,
                vec![
                    member("protocol", ArgType::String, false),
                    member("fdname", ArgType::String, false),
                    member("skipauth", ArgType::Bool, true),
                    member("tls", ArgType::Bool, true),
                ],
            ),
            add_client,
        );
        let b = b.command(spec("migrate-pause", true, false, vec![]), |_| {
            generic("migrate-pause is currently only supported during postcopy-active state")
        });
        let m = self.clone();
        let b = b.test_async_command(
            test_commands,
            spec(
                "x-oob-test",
                true,
                false,
                vec![member("lock", ArgType::Bool, false)],
            ),
            move |ctx, args| {
                let m = m.clone();
                let lock = args.get("lock").and_then(Value::as_bool).unwrap_or(false);
                Box::pin(async move {
                    if lock {
                        m.oob_lock(&ctx).await;
                    } else {
                        m.oob_unlock();
                    }
                    empty()
                })
            },
        );
        let m = self.clone();
        let b = b.command_with_context(
            spec("x-exit-preconfig", false, true, vec![]).unstable(),
            move |ctx, _| match m.exit_preconfig(ctx) {
                Ok(()) => empty(),
                Err(e) => generic(e),
            },
        );
        let b = self.register_hmp(b);
        b.test_command(
            test_commands,
            spec(
                "x-emit-event",
                false,
                false,
                vec![
                    member("event", ArgType::String, false),
                    member("data", ArgType::Any, true),
                ],
            ),
            |ctx, args| {
                let name = args
                    .get("event")
                    .and_then(Value::as_json_string)
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default();
                let data = match args.get("data") {
                    None => Object::new(),
                    Some(Value::Object(o)) => o.clone(),
                    Some(_) => {
                        return generic("Invalid parameter type for 'data', expected: object")
                    }
                };
                ctx.emit_event(&name, data);
                empty()
            },
        );
    }
}

impl Machine {
    /// An HMP command whose handler may fail (printed as `Error: <desc>`, as QEMU's
    /// `hmp_handle_error`).
    fn hmp_fallible<'a, F>(self: Arc<Self>, b: Builder<'a>, cmd: HmpCommand, f: F) -> Builder<'a>
    where
        F: Fn(&CallContext<'_>) -> Result<String, String> + Send + Sync + 'static,
    {
        b.0.insert_hmp(
            cmd,
            Arc::new(move |ctx, _| match f(ctx) {
                Ok(text) => CallResult::Return(Value::string(text)),
                Err(e) => generic(e),
            }),
        );
        b
    }

    /// The human monitor's commands (QEMU 7.2's names, parameters, help texts and flags), and
    /// QMP `human-monitor-command` running them (the core's).
    fn register_hmp<'a>(self: &Arc<Self>, b: Builder<'a>) -> Builder<'a> {
        b.0.use_core_human_monitor_command();
        let m = self.clone();
        let b = b.hmp(
            HmpCommand::new("cont|c", "", "", "resume emulation"),
            move |ctx| {
                m.cont(ctx);
                String::new()
            },
        );
        let m = self.clone();
        let b = b.hmp(
            HmpCommand::new("stop|s", "", "", "stop emulation"),
            move |ctx| {
                m.stop(ctx);
                String::new()
            },
        );
        let m = self.clone();
        let b = b.hmp(
            HmpCommand::new("quit|q", "", "", "quit the emulator").flags("p"),
            move |ctx| {
                // `hmp_quit`: no prompt after it (refused through human-monitor-command).
                ctx.suspend_hmp_monitor();
                m.quit(ctx);
                String::new()
            },
        );
        let m = self.clone();
        let b = b.hmp(
            HmpCommand::new("system_powerdown", "", "", "send system power down event"),
            move |ctx| {
                m.powerdown(ctx);
                String::new()
            },
        );
        let m = self.clone();
        let b = b.hmp(
            HmpCommand::info(
                "status",
                "",
                "",
                "show the current VM status (running|paused)",
            )
            .flags("p"),
            move |_| m.status_text(),
        );
        let m = self.clone();
        let b = b.hmp(
            HmpCommand::info("version", "", "", "show the version of QEMU").flags("p"),
            move |_| format!("{}\n", m.version_text()),
        );
        let m = self.clone();
        let b = self.clone().hmp_fallible(
            b,
            HmpCommand::new("exit_preconfig", "", "", "exit the preconfig state").flags("p"),
            move |ctx| m.exit_preconfig(ctx).map(|()| String::new()),
        );
        // `info name` prints nothing when the VM has no name (qmpd has none, like QEMU
        // without -name).
        b.hmp(
            HmpCommand::info("name", "", "", "show the current VM name").flags("p"),
            |_| String::new(),
        )
    }
}

/// Chained registration into a [`Registry`], as the demo reads best.
struct Builder<'a>(&'a mut Registry);

impl Builder<'_> {
    /// A human monitor command whose handler returns the text to print.
    fn hmp<F>(self, cmd: HmpCommand, handler: F) -> Self
    where
        F: Fn(&CallContext<'_>) -> String + Send + Sync + 'static,
    {
        self.0.insert_hmp(
            cmd,
            Arc::new(move |ctx, _| CallResult::Return(Value::string(handler(ctx)))),
        );
        self
    }

    fn command_with_context<F>(self, spec: CommandSpec, handler: F) -> Self
    where
        F: Fn(&CallContext<'_>, &Object) -> CallResult + Send + Sync + 'static,
    {
        self.0.insert(spec, Arc::new(handler));
        self
    }

    fn command<F>(self, spec: CommandSpec, handler: F) -> Self
    where
        F: Fn(&Object) -> CallResult + Send + Sync + 'static,
    {
        self.command_with_context(spec, move |_, args| handler(args))
    }

    /// A test command with an async handler: registered only when `on`.
    fn test_async_command<F>(self, on: bool, spec: CommandSpec, handler: F) -> Self
    where
        F: for<'a> Fn(CallContext<'a>, &'a Object) -> CallFuture<'a> + Send + Sync + 'static,
    {
        if on {
            self.0.insert_async(spec, Arc::new(handler));
        }
        self
    }

    /// A test command: registered only when `on`.
    fn test_command<F>(self, on: bool, spec: CommandSpec, handler: F) -> Self
    where
        F: Fn(&CallContext<'_>, &Object) -> CallResult + Send + Sync + 'static,
    {
        if on {
            self.command_with_context(spec, handler)
        } else {
            self
        }
    }
}

/// `yank`: the core checked the union's shape with the marshaller's texts. Only chardev
/// instances exist (the listeners); yanking one drops its clients, as QEMU's chardev yank shuts
/// the socket down. Nothing is yanked unless every instance exists (QEMU checks all first).
fn yank(ctx: &CallContext<'_>, args: &Object) -> CallResult {
    let list = args
        .get("instances")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut targets = Vec::new();
    for inst in list {
        let o = inst.as_object();
        let field = |k: &str| o.and_then(|o| o.get(k)).and_then(Value::as_str);
        match (field("type"), field("id")) {
            (Some("chardev"), Some(id)) if ctx.chardevs().iter().any(|c| c == id) => {
                targets.push(id.to_owned())
            }
            _ => return not_found(),
        }
    }
    for id in targets {
        ctx.yank_chardev(&id);
    }
    empty()
}

/// `add_client` (QEMU 7.2 `qmp_add_client`): the named fd is taken first, so every later
/// failure has used it up (and closes it). A chardev id as protocol makes the stream a client
/// of that listener (`qemu_chr_add_client`), refused ("failed to add client") when the
/// listener takes no client now. The display protocols answer as QEMU 7.2 (built with SPICE,
/// VNC and D-Bus display) does with no display configured, as in `-display none`: `spice` and
/// `@dbus-display` are not in use; `vnc` returns `{}` (QEMU's `vnc_display_add_client` finds no
/// display and keeps the descriptor open forever; qmpd closes it).
fn add_client(ctx: &CallContext<'_>, args: &Object) -> CallResult {
    let text = |k: &str| {
        args.get(k)
            .and_then(Value::as_json_string)
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    };
    let (protocol, fdname) = (text("protocol"), text("fdname"));
    let fd = match ctx.take_named_fd(&fdname) {
        Ok(fd) => fd,
        Err(e) => return e.to_call_result(),
    };
    let not_active = |desc: &str| CallResult::Error {
        class: ErrorClass::DeviceNotActive,
        desc: desc.into(),
    };
    match protocol.as_str() {
        "spice" => return not_active("SPICE is not in use"),
        "vnc" => return empty(),
        "@dbus-display" => return not_active("D-Bus display is not in use"),
        _ => {}
    }
    match ctx.add_client(&protocol, fd) {
        AddClient::Added(_) => empty(),
        AddClient::Refused => generic("failed to add client"),
        AddClient::NoSuchChardev => generic(format!("protocol '{protocol}' is invalid")),
    }
}

fn not_found() -> CallResult {
    CallResult::Error {
        class: ErrorClass::DeviceNotFound,
        desc: "Instance not found".into(),
    }
}

/// `<major>.<minor>.<micro><package>`, as QEMU's `info version` prints it.
fn version_text(v: &Value) -> String {
    let q = v
        .as_object()
        .and_then(|o| o.get("qemu"))
        .and_then(Value::as_object);
    let n = |k: &str| {
        q.and_then(|q| q.get(k))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let package = v
        .as_object()
        .and_then(|o| o.get("package"))
        .and_then(Value::as_json_string)
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    format!("{}.{}.{}{}", n("major"), n("minor"), n("micro"), package)
}
