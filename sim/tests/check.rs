//! The intent-free checker (`qmp_sim::check`) on the inputs that once raised false alarms
//! (found by the fuzzers), and on the planted bug those relaxed invariants must still catch.

use qmp_core::server::{
    CommandSpec, Config, Input, Instant, MonitorId, MonitorOptions, PlantedBug, Server,
};
use qmp_sim::check::{run_inputs, QUEUE_OVERSHOOT_MAX};

const M: MonitorId = MonitorId(1);

fn open(oob_capable: bool) -> (Instant, Input) {
    (
        Instant(0),
        Input::Open {
            monitor: M,
            options: MonitorOptions {
                oob_capable,
                pretty: false,
            },
        },
    )
}

fn receive(bytes: &[u8]) -> (Instant, Input) {
    (
        Instant(1),
        Input::Receive {
            monitor: M,
            bytes: bytes.to_vec(),
            fds: vec![],
        },
    )
}

fn registry() -> Vec<CommandSpec> {
    qmp_sim::registry::commands()
}

/// The queue length the core reaches on `inputs` (to show the case is the one meant).
fn queue_after(config: &Config, inputs: &[(Instant, Input)]) -> usize {
    let mut s = Server::new(config.clone());
    for spec in registry() {
        s.register(spec).unwrap();
    }
    for (now, input) in inputs {
        s.handle(*now, input.clone()).unwrap();
        while s.poll_output().is_some() {}
    }
    s.queue_len(M)
}

fn negotiate_oob() -> Vec<(Instant, Input)> {
    vec![
        open(true),
        receive(b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}"),
        (Instant(1), Input::NextInBand),
    ]
}

#[test]
fn one_byte_can_queue_two_messages_with_oob_off() {
    // `}` ends the number `1` and is a (JSON error) message itself: QEMU 7.2 queues both.
    let inputs = vec![open(false), receive(b"1}")];
    let config = Config::default();
    assert_eq!(queue_after(&config, &inputs), 2);
    run_inputs(&config, &registry(), &inputs).expect("a queue of 2 from one byte is QEMU's");
}

#[test]
fn one_byte_can_queue_a_ninth_message_with_oob_on() {
    // Six messages, a seventh ended by the space, then `1}`: the 8th (suspends) and the 9th.
    let mut inputs = negotiate_oob();
    inputs.push(receive(b"1}1}1}1 1}"));
    let config = Config::default();
    assert_eq!(queue_after(&config, &inputs), 9);
    run_inputs(&config, &registry(), &inputs).expect("a queue of 9 from one byte is QEMU's");
}

#[test]
fn bytes_lexed_after_the_suspension_point_still_fail_the_queue_oracles() {
    // The planted bug lexes the rest of the chunk although the monitor is suspended.
    let config = Config {
        planted_bug: Some(PlantedBug::EarlyBytesAfterSuspension),
        ..Config::default()
    };
    let off = vec![open(false), receive(b"1}1}")];
    assert!(queue_after(&config, &off) > 1 + QUEUE_OVERSHOOT_MAX);
    let f = run_inputs(&config, &registry(), &off).unwrap_err();
    assert_eq!(f.oracle, "queue-without-oob");

    let mut on = negotiate_oob();
    on.push(receive(b"1}1}1}1 1}1}"));
    assert!(queue_after(&config, &on) > 8 + QUEUE_OVERSHOOT_MAX);
    let f = run_inputs(&config, &registry(), &on).unwrap_err();
    assert_eq!(f.oracle, "queue-limit");
}

#[test]
fn output_dropped_by_an_output_limit_disconnect_is_no_failure() {
    // The greeting fits, the JSON error reply after it does not: the core gives up and drops
    // the greeting it had not written yet.
    let inputs = vec![open(false), receive(b"}"), (Instant(1), Input::NextInBand)];
    let greeting = {
        let mut s = Server::new(Config::default());
        s.handle(Instant(0), inputs[0].1.clone()).unwrap();
        s.pending_output(M).len()
    };
    let config = Config {
        output_limit: greeting + 10,
        ..Config::default()
    };
    let mut s = Server::new(config.clone());
    let mut disconnected = false;
    for (now, input) in &inputs {
        s.handle(*now, input.clone()).unwrap();
        while let Some(out) = s.poll_output() {
            disconnected |= matches!(out, qmp_core::server::Output::Disconnect { .. });
        }
    }
    assert!(disconnected && s.pending_output(M).is_empty());
    run_inputs(&config, &registry(), &inputs).expect("giving up drops output by design");
}

#[test]
fn a_dispatch_can_free_the_queue_and_the_next_byte_refill_it_past_the_limit() {
    // `}` fills the queue (OOB off); dispatching its error resumes the monitor, and `1}` then
    // queues two messages within the same input.
    let inputs = vec![
        open(false),
        receive(b"}1}"),
        (Instant(1), Input::NextInBand),
    ];
    let config = Config::default();
    assert_eq!(queue_after(&config, &inputs[..2]), 1);
    assert_eq!(queue_after(&config, &inputs), 2);
    run_inputs(&config, &registry(), &inputs).expect("the queue was empty in between");
}
