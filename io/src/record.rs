//! Recording a live session as a core trace (`--record FILE`).
//!
//! Every input goes through the driver, which hands it to the [`TraceSink`] with its `now`;
//! because the core is deterministic, replaying those inputs (`qmp-sim replay FILE`) reproduces
//! every output byte and the same digest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use qmp_core::hmp::HmpCommand;
use qmp_core::server::trace::{Header, Line, TRACE_FORMAT, TRACE_VERSION};
use qmp_core::server::{CommandSpec, Config, Input, Instant, Output, Server};

pub use qmp_driver::TraceSink;

/// Writes the core's trace format (`qmp_core::server::trace`) to a file as the session goes:
/// the header, one line per input, and the end line with the digest at shutdown. Outputs are
/// not written (replay ignores them, and they would double the file).
pub struct FileSink {
    out: BufWriter<File>,
    inputs: u64,
    failed: bool,
}

impl FileSink {
    /// Create `path` and write the header for a server built from `config` with `specs`
    /// registered in this order.
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
        let mut sink = FileSink {
            out: BufWriter::new(File::create(path)?),
            inputs: 0,
            failed: false,
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
        let ok =
            serde_json::to_writer(&mut self.out, line).is_ok() && self.out.write_all(b"\n").is_ok();
        if !ok {
            // A full disk must not take the monitor down: stop recording, say so once.
            self.failed = true;
            tracing::error!("trace recording failed; the trace file is incomplete");
        }
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
        if self.out.flush().is_err() {
            tracing::error!("cannot flush the trace file");
        }
    }
}

/// A [`FileSink`] for `path`, boxed for [`crate::QmpServerBuilder::record`].
pub fn file_sink(
    path: &Path,
    config: &Config,
    specs: &[CommandSpec],
) -> std::io::Result<Box<dyn TraceSink>> {
    Ok(Box::new(FileSink::create(path, config, specs)?))
}

/// A [`FileSink`] for `path` recording everything `builder` registers (QMP commands, human
/// monitor commands, the core's `human-monitor-command`), boxed for
/// [`crate::QmpServerBuilder::record`].
pub fn file_sink_for(
    path: &Path,
    builder: &crate::QmpServerBuilder,
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
