//! Traces: the JSON-lines record of a session, and its replay (ARCHITECTURE.md "Traces").
//!
//! Format `qmp-core-trace` version 2, one JSON object per line:
//!
//! ```text
//! {"header":{"format":"qmp-core-trace","version":2,"seed":null,"config":{…},"commands":[…]}}
//! {"register":{"now":0,"spec":{…}}}          a command registered after the start
//! {"input":{"now":1000,"input":{"Open":{…}}}}   one line per input, with its `now`
//! {"output":{…}}                              optional, for readers; ignored by replay
//! {"end":{"digest":"89ab…","inputs":42}}       the server's output digest at the end
//! ```
//!
//! `Input::Receive` bytes are a string with one char per byte (see `types.rs`). The digest is
//! [`Digest`]: replaying the inputs must reproduce it exactly.
//!
//! Version 1 traces (written before monitors outlived their clients) still replay: there a
//! monitor was one connection, so each of their `Close` inputs is replayed as
//! [`Input::Destroy`], which closes the session and the monitor's named fds in the order
//! version 1's `Close` did, and reproduces their digests.

use serde::{Deserialize, Serialize};

use super::{ApiMisuse, CommandSpec, Config, Digest, Input, Instant, Output, Server};
use crate::hmp::HmpCommand;

/// The format name in the header.
pub const TRACE_FORMAT: &str = "qmp-core-trace";
/// The format version in the header (written by [`Recorder`]).
pub const TRACE_VERSION: u32 = 2;

/// The oldest version [`replay`] reads.
pub const TRACE_VERSION_MIN: u32 = 1;

/// The first line of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`TRACE_FORMAT`].
    pub format: String,
    /// [`TRACE_VERSION`] when written; [`TRACE_VERSION_MIN`]..=[`TRACE_VERSION`] are read.
    pub version: u32,
    /// The simulator seed that produced the trace, if any.
    pub seed: Option<u64>,
    /// The server configuration.
    pub config: Config,
    /// The embedder's commands registered before the first input.
    pub commands: Vec<CommandSpec>,
    /// The embedder's human monitor commands (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hmp_commands: Vec<HmpCommand>,
    /// QMP `human-monitor-command` is the core's built-in (absent when not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub human_monitor_command: bool,
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// The header (first line).
    Header(Header),
    /// A command registered later.
    Register {
        /// Nanoseconds of the driver's clock.
        now: u64,
        /// The command.
        spec: CommandSpec,
    },
    /// One input.
    Input {
        /// Nanoseconds of the driver's clock.
        now: u64,
        /// The input.
        input: Input,
    },
    /// An output, for human readers (replay ignores it).
    Output(Output),
    /// The end: the digest of all output.
    End {
        /// [`Digest::hex`] of the server after the last input.
        digest: String,
        /// Number of input lines.
        inputs: u64,
    },
}

/// Builds a trace while the driver runs a [`Server`].
#[derive(Debug, Default)]
pub struct Recorder {
    text: String,
    inputs: u64,
}

fn push_line(text: &mut String, line: &Line) {
    // Serialising these types cannot fail: no maps with non-string keys, no foreign types.
    if let Ok(s) = serde_json::to_string(line) {
        text.push_str(&s);
        text.push('\n');
    }
}

impl Recorder {
    /// Start a trace for a server built from `config` with `commands` registered.
    pub fn new(config: &Config, commands: &[CommandSpec], seed: Option<u64>) -> Recorder {
        Recorder::with_header(Header {
            format: TRACE_FORMAT.to_owned(),
            version: TRACE_VERSION,
            seed,
            config: config.clone(),
            commands: commands.to_vec(),
            hmp_commands: Vec::new(),
            human_monitor_command: false,
        })
    }

    /// Start a trace with this header.
    pub fn with_header(header: Header) -> Recorder {
        let mut r = Recorder::default();
        push_line(&mut r.text, &Line::Header(header));
        r
    }

    /// Start a trace for an existing server (its config and current commands, human monitor
    /// commands included).
    pub fn for_server(server: &Server, seed: Option<u64>) -> Recorder {
        Recorder::with_header(Header {
            format: TRACE_FORMAT.to_owned(),
            version: TRACE_VERSION,
            seed,
            config: server.config().clone(),
            commands: server.registered_commands().cloned().collect(),
            hmp_commands: server.registered_hmp_commands().cloned().collect(),
            human_monitor_command: server.has_human_monitor_command(),
        })
    }

    /// Record an input (call before or after handing it to the server; only accepted inputs
    /// should be recorded, but a refused one replays as the same refusal).
    pub fn input(&mut self, now: Instant, input: &Input) {
        self.inputs += 1;
        push_line(
            &mut self.text,
            &Line::Input {
                now: now.0,
                input: input.clone(),
            },
        );
    }

    /// Record a later registration.
    pub fn register(&mut self, now: Instant, spec: &CommandSpec) {
        push_line(
            &mut self.text,
            &Line::Register {
                now: now.0,
                spec: spec.clone(),
            },
        );
    }

    /// Record an output for readers.
    pub fn output(&mut self, output: &Output) {
        push_line(&mut self.text, &Line::Output(output.clone()));
    }

    /// Apply an input to the server and record it.
    pub fn handle(
        &mut self,
        server: &mut Server,
        now: Instant,
        input: Input,
    ) -> Result<(), ApiMisuse> {
        self.input(now, &input);
        server.handle(now, input)
    }

    /// The trace so far (without the end line).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Finish with the server's digest.
    pub fn finish(mut self, server: &Server) -> String {
        push_line(
            &mut self.text,
            &Line::End {
                digest: server.digest().hex(),
                inputs: self.inputs,
            },
        );
        self.text
    }
}

/// What a replay found.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayReport {
    /// The digest after the last input.
    pub digest: Digest,
    /// The digest the trace's end line expects, if it has one.
    pub expected: Option<String>,
    /// Input lines applied.
    pub inputs: u64,
    /// Inputs the server refused, with their line numbers (1-based).
    pub misuse: Vec<(usize, ApiMisuse)>,
    /// Outputs polled during the replay.
    pub outputs: u64,
}

impl ReplayReport {
    /// The digest matches the end line (true when there is none).
    pub fn matches(&self) -> bool {
        self.expected
            .as_ref()
            .is_none_or(|e| *e == self.digest.hex())
    }
}

/// Why a trace could not be replayed.
#[derive(Debug)]
pub enum TraceError {
    /// A line is not valid trace JSON.
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// The first line is not a header of a known format/version.
    BadHeader,
    /// A registration was refused (duplicate name).
    Register {
        /// 1-based line number.
        line: usize,
        /// The refusal.
        misuse: ApiMisuse,
    },
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceError::Syntax { line, message } => write!(f, "line {line}: {message}"),
            TraceError::BadHeader => write!(
                f,
                "not a {TRACE_FORMAT} v{TRACE_VERSION_MIN}..v{TRACE_VERSION} trace"
            ),
            TraceError::Register { line, misuse } => write!(f, "line {line}: {misuse}"),
        }
    }
}

impl std::error::Error for TraceError {}

/// Apply a trace's inputs to a fresh server, draining outputs after each, and report the
/// digest. Calls are not completed automatically: completions are inputs in the trace.
pub fn replay(text: &str) -> Result<ReplayReport, TraceError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let parse = |n: usize, l: &str| {
        serde_json::from_str::<Line>(l).map_err(|e| TraceError::Syntax {
            line: n + 1,
            message: e.to_string(),
        })
    };
    let Some((n, first)) = lines.next() else {
        return Err(TraceError::BadHeader);
    };
    let Line::Header(h) = parse(n, first)? else {
        return Err(TraceError::BadHeader);
    };
    if h.format != TRACE_FORMAT || !(TRACE_VERSION_MIN..=TRACE_VERSION).contains(&h.version) {
        return Err(TraceError::BadHeader);
    }
    let v1 = h.version == 1;
    let mut server = Server::new(h.config);
    let register_error = |misuse| TraceError::Register {
        line: n + 1,
        misuse,
    };
    for spec in h.commands {
        server.register(spec).map_err(register_error)?;
    }
    for cmd in h.hmp_commands {
        server.register_hmp(cmd).map_err(register_error)?;
    }
    if h.human_monitor_command {
        server
            .register_human_monitor_command()
            .map_err(register_error)?;
    }
    let mut report = ReplayReport {
        digest: Digest::default(),
        expected: None,
        inputs: 0,
        misuse: Vec::new(),
        outputs: 0,
    };
    for (n, l) in lines {
        match parse(n, l)? {
            Line::Header(_) => return Err(TraceError::BadHeader),
            Line::Register { spec, .. } => {
                server
                    .register(spec)
                    .map_err(|misuse| TraceError::Register {
                        line: n + 1,
                        misuse,
                    })?
            }
            Line::Input { now, input } => {
                report.inputs += 1;
                let input = match input {
                    Input::Close { monitor } if v1 => Input::Destroy { monitor },
                    other => other,
                };
                if let Err(e) = server.handle(Instant(now), input) {
                    report.misuse.push((n + 1, e));
                }
                while server.poll_output().is_some() {
                    report.outputs += 1;
                }
            }
            Line::Output(_) => {}
            Line::End { digest, .. } => report.expected = Some(digest),
        }
    }
    report.digest = server.digest();
    Ok(report)
}
