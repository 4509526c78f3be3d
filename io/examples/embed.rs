//! The README's embedding example: a QMP monitor with three commands of its own.
//!
//! `cargo run -p qmp-io --example embed -- ./my.sock`, then talk to it with `socat` or
//! `qmp-shell`; Ctrl-C stops it.

use qmp_core::json::Object;
use qmp_core::server::{ArgType, CommandError, CommandSpec, Config, Empty};
use qmp_io::{ListenSpec, QmpServerBuilder, TypedCommands};

/// The arguments of `set-answer` (QAPI member names are kebab-case).
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SetAnswer {
    value: i64,
    dry_run: Option<bool>,
}

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
        // Arguments are checked against the spec (with QEMU's error texts) before the handler
        // gets them as its own type; the result is written straight to QEMU's text.
        .command_typed(
            CommandSpec::new("set-answer")
                .arg("value", ArgType::Int)
                .opt("dry-run", ArgType::Bool),
            |args: SetAnswer| match args.value {
                42 => Ok(Empty {}),
                _ if args.dry_run == Some(true) => Ok(Empty {}),
                v => Err(CommandError::generic(format!("{v} is not the answer"))),
            },
        )
        .command_typed(CommandSpec::new("query-kvm"), |_: Empty| {
            Ok(KvmInfo {
                enabled: false,
                present: false,
            })
        })
        .command_typed_with_context(CommandSpec::new("poke"), |ctx, _: Empty| {
            // Events emitted by a handler reach the wire before its reply, as in QEMU.
            ctx.emit_event("POKED", Object::new());
            Ok(Empty {})
        })
        .build()?;
    let events = server.handle(); // Clone + Send: emit events from any thread
    std::thread::spawn(move || events.emit_event("POWERDOWN", Object::new()));
    server.run() // until SIGINT/SIGTERM, a `quit` handler, or events.shutdown()
}
