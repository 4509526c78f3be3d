//! The seven measuring modes, one file each, and what they share: the loop bound and the
//! pre-serialised requests.

mod connections;
mod events;
mod idle;
mod large;
mod oob;
mod pipelined;
mod sequential;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::opts::{Mode, Opts};
use crate::stats::Outcome;

/// Runs one mode against the server described by `opts`. With `--pid`, the server's CPU
/// time over the whole mode (setup included) is added as `server_cpu_us_per_op` and
/// `server_cpu_share` (CPU seconds per wall second).
pub fn run(mode: Mode, opts: &Opts) -> io::Result<Outcome> {
    let pid = opts.pid.filter(|_| mode != Mode::Idle);
    let cpu_before = pid.map(crate::cpu::cpu_ns).transpose()?;
    let mut out = run_mode(mode, opts)?;
    if let (Some(pid), Some(before)) = (pid, cpu_before) {
        let used = crate::cpu::cpu_ns(pid)?.saturating_sub(before) as f64;
        out.extra
            .push(("server_cpu_us_per_op", used / 1e3 / out.ops.max(1) as f64));
        if out.secs > 0.0 {
            out.extra.push(("server_cpu_share", used / 1e9 / out.secs));
        }
    }
    Ok(out)
}

fn run_mode(mode: Mode, opts: &Opts) -> io::Result<Outcome> {
    match mode {
        Mode::Sequential => sequential::run(opts),
        Mode::Pipelined => pipelined::run(opts),
        Mode::Connections => connections::run(opts),
        Mode::OobLatency => oob::run(opts),
        Mode::Large => large::run(opts),
        Mode::Events => events::run(opts),
        Mode::Idle => idle::run(opts),
    }
}

/// The socket client `i` connects to.
fn socket(opts: &Opts, i: usize) -> &Path {
    &opts.sockets[i % opts.sockets.len()]
}

/// The two bounds of every measuring loop: elapsed time and operation count.
#[derive(Copy, Clone)]
struct Budget {
    start: Instant,
    duration: Duration,
    max_ops: u64,
}

impl Budget {
    fn start(opts: &Opts) -> Budget {
        Budget {
            start: Instant::now(),
            duration: opts.duration,
            max_ops: opts.max_ops,
        }
    }

    /// True while another operation may be started after `done` of them.
    fn more(&self, done: u64) -> bool {
        done < self.max_ops && self.start.elapsed() < self.duration
    }
}

/// `{"execute":"<command>"}` plus a newline.
fn request(command: &str) -> Vec<u8> {
    format!("{{\"execute\":\"{command}\"}}\n").into_bytes()
}

/// The requests of a mode are all the same in-band command; a reply that is not a success
/// means the server lacks it, which must stop the run rather than be counted.
fn expect_return(reply: &[u8], what: &str) -> io::Result<()> {
    if crate::client::is_return(reply) {
        Ok(())
    } else {
        Err(crate::client::protocol(format!(
            "{what}: unexpected reply {}",
            crate::client::preview(reply)
        )))
    }
}
