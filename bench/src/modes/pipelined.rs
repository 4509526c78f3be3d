//! `pipelined`: an OOB-enabled session with up to `window` in-band requests in flight.
//!
//! One thread suffices and keeps the client cheap: every reply already buffered is consumed
//! before the matching number of new requests goes out in a single write.

use std::io;

use super::{expect_return, request, socket, Budget};
use crate::client::Client;
use crate::opts::Opts;
use crate::stats::Outcome;

pub(super) fn run(opts: &Opts) -> io::Result<Outcome> {
    let mut client = Client::open(socket(opts, 0), opts.io_timeout, true)?;
    let one = request(&opts.command);
    let batch: Vec<u8> = one.repeat(opts.window);
    let budget = Budget::start(opts);
    let mut sent = 0u64;
    let mut done = 0u64;
    let first = (opts.window as u64).min(opts.max_ops);
    client.send(&batch[..one.len() * first as usize])?;
    sent += first;
    while done < sent {
        let reply = client.read_reply()?;
        expect_return(reply, "pipelined")?;
        done += 1;
        let mut freed = 1u64;
        while done < sent && client.has_buffered_line() {
            let reply = client.read_reply()?;
            expect_return(reply, "pipelined")?;
            done += 1;
            freed += 1;
        }
        if budget.more(sent) {
            let k = freed.min(opts.max_ops - sent);
            client.send(&batch[..one.len() * k as usize])?;
            sent += k;
        }
    }
    let elapsed = budget.start.elapsed();
    Ok(Outcome::rate(
        &opts.label,
        "pipelined",
        format!("{}, {} in flight, OOB on", opts.command, opts.window),
        done,
        elapsed,
        "req/s",
    ))
}
