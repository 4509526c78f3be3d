//! `connections`: `clients` concurrent sessions, each one request at a time; aggregate
//! requests/s and latency over all of them.

use std::io;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::{expect_return, request, socket, Budget};
use crate::client::Client;
use crate::opts::Opts;
use crate::stats::{Latencies, Outcome};

/// Latency samples kept per client at most (the per-thread loop bound besides time).
const MAX_SAMPLES_PER_CLIENT: u64 = 2_000_000;

pub(super) fn run(opts: &Opts) -> io::Result<Outcome> {
    // Connect and negotiate everyone first, so the measured interval is pure request traffic.
    let mut clients = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients {
        clients.push(Client::open(socket(opts, i), opts.io_timeout, false)?);
    }
    let barrier = Arc::new(Barrier::new(opts.clients + 1));
    let per_client = (opts.max_ops / opts.clients as u64).clamp(1, MAX_SAMPLES_PER_CLIENT);
    let mut handles = Vec::with_capacity(opts.clients);
    for mut client in clients {
        let barrier = Arc::clone(&barrier);
        let req = request(&opts.command);
        let duration = opts.duration;
        handles.push(thread::spawn(move || -> io::Result<(u64, Latencies)> {
            let mut lat = Latencies::with_capacity(per_client.min(1 << 18) as usize);
            barrier.wait();
            let start = Instant::now();
            let mut done = 0u64;
            while done < per_client && start.elapsed() < duration {
                let t = Instant::now();
                client.send(&req)?;
                let reply = client.read_reply()?;
                lat.push(t.elapsed());
                expect_return(reply, "connections")?;
                done += 1;
            }
            Ok((done, lat))
        }));
    }
    let budget = Budget::start(opts);
    barrier.wait();
    let mut total = 0u64;
    let mut lat = Latencies::default();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok((n, l))) => {
                total += n;
                lat.extend(l);
            }
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(io::Error::other("client thread panicked"))),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let elapsed = budget.start.elapsed().max(Duration::from_nanos(1));
    Ok(Outcome::rate(
        &opts.label,
        "connections",
        format!(
            "{} clients x {}, 1 in flight each",
            opts.clients, opts.command
        ),
        total,
        elapsed,
        "req/s",
    )
    .with_latencies(&mut lat))
}
