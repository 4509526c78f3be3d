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

/// Runs one mode against the server described by `opts`.
pub fn run(mode: Mode, opts: &Opts) -> io::Result<Outcome> {
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
