//! Recording a live session as a core trace (`--record FILE`).
//!
//! Every input goes through the driver, which hands it to the [`TraceSink`] with its `now`;
//! because the core is deterministic, replaying those inputs (`qmp-sim replay FILE`) reproduces
//! every output byte and the same digest.
//!
//! The trace must survive a crash (`kill -9`): lines are buffered under the server lock, and a
//! flusher thread writes the buffer to the file every [`FLUSH_EVERY`], so at most that much of
//! the session is lost; a line cut by the crash is the last one, and `qmp-sim replay` replays
//! every whole input before it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use qmp_core::hmp::HmpCommand;
use qmp_core::server::trace::{Header, Line, TRACE_FORMAT, TRACE_VERSION};
use qmp_core::server::{CommandSpec, Config, Input, Instant, Output, Server};

pub use qmp_driver::TraceSink;

/// Longest a recorded input waits in memory before it is written to the trace file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The file and its buffer, shared by the recording thread (under the server lock) and the
/// flusher thread.
type Out = Arc<Mutex<BufWriter<File>>>;

/// Writes the core's trace format (`qmp_core::server::trace`) to a file as the session goes:
/// the header, one line per input, and the end line with the digest at shutdown. Outputs are
/// not written (replay ignores them, and they would double the file). Buffered lines reach the
/// file within [`FLUSH_EVERY`] (module doc).
pub struct FileSink {
    out: Out,
    inputs: u64,
    failed: bool,
    /// Dropping it stops the flusher.
    stop: Option<mpsc::Sender<()>>,
    flusher: Option<JoinHandle<()>>,
}

/// Flushes `out` every [`FLUSH_EVERY`] until `stop` is dropped or sent to.
fn flush_periodically(out: Out, stop: mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(FLUSH_EVERY) {
            Err(RecvTimeoutError::Timeout) => {
                let mut w = out.lock().unwrap_or_else(PoisonError::into_inner);
                if w.flush().is_err() {
                    tracing::error!("cannot flush the trace file");
                    return;
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl FileSink {
    /// Create `path`, write the header for a server built from `config` with `specs`
    /// registered in this order, and start the flusher thread.
    pub fn create(path: &Path, config: &Config, specs: &[CommandSpec]) -> std::io::Result<Self> {
        Self::create_with_hmp(path, config, specs, &[], false)
    }

    /// [`FileSink::create`] for a server with human monitor commands (`hmp`) and, when
    /// `human_monitor_command`, the core's QMP `human-monitor-command`.
    pub fn create_with_hmp(
        path: &Path,
        config: &Config,
        specs: &[CommandSpec],
        hmp: &[HmpCommand],
        human_monitor_command: bool,
    ) -> std::io::Result<Self> {
        let out: Out = Arc::new(Mutex::new(BufWriter::new(File::create(path)?)));
        let (stop, stopped) = mpsc::channel();
        let flusher = {
            let out = Arc::clone(&out);
            std::thread::Builder::new()
                .name("qmp-record".into())
                .spawn(move || flush_periodically(out, stopped))?
        };
        let mut sink = FileSink {
            out,
            inputs: 0,
            failed: false,
            stop: Some(stop),
            flusher: Some(flusher),
        };
        sink.line(&Line::Header(Header {
            format: TRACE_FORMAT.to_owned(),
            version: TRACE_VERSION,
            seed: None,
            config: config.clone(),
            commands: specs.to_vec(),
            hmp_commands: hmp.to_vec(),
            human_monitor_command,
        }));
        if sink.failed {
            return Err(std::io::Error::other("cannot write the trace header"));
        }
        Ok(sink)
    }

    fn line(&mut self, line: &Line) {
        if self.failed {
            return;
        }
        let mut w = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let ok = serde_json::to_writer(&mut *w, line).is_ok() && w.write_all(b"\n").is_ok();
        drop(w);
        if !ok {
            // A full disk must not take the monitor down: stop recording, say so once.
            self.failed = true;
            tracing::error!("trace recording failed; the trace file is incomplete");
        }
    }

    /// Stop the flusher and flush what is left.
    fn close(&mut self) {
        self.stop.take();
        if let Some(f) = self.flusher.take() {
            let _ = f.join();
        }
        let mut w = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if w.flush().is_err() {
            tracing::error!("cannot flush the trace file");
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.close();
    }
}

impl TraceSink for FileSink {
    fn input(&mut self, now: Instant, input: &Input) {
        self.inputs += 1;
        self.line(&Line::Input {
            now: now.0,
            input: input.clone(),
        });
    }

    fn output(&mut self, _output: &Output) {}

    fn finish(&mut self, server: &Server) {
        let end = Line::End {
            digest: server.digest().hex(),
            inputs: self.inputs,
        };
        self.line(&end);
        self.close();
    }
}

/// A [`FileSink`] for `path`, boxed for [`crate::Builder::record`].
pub fn file_sink(
    path: &Path,
    config: &Config,
    specs: &[CommandSpec],
) -> std::io::Result<Box<dyn TraceSink>> {
    Ok(Box::new(FileSink::create(path, config, specs)?))
}

/// A [`FileSink`] for `path` recording everything `builder` registers (QMP commands, human
/// monitor commands, the core's `human-monitor-command`), boxed for
/// [`crate::Builder::record`] (either adapter).
pub fn file_sink_for<A>(
    path: &Path,
    builder: &crate::Builder<A>,
) -> std::io::Result<Box<dyn TraceSink>> {
    file_sink_with(path, builder.config(), builder.registry())
}

/// A [`FileSink`] for `path` recording everything `registry` registers (as [`file_sink_for`],
/// for any adapter's builder), boxed.
pub fn file_sink_with(
    path: &Path,
    config: &Config,
    registry: &crate::Registry,
) -> std::io::Result<Box<dyn TraceSink>> {
    Ok(Box::new(FileSink::create_with_hmp(
        path,
        config,
        registry.specs(),
        registry.hmp_specs(),
        registry.uses_core_human_monitor_command(),
    )?))
}
