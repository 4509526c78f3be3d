//! Misuse of the API by the embedder: a typed error, returned before any state changes.
//!
//! Protocol errors of a client never show up here; they are replies on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::{CallId, Instant, MonitorId};

/// The embedder called the server in a way the contract forbids. The call had no effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiMisuse {
    /// No monitor has this id (never opened, or destroyed).
    UnknownMonitor(MonitorId),
    /// `Open` of a monitor whose client is still connected.
    MonitorExists(MonitorId),
    /// `Receive` or `Close` for a monitor with no client connected.
    MonitorNotOpen(MonitorId),
    /// `Open` of an existing monitor with other options than its first `Open` (they are the
    /// chardev's, fixed for the monitor's life).
    OptionsChanged(MonitorId),
    /// `Complete` for a call that is not outstanding (never issued, or completed already).
    UnknownCall(CallId),
    /// `now` was earlier than the previous input's.
    TimeWentBackwards {
        /// The instant passed in.
        now: Instant,
        /// The latest instant seen before.
        last: Instant,
    },
    /// `NextInBand` while an in-band call is still outstanding.
    DispatcherBusy,
    /// `Written` reported more bytes than were pending.
    WrittenTooMuch {
        /// The connection.
        monitor: MonitorId,
        /// Bytes reported.
        n: usize,
        /// Bytes that were pending.
        pending: usize,
    },
    /// `register` with a name already in the table (built-ins included).
    CommandExists(String),
    /// `Resume` without a matching `Suspend`.
    NotSuspended(MonitorId),
    /// `Suspend` nested more than `u32::MAX` times.
    SuspendOverflow(MonitorId),
    /// `register_hmp` with an empty name, a name with spaces or `/`, or one already in its
    /// table.
    BadHmpCommand(String),
    /// `register_hmp` with an `args_type` the HMP parser does not support.
    BadHmpArgsType {
        /// The command.
        name: String,
        /// What is wrong.
        why: String,
    },
}

impl fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiMisuse::UnknownMonitor(m) => write!(f, "unknown monitor {}", m.0),
            ApiMisuse::MonitorExists(m) => write!(f, "monitor {} is already open", m.0),
            ApiMisuse::MonitorNotOpen(m) => write!(f, "monitor {} has no client connected", m.0),
            ApiMisuse::OptionsChanged(m) => {
                write!(f, "monitor {} was opened with other options", m.0)
            }
            ApiMisuse::UnknownCall(c) => write!(f, "call {} is not outstanding", c.0),
            ApiMisuse::TimeWentBackwards { now, last } => {
                write!(f, "time went backwards: {} < {}", now.0, last.0)
            }
            ApiMisuse::DispatcherBusy => write!(f, "an in-band call is still outstanding"),
            ApiMisuse::WrittenTooMuch {
                monitor,
                n,
                pending,
            } => write!(
                f,
                "monitor {}: {n} bytes reported written, {pending} pending",
                monitor.0
            ),
            ApiMisuse::CommandExists(n) => write!(f, "command {n} is already registered"),
            ApiMisuse::NotSuspended(m) => write!(f, "monitor {} has no external suspend", m.0),
            ApiMisuse::SuspendOverflow(m) => write!(f, "monitor {}: suspend count overflow", m.0),
            ApiMisuse::BadHmpCommand(n) => write!(f, "HMP command name {n:?} is taken or invalid"),
            ApiMisuse::BadHmpArgsType { name, why } => {
                write!(f, "HMP command {name}: bad args_type: {why}")
            }
        }
    }
}

impl std::error::Error for ApiMisuse {}

/// Why [`super::Server::take_named_fd`] gave no descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TakeFdError {
    /// The monitor has no fd of that name (QEMU: `File descriptor named '<name>' has not been
    /// found`, a `GenericError`; the text is this error's `Display`).
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// No monitor has this id (destroyed, or never opened): the embedder's mistake.
    UnknownMonitor(MonitorId),
    /// The call broke the API contract (time went backwards); nothing changed.
    Misuse(ApiMisuse),
}

impl TakeFdError {
    /// The error reply QEMU gives for a named fd that is not there, for a handler to return.
    pub fn to_call_result(&self) -> super::CallResult {
        super::CallResult::Error {
            class: super::ErrorClass::GenericError,
            desc: self.to_string(),
        }
    }
}

impl fmt::Display for TakeFdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TakeFdError::NotFound { name } => {
                write!(f, "File descriptor named '{name}' has not been found")
            }
            TakeFdError::UnknownMonitor(m) => write!(f, "unknown monitor {}", m.0),
            TakeFdError::Misuse(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TakeFdError {}
