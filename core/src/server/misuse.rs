//! Misuse of the API by the embedder: a typed error, returned before any state changes.
//!
//! Protocol errors of a client never show up here; they are replies on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::{CallId, Instant, MonitorId};

/// The embedder called the server in a way the contract forbids. The call had no effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiMisuse {
    /// No open monitor has this id.
    UnknownMonitor(MonitorId),
    /// `Open` with an id that is already open.
    MonitorExists(MonitorId),
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
