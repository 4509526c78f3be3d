//! The reference model of one connection: what its client must observe, from the spec alone.
//!
//! Every request a client sends carries its expected reply bytes (exact, QEMU layout) and the
//! lane it is answered on: in-band replies come in request order; "immediate" replies (7.2
//! `exec-oob`, 2.12 checks made at once) keep their own order. An immediate reply overtakes an
//! earlier in-band one only when that in-band request was read with OOB enabled: with OOB off
//! QEMU suspends the monitor after each queued request until its reply is out
//! (`monitor_qmp_dispatcher_co`), so nothing after it is even read; and nothing overtakes an
//! immediate reply (its request is handled, OOB handler included, before the next is read).
//! So with OOB off every reply comes in request order.
//! Events a connection must receive are pushed here by the world from the throttle model.
//!
//! Named fds (`getfd`) belong to the monitor, not the connection (spec §10.2): the world keeps
//! their state per monitor across connections ([`NameState`]) and hands it to each new
//! connection's model; a name whose `getfd`/`closefd` had no reply seen when the connection
//! closed may or may not have been changed, so it is [`NameState::Unknown`] until a later
//! `getfd` settles it.
//!
//! Fd-set requests (`add-fd`, `remove-fd`, `query-fdsets`) act on sets shared by every
//! monitor: their expected replies are empty until checked, when [`ConnModel::check_with`]
//! works them out from the world's [`FdSets`] as they are then (the world checks an in-band
//! reply in the input that ran its request).

use std::collections::{BTreeMap, VecDeque};

use crate::fdsets::{FdSetCall, FdSets};
use crate::wire::{server_message, validate_message, J};

/// How far a session has got, as the model sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Session {
    /// After the greeting, before a successful `qmp_capabilities`.
    Negotiating,
    /// Command mode, with or without OOB.
    Command {
        /// OOB enabled by the negotiation.
        oob: bool,
    },
}

impl Session {
    /// OOB is enabled.
    pub fn oob(self) -> bool {
        matches!(self, Session::Command { oob: true })
    }
}

/// What the model knows of one of a monitor's named fds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum NameState {
    /// No fd of that name.
    #[default]
    Absent,
    /// An fd of that name is held by the monitor.
    Named,
    /// A `getfd`/`closefd` of it was sent and its reply not seen before the connection closed.
    Unknown,
}

/// Which queue of the connection a reply comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplyLane {
    /// Through the in-band queue: strict request order.
    InBand,
    /// Answered as soon as read (OOB, or 2.12's up-front checks).
    Immediate,
}

/// A handler call the request must cause.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectCall {
    /// Command name.
    pub command: &'static str,
    /// The request's tag (unique in the world), if the command takes one.
    pub tag: Option<i64>,
    /// Whether the call runs out-of-band.
    pub oob: bool,
}

/// One reply a connection must receive.
#[derive(Clone, Debug)]
pub struct Expect {
    /// Its lane.
    pub lane: ReplyLane,
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// 2.12 with OOB on: the request may instead be dropped with `COMMAND_DROPPED` for this id.
    pub drop_id: Option<J>,
    /// The session after this reply (successful negotiation).
    pub on_reply: Option<Session>,
    /// The request's kind, for failure reports.
    pub what: &'static str,
    /// In-band only: OOB is enabled when the request is read, so later immediate replies may
    /// overtake this one. Set from the projected session before the request is planned.
    pub overtakable: bool,
    /// Send order on the connection, set by [`ConnModel::push`].
    pub seq: u64,
    /// `getfd` (true) or `closefd` (false) of the name `fd<n>`: the monitor's named fd once
    /// this reply is seen.
    pub fd_effect: Option<(u8, bool)>,
}

/// Expected reply bytes: success.
pub fn ok_reply(ret: J, id: Option<&J>, pretty: bool) -> Vec<u8> {
    let mut m = vec![("return".to_string(), ret)];
    if let Some(id) = id {
        m.push(("id".to_string(), id.clone()));
    }
    server_message(&J::Obj(m), pretty)
}

/// Expected reply bytes: error.
pub fn err_reply(class: &str, desc: &str, id: Option<&J>, pretty: bool) -> Vec<u8> {
    let mut m = vec![(
        "error".to_string(),
        J::obj(vec![("class", J::s(class)), ("desc", J::s(desc))]),
    )];
    if let Some(id) = id {
        m.push(("id".to_string(), id.clone()));
    }
    server_message(&J::Obj(m), pretty)
}

/// What a message turned out to be.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// The greeting.
    Greeting,
    /// An expected event.
    Event,
    /// A `COMMAND_DROPPED` event, to be checked by the world (it spans connections).
    Dropped(serde_json::Value),
    /// An expected reply.
    Reply(ReplyLane),
}

/// Bound on unchecked output bytes kept per connection while waiting for a message end; a
/// longer incomplete message is a failure (the biggest legitimate one is far below this).
pub const MAX_PARTIAL_MESSAGE: usize = 8 << 20;

/// The model of one open connection.
#[derive(Debug)]
pub struct ConnModel {
    /// Pretty-printing monitor.
    pub pretty: bool,
    /// The monitor offers OOB.
    pub offered_oob: bool,
    /// Expected greeting, until seen.
    pub greeting: Option<Vec<u8>>,
    /// In-band replies still due, in order.
    pub inband: VecDeque<Expect>,
    /// Immediate replies still due, in order.
    pub immediate: VecDeque<Expect>,
    /// The session once every request sent so far has been dispatched.
    pub projected: Session,
    /// The session as of the replies seen.
    pub confirmed: Session,
    /// Input index at which the negotiation reply was produced.
    pub negotiated_at: Option<u64>,
    /// Events due: (input index of the broadcast, bytes).
    pub events: VecDeque<(u64, Vec<u8>)>,
    /// Produced bytes not yet split into messages.
    pub rx: Vec<u8>,
    /// Messages checked so far.
    pub messages: u64,
    /// Named fds `fd0`..`fd2` held once every request sent so far has run.
    pub fd_names: [bool; 3],
    /// Names whose state an earlier connection left unknown and no request of this one has
    /// settled yet (the client plans no `closefd` of them: its reply could be either).
    pub fd_unknown: [bool; 3],
    /// The monitor's named fds as of the replies seen.
    fd_seen: [NameState; 3],
    /// Fd-set requests among the in-band replies due, by sequence number.
    fdset_calls: BTreeMap<u64, FdSetCall>,
    /// Sequence number of the next expected reply.
    next_seq: u64,
}

impl ConnModel {
    /// A fresh connection: the greeting is due first.
    pub fn new(pretty: bool, offered_oob: bool, greeting: Vec<u8>) -> ConnModel {
        ConnModel {
            pretty,
            offered_oob,
            greeting: Some(greeting),
            inband: VecDeque::new(),
            immediate: VecDeque::new(),
            projected: Session::Negotiating,
            confirmed: Session::Negotiating,
            negotiated_at: None,
            events: VecDeque::new(),
            rx: Vec::new(),
            messages: 0,
            fd_names: [false; 3],
            fd_unknown: [false; 3],
            fd_seen: [NameState::Absent; 3],
            fdset_calls: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// The monitor's named fds left by its earlier connections.
    pub fn with_names(mut self, names: [NameState; 3]) -> ConnModel {
        for (i, s) in names.iter().enumerate() {
            self.fd_names[i] = *s == NameState::Named;
            self.fd_unknown[i] = *s == NameState::Unknown;
        }
        self.fd_seen = names;
        self
    }

    /// The monitor's named fds when this connection closes: as of the replies seen, except
    /// names with a `getfd`/`closefd` still unanswered (it may have run or not).
    pub fn names_at_close(&self) -> [NameState; 3] {
        let mut names = self.fd_seen;
        for e in self.inband.iter().chain(self.immediate.iter()) {
            if let Some((n, _)) = e.fd_effect {
                names[usize::from(n)] = NameState::Unknown;
            }
        }
        names
    }

    /// Adds a reply due, after every one already due; returns its sequence number.
    pub fn push(&mut self, mut e: Expect) -> u64 {
        let seq = self.next_seq;
        e.seq = seq;
        self.next_seq += 1;
        match e.lane {
            ReplyLane::InBand => self.inband.push_back(e),
            ReplyLane::Immediate => self.immediate.push_back(e),
        }
        seq
    }

    /// The in-band reply `seq` (just pushed, bytes empty) answers the fd-set request `call`.
    pub fn set_fdset_call(&mut self, seq: u64, call: FdSetCall) {
        self.fdset_calls.insert(seq, call);
    }

    /// The exact bytes `e` must have with the fd sets as they are now (`trial`, updated as
    /// its request would), when it is an fd-set reply and `sets` is given.
    fn expected_bytes<'a>(
        &self,
        e: &'a Expect,
        sets: Option<&(&mut FdSets, usize)>,
    ) -> Option<(std::borrow::Cow<'a, [u8]>, Option<FdSets>)> {
        let Some(call) = self.fdset_calls.get(&e.seq) else {
            return Some((std::borrow::Cow::Borrowed(&e.bytes), None));
        };
        let (sets, open) = sets?;
        let mut trial = (**sets).clone();
        let bytes = trial.execute(call, *open);
        Some((std::borrow::Cow::Owned(bytes), Some(trial)))
    }

    /// An immediate reply with `bytes` could be confused with a pending in-band reply that it
    /// may overtake (same bytes: same text and the same or no id). The client avoids planning
    /// such twins, since no observer could tell which of the two came first.
    pub fn twin_of_overtakable(&self, bytes: &[u8]) -> bool {
        self.inband
            .iter()
            .any(|e| e.overtakable && e.bytes == bytes)
    }

    /// Whether the front of `lane` may be the next reply: nothing due before it may still
    /// come (module doc).
    fn may_come_next(&self, lane: ReplyLane) -> bool {
        let (i, d) = (self.inband.front(), self.immediate.front());
        match lane {
            ReplyLane::InBand => i.is_some_and(|i| d.is_none_or(|d| d.seq > i.seq)),
            ReplyLane::Immediate => {
                d.is_some_and(|d| i.is_none_or(|i| i.seq > d.seq || i.overtakable))
            }
        }
    }

    /// Replies still due.
    pub fn outstanding(&self) -> usize {
        self.inband.len() + self.immediate.len()
    }

    /// A negotiation is still waiting for its reply (so the session may still change).
    pub fn negotiation_pending(&self) -> bool {
        self.projected != self.confirmed
            || self
                .inband
                .iter()
                .chain(self.immediate.iter())
                .any(|e| e.on_reply.is_some())
    }

    /// Checks one complete message produced at input `step` (no fd-set request due).
    pub fn check(&mut self, msg: &[u8], step: u64) -> Result<Seen, String> {
        self.check_with(msg, step, None)
    }

    /// Checks one complete message produced at input `step`; `sets`: the world's fd sets and
    /// the number of monitor connections open, against which a due fd-set reply is worked
    /// out (and which its request then changes).
    pub fn check_with(
        &mut self,
        msg: &[u8],
        step: u64,
        mut sets: Option<(&mut FdSets, usize)>,
    ) -> Result<Seen, String> {
        self.messages += 1;
        validate_message(msg).map_err(|e| {
            format!(
                "invalid output message ({} at byte {}): {}",
                e.what,
                e.at,
                show(msg)
            )
        })?;
        if let Some(g) = self.greeting.take() {
            if g != msg {
                return Err(format!(
                    "first message is not the greeting:\n  expected {}\n  got      {}",
                    show(&g),
                    show(msg)
                ));
            }
            return Ok(Seen::Greeting);
        }
        if is_event(msg) {
            if self.negotiated_at.is_none() {
                return Err(format!(
                    "event sent to a monitor in negotiation mode: {}",
                    show(msg)
                ));
            }
            if let Some(&(batch, _)) = self.events.front() {
                let pos = self
                    .events
                    .iter()
                    .take_while(|(b, _)| *b == batch)
                    .position(|(_, bytes)| bytes == msg);
                if let Some(pos) = pos {
                    self.events.remove(pos);
                    return Ok(Seen::Event);
                }
            }
            if contains(msg, b"\"COMMAND_DROPPED\"") {
                let v: serde_json::Value = serde_json::from_slice(msg)
                    .map_err(|e| format!("COMMAND_DROPPED unreadable ({e}): {}", show(msg)))?;
                return Ok(Seen::Dropped(v));
            }
            return Err(format!(
                "unexpected event (lost, duplicated, reordered or early):\n  got      {}\n  expected {}",
                show(msg),
                self.events
                    .front()
                    .map(|(_, b)| show(b))
                    .unwrap_or_else(|| "no event".into())
            ));
        }
        // Twins (identical bytes at both fronts, both free to come next) are never planned
        // (`twin_of_overtakable`), so at most one lane can match.
        for lane in [ReplyLane::InBand, ReplyLane::Immediate] {
            if !self.may_come_next(lane) {
                continue;
            }
            let q = match lane {
                ReplyLane::Immediate => &self.immediate,
                ReplyLane::InBand => &self.inband,
            };
            let Some(front) = q.front() else {
                continue;
            };
            let Some((bytes, after)) = self.expected_bytes(front, sets.as_ref()) else {
                continue;
            };
            if *bytes == *msg {
                if let (Some(after), Some((sets, _))) = (after, sets.as_mut()) {
                    **sets = after;
                }
                let q = match lane {
                    ReplyLane::Immediate => &mut self.immediate,
                    ReplyLane::InBand => &mut self.inband,
                };
                if let Some(e) = q.pop_front() {
                    self.fdset_calls.remove(&e.seq);
                    if let Some((n, named)) = e.fd_effect {
                        self.fd_seen[usize::from(n)] = if named {
                            NameState::Named
                        } else {
                            NameState::Absent
                        };
                    }
                    if let Some(s) = e.on_reply {
                        self.confirmed = s;
                        if matches!(s, Session::Command { .. }) && self.negotiated_at.is_none() {
                            self.negotiated_at = Some(step);
                        }
                    }
                }
                return Ok(Seen::Reply(lane));
            }
        }
        Err(format!(
            "unexpected reply:\n  got            {}\n  next in-band   {}\n  next immediate {}",
            show(msg),
            self.inband
                .iter()
                .take(3)
                .map(|e| match self.expected_bytes(e, sets.as_ref()) {
                    Some((b, _)) if !b.is_empty() => format!("{} ({})", show(&b), e.what),
                    _ => format!("({}, worked out when it runs)", e.what),
                })
                .collect::<Vec<_>>()
                .join("\n                 "),
            self.immediate
                .front()
                .map(|e| format!("{} ({})", show(&e.bytes), e.what))
                .unwrap_or_else(|| "none".into()),
        ))
    }

    /// A `COMMAND_DROPPED` for `id` concerns this connection: forget that request.
    pub fn drop_request(&mut self, id: &serde_json::Value) -> bool {
        let pos = self
            .inband
            .iter()
            .position(|e| e.drop_id.as_ref().is_some_and(|d| &d.to_serde() == id));
        match pos {
            Some(p) => {
                self.inband.remove(p);
                true
            }
            None => false,
        }
    }
}

/// True when `msg` is an event (its first member is `timestamp`, compact or pretty).
pub fn is_event(msg: &[u8]) -> bool {
    msg.starts_with(b"{\"timestamp\"") || msg.starts_with(b"{\r\n    \"timestamp\"")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A message for a failure report, cut to a readable length.
pub fn show(b: &[u8]) -> String {
    const SHOWN: usize = 300;
    let s = String::from_utf8_lossy(&b[..b.len().min(SHOWN)]).into_owned();
    let s = s.replace('\r', "\\r").replace('\n', "\\n");
    if b.len() > SHOWN {
        format!("{s}... ({} bytes)", b.len())
    } else {
        s
    }
}
