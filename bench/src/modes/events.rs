//! `events`: fan-out of events to `clients` negotiated monitors; events/s delivered in total.
//!
//! Neither QEMU 7.2 nor a portable client can ask for arbitrary events, so the method is the
//! same for every server: monitor 0 (the driver) alternates `stop` and `cont` with up to
//! `window` requests in flight; each one makes the server broadcast one STOP or RESUME event
//! to every negotiated monitor, the driver included. Every other monitor is read by its own
//! thread. The figure is (events received on all monitors) / (time from the first request to
//! the last event received anywhere). On QEMU each monitor is its own socket chardev (one
//! client each); on qmpd one listener accepts them all.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{socket, Budget};
use crate::client::{is_event, is_return, preview, protocol, Client};
use crate::opts::Opts;
use crate::stats::Outcome;

/// How often a receiver wakes up to check whether the run is over.
const RECV_POLL: Duration = Duration::from_millis(50);

const STOP: &[u8] = b"{\"execute\":\"stop\"}\n";
const CONT: &[u8] = b"{\"execute\":\"cont\"}\n";

pub(super) fn run(opts: &Opts) -> io::Result<Outcome> {
    let mut driver = Client::open(socket(opts, 0), opts.io_timeout, true)?;
    let mut receivers = Vec::with_capacity(opts.clients.saturating_sub(1));
    for i in 1..opts.clients {
        receivers.push(Client::open(socket(opts, i), opts.io_timeout, false)?);
    }
    // Set once the driver knows how many events every monitor must see.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let start = Instant::now();
    let give_up = start + opts.duration + opts.io_timeout;
    let mut handles = Vec::with_capacity(receivers.len());
    for client in receivers {
        let target = Arc::clone(&target);
        handles.push(thread::spawn(move || receive(client, &target, give_up)));
    }

    let budget = Budget::start(opts);
    let mut sent = 0u64;
    let mut replied = 0u64;
    let mut own_events = 0u64;
    let mut last_event = start;
    let window = opts.window as u64;
    // `sent` alternates stop/cont; an even count keeps the guest running at the end.
    while replied < sent || sent & 1 == 1 || budget.more(sent / 2) {
        while sent - replied < window && (sent & 1 == 1 || budget.more(sent / 2)) {
            driver.send(if sent & 1 == 0 { STOP } else { CONT })?;
            sent += 1;
        }
        let line = driver.read_line()?;
        if is_event(line) {
            own_events += 1;
            last_event = Instant::now();
        } else if is_return(line) {
            replied += 1;
        } else {
            return Err(protocol(format!("events: {}", preview(line))));
        }
    }
    // A server sends a command's events before its reply, so the driver has all of its own.
    target.store(sent, Ordering::SeqCst);
    if own_events != sent {
        return Err(protocol(format!(
            "driver saw {own_events} events for {sent} stop/cont requests"
        )));
    }
    let mut total = own_events;
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok((n, last))) => {
                total += n;
                last_event = last_event.max(last);
                if n != sent {
                    first_err = first_err.or(Some(protocol(format!(
                        "a monitor received {n} of {sent} events"
                    ))));
                }
            }
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(io::Error::other("receiver panicked"))),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut out = Outcome::rate(
        &opts.label,
        "events",
        format!(
            "stop/cont on 1 of {} monitors, {} in flight",
            opts.clients, opts.window
        ),
        total,
        last_event.duration_since(start),
        "events/s",
    );
    out.extra.push(("monitors", opts.clients as f64));
    out.extra.push(("requests", sent as f64));
    Ok(out)
}

/// Counts events until `target` of them arrived or `give_up` passed; returns the count and
/// when the last one came.
fn receive(mut client: Client, target: &AtomicU64, give_up: Instant) -> io::Result<(u64, Instant)> {
    client.set_read_timeout(RECV_POLL)?;
    let mut n = 0u64;
    let mut last = Instant::now();
    while n < target.load(Ordering::SeqCst) && Instant::now() < give_up {
        match client.read_line() {
            Ok(line) if is_event(line) => {
                n += 1;
                last = Instant::now();
            }
            Ok(line) => {
                return Err(protocol(format!(
                    "unexpected message on an idle monitor: {}",
                    preview(line)
                )))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((n, last))
}
