//! The reference model holds the core to QEMU's reply order: an OOB handler runs from the
//! parser callback, so nothing read after an `exec-oob` request is answered before it.

use qmp_sim::model::{err_reply, ok_reply, ConnModel, Expect, ReplyLane, Seen};
use qmp_sim::wire::J;

fn immediate(bytes: Vec<u8>, what: &'static str) -> Expect {
    Expect {
        lane: ReplyLane::Immediate,
        bytes,
        drop_id: None,
        on_reply: None,
        what,
    }
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
    m.immediate.push_back(immediate(call.clone(), "oob call"));
    m.immediate
        .push_back(immediate(refused.clone(), "oob refused"));
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
