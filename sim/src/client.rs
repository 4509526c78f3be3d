//! Simulated clients: what they send and, for every request, what the spec says must come back.
//!
//! A client owns one monitor. Per connection it decides whether to negotiate and whether to ask
//! for OOB, then sends a mix of well-formed requests, malformed ones, garbage, big and deep
//! payloads, out-of-band requests and the blocking `x-oob-test` pair, spelling them in the
//! ways real clients do. Expectations are computed here, per dialect, from the spec texts.

use qmp_core::server::Dialect;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::fdsets::{FdSetCall, FdSetOp};
use crate::model::{err_reply, ok_reply, ConnModel, Expect, ExpectCall, ReplyLane, Session};
use crate::options::Options;
use crate::registry::{handler_result, ECHO, OOB_ECHO, OOB_TEST, QUIET, TAKE_FD};
use crate::wire::{encode_request, Spelling, J};

/// Largest string payload a client puts in one request.
pub const MAX_PAD_BYTES: usize = 96 * 1024;
/// Deepest nesting of a payload that must be accepted (QEMU's limit is 1024, the request
/// object and `arguments` take two levels).
pub const MAX_OK_DEPTH: usize = 1000;

/// One write's worth of client traffic and what it must cause.
#[derive(Debug, Default)]
pub struct Planned {
    /// Bytes to send.
    pub bytes: Vec<u8>,
    /// Replies due, in send order.
    pub expects: Vec<Expect>,
    /// Handler calls the requests must cause.
    pub calls: Vec<ExpectCall>,
    /// This is the blocking pair (lock in-band, unlock out-of-band).
    pub lock: bool,
    /// Pass one descriptor with the first byte of this write (`getfd`).
    pub fd: bool,
    /// With `lock`: the length of the lock request's bytes (the unlock follows them).
    pub lock_end: usize,
    /// An fd-set request (alone in its write): its reply is worked out when it is checked
    /// ([`crate::fdsets`]). With `fd`, the world fills in the descriptor's number.
    pub fdset: Option<FdSetCall>,
}

/// Descriptors a client remembers from its `add-fd` requests, to name in `remove-fd`.
pub const MAX_REMEMBERED_FDS: usize = 8;

/// What a request is meant to exercise.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Req {
    Caps {
        oob: bool,
    },
    Echo,
    EchoBadArg(u8),
    Unknown,
    LacksExecute,
    ExecuteNotString,
    ArgsNotObject,
    UnexpectedMember,
    ControlNotDict,
    BothKeys,
    OobEcho,
    OobNonOob,
    OobUnknown,
    OobBadArg,
    Lock,
    Unlock,
    GetFd(u8),
    CloseFd(u8),
    TakeFd(u8),
    Quiet,
    /// `add-fd`: a descriptor is passed; `fdset-id` (`-1`: the negative-id error); `opaque`
    /// `op<n>`.
    AddFd {
        fd: bool,
        set: Option<i64>,
        opaque: Option<u8>,
    },
    RemoveFd {
        set: i64,
        fd: Option<i64>,
    },
    QueryFdsets,
}

/// Garbage the 7.2 JSON layer answers with known errors (spec §1.3–1.5, Appendix A).
const GARBAGE_72: &[(&[u8], &[&str])] = &[
    (b"{]", &["JSON parse error, expecting value"]),
    (b"}", &["JSON parse error, expecting value"]),
    (b"[\"junk\"]", &["QMP input must be a JSON object"]),
    (b"[1, 2]", &["QMP input must be a JSON object"]),
    (
        b"{\"execute\": \"sim-echo\" \"x\"}",
        &["JSON parse error, expected separator in dict"],
    ),
    (
        b"{\"a\": 1, \"a\": 2}",
        &["JSON parse error, duplicate key"],
    ),
    (b"\x1b", &["JSON parse error, stray '\u{1b}'"]),
    (b"{\"execute\": \x1b", &["JSON parse error, stray '\u{1b}'"]),
    (b"\x00", &["JSON parse error, stray ''"]),
    (b"\xff", &["JSON parse error, stray '\u{fffd}'"]),
];

/// Garbage with 2.12 texts (spec §13.2.2): lexical errors give `Invalid JSON syntax`.
const GARBAGE_212: &[(&[u8], &[&str])] = &[
    (b"[\"junk\"]", &["QMP input must be a JSON object"]),
    (b"[1, 2]", &["QMP input must be a JSON object"]),
    (b"\x1b", &["Invalid JSON syntax"]),
];

/// Per-client generator state (survives reconnects).
#[derive(Debug)]
pub struct ClientGen {
    /// Client index, used in ids.
    pub index: usize,
    next_id: u64,
    last_id: Option<J>,
    /// This connection negotiates.
    pub will_negotiate: bool,
    /// This connection asks for OOB.
    pub wants_oob: bool,
    /// Requests to send before negotiating (negotiation-mode errors).
    pub pre_negotiation: u32,
    /// The negotiation request has been sent on this connection.
    pub negotiation_sent: bool,
    /// Give the next requests fresh ids (the blocking pair must not fail its id check, or the
    /// lock would never be released).
    force_id: bool,
    /// Descriptors this client passed with `add-fd`, newest last (at most
    /// [`MAX_REMEMBERED_FDS`]).
    added_fds: Vec<u64>,
}

impl ClientGen {
    /// A client.
    pub fn new(index: usize) -> ClientGen {
        ClientGen {
            index,
            next_id: 0,
            last_id: None,
            will_negotiate: true,
            wants_oob: false,
            pre_negotiation: 0,
            negotiation_sent: false,
            force_id: false,
            added_fds: Vec::new(),
        }
    }

    /// The world numbered the descriptor of this client's `add-fd`.
    pub fn added_fd(&mut self, fd: u64) {
        if self.added_fds.len() == MAX_REMEMBERED_FDS {
            self.added_fds.remove(0);
        }
        self.added_fds.push(fd);
    }

    /// Draws this connection's plan.
    pub fn on_connect(&mut self, rng: &mut ChaCha8Rng, opts: &Options) {
        self.will_negotiate = rng.random_bool(opts.p_negotiate);
        self.wants_oob = rng.random_bool(opts.p_enable_oob);
        self.pre_negotiation = if rng.random_bool(0.2) {
            rng.random_range(1..3)
        } else {
            0
        };
        self.negotiation_sent = false;
        self.last_id = None;
    }

    fn fresh_id(&mut self, rng: &mut ChaCha8Rng) -> J {
        self.next_id += 1;
        let n = self.next_id as i64;
        let c = self.index as i64;
        let id = match rng.random_range(0..10) {
            0 => J::Int(c * 1_000_000 + n),
            1 => J::Arr(vec![J::Int(c), J::Int(n)]),
            2 => J::obj(vec![
                ("n", J::Int(n)),
                ("c", J::Int(c)),
                ("zz", J::s("x")),
                ("id", J::Bool(true)),
            ]),
            _ => J::Str(format!("c{c}-{n}")),
        };
        self.last_id = Some(id.clone());
        id
    }

    /// The id of the next request: usually fresh; sometimes left out or, when ids need not be
    /// unique, a repeat of the previous one.
    fn id(&mut self, rng: &mut ChaCha8Rng, opts: &Options, unique: bool) -> Option<J> {
        if !self.force_id && rng.random_bool(opts.p_odd_id) {
            if !unique && rng.random_bool(0.5) {
                if let Some(last) = self.last_id.clone() {
                    return Some(last);
                }
            }
            return None;
        }
        let id = self.fresh_id(rng);
        if unique {
            self.last_id = None;
        }
        Some(id)
    }

    /// Plans the next write, or `None` when the client must wait for replies first.
    pub fn plan(
        &mut self,
        rng: &mut ChaCha8Rng,
        opts: &Options,
        conn: &mut ConnModel,
        next_tag: &mut i64,
    ) -> Option<Planned> {
        let d = opts.dialect;
        let settled = !conn.negotiation_pending();
        // 2.12 checks most requests the moment they are read, against the session as it is
        // then: never send while a negotiation is in flight.
        if d == Dialect::Qemu212 && !settled {
            return None;
        }
        if conn.inband.len() as u32 >= opts.max_pipeline {
            return None;
        }
        let mut p = Planned::default();
        if self.will_negotiate && !self.negotiation_sent && self.pre_negotiation == 0 {
            self.negotiation_sent = true;
            self.add(
                rng,
                opts,
                conn,
                next_tag,
                Req::Caps {
                    oob: self.wants_oob,
                },
                &mut p,
            );
            return Some(p);
        }
        self.pre_negotiation = self.pre_negotiation.saturating_sub(1);
        let garbage = if d == Dialect::Qemu72 {
            GARBAGE_72
        } else {
            GARBAGE_212
        };
        let oob_ok = settled && conn.confirmed.oob();
        if rng.random_bool(opts.p_lock) && oob_ok && conn.inband.is_empty() {
            p.lock = true;
            self.force_id = true;
            self.add(rng, opts, conn, next_tag, Req::Lock, &mut p);
            p.lock_end = p.bytes.len();
            self.add(rng, opts, conn, next_tag, Req::Unlock, &mut p);
            self.force_id = false;
            return Some(p);
        }
        if rng.random_bool(opts.p_garbage) {
            let (bytes, descs) = garbage[rng.random_range(0..garbage.len())];
            p.bytes.extend_from_slice(bytes);
            let lane = if d == Dialect::Qemu72 {
                ReplyLane::InBand
            } else {
                ReplyLane::Immediate
            };
            for desc in descs.iter() {
                p.expects.push(Expect {
                    lane,
                    bytes: err_reply("GenericError", desc, None, conn.pretty),
                    drop_id: None,
                    on_reply: None,
                    what: "garbage",
                    overtakable: lane == ReplyLane::InBand && conn.projected.oob(),
                    seq: 0,
                    fd_effect: None,
                });
            }
            return Some(p);
        }
        if rng.random_bool(opts.p_big) && rng.random_bool(0.05) && d == Dialect::Qemu72 {
            self.nesting_limit(conn, &mut p);
            return Some(p);
        }
        let req = if rng.random_bool(opts.p_bad) {
            let bad = [
                Req::EchoBadArg(0),
                Req::EchoBadArg(1),
                Req::EchoBadArg(2),
                Req::Unknown,
                Req::LacksExecute,
                Req::ExecuteNotString,
                Req::ArgsNotObject,
                Req::UnexpectedMember,
                Req::ControlNotDict,
                Req::BothKeys,
                Req::Caps { oob: false },
            ];
            bad[rng.random_range(0..bad.len())]
        } else if rng.random_bool(opts.p_fds)
            && matches!(conn.projected, Session::Command { .. })
            && !(d == Dialect::Qemu212 && conn.confirmed.oob())
            && !claim_in_flight(conn)
        {
            // One getfd in flight at a time: its descriptor is then surely pending when it runs.
            let n = rng.random_range(0..3u8);
            // A name an earlier connection left unknown is settled by a getfd first.
            if rng.random_bool(0.6) || conn.fd_unknown[usize::from(n)] {
                p.fd = true;
                Req::GetFd(n)
            } else if rng.random_bool(0.7) {
                Req::CloseFd(n)
            } else {
                Req::TakeFd(n)
            }
        } else if opts.p_fdsets > 0.0
            && rng.random_bool(opts.p_fdsets)
            && matches!(conn.projected, Session::Command { .. })
            && !(d == Dialect::Qemu212 && conn.confirmed.oob())
        {
            // Drawn only in worlds with fd sets, so other worlds' streams are unchanged. Not
            // with 2.12's OOB (a dropped request would leave the sets unknown).
            self.fdset_request(rng, opts, conn)
        } else if rng.random_bool(opts.p_oob) && settled {
            // With OOB off this exercises the refusal texts.
            let kinds = [
                Req::OobEcho,
                Req::OobEcho,
                Req::OobEcho,
                Req::OobNonOob,
                Req::OobUnknown,
                Req::OobBadArg,
            ];
            kinds[rng.random_range(0..kinds.len())]
        } else if d == Dialect::Qemu72 && opts.p_quiet > 0.0 && rng.random_bool(opts.p_quiet) {
            // Only drawn when the world enables it, so other worlds' streams are unchanged.
            Req::Quiet
        } else {
            Req::Echo
        };
        self.add(rng, opts, conn, next_tag, req, &mut p);
        Some(p)
    }

    /// An `add-fd`, `remove-fd` or `query-fdsets`. One request that claims a passed descriptor
    /// at a time (its own descriptor is then the one pending when it runs, as for `getfd`);
    /// without a descriptor only in worlds that pass no stray ones (nothing can be pending).
    fn fdset_request(&mut self, rng: &mut ChaCha8Rng, opts: &Options, conn: &ConnModel) -> Req {
        let k = rng.random_range(0..10);
        if k < 4 && !claim_in_flight(conn) {
            let fd = opts.p_fds > 0.0 || rng.random_bool(0.9);
            let set = match rng.random_range(0..20) {
                0..=9 => None,
                10 => Some(-1),
                n => Some(i64::from(n % 4)),
            };
            let opaque = rng.random_bool(0.4).then(|| rng.random_range(0..100u8));
            return Req::AddFd { fd, set, opaque };
        }
        if k < 8 {
            // Automatic ids start at 0: low ids name existing sets most of the time.
            let set = if rng.random_bool(0.8) {
                rng.random_range(0..3i64)
            } else {
                rng.random_range(0..8i64)
            };
            let fd = match rng.random_range(0..5) {
                0 | 1 => None,
                2 => Some(rng.random_range(0..2000i64)),
                _ => {
                    let known = &self.added_fds;
                    (!known.is_empty()).then(|| {
                        let fd = known[rng.random_range(0..known.len())];
                        i64::try_from(fd).unwrap_or(i64::MAX)
                    })
                }
            };
            return Req::RemoveFd { set, fd };
        }
        Req::QueryFdsets
    }

    /// `{"a": [[[…]]]}` one level too deep: one limit error, then one error per leftover closer
    /// (spec Appendix A C2).
    fn nesting_limit(&mut self, conn: &ConnModel, p: &mut Planned) {
        const ARRAYS: usize = 1024;
        p.bytes.extend_from_slice(b"{\"a\": ");
        p.bytes.extend(std::iter::repeat_n(b'[', ARRAYS));
        p.bytes.extend(std::iter::repeat_n(b']', ARRAYS));
        p.bytes.push(b'}');
        let mut push = |desc: &str| {
            p.expects.push(Expect {
                lane: ReplyLane::InBand,
                bytes: err_reply("GenericError", desc, None, conn.pretty),
                drop_id: None,
                on_reply: None,
                what: "nesting limit",
                overtakable: conn.projected.oob(),
                seq: 0,
                fd_effect: None,
            })
        };
        push("JSON nesting depth limit exceeded");
        for _ in 0..=ARRAYS {
            push("JSON parse error, expecting value");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        rng: &mut ChaCha8Rng,
        opts: &Options,
        conn: &mut ConnModel,
        next_tag: &mut i64,
        req: Req,
        p: &mut Planned,
    ) {
        let d = opts.dialect;
        let pretty = conn.pretty;
        // 2.12 with OOB on attributes drops by id: keep ids unique there.
        let unique = d == Dialect::Qemu212;
        let oob_marker = matches!(
            req,
            Req::OobEcho | Req::OobNonOob | Req::OobUnknown | Req::OobBadArg | Req::Unlock
        );
        let mut id = self.id(rng, opts, unique);
        // Read after every request sent before it, so with the session they leave.
        let oob_when_read = conn.projected.oob();
        let tag = *next_tag;
        *next_tag += 1;
        let fdset_op = match req {
            Req::AddFd { fd, set, opaque } => Some(FdSetOp::Add {
                // Numbered by the world when it queues the write.
                fd: fd.then_some(0),
                set,
                opaque: opaque.map(|n| format!("op{n}")),
            }),
            Req::RemoveFd { set, fd } => Some(FdSetOp::Remove { set, fd }),
            Req::QueryFdsets => Some(FdSetOp::Query),
            _ => None,
        };
        if let Some(FdSetOp::Add { fd: Some(_), .. }) = fdset_op {
            p.fd = true;
        }
        let (command, args): (J, Option<J>) = match req {
            Req::Caps { oob } => (
                J::s("qmp_capabilities"),
                if oob {
                    Some(J::obj(vec![("enable", J::Arr(vec![J::s("oob")]))]))
                } else if rng.random_bool(0.5) {
                    Some(J::obj(vec![("enable", J::Arr(vec![]))]))
                } else {
                    None
                },
            ),
            Req::Echo => {
                let mut a = vec![("tag", J::Int(tag))];
                if rng.random_bool(opts.p_big) {
                    a.push(("pad", big_payload(rng, opts.max_read)));
                }
                (J::s(ECHO), Some(J::obj(a)))
            }
            Req::EchoBadArg(0) => (J::s(ECHO), Some(J::obj(vec![("tag", J::s("x"))]))),
            Req::EchoBadArg(1) => (J::s(ECHO), Some(J::obj(vec![]))),
            Req::EchoBadArg(_) => (
                J::s(ECHO),
                Some(J::obj(vec![("tag", J::Int(tag)), ("bogus", J::Int(2))])),
            ),
            Req::Unknown | Req::OobUnknown => (J::s("no-such-cmd"), None),
            Req::LacksExecute => (J::Null, None),
            Req::ExecuteNotString => (J::Int(42), None),
            Req::ArgsNotObject => (J::s(ECHO), Some(J::Arr(vec![J::Int(1)]))),
            Req::UnexpectedMember | Req::ControlNotDict | Req::BothKeys => {
                (J::s(ECHO), Some(J::obj(vec![("tag", J::Int(tag))])))
            }
            Req::OobEcho => (J::s(OOB_ECHO), Some(J::obj(vec![("tag", J::Int(tag))]))),
            Req::Quiet => (J::s(QUIET), Some(J::obj(vec![("tag", J::Int(tag))]))),
            Req::OobNonOob => (J::s(ECHO), Some(J::obj(vec![("tag", J::Int(tag))]))),
            Req::OobBadArg => (J::s(OOB_ECHO), Some(J::obj(vec![("tag", J::s("x"))]))),
            Req::Lock => (J::s(OOB_TEST), Some(J::obj(vec![("lock", J::Bool(true))]))),
            Req::GetFd(n) => (
                J::s("getfd"),
                Some(J::obj(vec![("fdname", J::Str(format!("fd{n}")))])),
            ),
            Req::CloseFd(n) => (
                J::s("closefd"),
                Some(J::obj(vec![("fdname", J::Str(format!("fd{n}")))])),
            ),
            Req::TakeFd(n) => (
                J::s(TAKE_FD),
                Some(J::obj(vec![("fdname", J::Str(format!("fd{n}")))])),
            ),
            Req::Unlock => (J::s(OOB_TEST), Some(J::obj(vec![("lock", J::Bool(false))]))),
            Req::AddFd { .. } | Req::RemoveFd { .. } | Req::QueryFdsets => {
                let op = fdset_op.as_ref().unwrap_or(&FdSetOp::Query);
                (J::s(op.command()), op.arguments())
            }
        };
        let mut members: Vec<(&str, J)> = Vec::new();
        if req != Req::LacksExecute {
            let key = if oob_marker && d == Dialect::Qemu72 {
                "exec-oob"
            } else {
                "execute"
            };
            members.push((key, command.clone()));
        }
        if let Some(a) = args.clone() {
            members.push(("arguments", a));
        }
        if oob_marker && d == Dialect::Qemu212 {
            members.push(("control", J::obj(vec![("run-oob", J::Bool(true))])));
        }
        match req {
            Req::UnexpectedMember => members.push(("zzz", J::Int(1))),
            Req::ControlNotDict => members.push(("control", J::Int(1))),
            Req::BothKeys => members.push(("exec-oob", J::s(OOB_ECHO))),
            _ => {}
        }
        let cmd = command.as_str_opt().unwrap_or("");
        let outcome = |id: Option<&J>, conn: &mut ConnModel| {
            if d == Dialect::Qemu72 {
                expect_72(req, cmd, tag, id, conn, pretty)
            } else {
                expect_212(req, cmd, tag, id, conn, pretty)
            }
        };
        let (mut e, mut call) = outcome(id.as_ref(), conn);
        let twin = |e: &Expect| {
            e.lane == ReplyLane::Immediate
                && (conn.twin_of_overtakable(&e.bytes)
                    || p.expects
                        .iter()
                        .any(|x| x.overtakable && x.bytes == e.bytes))
        };
        if twin(&e) {
            // Only immediate replies are recomputed, and their expectations leave `conn` as
            // it was: a fresh id makes the bytes unique.
            id = Some(self.fresh_id(rng));
            (e, call) = outcome(id.as_ref(), conn);
        }
        e.overtakable = e.lane == ReplyLane::InBand && oob_when_read;
        if let Some(id) = &id {
            let at = rng.random_range(0..=members.len());
            members.insert(at, ("id", id.clone()));
        }
        let spelling = match rng.random_range(0..8) {
            0 => Spelling::SingleQuoted,
            1..=3 => Spelling::Tight,
            _ => Spelling::Spaced,
        };
        p.bytes
            .extend_from_slice(&encode_request(&J::obj(members), spelling));
        if let Some(call) = call {
            p.calls.push(call);
        }
        if let Some(op) = fdset_op {
            if e.what == op.command() {
                p.fdset = Some(FdSetCall {
                    op,
                    id: id.clone(),
                    pretty,
                });
                p.expects.push(e);
                return;
            }
        }
        if e.bytes.is_empty() {
            // A success without a success response: nothing comes back.
            return;
        }
        p.expects.push(e);
    }
}

fn big_payload(rng: &mut ChaCha8Rng, max_read: usize) -> J {
    if rng.random_bool(0.5) {
        // Byte-by-byte networks get smaller payloads: the point is the split, not the volume.
        let n = rng.random_range(1..MAX_PAD_BYTES.min(max_read * 512).max(2));
        J::Str("p".repeat(n))
    } else {
        let depth = rng.random_range(1..MAX_OK_DEPTH);
        let mut v = J::Arr(vec![]);
        for _ in 0..depth {
            v = J::Arr(vec![v]);
        }
        v
    }
}

/// A request that claims the pending descriptor (`getfd`, `add-fd`) is still unanswered.
pub fn claim_in_flight(conn: &ConnModel) -> bool {
    conn.inband
        .iter()
        .any(|e| e.what == "getfd" || e.what == "add-fd")
}

const NEGOTIATE_FIRST: &str = "Expecting capabilities negotiation with 'qmp_capabilities'";

fn param_error(req: Req) -> &'static str {
    match req {
        Req::EchoBadArg(0) | Req::OobBadArg => {
            "Invalid parameter type for 'tag', expected: integer"
        }
        Req::EchoBadArg(1) => "Parameter 'tag' is missing",
        _ => "Parameter 'bogus' is unexpected",
    }
}

fn handler_reply(tag: i64, id: Option<&J>, pretty: bool) -> Vec<u8> {
    match handler_result(tag) {
        Ok(v) => ok_reply(v, id, pretty),
        Err(desc) => err_reply("GenericError", &desc, id, pretty),
    }
}

type Outcome = (Expect, Option<ExpectCall>);

fn expect(lane: ReplyLane, bytes: Vec<u8>, what: &'static str) -> Expect {
    Expect {
        lane,
        bytes,
        drop_id: None,
        on_reply: None,
        what,
        overtakable: false,
        seq: 0,
        fd_effect: None,
    }
}

/// An accepted out-of-band request (both dialects): the handler runs at once and its reply
/// may overtake queued in-band replies.
fn expect_oob_call(req: Req, tag: i64, id: Option<&J>, pretty: bool) -> Outcome {
    use ReplyLane::Immediate;
    if req == Req::Unlock {
        return (
            expect(
                Immediate,
                ok_reply(J::obj(vec![]), id, pretty),
                "x-oob-test unlock",
            ),
            Some(ExpectCall {
                command: OOB_TEST,
                tag: None,
                oob: true,
            }),
        );
    }
    (
        expect(
            Immediate,
            handler_reply(tag, id, pretty),
            "out-of-band call",
        ),
        Some(ExpectCall {
            command: OOB_ECHO,
            tag: Some(tag),
            oob: true,
        }),
    )
}

/// A well-formed in-band request that reached command lookup (both dialects): bad arguments,
/// `qmp_capabilities` (whose "oob not offered" text differs by dialect), the fd built-ins, the
/// blocking `x-oob-test` lock and the echo handler.
fn expect_in_band_command(
    req: Req,
    tag: i64,
    id: Option<&J>,
    conn: &mut ConnModel,
    pretty: bool,
    negotiating: bool,
    oob_not_offered: &str,
) -> Outcome {
    use ReplyLane::InBand;
    let g = |desc: &str| expect(InBand, err_reply("GenericError", desc, id, pretty), "error");
    let ok = |what| expect(InBand, ok_reply(J::obj(vec![]), id, pretty), what);
    match req {
        Req::EchoBadArg(_) => (g(param_error(req)), None),
        Req::Caps { .. } if !negotiating => (
            expect(
                InBand,
                err_reply(
                    "CommandNotFound",
                    "Capabilities negotiation is already complete, command ignored",
                    id,
                    pretty,
                ),
                "qmp_capabilities again",
            ),
            None,
        ),
        Req::Caps { oob } if oob && !conn.offered_oob => (g(oob_not_offered), None),
        Req::Caps { oob } => {
            let next = Session::Command { oob };
            conn.projected = next;
            let mut e = ok("qmp_capabilities");
            e.on_reply = Some(next);
            (e, None)
        }
        Req::GetFd(n) => {
            conn.fd_names[n as usize] = true;
            conn.fd_unknown[n as usize] = false;
            let mut e = ok("getfd");
            e.fd_effect = Some((n, true));
            (e, None)
        }
        Req::CloseFd(n) => {
            let mut e = if std::mem::replace(&mut conn.fd_names[n as usize], false) {
                ok("closefd")
            } else {
                g(&format!("File descriptor named 'fd{n}' not found"))
            };
            e.fd_effect = Some((n, false));
            (e, None)
        }
        Req::TakeFd(n) => {
            let mut e = if std::mem::replace(&mut conn.fd_names[n as usize], false) {
                ok(TAKE_FD)
            } else {
                g(&format!("File descriptor named 'fd{n}' has not been found"))
            };
            e.fd_effect = Some((n, false));
            (
                e,
                Some(ExpectCall {
                    command: TAKE_FD,
                    tag: None,
                    oob: false,
                }),
            )
        }
        // Worked out when the reply is checked (`Planned::fdset`).
        Req::AddFd { .. } => (expect(InBand, Vec::new(), "add-fd"), None),
        Req::RemoveFd { .. } => (expect(InBand, Vec::new(), "remove-fd"), None),
        Req::QueryFdsets => (expect(InBand, Vec::new(), "query-fdsets"), None),
        Req::Quiet => (
            match handler_result(tag) {
                // No reply at all: empty bytes, never pushed (`add`).
                Ok(_) => expect(InBand, Vec::new(), "sim-quiet success"),
                Err(desc) => g(&desc),
            },
            Some(ExpectCall {
                command: QUIET,
                tag: Some(tag),
                oob: false,
            }),
        ),
        Req::Lock => (
            ok("x-oob-test lock"),
            Some(ExpectCall {
                command: OOB_TEST,
                tag: None,
                oob: false,
            }),
        ),
        _ => (
            expect(InBand, handler_reply(tag, id, pretty), "sim-echo"),
            Some(ExpectCall {
                command: ECHO,
                tag: Some(tag),
                oob: false,
            }),
        ),
    }
}

/// QEMU 7.2 (spec §4.2, §5.2, §6): everything but `exec-oob` goes through the queue.
fn expect_72(
    req: Req,
    cmd: &str,
    tag: i64,
    id: Option<&J>,
    conn: &mut ConnModel,
    pretty: bool,
) -> Outcome {
    use ReplyLane::*;
    let g = |desc: &str, lane| expect(lane, err_reply("GenericError", desc, id, pretty), "error");
    let cnf = |desc: &str, lane| {
        expect(
            lane,
            err_reply("CommandNotFound", desc, id, pretty),
            "error",
        )
    };
    let oob_req = matches!(
        req,
        Req::OobEcho | Req::OobNonOob | Req::OobUnknown | Req::OobBadArg | Req::Unlock
    );
    if oob_req {
        // Dispatched the moment it is read, against the session as it is then.
        let s = conn.confirmed;
        if !s.oob() {
            return (
                g("QMP input member 'exec-oob' is unexpected", Immediate),
                None,
            );
        }
        return match req {
            Req::OobUnknown => (
                cnf(&format!("The command {cmd} has not been found"), Immediate),
                None,
            ),
            Req::OobNonOob => (
                g(
                    &format!("The command {cmd} does not support OOB"),
                    Immediate,
                ),
                None,
            ),
            Req::OobBadArg => (g(param_error(req), Immediate), None),
            _ => expect_oob_call(req, tag, id, pretty),
        };
    }
    let s = conn.projected;
    let structure = match req {
        Req::LacksExecute => Some("QMP input lacks member 'execute'".to_string()),
        Req::ExecuteNotString => Some("QMP input member 'execute' must be a string".to_string()),
        Req::ArgsNotObject => Some("QMP input member 'arguments' must be an object".to_string()),
        Req::UnexpectedMember => Some("QMP input member 'zzz' is unexpected".to_string()),
        // 2.12's `control` member is unknown to 7.2.
        Req::ControlNotDict => Some("QMP input member 'control' is unexpected".to_string()),
        Req::BothKeys if s.oob() => {
            Some("QMP input member 'execute' clashes with 'exec-oob'".to_string())
        }
        Req::BothKeys => Some("QMP input member 'exec-oob' is unexpected".to_string()),
        _ => None,
    };
    if let Some(desc) = structure {
        return (g(&desc, InBand), None);
    }
    let negotiating = s == Session::Negotiating;
    if negotiating && !matches!(req, Req::Caps { .. }) {
        return (cnf(NEGOTIATE_FIRST, InBand), None);
    }
    match req {
        Req::Unknown => (
            cnf(&format!("The command {cmd} has not been found"), InBand),
            None,
        ),
        _ => expect_in_band_command(
            req,
            tag,
            id,
            conn,
            pretty,
            negotiating,
            "Capability oob not available",
        ),
    }
}

/// QEMU 2.12 (spec §13.2.2): checks at once without id, then OOB at once or queued (droppable
/// when OOB is on).
fn expect_212(
    req: Req,
    cmd: &str,
    tag: i64,
    id: Option<&J>,
    conn: &mut ConnModel,
    pretty: bool,
) -> Outcome {
    use ReplyLane::*;
    let s = conn.confirmed;
    let now_err = |class: &str, desc: &str| {
        (
            expect(
                Immediate,
                err_reply(class, desc, None, pretty),
                "2.12 check",
            ),
            None,
        )
    };
    let structure = match req {
        Req::LacksExecute => Some("QMP input lacks member 'execute'"),
        Req::ExecuteNotString => Some("QMP input member 'execute' must be a string"),
        Req::ArgsNotObject => Some("QMP input member 'arguments' must be an object"),
        Req::UnexpectedMember => Some("QMP input member 'zzz' is unexpected"),
        Req::BothKeys => Some("QMP input member 'exec-oob' is unexpected"),
        Req::ControlNotDict => Some("QMP input member 'control' must be a dict"),
        _ => None,
    };
    if let Some(desc) = structure {
        return now_err("GenericError", desc);
    }
    let negotiating = s == Session::Negotiating;
    if negotiating && !matches!(req, Req::Caps { .. }) {
        return now_err("CommandNotFound", NEGOTIATE_FIRST);
    }
    if matches!(req, Req::Unknown | Req::OobUnknown) {
        return now_err(
            "CommandNotFound",
            &format!("The command {cmd} has not been found"),
        );
    }
    let oob_req = matches!(
        req,
        Req::OobEcho | Req::OobNonOob | Req::OobBadArg | Req::Unlock
    );
    if oob_req && !s.oob() {
        return now_err(
            "GenericError",
            "Please enable Out-Of-Band first for the session during capabilities negotiation",
        );
    }
    if req == Req::OobNonOob {
        return now_err(
            "GenericError",
            &format!("The command {cmd} does not support OOB"),
        );
    }
    if s.oob() && id.is_none() {
        return now_err(
            "GenericError",
            "Out-Of-Band capability requires that every command contains an 'id' field",
        );
    }
    let g = |desc: &str, lane| expect(lane, err_reply("GenericError", desc, id, pretty), "error");
    if oob_req {
        return match req {
            Req::OobBadArg => (g(param_error(req), Immediate), None),
            _ => expect_oob_call(req, tag, id, pretty),
        };
    }
    let drop_id = if s.oob() { id.cloned() } else { None };
    let (mut e, call) = expect_in_band_command(
        req,
        tag,
        id,
        conn,
        pretty,
        negotiating,
        "This monitor does not support Out-Of-Band (OOB)",
    );
    e.drop_id = drop_id;
    (e, call)
}
