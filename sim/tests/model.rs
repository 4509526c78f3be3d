//! The reference model holds the core to QEMU's reply order: an OOB handler runs from the
//! parser callback, so nothing read after an `exec-oob` request is answered before it; with
//! OOB off every reply comes in request order.

use qmp_sim::model::{err_reply, ok_reply, ConnModel, Expect, ReplyLane, Seen};
use qmp_sim::wire::J;

fn immediate(bytes: Vec<u8>, what: &'static str) -> Expect {
    Expect {
        lane: ReplyLane::Immediate,
        bytes,
        drop_id: None,
        on_reply: None,
        what,
        overtakable: false,
        seq: 0,
        fd_effect: None,
    }
}

fn in_band(bytes: Vec<u8>, what: &'static str, overtakable: bool) -> Expect {
    Expect {
        lane: ReplyLane::InBand,
        overtakable,
        ..immediate(bytes, what)
    }
}

fn greeted() -> ConnModel {
    let greeting = b"{\"QMP\": {}}\r\n".to_vec();
    let mut m = ConnModel::new(false, true, greeting.clone());
    assert_eq!(m.check(&greeting, 0), Ok(Seen::Greeting));
    m
}

fn refused_oob(id: Option<&J>) -> Vec<u8> {
    err_reply(
        "GenericError",
        "QMP input member 'exec-oob' is unexpected",
        id,
        false,
    )
}

fn model_with_two_oob_requests() -> (ConnModel, Vec<u8>, Vec<u8>) {
    let greeting = b"{\"QMP\": {}}\r\n".to_vec();
    let mut m = ConnModel::new(false, true, greeting.clone());
    assert_eq!(m.check(&greeting, 0), Ok(Seen::Greeting));
    // An `exec-oob` whose handler is an embedder call, then a refused `exec-oob` behind it.
    let call = ok_reply(J::obj(vec![("tag", J::Int(7))]), Some(&J::Int(1)), false);
    let refused = err_reply(
        "GenericError",
        "The command sim-echo does not support OOB",
        Some(&J::Int(2)),
        false,
    );
    m.push(immediate(call.clone(), "oob call"));
    m.push(immediate(refused.clone(), "oob refused"));
    (m, call, refused)
}

#[test]
fn a_later_oob_reply_may_not_overtake_an_oob_call() {
    let (mut m, _, refused) = model_with_two_oob_requests();
    let e = m.check(&refused, 1).unwrap_err();
    assert!(e.starts_with("unexpected reply"), "{e}");
}

#[test]
fn oob_replies_in_request_order_pass() {
    let (mut m, call, refused) = model_with_two_oob_requests();
    assert_eq!(m.check(&call, 1), Ok(Seen::Reply(ReplyLane::Immediate)));
    assert_eq!(m.check(&refused, 2), Ok(Seen::Reply(ReplyLane::Immediate)));
    assert_eq!(m.outstanding(), 0);
}

/// Seed 51091's pattern with OOB off, in request order: a queued echo, a refused `exec-oob`
/// without id, a refused one with id 27, an in-band request refused for its `exec-oob` member
/// without id (the same bytes as the first refusal), an in-band error with id 27. QEMU 7.2
/// answers in exactly this order.
fn seed_51091_pattern() -> (ConnModel, [Vec<u8>; 5]) {
    let mut m = greeted();
    let echo = ok_reply(
        J::obj(vec![("tag", J::Int(36))]),
        Some(&J::s("c0-26")),
        false,
    );
    let id27 = J::s("c0-27");
    let bad_arg = err_reply(
        "GenericError",
        "Invalid parameter type for 'tag', expected: integer",
        Some(&id27),
        false,
    );
    m.push(in_band(echo.clone(), "echo", false));
    m.push(immediate(refused_oob(None), "refused, no id"));
    m.push(immediate(refused_oob(Some(&id27)), "refused, id 27"));
    m.push(in_band(refused_oob(None), "both keys", false));
    m.push(in_band(bad_arg.clone(), "bad argument", false));
    (
        m,
        [
            echo,
            refused_oob(None),
            refused_oob(Some(&id27)),
            refused_oob(None),
            bad_arg,
        ],
    )
}

#[test]
fn with_oob_off_replies_in_request_order_pass_even_with_twins_in_both_lanes() {
    let (mut m, replies) = seed_51091_pattern();
    for (i, r) in replies.iter().enumerate() {
        assert!(
            matches!(m.check(r, i as u64 + 1), Ok(Seen::Reply(_))),
            "reply {i}"
        );
    }
    assert_eq!(m.outstanding(), 0);
}

#[test]
fn with_oob_off_an_immediate_reply_may_not_overtake_an_earlier_in_band_one() {
    let (mut m, replies) = seed_51091_pattern();
    let e = m.check(&replies[2], 1).unwrap_err();
    assert!(e.starts_with("unexpected reply"), "{e}");
}

#[test]
fn with_oob_off_an_in_band_reply_may_not_overtake_an_earlier_immediate_one() {
    let (mut m, replies) = seed_51091_pattern();
    assert!(m.check(&replies[0], 1).is_ok());
    // The in-band twin of the first refusal may not stand in for the refusal with id 27.
    assert!(m.check(&replies[3], 2).is_ok());
    let e = m.check(&replies[4], 3).unwrap_err();
    assert!(e.starts_with("unexpected reply"), "{e}");
}

#[test]
fn with_oob_on_an_immediate_reply_may_overtake_an_in_band_one() {
    let mut m = greeted();
    let slow = ok_reply(J::obj(vec![]), Some(&J::Int(1)), false);
    let fast = refused_oob(Some(&J::Int(2)));
    m.push(in_band(slow.clone(), "slow", true));
    m.push(immediate(fast.clone(), "fast"));
    assert_eq!(m.check(&fast, 1), Ok(Seen::Reply(ReplyLane::Immediate)));
    assert_eq!(m.check(&slow, 2), Ok(Seen::Reply(ReplyLane::InBand)));
    assert!(!m.twin_of_overtakable(&slow));
}

/// An fd-set reply is worked out when it is checked, from the sets as they are then (another
/// monitor's `add-fd` may have run since the request was sent), and the request's effect is
/// applied only when its reply matched.
#[test]
fn fd_set_replies_are_worked_out_from_the_sets_when_checked() {
    use qmp_sim::fdsets::{FdSetCall, FdSetOp, FdSets};
    let mut m = greeted();
    let add = FdSetCall {
        op: FdSetOp::Add {
            fd: Some(1001),
            set: None,
            opaque: None,
        },
        id: Some(J::Int(5)),
        pretty: false,
    };
    let seq = m.push(in_band(Vec::new(), "add-fd", false));
    m.set_fdset_call(seq, add);
    let mut sets = FdSets::default();
    // Another monitor's add-fd took set 0 in the meantime.
    let other = FdSetCall {
        op: FdSetOp::Add {
            fd: Some(1000),
            set: None,
            opaque: None,
        },
        id: None,
        pretty: false,
    };
    sets.execute(&other, 2);
    let stale = b"{\"return\": {\"fd\": 1001, \"fdset-id\": 0}, \"id\": 5}\r\n";
    let e = m.check_with(stale, 1, Some((&mut sets, 2))).unwrap_err();
    assert!(e.starts_with("unexpected reply"), "{e}");
    assert!(
        !sets.holds(1001),
        "a reply that did not match changes nothing"
    );
    let right = b"{\"return\": {\"fd\": 1001, \"fdset-id\": 1}, \"id\": 5}\r\n";
    assert_eq!(
        m.check_with(right, 2, Some((&mut sets, 2))),
        Ok(Seen::Reply(ReplyLane::InBand))
    );
    assert!(sets.holds(1001) && m.outstanding() == 0);
}
