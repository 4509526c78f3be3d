//! The README's tokio embedding example: a QMP monitor added to an existing tokio application,
//! with one typed async command and an event emitted from another task.
//!
//! `cargo run -p qmp-io --example embed_tokio -- ./my.sock`, then
//! `{"execute": "qmp_capabilities"}` and
//! `{"execute": "x-resize", "arguments": {"device": "disk0", "size": 2048}}` with `socat` or
//! `qmp-shell`; Ctrl-C stops it.

use std::sync::Arc;
use std::time::Duration;

use qmp_core::json::{Object, Value};
use qmp_core::server::{ArgType, CallResult, CommandSpec, Config, ErrorClass};
use qmp_io::tokio::TokioServerBuilder;
use qmp_io::ListenSpec;
use tokio::sync::Mutex;

/// The application's own state: one disk whose size the monitor may change.
struct Disk {
    name: String,
    size: i64,
}

/// The result of `x-resize` (written in the member order QEMU would give a QAPI struct).
#[derive(serde::Serialize)]
struct Resized {
    device: String,
    #[serde(rename = "old-size")]
    old_size: i64,
    #[serde(rename = "new-size")]
    new_size: i64,
}

/// The command: await the application's lock and its (slow) storage, as QEMU runs
/// `block_resize` in a coroutine. The monitor's in-band lane waits meanwhile; out-of-band
/// commands and the application's other tasks do not.
async fn resize(disk: &Mutex<Disk>, device: &str, size: i64) -> CallResult {
    let mut disk = disk.lock().await;
    if disk.name != device {
        return CallResult::Error {
            class: ErrorClass::DeviceNotFound,
            desc: format!("Device '{device}' not found"),
        };
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // the storage at work
    let old_size = std::mem::replace(&mut disk.size, size);
    CallResult::serialize(&Resized {
        device: device.to_owned(),
        old_size,
        new_size: size,
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./my.sock".into());
    let disk = Arc::new(Mutex::new(Disk {
        name: "disk0".into(),
        size: 1024,
    }));

    let d = disk.clone();
    let server = TokioServerBuilder::new(Config::default())
        .listen(ListenSpec::unix(path))
        .handle_signals(true)
        .async_command(
            CommandSpec::new("x-resize")
                .arg("device", ArgType::String)
                .arg("size", ArgType::Int),
            move |_ctx, args| {
                let disk = d.clone();
                // The core checked the arguments against the spec before the call.
                let device = args.get("device").and_then(Value::as_str).unwrap_or("");
                let size = args.get("size").and_then(Value::as_i64).unwrap_or(0);
                Box::pin(async move { resize(&disk, device, size).await })
            },
        )
        .build()?;

    // Another task of the application emits events through a handle (Clone + Send).
    let events = server.handle();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            let mut data = Object::new();
            data.insert("offset", Value::Int(0));
            events.emit_event("RTC_CHANGE", data);
        }
    });

    // The monitor is one task among the application's; it ends on SIGINT/SIGTERM or
    // `handle.shutdown()`, with the last replies flushed and the socket file removed.
    server.run().await
}
