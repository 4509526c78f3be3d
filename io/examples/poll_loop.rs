//! Embedding qmp-driver in an event loop of your own: one thread, `poll(2)`, no qmp-io
//! threads. This is the shape a VMM with its own epoll loop (Cloud Hypervisor, Firecracker)
//! would use: perform the syscalls, report what they returned, do what the driver says.
//!
//!     cargo run -p qmp-io --example poll_loop -- ./poll.sock
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

use qmp_core::json::{Object, Value};
use qmp_core::server::{
    CallResult, CommandSpec, Config, Instant, MonitorId, MonitorOptions, RunState, Server,
    TakeFdError,
};
use qmp_driver::TakenFd;
use qmp_driver::{AcceptFact, Action, AddClient, ConnId, Control, Driver, Limits, ListenerConfig};
use qmp_driver::{ReadFact, Registry, ShutdownCause, WriteFact};
use rustix::event::{poll, PollFd, PollFlags};

/// What handlers ask for, applied to the driver after each call (the loop owns the driver).
#[derive(Default)]
struct Effects(Mutex<Vec<(String, Object)>>, std::sync::atomic::AtomicBool);

impl Control for Effects {
    fn emit_event(&self, name: &str, data: Object) {
        self.0.lock().unwrap().push((name.to_owned(), data));
    }
    fn set_run_state(&self, _: RunState) {}
    fn request_shutdown(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn chardevs(&self) -> Vec<String> {
        vec!["compat_monitor0".into()]
    }
    fn yank_chardev(&self, _: &str) -> bool {
        false
    }
    fn session_open(&self, _: ConnId) -> bool {
        true
    }
    // This example's commands take no fds and add no clients; an embedding whose commands do
    // calls `Driver::take_named_fd` / `Driver::handle_added` from its loop, which owns the
    // driver, and gives the handler the result.
    fn take_named_fd(&self, _: MonitorId, name: &str) -> Result<TakenFd, TakeFdError> {
        Err(TakeFdError::NotFound { name: name.into() })
    }
    fn add_client(&self, _: &str, _: TakenFd) -> AddClient {
        AddClient::NoSuchChardev
    }
}

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./poll.sock".into());
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    let mut registry = Registry::new();
    let answer = |_: &qmp_driver::CallContext<'_>, _: &Object| CallResult::Return(Value::Int(42));
    registry.insert(CommandSpec::new("query-answer"), Arc::new(answer));
    registry.insert(
        CommandSpec::new("quit"),
        Arc::new(|ctx, _| {
            ctx.request_shutdown();
            CallResult::Return(Value::Object(Object::new()))
        }),
    );
    let mut server = Server::new(Config::default());
    for spec in registry.specs() {
        server.register(spec.clone()).expect("distinct names");
    }
    let options = MonitorOptions {
        oob_capable: true,
        pretty: false,
    };
    let monitor = ListenerConfig {
        chardev: "compat_monitor0".into(),
        clients: 4,
        options,
        readline: false,
    };
    let mut d: Driver<OwnedFd> = Driver::new(server, vec![monitor], Limits::default());
    let (effects, origin) = (Effects::default(), std::time::Instant::now());
    let now = || Instant(origin.elapsed().as_nanos() as u64);
    let mut socks: BTreeMap<ConnId, UnixStream> = BTreeMap::new();
    let mut buf = vec![0u8; 32 * 1024];
    while d.running() || !d.shutdown_flushed() {
        // Handlers (out-of-band first; in-band inline, one at a time), then their effects.
        while let Some(c) = d.take_oob_call().or_else(|| d.next_in_band(now())) {
            let result = registry.run(&effects, &c.call, c.session);
            d.complete(now(), c.call.id, result);
            for (name, data) in effects.0.lock().unwrap().drain(..) {
                d.emit_event(now(), &name, data, Default::default());
            }
            if effects.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
                d.request_shutdown(now(), ShutdownCause::Request, Default::default());
            }
        }
        while let Some(action) = d.poll_action() {
            if let Action::CloseConn { conn, .. } = action {
                socks.remove(&conn);
                registry.session_closed(conn);
            } // Action::CloseFd: dropping the descriptor closes it.
        }
        while let Some(c) = d.next_transmit() {
            let fact = match socks.get_mut(&c).map(|s| s.write(d.pending_output(c))) {
                Some(Ok(n)) => WriteFact::Wrote(n),
                Some(Err(e)) if e.kind() == ErrorKind::WouldBlock => WriteFact::WouldBlock,
                Some(Err(e)) => WriteFact::Failed(e.kind()),
                None => continue,
            };
            d.handle_written(now(), c, fact);
        }
        while d.should_accept(0, now()) {
            match listener.accept() {
                Ok((s, _)) => match d.handle_accepted(now(), 0) {
                    Some(id) => drop(s.set_nonblocking(true).map(|()| socks.insert(id, s))),
                    None => break,
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    d.handle_accept_failed(now(), 0, AcceptFact::WouldBlock)
                }
                Err(e) => d.handle_accept_failed(now(), 0, AcceptFact::Failed(e.kind())),
            }
        }
        let ready: Vec<ConnId> = socks
            .keys()
            .copied()
            .filter(|&c| d.should_read(c))
            .collect();
        for c in &ready {
            while let Some(s) = socks.get_mut(c).filter(|_| d.should_read(*c)) {
                let fact = match s.read(&mut buf) {
                    Ok(0) => ReadFact::Eof,
                    Ok(n) => ReadFact::Data {
                        bytes: &buf[..n],
                        fds: Vec::new(),
                        fds_cut: false,
                        capacity: buf.len(),
                    },
                    Err(e) if e.kind() == ErrorKind::WouldBlock => ReadFact::WouldBlock,
                    Err(e) if e.kind() == ErrorKind::Interrupted => ReadFact::Interrupted,
                    Err(e) => ReadFact::Failed(e.kind()),
                };
                d.handle_read(now(), *c, fact);
            }
        }
        if !ready.is_empty()
            || d.transmits().next().is_some()
            || d.dispatcher_ready()
            || !d.running()
        {
            continue; // More work: no sleep (shutdown flushes, then the loop ends).
        }
        // Sleep until a socket is ready or the driver's next deadline.
        let ids: Vec<ConnId> = socks.keys().copied().collect();
        let mut fds = vec![PollFd::new(&listener, PollFlags::IN)];
        for c in &ids {
            let out = if d.write_blocked(*c) {
                PollFlags::OUT
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(&socks[c], PollFlags::IN | out));
        }
        let timeout = d.poll_timeout().map(|t| {
            let ns = t.0.saturating_sub(now().0);
            rustix::event::Timespec {
                tv_sec: (ns / 1_000_000_000) as i64,
                tv_nsec: (ns % 1_000_000_000) as i64,
            }
        });
        poll(&mut fds, timeout.as_ref())?;
        let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        if !revents[0].is_empty() {
            d.handle_listener_ready(0);
        }
        for (c, r) in ids.iter().zip(&revents[1..]) {
            if r.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                d.handle_readable(*c);
            }
            if r.contains(PollFlags::OUT) {
                d.handle_writable(*c);
            }
        }
        d.handle_timeout(now());
    }
    d.finish(now());
    drop(std::fs::remove_file(&path));
    Ok(())
}
