//! Recording a live session as a core trace (`--record FILE`).
//!
//! Every input the shim applies goes through [`crate::shared::CoreState::apply_locked`], which
//! hands it to the [`TraceSink`] with its `now`; because the core is deterministic, replaying
//! those inputs (`qmp-sim replay FILE`) reproduces every output byte and the same digest.

use qmp_core::server::{Input, Instant, Output};

/// Receives every input (and output) of the core, in order, under the server lock.
pub trait TraceSink: Send {
    /// An input applied at `now`.
    fn input(&mut self, now: Instant, input: &Input);
    /// An output the core produced (after the input that caused it).
    fn output(&mut self, output: &Output);
    /// The session is over: write any trailer (digest) and flush.
    fn finish(&mut self);
}

/// A sink that writes the core's trace format to `path` (header with `config` and `specs`, one
/// line per input, a final digest line).
pub fn file_sink(
    path: &std::path::Path,
    config: &qmp_core::server::Config,
    specs: &[qmp_core::server::CommandSpec],
) -> std::io::Result<Box<dyn TraceSink>> {
    let _ = (path, config, specs);
    Err(std::io::Error::other(
        "recording needs qmp_core::server::trace::Recorder, which has not landed yet",
    ))
}
