//! `large`: requests carrying a `large_size` string as their id, one at a time; MB/s of
//! request bytes accepted (the server echoes the id, as QEMU does, so the reply is as large).
//!
//! QEMU reads one byte per system call (about 5 s per MiB here), so the time limit is
//! checked between requests and at least one request always completes.

use std::io;
use std::time::Instant;

use super::{socket, Budget};
use crate::client::{is_return, preview, protocol, Client};
use crate::opts::Opts;
use crate::stats::{Latencies, Outcome};

pub(super) fn run(opts: &Opts) -> io::Result<Outcome> {
    let mut client = Client::open(socket(opts, 0), opts.io_timeout, false)?;
    let mut req = Vec::with_capacity(opts.large_size + 64);
    req.extend_from_slice(b"{\"execute\":\"");
    req.extend_from_slice(opts.command.as_bytes());
    req.extend_from_slice(b"\",\"id\":\"");
    req.resize(req.len() + opts.large_size, b'x');
    req.extend_from_slice(b"\"}\n");
    let mut lat = Latencies::with_capacity(1024);
    let budget = Budget::start(opts);
    let mut done = 0u64;
    while done == 0 || budget.more(done) {
        let t = Instant::now();
        client.send(&req)?;
        let reply = client.read_reply()?;
        lat.push(t.elapsed());
        // The echoed id is the evidence that the whole string was accepted.
        if !is_return(reply) || reply.len() < opts.large_size {
            return Err(protocol(format!(
                "large: unexpected reply {}",
                preview(reply)
            )));
        }
        done += 1;
    }
    let elapsed = budget.start.elapsed();
    let mut out = Outcome::rate(
        &opts.label,
        "large",
        format!(
            "{} with a {} B string id, echoed",
            opts.command, opts.large_size
        ),
        done,
        elapsed,
        "MB/s",
    )
    .with_latencies(&mut lat);
    out.value = (done as f64 * req.len() as f64) / 1e6 / elapsed.as_secs_f64();
    out.extra
        .push(("req_per_s", done as f64 / elapsed.as_secs_f64()));
    Ok(out)
}
