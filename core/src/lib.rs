//! qmp-core: a sans-IO QEMU Monitor Protocol server core.
//!
//! [`server::Server`] is the whole monitor subsystem of one process (every monitor and the
//! session of the client connected to it, the in-band queues and their dispatcher,
//! out-of-band execution, events and their throttle, fds) as a deterministic state machine: it never reads a clock, touches a socket, spawns a thread
//! or draws a random number. Everything that happens to it is an [`server::Input`];
//! everything it wants done is an [`server::Output`]. [`json`] is QEMU 7.2's JSON dialect.
//!
//! # The run-loop contract
//!
//! 1. Apply exactly one input with [`server::Server::handle`], with `now` (a monotonic
//!    [`server::Instant`]) never going backwards. A refused input ([`server::ApiMisuse`])
//!    changed nothing.
//! 2. Drain [`server::Server::poll_output`] until it returns `None`:
//!    * `Call` on [`server::Lane::OutOfBand`]: run it at once (it must not block) and report
//!      [`server::Input::Complete`]; on the in-band lane: run it on the dispatcher, one at a
//!      time, then report `Complete`. Until an OOB call is completed its monitor's input is
//!      held (as QEMU's I/O thread runs the handler before parsing on): nothing after that
//!      request is handled and [`server::Server::wants_read`] is false for it. So an OOB call
//!      must be completed promptly; the core never waits for it otherwise. The result is a
//!      [`server::CallResult`]: a [`json::Value`], a typed (serde) result already written with
//!      [`server::CallResult::serialize`] (the same reply bytes, no value built), or an error.
//!    * `CloseFd`: close the descriptor (outside any lock); the core no longer holds it.
//!    * `Disconnect`: close the connection, then report [`server::Input::Close`].
//!    * `Transmit(m)`: write [`server::Server::pending_output`]`(m)` (any amount) and report
//!      [`server::Input::Written`] with the count.
//! 3. Sleep until the earliest of: [`server::Server::poll_timeout`] (then send
//!    [`server::Input::Tick`]; any input fires due timers, early ticks are harmless), socket
//!    readiness (read only from monitors where [`server::Server::wants_read`] is true), and a
//!    dispatcher wake-up: whenever [`server::Server::dispatcher_ready`] is true, the dispatcher
//!    side sends [`server::Input::NextInBand`] and the same loop runs.
//!
//! A [`server::MonitorId`] names a monitor, one per listener slot, as in QEMU: each client
//! that connects to the slot is an `Open` of the same id and its departure a `Close`; what
//! QEMU keeps on the monitor (named fds, suspensions) waits for the next client.
//! [`server::Input::Destroy`] ends a monitor for good (a listener removed);
//! [`server::Server::shutdown`] ends them all.
//!
//! A monitor is either QMP ([`server::Input::Open`]) or a human monitor, HMP
//! ([`server::Input::OpenHmp`], QEMU's `mode=readline`): same queues, dispatcher, fds and run
//! loop, with QEMU's line editor, command table and texts instead of JSON (see [`hmp`]). Its
//! commands are in-band calls named `hmp <command>` ([`server::Server::register_hmp`]);
//! [`server::Server::register_human_monitor_command`] runs QMP `human-monitor-command` on
//! the same table.
//!
//! # Example
//!
//! A whole session in one thread: a client connects, negotiates, runs a command the embedder
//! implements, and gets an event.
//!
//! ```
//! use qmp_core::json::{Object, Value};
//! use qmp_core::server::*;
//!
//! let mut server = Server::new(Config::default());
//! server.register(CommandSpec::new("query-name")).unwrap();
//! let m = MonitorId(1);
//! let mut now = Instant(0);
//! let mut wire = Vec::new(); // what the client received
//!
//! // Step 2 of the contract, with handlers run inline.
//! fn drain(server: &mut Server, now: Instant, wire: &mut Vec<u8>) {
//!     while let Some(out) = server.poll_output() {
//!         match out {
//!             Output::Call(call) => {
//!                 let result = CallResult::Return(Value::Object(Object::new()));
//!                 server.handle(now, Input::Complete { call: call.id, result }).unwrap();
//!             }
//!             Output::Transmit(m) => {
//!                 let bytes = server.pending_output(m).to_vec();
//!                 wire.extend_from_slice(&bytes);
//!                 server.handle(now, Input::Written { monitor: m, n: bytes.len() }).unwrap();
//!             }
//!             Output::CloseFd(_) | Output::Disconnect { .. } => {}
//!         }
//!     }
//!     // The dispatcher's side of the loop.
//!     while server.dispatcher_ready() {
//!         server.handle(now, Input::NextInBand).unwrap();
//!         drain(server, now, wire);
//!     }
//! }
//!
//! let options = MonitorOptions { oob_capable: true, pretty: false };
//! server.handle(now, Input::Open { monitor: m, options }).unwrap();
//! drain(&mut server, now, &mut wire);
//! for request in [
//!     &b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}"[..],
//!     b"{\"execute\": \"query-name\", \"id\": 7}",
//! ] {
//!     now = now.plus_nanos(1_000);
//!     let input = Input::Receive { monitor: m, bytes: request.to_vec(), fds: vec![] };
//!     server.handle(now, input).unwrap();
//!     drain(&mut server, now, &mut wire);
//! }
//! let stop = Input::Event {
//!     name: "STOP".into(),
//!     data: Object::new(),
//!     timestamp: Timestamp { seconds: 1_700_000_000, microseconds: 5 },
//! };
//! server.handle(now, stop).unwrap();
//! drain(&mut server, now, &mut wire);
//!
//! assert_eq!(
//!     String::from_utf8(wire).unwrap(),
//!     "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \
//!      \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n\
//!      {\"return\": {}}\r\n\
//!      {\"return\": {}, \"id\": 7}\r\n\
//!      {\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 5}, \"event\": \"STOP\"}\r\n"
//! );
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hmp;
pub mod json;
pub mod server;
