//! Where the driver records what it feeds the core: every input, with its (clamped) `now`, in
//! the order the core saw it, so that a live session replays in the simulator to the same
//! output digest. The driver calls the sink in the same step as the input it records; sinks
//! that write files live in the adapters (qmp-io's `FileSink`).

use qmp_core::server::{Input, Instant, Output, Server};

/// Receives every input (and output) of the core, in order.
pub trait TraceSink: Send {
    /// An input applied at `now`.
    fn input(&mut self, now: Instant, input: &Input);
    /// An output the core produced (after the input that caused it).
    fn output(&mut self, output: &Output);
    /// The session is over: write the trailer (the server's digest) and flush.
    fn finish(&mut self, server: &Server);
}
