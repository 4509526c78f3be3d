//! The public vocabulary of the sans-IO server: ids, time, inputs, outputs, results, options.
//!
//! `Input` is at once the trace format, the fuzzers' input and the simulator's vocabulary, so
//! every type here is serialisable and carries no behaviour.

use serde::{Deserialize, Serialize};

use crate::json::{JsonText, Object, Value};

/// A monotonic instant: nanoseconds since an arbitrary origin chosen by the driver.
/// The core never reads a clock; every input comes with one of these, never going backwards.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Instant(pub u64);

impl Instant {
    /// `self + ns`, saturating.
    pub fn plus_nanos(self, ns: u64) -> Instant {
        Instant(self.0.saturating_add(ns))
    }
}

/// Wall-clock time of an event, as QEMU puts it in `"timestamp"`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timestamp {
    /// Whole seconds since the Unix epoch.
    pub seconds: i64,
    /// Microsecond remainder, 0..=999_999.
    pub microseconds: i64,
}

/// A monitor, named by the driver when it first opens it: one per listener slot (a listener
/// that lets N clients in at once has N), reused by the successive clients of that slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MonitorId(pub u64);

/// A handler invocation, numbered by the core.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CallId(pub u64);

/// An opaque file descriptor handle: the driver owns the real descriptor.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FdId(pub u64);

/// Which lane a call runs on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lane {
    /// In-band: run on the dispatcher, one at a time.
    InBand,
    /// Out-of-band: run at once on the IO side; must not block.
    OutOfBand,
}

/// QAPI error classes (`QapiErrorClass`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// `GenericError`
    GenericError,
    /// `CommandNotFound`
    CommandNotFound,
    /// `DeviceNotActive`
    DeviceNotActive,
    /// `DeviceNotFound`
    DeviceNotFound,
    /// `KVMMissingCap`
    KVMMissingCap,
}

/// What a command handler produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallResult {
    /// Success: the `"return"` value (`{}` for commands that return nothing).
    Return(Value),
    /// Success, the `"return"` value already written: a typed result serialised with
    /// [`CallResult::serialize`] (or [`JsonText::from_value`]). The reply is the same bytes as
    /// `Return` of the equivalent value, without building one.
    ReturnJson(JsonText),
    /// Failure: an error reply.
    Error {
        /// The error class.
        class: ErrorClass,
        /// The human-readable description.
        desc: String,
    },
}

impl CallResult {
    /// Success with `value`, a typed result (a struct, a map, ...) serialised straight to
    /// QEMU's text (see [`JsonText`]); a value that cannot be serialised (a map with non-string
    /// keys) is a `GenericError` naming the cause.
    ///
    /// ```
    /// use qmp_core::server::CallResult;
    ///
    /// #[derive(serde::Serialize)]
    /// struct KvmInfo {
    ///     enabled: bool,
    ///     present: bool,
    /// }
    ///
    /// let CallResult::ReturnJson(text) = CallResult::serialize(&KvmInfo { enabled: false, present: true })
    /// else {
    ///     panic!()
    /// };
    /// assert_eq!(text.as_bytes(), br#"{"enabled": false, "present": true}"#);
    /// ```
    pub fn serialize<T: Serialize + ?Sized>(value: &T) -> CallResult {
        match JsonText::serialize(value) {
            Ok(text) => CallResult::ReturnJson(text),
            Err(e) => CallResult::Error {
                class: ErrorClass::GenericError,
                desc: format!("the command's result could not be serialised: {e}"),
            },
        }
    }
}

/// Per-monitor options, fixed when it is opened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MonitorOptions {
    /// The transport can run in the IO thread, so `"oob"` is offered (QEMU 7.2), or, in the
    /// 2.12 dialect, the monitor was configured with `x-oob=on`.
    pub oob_capable: bool,
    /// `pretty=on`: replies, events and the greeting are pretty-printed.
    pub pretty: bool,
}

/// Options of a human monitor, fixed when it is opened (none yet: QEMU's readline monitor
/// has no per-monitor switches that change its bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HmpOptions {}

/// The VM run state, as far as the monitor core cares (preconfig checks, fd-set cleanup).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RunState {
    /// `--preconfig`: only `allow-preconfig` commands run.
    Preconfig,
    /// Running.
    #[default]
    Running,
    /// Stopped/paused (after `stop`).
    Paused,
}

/// Everything that can happen to the server. One enum, serialisable: a trace is a list of these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// A client connected to the monitor (created by its first `Open`): a session starts in
    /// negotiation mode and the greeting is queued (QEMU: CHR_EVENT_OPENED). The monitor must
    /// have no client connected now.
    Open {
        /// The monitor (the listener slot).
        monitor: MonitorId,
        /// Options fixed for this monitor: a later `Open` of it must give the same.
        options: MonitorOptions,
    },
    /// A client connected to a human monitor (QEMU `-monitor`, `mode=readline`): the banner and
    /// the prompt are queued. The id must not be in use.
    OpenHmp {
        /// The driver's name for the connection; must not be in use.
        monitor: MonitorId,
        /// Options fixed for this monitor.
        #[serde(default)]
        options: HmpOptions,
    },
    /// Bytes read from the connection (any chunking), with descriptors passed alongside.
    Receive {
        /// The connection.
        monitor: MonitorId,
        /// The bytes read (in traces: a string with one char per byte, U+0000–U+00FF).
        #[serde(with = "latin1")]
        bytes: Vec<u8>,
        /// Descriptors received with these bytes (SCM_RIGHTS).
        fds: Vec<FdId>,
    },
    /// The driver wrote `n` bytes of the monitor's pending output.
    Written {
        /// The connection.
        monitor: MonitorId,
        /// Bytes written from the front of the pending output.
        n: usize,
    },
    /// The client went away or the driver closed it (QEMU: CHR_EVENT_CLOSED): the session
    /// ends (queue dropped unanswered, parser, input, pending fds and output reset); the
    /// monitor and what QEMU keeps on it (named fds, suspend count) wait for the next `Open`.
    Close {
        /// The monitor.
        monitor: MonitorId,
    },
    /// The monitor goes for good (a listener removed, or process exit; QEMU's
    /// `monitor_data_destroy`): a session still open is closed first, the named fds are
    /// closed. The id may be opened again later as a new monitor.
    Destroy {
        /// The monitor.
        monitor: MonitorId,
    },
    /// A handler took the monitor's fd named `name` (QEMU's `monitor_get_fd`): the trace form
    /// of `Server::take_named_fd`, whose result went to the handler.
    TakeNamedFd {
        /// The monitor the handler's request came from.
        monitor: MonitorId,
        /// The fd's `getfd` name.
        name: String,
    },
    /// Time advanced: fire due timers. Early ticks are harmless.
    Tick,
    /// The dispatcher is ready for the next in-band request.
    NextInBand,
    /// A handler finished.
    Complete {
        /// The call, as given in [`Output::Call`].
        call: CallId,
        /// What it produced.
        result: CallResult,
    },
    /// Something in the machine produced an event.
    Event {
        /// Event name, e.g. `"STOP"`.
        name: String,
        /// Event data; an empty object means no `"data"` member.
        data: Object,
        /// Wall-clock time the event was built.
        timestamp: Timestamp,
    },
    /// Another subsystem pauses reading from this monitor (nests).
    Suspend {
        /// The connection.
        monitor: MonitorId,
    },
    /// Undo one [`Input::Suspend`].
    Resume {
        /// The connection.
        monitor: MonitorId,
    },
    /// The VM run state changed.
    SetRunState(RunState),
}

/// Serde for byte strings as readable JSON strings: byte `b` is the char U+00`b`, so ASCII
/// text stays as it is and other bytes show as `\u00XX` escapes or Latin-1 letters.
mod latin1 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| D::Error::custom("char above U+00FF")))
            .collect()
    }
}

/// Why the core gave up on a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisconnectReason {
    /// Pending output grew past `Config::output_limit` (a client that does not read).
    OutputLimit {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Buffered unprocessed input grew past `Config::input_buffer_limit` (the driver kept
    /// reading while `wants_read` was false).
    InputLimit {
        /// The configured limit in bytes.
        limit: usize,
    },
}

/// Everything the server wants done. Drained with `Server::poll_output` after every input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// Run a handler. Out-of-band calls must be run at once on the IO side; in-band calls on the
    /// dispatcher. Complete it with [`Input::Complete`].
    Call(Call),
    /// The monitor has pending output: write `Server::pending_output` and report
    /// [`Input::Written`].
    Transmit(MonitorId),
    /// Close this descriptor (outside any lock): the core no longer holds it.
    CloseFd(FdId),
    /// The core gave up on this client: close the connection, then report [`Input::Close`].
    Disconnect {
        /// The connection.
        monitor: MonitorId,
        /// Why.
        reason: DisconnectReason,
    },
}

/// A handler invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Names this call in [`Input::Complete`].
    pub id: CallId,
    /// The monitor the request came from.
    pub monitor: MonitorId,
    /// Where it must run.
    pub lane: Lane,
    /// The command name.
    pub command: super::CommandName,
    /// Arguments, already checked against the command's schema.
    pub arguments: Object,
}
