//! Request checks in QEMU's order (spec §4.2), execution (built-in or a call to the embedder),
//! the global round-robin in-band dispatcher (§5.3), completions and reply building.

use super::args::check_arguments;
use super::config::Dialect;
use super::monitor::Queued;
use super::qapi_check::check_qapi_arguments;
use super::registry::Builtin;
use super::types::{Call, CallId, CallResult, ErrorClass, Lane, MonitorId, Output, RunState};
use super::{OutstandingCall, PendingCall, Server};
use crate::json::{JsonString, JsonText, Object, Value};

/// A request whose envelope passed the checks (§4.2 steps 1–4).
#[derive(Debug)]
pub(super) struct Envelope {
    pub(super) id: Option<Value>,
    pub(super) name: JsonString,
    /// Came through `exec-oob` (7.2) or `control.run-oob` (2.12).
    pub(super) oob: bool,
    pub(super) args: Object,
}

/// What executing a request led to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Executed {
    /// The reply (or, for a no-success-response command, nothing) is out.
    Answered,
    /// A call was handed to the embedder.
    Called(CallId),
}

pub(super) fn class_name(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::GenericError => "GenericError",
        ErrorClass::CommandNotFound => "CommandNotFound",
        ErrorClass::DeviceNotActive => "DeviceNotActive",
        ErrorClass::DeviceNotFound => "DeviceNotFound",
        ErrorClass::KVMMissingCap => "KVMMissingCap",
    }
}

fn member_text(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// QEMU's member walk in bucket order (`qmp_dispatch_check_obj`): the first error met wins.
fn walk_in_bucket_order(
    obj: &Object,
    oob_enabled: bool,
    exec_key: &mut Option<&'static [u8]>,
    err: &mut Option<Vec<u8>>,
) {
    crate::json::hash::for_each_in_bucket_order(obj, |i| {
        if err.is_some() {
            return;
        }
        let (k, v) = &obj.entries()[i];
        let key = k.as_bytes();
        let exec: Option<&'static [u8]> = match key {
            b"execute" => Some(b"execute"),
            b"exec-oob" if oob_enabled => Some(b"exec-oob"),
            _ => None,
        };
        if let Some(key) = exec {
            if !matches!(v, Value::String(_)) {
                *err = Some(member_text(&[
                    b"QMP input member '",
                    key,
                    b"' must be a string",
                ]));
            } else if let Some(first) = *exec_key {
                *err = Some(member_text(&[
                    b"QMP input member '",
                    key,
                    b"' clashes with '",
                    first,
                    b"'",
                ]));
            } else {
                *exec_key = Some(key);
            }
        } else if key == b"arguments" {
            if !matches!(v, Value::Object(_)) {
                *err = Some(b"QMP input member 'arguments' must be an object".to_vec());
            }
        } else if key != b"id" {
            *err = Some(member_text(&[
                b"QMP input member '",
                key,
                b"' is unexpected",
            ]));
        }
    });
}

/// 7.2 `qmp_dispatch_check_obj` plus steps 1, 2 and 4. On error: the id (once known) and desc.
fn check_envelope(v: Value, oob_enabled: bool) -> Result<Envelope, (Option<Value>, Vec<u8>)> {
    let Value::Object(mut obj) = v else {
        return Err((None, b"QMP input must be a JSON object".to_vec()));
    };
    let mut exec_key: Option<&'static [u8]> = None;
    let mut err: Option<Vec<u8>> = None;
    // QEMU walks the members in bucket order, which only decides which error is reported
    // first; a well-formed request (the usual case) is accepted without the walk.
    let mut execs = 0;
    let well_formed = obj.iter().all(|(k, v)| match k.as_bytes() {
        b"execute" => {
            execs += 1;
            exec_key = Some(b"execute");
            matches!(v, Value::String(_))
        }
        b"exec-oob" if oob_enabled => {
            execs += 1;
            exec_key = Some(b"exec-oob");
            matches!(v, Value::String(_))
        }
        b"arguments" => matches!(v, Value::Object(_)),
        b"id" => true,
        _ => false,
    }) && execs == 1;
    if !well_formed {
        exec_key = None;
        walk_in_bucket_order(&obj, oob_enabled, &mut exec_key, &mut err);
    }
    if let Some(e) = err {
        return Err((obj.remove("id"), e));
    }
    let Some(key) = exec_key else {
        return Err((
            obj.remove("id"),
            b"QMP input lacks member 'execute'".to_vec(),
        ));
    };
    let oob = key == b"exec-oob";
    // Checked: only these members are left; take them apart in one pass.
    let mut name = JsonString::default();
    let mut args = Object::new();
    let mut id = None;
    for (k, v) in obj {
        match (k.as_bytes(), v) {
            (b"execute" | b"exec-oob", Value::String(s)) => name = s,
            (b"arguments", Value::Object(a)) => args = a,
            (b"id", v) => id = Some(v),
            _ => {}
        }
    }
    Ok(Envelope {
        id,
        name,
        oob,
        args,
    })
}

impl Server {
    /// Check and execute a value that was handed over directly (7.2 OOB path) or popped.
    /// Returns how it ended, or `Answered` for check failures.
    pub(super) fn dispatch_value(&mut self, mid: MonitorId, v: Value) -> Executed {
        let Some(oob_enabled) = self.monitors.get(&mid).map(|m| m.oob_enabled) else {
            return Executed::Answered;
        };
        match check_envelope(v, oob_enabled) {
            Err((id, desc)) => {
                self.reply_error(mid, id, ErrorClass::GenericError, desc, false);
                Executed::Answered
            }
            Ok(env) => {
                let lane = if env.oob {
                    Lane::OutOfBand
                } else {
                    Lane::InBand
                };
                self.execute(mid, env, lane)
            }
        }
    }

    /// Steps 5–11: look up, policy, OOB and preconfig checks, arguments, then run.
    pub(super) fn execute(&mut self, mid: MonitorId, env: Envelope, lane: Lane) -> Executed {
        let Some(m) = self.monitors.get(&mid) else {
            return Executed::Answered;
        };
        let negotiated = m.negotiated;
        let dialect = self.config.dialect;
        let entry = if negotiated || env.name == "qmp_capabilities" {
            self.registry.get(env.name.as_bytes())
        } else {
            None
        };
        let name = env.name.as_bytes();
        let Some(entry) = entry else {
            let desc = member_text(&[b"The command ", name, b" has not been found"]);
            self.reply_error(mid, env.id, ErrorClass::CommandNotFound, desc, env.oob);
            return Executed::Answered;
        };
        if dialect == Dialect::Qemu72 {
            let policy = self.config.compat;
            let refused: Option<&[u8]> = if entry.spec.deprecated && policy.reject_deprecated_input
            {
                Some(b"Deprecated")
            } else if entry.spec.unstable && policy.reject_unstable_input {
                Some(b"Unstable")
            } else {
                None
            };
            if let Some(what) = refused {
                let desc = member_text(&[what, b" command ", name, b" disabled by policy"]);
                self.reply_error(mid, env.id, ErrorClass::CommandNotFound, desc, env.oob);
                return Executed::Answered;
            }
        }
        if env.oob && !entry.spec.allow_oob {
            let desc = member_text(&[b"The command ", name, b" does not support OOB"]);
            self.reply_error(mid, env.id, ErrorClass::GenericError, desc, env.oob);
            return Executed::Answered;
        }
        if self.run_state == RunState::Preconfig && !entry.spec.allow_preconfig {
            let desc = match dialect {
                Dialect::Qemu72 => member_text(&[
                    b"The command '",
                    name,
                    b"' is permitted only after machine initialization has completed",
                ]),
                Dialect::Qemu212 => member_text(&[
                    b"The command '",
                    name,
                    b"' isn't permitted in 'preconfig' state",
                ]),
            };
            self.reply_error(mid, env.id, ErrorClass::GenericError, desc, env.oob);
            return Executed::Answered;
        }
        let checked = match &entry.spec.qapi {
            Some(qapi) => check_qapi_arguments(dialect, qapi, &env.args),
            None => check_arguments(
                dialect,
                &entry.spec.arguments,
                entry.spec.union.as_ref(),
                &env.args,
            ),
        };
        if let Err(desc) = checked {
            self.reply_error(mid, env.id, ErrorClass::GenericError, desc, env.oob);
            return Executed::Answered;
        }
        if entry.builtin == Some(Builtin::HumanMonitorCommand) {
            return self.hmp_passthrough(mid, env.id, &env.args, env.oob);
        }
        if let Some(b) = entry.builtin {
            match self.run_builtin(mid, b, &env.args) {
                Ok(ret) => self.reply_return(mid, env.id, ret, env.oob),
                Err((class, desc)) => self.reply_error(mid, env.id, class, desc, env.oob),
            }
            return Executed::Answered;
        }
        let success_response = entry.spec.success_response;
        let generation = self.monitors.get(&mid).map_or(0, |m| m.generation);
        // The registry matched the request's name: the registered one is the same text,
        // shared rather than copied.
        let command = entry.name.clone();
        let call = CallId(self.next_call);
        self.next_call += 1;
        if lane == Lane::OutOfBand {
            let busy = self.inband_call_of(mid);
            if busy || self.monitors.get(&mid).is_some_and(|m| !m.queue.is_empty()) {
                self.probes.oob_overtake += 1;
            }
            // The monitor's input waits for this call (see `intake.rs`).
            if let Some(m) = self.monitors.get_mut(&mid) {
                m.oob_call = Some(call);
            }
        } else {
            self.inband_call = Some(call);
        }
        self.calls.insert(
            call,
            PendingCall {
                info: OutstandingCall {
                    id: call,
                    monitor: mid,
                    lane,
                    command: command.clone(),
                },
                request_id: env.id,
                success_response,
                resume_on_complete: false,
                generation,
                hmp_capture: false,
            },
        );
        self.digest.word(2);
        self.digest.word(call.0);
        self.digest.word(mid.0);
        self.digest.word(lane as u64);
        self.digest.bytes(command.as_bytes());
        self.digest.word(env.args.len() as u64);
        for (k, v) in env.args.iter() {
            self.digest.bytes(k.as_bytes());
            self.digest.value(v);
        }
        self.outputs.push_back(Output::Call(Call {
            id: call,
            monitor: mid,
            lane,
            command,
            arguments: env.args,
        }));
        Executed::Called(call)
    }

    /// `NextInBand`: QEMU's dispatcher takes one request, round robin across monitors.
    pub(super) fn dispatch_next(&mut self) {
        let pos = if planted!(self, RoundRobinBroken) {
            let first = self
                .monitors
                .iter()
                .find(|(_, m)| !m.queue.is_empty())
                .map(|(id, _)| *id);
            first.and_then(|id| self.rr.iter().position(|x| *x == id))
        } else {
            self.rr
                .iter()
                .position(|id| self.monitors.get(id).is_some_and(|m| !m.queue.is_empty()))
        };
        let Some(pos) = pos else {
            return;
        };
        if pos > 0 {
            self.probes.round_robin_skip += 1;
        }
        let mid = self.rr.remove(pos);
        self.rr.push(mid);
        let limit = self.queue_limit();
        let Some(m) = self.monitors.get_mut(&mid) else {
            return;
        };
        let Some(item) = m.queue.pop_front() else {
            return;
        };
        self.queued_total -= 1;
        // Saved before running: qmp_capabilities may turn OOB on.
        let oob_enabled = m.oob_enabled;
        if self.config.dialect == Dialect::Qemu72 && oob_enabled && m.queue.len() == limit - 1 {
            self.resume(mid);
        }
        let done = match item {
            Queued::JsonError(desc) => {
                self.reply_error(mid, None, ErrorClass::GenericError, desc, false);
                Executed::Answered
            }
            Queued::Request(v) => self.dispatch_value(mid, v),
            Queued::Hmp(line) => self.hmp_execute(mid, line),
            Queued::Checked { id, name, args } => self.execute(
                mid,
                Envelope {
                    id,
                    name,
                    oob: false,
                    args,
                },
                Lane::InBand,
            ),
        };
        if !oob_enabled {
            match done {
                Executed::Answered => self.resume(mid),
                Executed::Called(c) => {
                    if let Some(pc) = self.calls.get_mut(&c) {
                        pc.resume_on_complete = true;
                    }
                }
            }
        }
        self.flush_held(mid);
    }

    /// A handler finished: reply (unless it was a no-success-response command that
    /// succeeded), and resume the monitor if its request kept it suspended.
    pub(super) fn complete(&mut self, call: CallId, result: CallResult) {
        let Some(pc) = self.calls.remove(&call) else {
            return;
        };
        if self.inband_call == Some(call) {
            self.inband_call = None;
        }
        let mid = pc.info.monitor;
        // The monitor the call came from (not a later one of the same id) ...
        let same_monitor = self
            .monitors
            .get(&mid)
            .is_some_and(|m| pc.generation >= m.created);
        // ... and the session that sent the request, still connected.
        let same_session = self
            .monitors
            .get(&mid)
            .is_some_and(|m| m.open && m.generation == pc.generation);
        if same_session {
            let oob = pc.info.lane == Lane::OutOfBand;
            if pc.hmp_capture {
                self.hmp_capture_result(mid, pc.request_id.clone(), result, oob);
            } else if self.monitors.get(&mid).is_some_and(|m| m.hmp.is_some()) {
                self.hmp_result(mid, result);
            } else {
                self.reply_result(mid, &pc, result, oob);
            }
        } else {
            self.probes.reply_to_closed_monitor += 1;
        }
        if !same_monitor {
            return;
        }
        if !same_session {
            self.probes.call_outlived_session += 1;
        }
        // The suspension and the OOB hold belong to the monitor: released whoever is
        // connected now.
        if pc.resume_on_complete {
            self.resume(mid);
        }
        if let Some(m) = self.monitors.get_mut(&mid) {
            if m.oob_call == Some(call) {
                m.oob_call = None;
                if m.streamer.has_ready() || !m.input.is_empty() {
                    self.to_pump.push(mid);
                }
            }
        }
        self.flush_held(mid);
    }

    /// The QMP reply of a completed call.
    fn reply_result(&mut self, mid: MonitorId, pc: &PendingCall, result: CallResult, oob: bool) {
        let id = pc.request_id.clone();
        match result {
            CallResult::Return(_) | CallResult::ReturnJson(_) if !pc.success_response => {
                self.probes.no_success_response += 1;
            }
            CallResult::Return(v) => self.reply_return(mid, id, v, oob),
            CallResult::ReturnJson(t) => self.reply_return_text(mid, id, &t, oob),
            CallResult::Error { class, desc } => {
                self.reply_error(mid, id, class, desc, oob);
            }
        }
    }

    pub(super) fn reply_return(
        &mut self,
        mid: MonitorId,
        id: Option<Value>,
        ret: Value,
        oob: bool,
    ) {
        self.reply_return_written(mid, id, oob, |buf| crate::json::write_compact(&ret, buf));
    }

    /// [`Server::reply_return`] of a value already written: the same bytes.
    fn reply_return_text(&mut self, mid: MonitorId, id: Option<Value>, ret: &JsonText, oob: bool) {
        self.reply_return_written(mid, id, oob, |buf| buf.extend_from_slice(ret.as_bytes()));
    }

    /// `{"return": R, "id": I}` with R's compact text from `write_ret`, in the fixed member order
    /// of QEMU's writer (return in bucket 401 before id in 486), written without building the
    /// reply object: appended as it is to a compact monitor, re-laid out for a pretty one.
    fn reply_return_written(
        &mut self,
        mid: MonitorId,
        id: Option<Value>,
        oob: bool,
        write_ret: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(b"{\"return\": ");
        write_ret(&mut buf);
        if let Some(id) = &id {
            buf.extend_from_slice(b", \"id\": ");
            crate::json::write_compact(id, &mut buf);
        }
        buf.push(b'}');
        if self.compact_fast_path(mid, oob) {
            buf.extend_from_slice(b"\r\n");
            self.append_message(mid, &buf);
        } else {
            self.emit_text(mid, &buf, oob);
        }
        self.scratch = buf;
    }

    /// Compact monitor, no planted hold: replies can be written straight from their parts.
    fn compact_fast_path(&self, mid: MonitorId, oob: bool) -> bool {
        !(oob && planted!(self, OobReplyHeldBehindInBand))
            && self.monitors.get(&mid).is_some_and(|m| !m.options.pretty)
    }

    /// An error reply. In negotiation mode a CommandNotFound desc is replaced (§3).
    pub(super) fn reply_error(
        &mut self,
        mid: MonitorId,
        id: Option<Value>,
        class: ErrorClass,
        desc: impl Into<JsonString>,
        oob: bool,
    ) {
        let Some(m) = self.monitors.get(&mid) else {
            return;
        };
        let mut desc = desc.into();
        if class == ErrorClass::CommandNotFound && !m.negotiated {
            self.probes.negotiation_desc_replaced += 1;
            desc = JsonString::from("Expecting capabilities negotiation with 'qmp_capabilities'");
        }
        let id = if planted!(self, IdNotEchoedOnError) {
            None
        } else {
            id
        };
        if self.compact_fast_path(mid, oob) {
            // `{"id": I, "error": {"class": C, "desc": D}}` (id 486 < error 489, class 211 <
            // desc 377).
            let mut buf = std::mem::take(&mut self.scratch);
            buf.clear();
            buf.push(b'{');
            if let Some(id) = &id {
                buf.extend_from_slice(b"\"id\": ");
                crate::json::write_compact(id, &mut buf);
                buf.extend_from_slice(b", ");
            }
            buf.extend_from_slice(b"\"error\": {\"class\": \"");
            buf.extend_from_slice(class_name(class).as_bytes());
            buf.extend_from_slice(b"\", \"desc\": ");
            crate::json::write_compact(&Value::String(desc), &mut buf);
            buf.extend_from_slice(b"}}\r\n");
            self.append_message(mid, &buf);
            self.scratch = buf;
            return;
        }
        let mut err = Object::with_capacity(2);
        err.push_unchecked(JsonString::from("class"), Value::string(class_name(class)));
        err.push_unchecked(JsonString::from("desc"), Value::String(desc));
        let mut o = Object::with_capacity(2);
        if let Some(id) = id {
            o.push_unchecked(JsonString::from("id"), id);
        }
        o.push_unchecked(JsonString::from("error"), Value::Object(err));
        self.emit(mid, &Value::Object(o), oob);
    }
}
