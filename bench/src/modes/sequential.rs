//! `sequential`: one request at a time on one session; round trips/s and latency.

use std::io;
use std::time::Instant;

use super::{expect_return, request, socket, Budget};
use crate::client::Client;
use crate::opts::Opts;
use crate::stats::{Latencies, Outcome};

/// Latency samples kept at most; beyond it the loop stops (a second bound besides time).
const MAX_SAMPLES: u64 = 10_000_000;

pub(super) fn run(opts: &Opts) -> io::Result<Outcome> {
    let mut client = Client::open(socket(opts, 0), opts.io_timeout, false)?;
    let req = request(&opts.command);
    let cap = opts.max_ops.min(MAX_SAMPLES);
    let mut lat = Latencies::with_capacity(cap.min(1 << 20) as usize);
    let budget = Budget::start(opts);
    let mut done = 0u64;
    while done < cap && budget.more(done) {
        let t = Instant::now();
        client.send(&req)?;
        let reply = client.read_reply()?;
        lat.push(t.elapsed());
        expect_return(reply, "sequential")?;
        done += 1;
    }
    let elapsed = budget.start.elapsed();
    Ok(Outcome::rate(
        &opts.label,
        "sequential",
        format!("{} round trips, 1 in flight", opts.command),
        done,
        elapsed,
        "req/s",
    )
    .with_latencies(&mut lat))
}
