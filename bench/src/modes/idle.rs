//! `idle`: resident memory of the server process with `idle_clients` negotiated connections
//! that send nothing more (VmRSS from /proc/PID/status, before and after connecting).

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use super::{expect_return, request, socket};
use crate::client::{protocol, Client};
use crate::opts::Opts;
use crate::stats::Outcome;

/// Pause after the last connection before RSS is read, so lazily touched pages show up.
const SETTLE: Duration = Duration::from_millis(500);

pub(super) fn run(opts: &Opts) -> io::Result<Outcome> {
    let pid = opts
        .pid
        .ok_or_else(|| protocol("idle needs --pid".into()))?;
    let before = rss_kib(pid)?;
    let start = Instant::now();
    // Three overlapping phases rather than one session after the other: QEMU accepts one
    // client per chardev per main-loop iteration, and with 1,000 chardevs an iteration is slow.
    let mut clients = Vec::with_capacity(opts.idle_clients);
    for i in 0..opts.idle_clients {
        clients.push(Client::connect_only(socket(opts, i), opts.io_timeout)?);
    }
    for c in &mut clients {
        c.read_greeting()?;
        c.send_negotiate(false)?;
    }
    for c in &mut clients {
        c.finish_negotiate()?;
    }
    let connect_time = start.elapsed();
    thread::sleep(SETTLE);
    let after = rss_kib(pid)?;
    // The first and the last session must still be served, or the figure means nothing.
    let req = request(&opts.command);
    for i in [0, clients.len() - 1] {
        clients[i].send(&req)?;
        let reply = clients[i].read_reply()?;
        expect_return(reply, "idle")?;
    }
    let n = clients.len();
    drop(clients);
    let mut out = Outcome::rate(
        &opts.label,
        "idle",
        format!("VmRSS with {n} negotiated idle connections"),
        n as u64,
        connect_time,
        "MiB",
    );
    out.value = after as f64 / 1024.0;
    out.extra.push(("rss_before_mib", before as f64 / 1024.0));
    out.extra.push((
        "kib_per_conn",
        (after as f64 - before as f64) / n.max(1) as f64,
    ));
    Ok(out)
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vmrss(&status).ok_or_else(|| protocol(format!("no VmRSS for pid {pid}")))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_is_read_in_kib() {
        let s = "Name:\tqemu\nVmPeak:\t  10 kB\nVmRSS:\t   41236 kB\nVmData:\t1 kB\n";
        assert_eq!(parse_vmrss(s), Some(41236));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
