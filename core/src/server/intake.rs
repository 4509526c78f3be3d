//! From received bytes to the in-band queue or an immediate out-of-band dispatch (spec §1.2,
//! §5.2, §10.1; 2.12: §13.2.2).
//!
//! Bytes go to the streamer, which stops right after a byte that completed a message; the
//! messages are handled, and lexing continues only while the monitor is not suspended. So
//! bytes after the request that suspended a monitor are not looked at until it resumes.
//!
//! An out-of-band call is a stop too: QEMU runs the OOB handler in the I/O thread straight
//! from the parser callback, so neither a further message completed by the same byte nor
//! any later byte of that monitor is handled before the handler returns. Here, once a
//! request of monitor M became an OOB `Call`, M's remaining messages and bytes stay buffered
//! (`wants_read(M)` is false) until that call is completed; then they are handled as if
//! never interrupted. A later refused `exec-oob`, answered in the core, thus comes after the
//! reply of the earlier call, as in QEMU.

use super::config::{Dialect, QMP_REQ_QUEUE_LEN_MAX};
use super::dispatch::Envelope;
use super::monitor::Queued;
use super::types::{ErrorClass, FdId, Lane, MonitorId};
use super::Server;
use crate::json::{JsonErrorKind, JsonString, Object, StreamItem, Value};

impl Server {
    /// Handle ready messages and lex buffered input of a monitor until both are used up, the
    /// monitor is suspended (bytes only) or one of its OOB calls is outstanding.
    pub(super) fn pump(&mut self, id: MonitorId) {
        if self.monitors.get(&id).is_some_and(|m| m.hmp.is_some()) {
            self.pump_hmp(id);
            return;
        }
        let early = planted!(self, EarlyBytesAfterSuspension);
        let dialect = self.config.dialect;
        // Bounded: every pass handles one message, lexes at least one byte, or stops.
        loop {
            let Some(m) = self.monitors.get_mut(&id) else {
                return;
            };
            if !m.live() {
                return;
            }
            if m.oob_call.is_some() {
                if m.streamer.has_ready() || !m.input.is_empty() {
                    self.probes.oob_call_held_input += 1;
                }
                return;
            }
            // Messages completed by a byte already lexed go first, whatever the suspend
            // count (it only stops reading): they were left by an OOB call.
            if let Some(item) = m.streamer.pop() {
                match dialect {
                    Dialect::Qemu72 => self.on_item_72(id, item),
                    Dialect::Qemu212 => self.on_item_212(id, item),
                }
                continue;
            }
            if m.input.is_empty() {
                return;
            }
            if m.suspend_count > 0 && !(early && m.input.front_started()) {
                if m.input.front_started() {
                    self.probes.stopped_mid_read += 1;
                }
                return;
            }
            let fds = m.input.take_front_fds();
            if !fds.is_empty() {
                self.deliver_fds(id, fds);
            }
            let Some(m) = self.monitors.get_mut(&id) else {
                return;
            };
            let front = m.input.front();
            if front.is_empty() {
                m.input.consume(0);
                continue;
            }
            let n = m.streamer.feed(front);
            m.input.consume(n.max(1));
        }
    }

    /// New descriptors replace (close) older unclaimed ones (char-socket.c).
    pub(super) fn deliver_fds(&mut self, id: MonitorId, fds: Vec<FdId>) {
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut m.pending_fds, fds);
        if !old.is_empty() {
            self.probes.pending_fds_replaced += 1;
        }
        for fd in old {
            self.close_fd(fd);
        }
    }

    /// 7.2 `handle_qmp_command`: `exec-oob` without `execute` runs at once, everything else
    /// (JSON errors included) is queued.
    fn on_item_72(&mut self, id: MonitorId, item: StreamItem) {
        match item {
            StreamItem::Error(e) => {
                self.probes.json_error_queued += 1;
                self.enqueue(id, Queued::JsonError(e.desc));
            }
            StreamItem::Value(v) => {
                let oob = matches!(&v, Value::Object(o)
                    if o.contains_key("exec-oob") && !o.contains_key("execute"));
                if oob {
                    self.dispatch_value(id, v);
                } else {
                    self.enqueue(id, Queued::Request(v));
                }
            }
        }
    }

    /// The queue length at which 7.2 suspends a monitor with OOB on.
    pub(super) fn queue_limit(&self) -> usize {
        if planted!(self, QueueLimitOffByOne) {
            QMP_REQ_QUEUE_LEN_MAX + 1
        } else {
            QMP_REQ_QUEUE_LEN_MAX
        }
    }

    pub(super) fn enqueue(&mut self, id: MonitorId, item: Queued) {
        let limit = self.queue_limit();
        let Some(m) = self.monitors.get(&id) else {
            return;
        };
        let oob = m.oob_enabled;
        let len = m.queue.len();
        if !oob {
            self.suspend(id);
        } else if len + 1 == limit {
            self.probes.queue_full_suspend += 1;
            self.suspend(id);
        }
        if let Some(m) = self.monitors.get_mut(&id) {
            m.queue.push_back(item);
            self.queued_total += 1;
        }
    }

    /// 2.12 `handle_qmp_command`: every check but the argument check happens at once, with
    /// the error answered at once and without id; then OOB runs at once or the request is
    /// queued (or dropped when the queue is full and OOB is on).
    fn on_item_212(&mut self, id: MonitorId, item: StreamItem) {
        let v = match item {
            StreamItem::Error(e) => {
                let desc = match e.kind {
                    JsonErrorKind::Parse => e.desc,
                    _ => JsonString::from("Invalid JSON syntax"),
                };
                self.reply_error(id, None, ErrorClass::GenericError, desc, false);
                return;
            }
            StreamItem::Value(v) => v,
        };
        let Value::Object(mut obj) = v else {
            self.reply_error(
                id,
                None,
                ErrorClass::GenericError,
                "QMP input must be a JSON object",
                false,
            );
            return;
        };
        let req_id = obj.remove("id");
        if let Err(desc) = check_members_212(&obj) {
            self.reply_error(id, None, ErrorClass::GenericError, desc, false);
            return;
        }
        let Some(Value::String(name)) = obj.remove("execute") else {
            return; // unreachable: checked above
        };
        let (negotiated, oob_enabled) = match self.monitors.get(&id) {
            Some(m) => (m.negotiated, m.oob_enabled),
            None => return,
        };
        let entry = if negotiated || name == "qmp_capabilities" {
            self.registry.get(name.as_bytes())
        } else {
            None
        };
        let Some(entry) = entry else {
            let mut desc = b"The command ".to_vec();
            desc.extend_from_slice(name.as_bytes());
            desc.extend_from_slice(b" has not been found");
            self.reply_error(id, None, ErrorClass::CommandNotFound, desc, false);
            return;
        };
        let allow_oob = entry.spec.allow_oob;
        let run_oob = matches!(obj.get("control"), Some(Value::Object(c))
            if c.get("run-oob") == Some(&Value::Bool(true)));
        if run_oob && !oob_enabled {
            self.reply_error(
                id,
                None,
                ErrorClass::GenericError,
                "Please enable Out-Of-Band first for the session during capabilities negotiation",
                false,
            );
            return;
        }
        if run_oob && !allow_oob {
            let mut desc = b"The command ".to_vec();
            desc.extend_from_slice(name.as_bytes());
            desc.extend_from_slice(b" does not support OOB");
            self.reply_error(id, None, ErrorClass::GenericError, desc, false);
            return;
        }
        if oob_enabled && req_id.is_none() {
            self.reply_error(
                id,
                None,
                ErrorClass::GenericError,
                "Out-Of-Band capability requires that every command contains an 'id' field",
                false,
            );
            return;
        }
        let args = match obj.remove("arguments") {
            Some(Value::Object(a)) => a,
            _ => Object::new(),
        };
        if run_oob {
            self.execute(
                id,
                Envelope {
                    id: req_id,
                    name,
                    oob: true,
                    args,
                },
                Lane::OutOfBand,
            );
            return;
        }
        let Some(m) = self.monitors.get(&id) else {
            return;
        };
        if !oob_enabled {
            self.suspend(id);
        } else if m.queue.len() >= self.queue_limit() {
            self.probes.command_dropped += 1;
            self.command_dropped(req_id);
            return;
        }
        if let Some(m) = self.monitors.get_mut(&id) {
            m.queue.push_back(Queued::Checked {
                id: req_id,
                name,
                args,
            });
            self.queued_total += 1;
        }
    }
}

/// 2.12 `qmp_dispatch_check_obj` (the `id` already taken out), walking members in QEMU's
/// dictionary order.
fn check_members_212(obj: &Object) -> Result<(), Vec<u8>> {
    let mut has_exec = false;
    for i in crate::json::bucket_order(obj) {
        let (k, v) = &obj.entries()[i];
        match k.as_bytes() {
            b"execute" => {
                if !matches!(v, Value::String(_)) {
                    return Err(b"QMP input member 'execute' must be a string".to_vec());
                }
                has_exec = true;
            }
            b"arguments" => {
                if !matches!(v, Value::Object(_)) {
                    return Err(b"QMP input member 'arguments' must be an object".to_vec());
                }
            }
            b"control" => {
                if !matches!(v, Value::Object(_)) {
                    return Err(b"QMP input member 'control' must be a dict".to_vec());
                }
            }
            _ => {
                let mut d = b"QMP input member '".to_vec();
                d.extend_from_slice(k.as_bytes());
                d.extend_from_slice(b"' is unexpected");
                return Err(d);
            }
        }
    }
    if !has_exec {
        return Err(b"QMP input lacks member 'execute'".to_vec());
    }
    Ok(())
}
