//! The README's embedding example: a QMP monitor with three commands of its own.
//!
//! `cargo run -p qmp-io --example embed -- ./my.sock`, then talk to it with `socat` or
//! `qmp-shell`; Ctrl-C stops it.

use qmp_core::json::{Object, Value};
use qmp_core::server::{ArgType, CallResult, CommandSpec, Config};
use qmp_io::{ListenSpec, QmpServerBuilder};

/// QAPI `KvmInfo`, the result of `query-kvm`.
#[derive(serde::Serialize)]
struct KvmInfo {
    enabled: bool,
    present: bool,
}

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./my.sock".into());
    let server = QmpServerBuilder::new(Config::default())
        .listen(ListenSpec::unix(path))
        .handle_signals(true)
        .command(
            CommandSpec::new("query-answer").opt("verbose", ArgType::Bool),
            |_args: &Object| CallResult::Return(Value::Int(42)),
        )
        .command(CommandSpec::new("query-kvm"), |_args: &Object| {
            // A typed result, written straight to QEMU's text (members in QEMU's order).
            CallResult::serialize(&KvmInfo {
                enabled: false,
                present: false,
            })
        })
        .command_with_context(CommandSpec::new("poke"), |ctx, _args| {
            // Events emitted by a handler reach the wire before its reply, as in QEMU.
            ctx.emit_event("POKED", Object::new());
            CallResult::Return(Value::Object(Object::new()))
        })
        .build()?;
    let events = server.handle(); // Clone + Send: emit events from any thread
    std::thread::spawn(move || events.emit_event("POWERDOWN", Object::new()));
    server.run() // until SIGINT/SIGTERM, a `quit` handler, or events.shutdown()
}
