//! Invariants of the core that need no knowledge of client intent, each defined once: the
//! world (`world::oracles`) and the intent-free checker (`check`) both call these.
//!
//! Each function gets what the caller observed through the shim's view of the core and
//! returns the failure, without position (the caller adds step and time).

use qmp_core::server::{CallId, MonitorId};

use crate::failure::Failure;

/// QEMU's in-band queue limit (`QMP_REQ_QUEUE_LEN_MAX`).
pub const QUEUE_MAX: usize = 8;

/// Most requests one byte can queue beyond a monitor's limit: the byte that completes the
/// request filling the queue may complete further messages (`1}`: the `}` ends the number and is
/// a message of its own; `qmp_core::json::stream::MAX_ITEMS_PER_BYTE` counts them), and QEMU's
/// `handle_qmp_command` queues each of them before it looks at `can_read` again (checked live
/// against QEMU 7.2: `1}` with OOB off is answered twice).
pub const QUEUE_OVERSHOOT_MAX: usize = qmp_core::json::stream::MAX_ITEMS_PER_BYTE - 1;

/// Memory the core may use beyond twice its pending output and twice the input it may buffer.
pub const MEMORY_SLACK: usize = 16 << 20;

/// The queue length at which a monitor stops reading: 8 with OOB on, 1 with OOB off.
pub fn queue_limit(oob_enabled: bool) -> usize {
    if oob_enabled {
        QUEUE_MAX
    } else {
        1
    }
}

/// The oracle name of a queue-length failure.
pub fn queue_oracle(oob_enabled: bool) -> &'static str {
    if oob_enabled {
        "queue-limit"
    } else {
        "queue-without-oob"
    }
}

/// A queue never exceeds its limit by more than the messages one byte completes.
pub fn queue_length(m: MonitorId, queued: usize, oob_enabled: bool) -> Result<(), Failure> {
    let limit = queue_limit(oob_enabled);
    if queued > limit + QUEUE_OVERSHOOT_MAX {
        return Err(Failure::correctness(
            queue_oracle(oob_enabled),
            format!(
                "monitor {} queue {queued} > {limit} + {QUEUE_OVERSHOOT_MAX} from one byte (OOB {})",
                m.0,
                if oob_enabled { "on" } else { "off" }
            ),
        ));
    }
    Ok(())
}

/// A monitor wants input only when not suspended, and never while one of its OOB calls runs
/// (QEMU runs an OOB handler from the parser callback: no byte of that monitor is read until
/// it returns).
pub fn reading(
    m: MonitorId,
    wants_read: bool,
    suspend_count: u64,
    oob_call_running: bool,
) -> Result<(), Failure> {
    if wants_read && oob_call_running {
        return Err(Failure::correctness(
            "wants-read",
            format!("monitor {} wants_read while its OOB call runs", m.0),
        ));
    }
    if wants_read && suspend_count != 0 {
        return Err(Failure::correctness(
            "wants-read",
            format!(
                "monitor {} wants_read with suspend count {suspend_count}",
                m.0
            ),
        ));
    }
    Ok(())
}

/// The core's memory estimate stays within [`MEMORY_SLACK`] plus twice its pending output and
/// twice the input it may buffer (`input_buffer_limit` per open monitor).
pub fn memory(
    estimate: usize,
    pending_output: usize,
    input_buffer_limit: usize,
    monitors: usize,
) -> Result<(), Failure> {
    let bound = MEMORY_SLACK + 2 * pending_output + 2 * input_buffer_limit * monitors;
    if estimate > bound {
        return Err(Failure::correctness(
            "memory",
            format!(
                "memory estimate {estimate} bytes > {MEMORY_SLACK} + 2 x {pending_output} pending + 2 x {input_buffer_limit} input x {monitors} monitors"
            ),
        ));
    }
    Ok(())
}

/// One in-band call at a time, whichever kind of monitor it came from (QEMU runs QMP and
/// HMP commands in the main loop one after the other): `call` may start only when no other
/// in-band call (`busy`) is outstanding.
pub fn dispatcher_free(busy: Option<CallId>, call: CallId) -> Result<(), Failure> {
    match busy {
        Some(b) => Err(Failure::correctness(
            "dispatcher-overlap",
            format!(
                "in-band call {} issued while call {} still runs",
                call.0, b.0
            ),
        )),
        None => Ok(()),
    }
}

/// A human monitor ends its lines with CR LF (QEMU's `monitor_puts`, and the line editor's
/// own): no LF without a CR before it. `prev` is the byte before `fresh` on this connection.
pub fn hmp_line_ends(m: MonitorId, prev: Option<u8>, fresh: &[u8]) -> Result<(), Failure> {
    let mut last = prev;
    for (k, &b) in fresh.iter().enumerate() {
        if b == b'\n' && last != Some(b'\r') {
            return Err(Failure::correctness(
                "hmp-bare-lf",
                format!(
                    "human monitor {}: LF without CR at {}",
                    m.0,
                    crate::model::show(&fresh[k.saturating_sub(40)..(k + 1)])
                ),
            ));
        }
        last = Some(b);
    }
    Ok(())
}

/// A human monitor gets no QMP events: nothing appears on it while an event is broadcast or
/// a throttle timer fires (`during_event`).
pub fn hmp_no_events(m: MonitorId, during_event: bool, fresh: &[u8]) -> Result<(), Failure> {
    if during_event && !fresh.is_empty() {
        return Err(Failure::correctness(
            "hmp-event",
            format!(
                "human monitor {} printed {} while an event was broadcast",
                m.0,
                crate::model::show(fresh)
            ),
        ));
    }
    Ok(())
}

/// A human monitor queues at most one line: a finished line suspends it, so the bytes
/// typed after it wait until the line has run.
pub fn hmp_queue(m: MonitorId, queued: usize) -> Result<(), Failure> {
    if queued > 1 {
        return Err(Failure::correctness(
            "hmp-queue",
            format!("human monitor {} has {queued} lines queued", m.0),
        ));
    }
    Ok(())
}

/// A monitor whose connection is closed holds no output (`given_up`: the core gave up on it
/// at its output or input limit and it is waiting for its close; nothing may be queued then
/// either).
pub fn nothing_pending(m: MonitorId, pending: &[u8], given_up: bool) -> Result<(), Failure> {
    if pending.is_empty() {
        return Ok(());
    }
    let (oracle, state) = if given_up {
        ("output-after-give-up", "after a limit disconnect")
    } else {
        ("output-after-close", "after its close")
    };
    Err(Failure::correctness(
        oracle,
        format!(
            "monitor {}: {} bytes pending {state}: {}",
            m.0,
            pending.len(),
            crate::model::show(pending)
        ),
    ))
}
