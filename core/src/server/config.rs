//! The server's configuration: dialect, limits, throttle table, run state, compat policy and
//! (for the simulator only) planted bugs. Every limit is a named field with a documented default.

use serde::{Deserialize, Serialize};

use super::types::{RunState, Timestamp};
use crate::json::{JsonLimits, Object, Value};

/// `QMP_REQ_QUEUE_LEN_MAX`: in-band requests a monitor may have waiting (QEMU 7.2 and 2.12).
pub const QMP_REQ_QUEUE_LEN_MAX: usize = 8;

/// Default [`Config::output_limit`]: 256 MiB.
///
/// The largest single reply a client can provoke is an echo of a maximal request: the streamer
/// caps a message at 64 MiB of tokens, and escaping can triple string bytes (`\uD834\uDD1E` for a
/// 4-byte character), so one reply stays under ~193 MiB. A client that reads its replies never
/// holds more than a few of those pending... and the pipelining depth is bounded by the queue of
/// 8, so 256 MiB is met only by a client that stops reading.
pub const DEFAULT_OUTPUT_LIMIT: usize = 256 << 20;

// The largest reply (an echoed 64 MiB message, escaping tripling string bytes) fits.
const _: () = assert!(DEFAULT_OUTPUT_LIMIT >= 3 * JsonLimits::QEMU_MAX_TOKEN_SIZE);

/// Default [`Config::input_buffer_limit`]: 8 MiB.
///
/// Bytes are only held unprocessed while a monitor is suspended; a shim that stops reading when
/// `wants_read` is false holds at most one read chunk (typically 4–64 KiB), so the limit only
/// trips on a shim that keeps reading regardless.
pub const DEFAULT_INPUT_BUFFER_LIMIT: usize = 8 << 20;

/// Which QEMU the server behaves like.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Dialect {
    /// QEMU 7.2 (default): `exec-oob`, suspend when the queue is full.
    #[default]
    Qemu72,
    /// QEMU 2.12 (the 2018 design): `control.run-oob`, id required with OOB, drop +
    /// `COMMAND_DROPPED` when the queue is full, immediate validation errors.
    Qemu212,
}

/// One row of the event throttle table (QEMU's `monitor_qapi_event_conf`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleRule {
    /// The event name, e.g. `"RTC_CHANGE"`.
    pub event: String,
    /// Minimum interval between two emissions of one key, in nanoseconds.
    pub period_ns: u64,
    /// A `data` member whose (string) value is part of the key, e.g. `"id"` for
    /// `VSERPORT_CHANGE`; `None` throttles by event type only.
    pub data_key: Option<String>,
}

impl ThrottleRule {
    /// A rule keyed by event type, or by type and one `data` member.
    pub fn new(event: &str, period_ns: u64, data_key: Option<&str>) -> ThrottleRule {
        ThrottleRule {
            event: event.to_owned(),
            period_ns,
            data_key: data_key.map(str::to_owned),
        }
    }

    /// QEMU 7.2's table (`monitor/monitor.c`), all with a 1 s period.
    pub fn qemu72_defaults() -> Vec<ThrottleRule> {
        const SECOND: u64 = 1_000_000_000;
        vec![
            ThrottleRule::new("RTC_CHANGE", SECOND, None),
            ThrottleRule::new("WATCHDOG", SECOND, None),
            ThrottleRule::new("BALLOON_CHANGE", SECOND, None),
            ThrottleRule::new("QUORUM_REPORT_BAD", SECOND, Some("node-name")),
            ThrottleRule::new("QUORUM_FAILURE", SECOND, None),
            ThrottleRule::new("VSERPORT_CHANGE", SECOND, Some("id")),
            ThrottleRule::new("MEMORY_DEVICE_SIZE_CHANGE", SECOND, Some("qom-path")),
        ]
    }

    /// QEMU 2.12's table (`monitor.c` of 2018): 7.2's without `MEMORY_DEVICE_SIZE_CHANGE`,
    /// which came with virtio-mem in QEMU 5.1.
    pub fn qemu212_defaults() -> Vec<ThrottleRule> {
        let mut t = ThrottleRule::qemu72_defaults();
        t.retain(|r| r.event != "MEMORY_DEVICE_SIZE_CHANGE");
        t
    }
}

/// What `-compat deprecated-input=…,unstable-input=…` says about commands with those features.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompatPolicy {
    /// Refuse commands with feature `deprecated` (`Deprecated command <name> disabled by policy`).
    pub reject_deprecated_input: bool,
    /// Refuse commands with feature `unstable` (`Unstable command <name> disabled by policy`).
    pub reject_unstable_input: bool,
}

/// Deliberately wrong behaviour for the simulator's planted-bug check (issue 4). Only with the
/// `planted-bugs` feature, which only the simulator and tests enable.
#[cfg(feature = "planted-bugs")]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlantedBug {
    /// 7.2 with OOB: suspend only when the queue reaches 9, so a 9th request is queued.
    QueueLimitOffByOne,
    /// Throttle: the pending event of a burst is dropped when its period ends.
    LastThrottledEventDropped,
    /// A session's close drops the queue but not the suspension it held (QEMU before 4.1):
    /// the monitor's next client is never read.
    NoResumeOnClose,
    /// An OOB reply waits until the monitor's in-band queue and in-band call are done.
    OobReplyHeldBehindInBand,
    /// Events also go to monitors still in negotiation mode.
    EventBeforeNegotiation,
    /// Bytes after the request that suspended the monitor are processed anyway (the rest of
    /// the received chunk).
    EarlyBytesAfterSuspension,
    /// Error replies leave out the request's `id`.
    IdNotEchoedOnError,
    /// 2.12: `COMMAND_DROPPED` leaves out the dropped request's `id`.
    CommandDroppedWithoutId,
    /// Descriptors a closing session never claimed (and named fds of a destroyed monitor) are
    /// forgotten without `CloseFd` (a leak).
    FdLeakedOnClose,
    /// Named fds are closed when the client disconnects (they belong to the monitor and must
    /// survive until the next client's `closefd`).
    NamedFdsDieWithConnection,
    /// The dispatcher always serves the lowest monitor id first instead of round robin.
    RoundRobinBroken,
    /// Events also go to human monitors (HMP), which must get none.
    HmpGetsEvents,
    /// What an HMP command prints keeps its bare `\n` line ends (no `\r`).
    HmpBareNewline,
}

/// The server's configuration; every limit is named here with its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Which QEMU to behave like. Default: QEMU 7.2.
    pub dialect: Dialect,
    /// The `version` object of the greeting and `query-version`. Default: QEMU 7.2.22 Debian
    /// ([`qemu72_version`]); 2.12.0 in [`Config::qemu212`].
    pub version: Value,
    /// Limits of the JSON streamer (64 MiB token, 2 Mi tokens, depth 1024 by default).
    pub json_limits: JsonLimits,
    /// Bytes of pending output per monitor beyond which the core gives up on the client
    /// ([`super::DisconnectReason::OutputLimit`]). Default [`DEFAULT_OUTPUT_LIMIT`].
    pub output_limit: usize,
    /// Received bytes held unprocessed (while suspended) beyond which the core gives up on the
    /// client ([`super::DisconnectReason::InputLimit`]). Default [`DEFAULT_INPUT_BUFFER_LIMIT`].
    pub input_buffer_limit: usize,
    /// Event throttle table. Default: QEMU 7.2's ([`ThrottleRule::qemu72_defaults`]); 2.12's
    /// is [`ThrottleRule::qemu212_defaults`] (what [`Config::qemu212`] uses).
    pub throttle: Vec<ThrottleRule>,
    /// Run state at start. Default: running.
    pub run_state: RunState,
    /// `-compat` input policy. Default: accept everything.
    pub compat: CompatPolicy,
    /// Wall-clock time at `Instant(0)`, used for the timestamp of events the core makes itself
    /// (`COMMAND_DROPPED` in the 2.12 dialect): timestamp = base + now. Default: 0.
    pub wall_clock_base: Timestamp,
    /// A deliberately wrong behaviour for the simulator (feature `planted-bugs`). Default: none.
    #[cfg(feature = "planted-bugs")]
    #[serde(default)]
    pub planted_bug: Option<PlantedBug>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dialect: Dialect::Qemu72,
            version: qemu72_version(),
            json_limits: JsonLimits::default(),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            input_buffer_limit: DEFAULT_INPUT_BUFFER_LIMIT,
            throttle: ThrottleRule::qemu72_defaults(),
            run_state: RunState::Running,
            compat: CompatPolicy::default(),
            wall_clock_base: Timestamp::default(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

impl Config {
    /// The 2.12 dialect with its own tables: its version ([`qemu212_version`]) and throttle
    /// table ([`ThrottleRule::qemu212_defaults`]); otherwise default settings.
    pub fn qemu212() -> Config {
        Config {
            dialect: Dialect::Qemu212,
            version: qemu212_version(),
            throttle: ThrottleRule::qemu212_defaults(),
            ..Config::default()
        }
    }
}

/// QEMU 7.2.22 (Debian)'s `VersionInfo`, members inserted so the writer emits QEMU's order.
pub fn qemu72_version() -> Value {
    version_info(7, 2, 22, "Debian 1:7.2+dfsg-7+deb12u18+b3")
}

/// QEMU 2.12.0's `VersionInfo` as a release build reports it (no package string).
pub fn qemu212_version() -> Value {
    version_info(2, 12, 0, "")
}

/// A `VersionInfo` value (`{"qemu": {"micro", "minor", "major"}, "package"}`).
pub fn version_info(major: i64, minor: i64, micro: i64, package: &str) -> Value {
    let mut qemu = Object::with_capacity(3);
    // major, minor, micro: the writer puts the newest key of a shared bucket first, and
    // micro/minor share bucket 225 with micro first on QEMU's wire.
    qemu.insert("major", Value::Int(major));
    qemu.insert("minor", Value::Int(minor));
    qemu.insert("micro", Value::Int(micro));
    let mut v = Object::with_capacity(2);
    v.insert("qemu", Value::Object(qemu));
    v.insert("package", Value::string(package));
    Value::Object(v)
}
