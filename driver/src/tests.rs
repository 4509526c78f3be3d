//! Deterministic tests of the driver with scripted socket facts: every lifecycle rule, one fact
//! at a time, with the bytes the clients would see.

use qmp_core::json::Object;
use qmp_core::server::{
    CallResult, CommandSpec, Config, Instant, Lane, MonitorId, MonitorOptions, Server, Timestamp,
};

use crate::{
    AcceptFact, Action, CloseReason, ConnId, Descriptor, Driver, FdLimits, Limits, ListenerConfig,
    ReadFact, ShutdownCause, WriteFact,
};

/// A simulated descriptor: its number, and a flag set when it is dropped (closed).
#[derive(Debug)]
struct Fd(u64);

impl Descriptor for Fd {
    fn number(&self) -> u64 {
        self.0
    }
}

const CAP: usize = 4096;

fn t(ms: u64) -> Instant {
    Instant(ms * 1_000_000)
}

fn listener(chardev: &str, clients: usize) -> ListenerConfig {
    ListenerConfig {
        chardev: chardev.into(),
        clients,
        options: MonitorOptions {
            oob_capable: true,
            pretty: false,
        },
        readline: false,
    }
}

fn driver_with(listeners: Vec<ListenerConfig>, limits: Limits) -> Driver<Fd> {
    let mut server = Server::new(Config::default());
    let mut spec = CommandSpec::new("slow");
    spec.allow_oob = true;
    server.register(spec).unwrap();
    Driver::new(server, listeners, limits)
}

fn driver(clients: usize) -> Driver<Fd> {
    driver_with(vec![listener("mon0", clients)], Limits::default())
}

/// Accept one client on listener 0.
fn accept(d: &mut Driver<Fd>) -> ConnId {
    assert!(
        d.should_accept(0, d.last_now()),
        "the listener should accept"
    );
    d.handle_accepted(d.last_now(), 0).expect("accepted")
}

fn data<'a>(bytes: &'a [u8]) -> ReadFact<'a, Fd> {
    ReadFact::Data {
        bytes,
        fds: Vec::new(),
        fds_cut: false,
        capacity: CAP,
    }
}

/// Write everything `conn` has pending (a socket that takes it all), as text.
fn drain_output(d: &mut Driver<Fd>, conn: ConnId) -> String {
    let out = String::from_utf8(d.pending_output(conn).to_vec()).unwrap();
    d.handle_written(d.last_now(), conn, WriteFact::Wrote(out.len()));
    out
}

/// Negotiate `conn` (the core answers `qmp_capabilities` on the in-band lane).
fn negotiate(d: &mut Driver<Fd>, conn: ConnId) {
    let greeting = drain_output(d, conn);
    assert!(greeting.starts_with("{\"QMP\""), "{greeting}");
    d.handle_read(
        d.last_now(),
        conn,
        data(b"{\"execute\": \"qmp_capabilities\"}"),
    );
    assert_eq!(d.next_in_band(d.last_now()), None, "answered by the core");
    assert_eq!(drain_output(d, conn), "{\"return\": {}}\r\n");
}

fn actions(d: &mut Driver<Fd>) -> Vec<Action<Fd>> {
    std::iter::from_fn(|| d.poll_action()).collect()
}

fn closed(d: &mut Driver<Fd>) -> Vec<(ConnId, CloseReason)> {
    actions(d)
        .into_iter()
        .filter_map(|a| match a {
            Action::CloseConn { conn, reason, .. } => Some((conn, reason)),
            Action::CloseFd(_) => None,
        })
        .collect()
}

#[test]
fn a_short_read_keeps_the_connection_readable_so_the_eof_behind_it_is_read() {
    let mut d = driver(1);
    let c = accept(&mut d);
    negotiate(&mut d, c);
    // The client sends part of a request and closes: both are in the socket before we read.
    d.handle_read(t(1), c, data(b"{\"execute\":\"query-sta"));
    assert!(d.should_read(c), "a short read is not would-block");
    d.handle_read(t(1), c, ReadFact::Eof);
    assert_eq!(closed(&mut d), [(c, CloseReason::PeerClosed)]);
    assert!(!d.is_open(c));
    // The one-client listener serves the next client, on the same monitor.
    let c2 = accept(&mut d);
    assert_ne!(c, c2);
    assert_eq!(d.monitor_of(c2), Some(MonitorId(0)));
    assert!(drain_output(&mut d, c2).starts_with("{\"QMP\""));
}

#[test]
fn only_would_block_clears_readability_and_a_readiness_event_restores_it() {
    let mut d = driver(1);
    let c = accept(&mut d);
    assert!(d.should_read(c), "readable from the accept");
    d.handle_read(t(1), c, ReadFact::Interrupted);
    assert!(d.should_read(c), "EINTR: read again");
    d.handle_read(t(1), c, ReadFact::WouldBlock);
    assert!(!d.should_read(c));
    d.handle_readable(c);
    assert!(d.should_read(c));
}

#[test]
fn an_interrupted_write_keeps_the_connection_on_the_transmit_list() {
    let mut d = driver(1);
    let c = accept(&mut d);
    assert_eq!(d.next_transmit(), Some(c), "the greeting is pending");
    d.handle_written(t(1), c, WriteFact::Interrupted);
    assert_eq!(d.next_transmit(), Some(c), "EINTR: write again");
    d.handle_written(t(1), c, WriteFact::Wrote(1));
    assert_eq!(
        d.next_transmit(),
        Some(c),
        "a short write leaves the rest pending"
    );
}

#[test]
fn whitespace_then_close_and_a_reset_both_free_the_slot() {
    let mut d = driver(1);
    let c = accept(&mut d);
    d.handle_read(t(1), c, data(b"  \n\t "));
    d.handle_read(t(1), c, ReadFact::Eof);
    assert_eq!(closed(&mut d), [(c, CloseReason::PeerClosed)]);
    let c2 = accept(&mut d);
    negotiate(&mut d, c2);
    d.handle_read(
        t(2),
        c2,
        ReadFact::Failed(std::io::ErrorKind::ConnectionReset),
    );
    assert_eq!(
        closed(&mut d),
        [(
            c2,
            CloseReason::ReadFailed(std::io::ErrorKind::ConnectionReset)
        )]
    );
    assert!(d.should_accept(0, t(2)));
}

#[test]
fn facts_about_a_closed_connection_never_reach_its_successor() {
    let mut d = driver(1);
    let old = accept(&mut d);
    d.handle_read(t(1), old, ReadFact::Eof);
    let _ = actions(&mut d);
    let new = accept(&mut d);
    assert_eq!(d.monitor_of(new), d.monitor_of(old).or(Some(MonitorId(0))));
    let greeting = d.pending_output(new).len();
    // A late read of the old socket, with a descriptor: ignored, the descriptor closed.
    d.handle_read(
        t(2),
        old,
        ReadFact::Data {
            bytes: b"{\"execute\": \"quit\"}",
            fds: vec![Fd(7)],
            fds_cut: false,
            capacity: CAP,
        },
    );
    d.handle_written(t(2), old, WriteFact::Wrote(greeting));
    assert_eq!(d.pending_output(new).len(), greeting);
    assert!(matches!(actions(&mut d)[..], [Action::CloseFd(Fd(7))]));
    assert_eq!(d.fds_held(), 0);
}

#[test]
fn monitors_belong_to_listener_slots_and_connections_take_the_lowest_free_one() {
    let mut d = driver_with(vec![listener("a", 2), listener("b", 1)], Limits::default());
    let a0 = accept(&mut d);
    let a1 = accept(&mut d);
    assert!(!d.should_accept(0, t(0)), "both slots taken");
    let b0 = d.handle_accepted(t(0), 1).unwrap();
    assert_eq!([a0, a1, b0].map(|c| d.monitor_of(c).unwrap().0), [0, 1, 2]);
    d.handle_read(t(1), a0, ReadFact::Eof);
    let a2 = accept(&mut d);
    assert_eq!(d.monitor_of(a2), Some(MonitorId(0)));
    assert_eq!(d.conn_of(MonitorId(0)), Some(a2));
}

#[test]
fn max_connections_holds_across_listeners() {
    let mut d = driver_with(
        vec![listener("a", 4), listener("b", 4)],
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
    );
    accept(&mut d);
    d.handle_accepted(t(0), 1).unwrap();
    assert!(!d.should_accept(0, t(0)));
    assert!(!d.should_accept(1, t(0)));
    assert_eq!(d.handle_accepted(t(0), 1), None);
}

#[test]
fn accept_out_of_descriptors_backs_off_instead_of_spinning() {
    let mut d = driver(2);
    let c = accept(&mut d);
    d.handle_accept_failed(t(10), 0, AcceptFact::OutOfResources);
    assert!(!d.should_accept(0, t(10)));
    assert!(!d.should_accept(0, t(109)));
    assert_eq!(d.poll_timeout(), Some(t(110)));
    d.handle_timeout(t(110));
    assert!(d.should_accept(0, t(110)));
    // A connection closing ends the back-off at once (a descriptor was freed).
    d.handle_accept_failed(t(120), 0, AcceptFact::OutOfResources);
    d.handle_read(t(121), c, ReadFact::Eof);
    assert!(d.should_accept(0, t(121)));
    // Would-block: wait for the next readiness event.
    d.handle_accept_failed(t(122), 0, AcceptFact::WouldBlock);
    assert!(!d.should_accept(0, t(122)));
    d.handle_listener_ready(0);
    assert!(d.should_accept(0, t(122)));
}

#[test]
fn descriptors_beyond_a_clients_share_are_closed_and_each_is_handed_back_once() {
    let mut d = driver_with(
        vec![listener("a", 2)],
        Limits {
            fds: FdLimits {
                total: 8,
                per_monitor: 2,
            },
            ..Limits::default()
        },
    );
    let c = accept(&mut d);
    let other = accept(&mut d);
    negotiate(&mut d, c);
    d.handle_read(
        t(1),
        c,
        ReadFact::Data {
            bytes: b" ",
            fds: vec![Fd(10), Fd(11), Fd(12)],
            fds_cut: false,
            capacity: CAP,
        },
    );
    // The share is two: the third is refused and closed at once; the core keeps the others.
    let mut returned: Vec<u64> = actions(&mut d)
        .into_iter()
        .map(|a| match a {
            Action::CloseFd(fd) => fd.0,
            a => panic!("{a:?}"),
        })
        .collect();
    returned.sort_unstable();
    assert_eq!(returned, [12]);
    assert_eq!(d.conn_stats(c).unwrap().fds_refused, 1);
    // The other client still has its share.
    d.handle_read(
        t(1),
        other,
        ReadFact::Data {
            bytes: b" ",
            fds: vec![Fd(20)],
            fds_cut: true,
            capacity: CAP,
        },
    );
    assert!(actions(&mut d).is_empty());
    assert_eq!(d.conn_stats(other).unwrap().fds_in, 1);
    assert_eq!(d.conn_stats(other).unwrap().fds_refused, 1, "the cut ones");
    // Shutdown hands back every descriptor still held, once.
    d.request_shutdown(t(2), ShutdownCause::Request, Timestamp::default());
    d.finish(t(2));
    let fds: Vec<u64> = actions(&mut d)
        .into_iter()
        .filter_map(|a| match a {
            Action::CloseFd(fd) => Some(fd.0),
            Action::CloseConn { .. } => None,
        })
        .collect();
    let mut fds = fds;
    fds.sort_unstable();
    assert_eq!(fds, [10, 11, 20]);
    assert_eq!(d.fds_held(), 0);
}

#[test]
fn the_output_budget_cuts_the_client_holding_the_most_and_spares_the_others() {
    let mut d = driver_with(
        vec![listener("a", 3)],
        Limits {
            output_budget: 2_000,
            ..Limits::default()
        },
    );
    let conns = [accept(&mut d), accept(&mut d), accept(&mut d)];
    for &c in &conns {
        negotiate(&mut d, c);
    }
    // conns[0] reads everything; conns[1] and [2] never read; [1] got a head start.
    let mut big = Object::new();
    big.insert("pad", qmp_core::json::Value::string("x".repeat(300)));
    d.emit_event(t(1), "BIG", big.clone(), Timestamp::default());
    drain_output(&mut d, conns[0]);
    drain_output(&mut d, conns[2]);
    let mut cut = Vec::new();
    for i in 0..10 {
        d.emit_event(t(2 + i), "BIG", big.clone(), Timestamp::default());
        drain_output(&mut d, conns[0]);
        cut.extend(closed(&mut d));
        assert!(d.output_held() <= 2_000);
        if !cut.is_empty() {
            break;
        }
    }
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0].0, conns[1]);
    assert!(matches!(
        cut[0].1,
        CloseReason::OutputBudget { budget: 2_000, .. }
    ));
    assert!(d.is_open(conns[0]) && d.is_open(conns[2]));
    assert_eq!(d.stats().budget_cuts, 1);
}

#[test]
fn a_signal_sends_shutdown_to_negotiated_clients_before_they_are_closed() {
    let mut d = driver(2);
    let (neg, fresh) = (accept(&mut d), accept(&mut d));
    negotiate(&mut d, neg);
    let greeting = d.pending_output(fresh).to_vec();
    let wall = Timestamp {
        seconds: 1_700_000_000,
        microseconds: 5,
    };
    d.request_shutdown(t(5), ShutdownCause::Signal, wall);
    assert_eq!(
        drain_output(&mut d, neg),
        "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 5}, \"event\": \"SHUTDOWN\", \
         \"data\": {\"guest\": false, \"reason\": \"host-signal\"}}\r\n"
    );
    assert_eq!(
        d.pending_output(fresh),
        &greeting[..],
        "not negotiated: no event"
    );
    assert!(
        !d.should_read(neg),
        "nothing is read after shutdown was requested"
    );
    assert!(!d.should_accept(0, t(5)));
    drain_output(&mut d, fresh);
    assert!(d.shutdown_flushed());
    d.finish(t(6));
    let mut gone: Vec<ConnId> = closed(&mut d).into_iter().map(|(c, _)| c).collect();
    gone.sort();
    assert_eq!(gone, [neg, fresh]);
}

#[test]
fn a_refused_write_waits_for_the_writable_event() {
    let mut d = driver(1);
    let c = accept(&mut d);
    assert_eq!(d.next_transmit(), Some(c));
    let n = d.pending_output(c).len();
    d.handle_written(t(1), c, WriteFact::Wrote(10));
    assert_eq!(d.pending_output(c).len(), n - 10);
    assert!(d.wants_transmit(c), "the rest is still to write");
    d.handle_written(t(1), c, WriteFact::WouldBlock);
    assert!(!d.wants_transmit(c));
    assert!(d.write_blocked(c));
    d.handle_writable(c);
    assert!(d.wants_transmit(c));
    d.handle_written(t(2), c, WriteFact::Wrote(n - 10));
    assert!(!d.wants_transmit(c));
    assert_eq!(d.stats().partial_writes, 1);
    d.handle_written(t(3), c, WriteFact::Failed(std::io::ErrorKind::BrokenPipe));
    assert_eq!(
        closed(&mut d),
        [(c, CloseReason::WriteFailed(std::io::ErrorKind::BrokenPipe))]
    );
}

#[test]
fn calls_carry_their_session_and_out_of_band_ones_come_first() {
    let mut d = driver(1);
    let c = accept(&mut d);
    negotiate(&mut d, c);
    d.handle_read(t(1), c, data(b"{\"execute\": \"qmp_capabilities\"}"));
    let _ = d.next_in_band(t(1));
    drain_output(&mut d, c);
    let c = {
        // Reconnect with OOB enabled.
        d.handle_read(t(2), c, ReadFact::Eof);
        let _ = actions(&mut d);
        let c = accept(&mut d);
        drain_output(&mut d, c);
        d.handle_read(
            t(3),
            c,
            data(b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}"),
        );
        let _ = d.next_in_band(t(3));
        drain_output(&mut d, c);
        c
    };
    d.handle_read(
        t(4),
        c,
        data(b"{\"execute\": \"slow\", \"id\": 1}{\"exec-oob\": \"slow\", \"id\": 2}"),
    );
    let oob = d.take_oob_call().expect("the OOB call");
    assert_eq!((oob.call.lane, oob.session), (Lane::OutOfBand, c));
    let ib = d.next_in_band(t(4)).expect("the in-band call");
    assert_eq!((ib.call.lane, ib.session), (Lane::InBand, c));
    d.complete(t(5), oob.call.id, CallResult::Return(Object::new().into()));
    d.complete(t(5), ib.call.id, CallResult::Return(Object::new().into()));
    assert_eq!(
        drain_output(&mut d, c),
        "{\"return\": {}, \"id\": 2}\r\n{\"return\": {}, \"id\": 1}\r\n"
    );
    assert_eq!(d.conn_stats(c).unwrap().calls, 2);
}

#[test]
fn yank_closes_the_clients_of_a_chardev_only() {
    let mut d = driver_with(vec![listener("a", 1), listener("b", 1)], Limits::default());
    let a = accept(&mut d);
    let b = d.handle_accepted(t(0), 1).unwrap();
    assert!(!d.yank(t(1), "nope"));
    assert!(d.yank(t(1), "b"));
    assert_eq!(closed(&mut d), [(b, CloseReason::Yanked)]);
    assert!(d.is_open(a));
}

#[cfg(feature = "planted")]
#[test]
fn planted_lost_eof_leaves_the_listener_stuck() {
    let mut d = driver(1);
    d.plant(Some(crate::Planted::LostEof));
    let c = accept(&mut d);
    negotiate(&mut d, c);
    d.handle_read(t(1), c, data(b"{\"execute\":\"query-sta"));
    // The adapter follows the driver: it no longer reads, so the EOF is never seen.
    assert!(!d.should_read(c));
    assert!(!d.should_accept(0, t(1)), "the next client waits for ever");
}

#[test]
fn an_in_band_reply_released_by_an_out_of_band_call_goes_out_after_its_reply() {
    let mut d = driver(1);
    let c = accept(&mut d);
    drain_output(&mut d, c);
    d.handle_read(
        t(1),
        c,
        data(b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}"),
    );
    let _ = d.next_in_band(t(1));
    drain_output(&mut d, c);
    d.handle_read(
        t(2),
        c,
        data(b"{\"execute\": \"slow\", \"id\": \"lock\"}{\"execute\": \"slow\", \"id\": \"q\"}"),
    );
    let lock = d.next_in_band(t(2)).expect("the lock");
    d.handle_read(
        t(3),
        c,
        data(b"{\"exec-oob\": \"slow\", \"id\": \"unlock\"}"),
    );
    let unlock = d.take_oob_call().expect("the unlock");
    // The unlock's handler releases the lock, whose handler returns first.
    d.complete(t(4), lock.call.id, CallResult::Return(Object::new().into()));
    assert_eq!(
        d.next_in_band(t(4)),
        None,
        "held back: the lane is still busy"
    );
    assert!(d.pending_output(c).is_empty());
    d.complete(
        t(5),
        unlock.call.id,
        CallResult::Return(Object::new().into()),
    );
    let q = d.next_in_band(t(5)).expect("the queued request");
    d.complete(t(6), q.call.id, CallResult::Return(Object::new().into()));
    assert_eq!(
        drain_output(&mut d, c),
        "{\"return\": {}, \"id\": \"unlock\"}\r\n{\"return\": {}, \"id\": \"lock\"}\r\n\
         {\"return\": {}, \"id\": \"q\"}\r\n"
    );
}

/// Records the inputs the core saw.
struct Inputs(std::sync::Arc<std::sync::Mutex<Vec<qmp_core::server::Input>>>);

impl crate::TraceSink for Inputs {
    fn input(&mut self, _: Instant, input: &qmp_core::server::Input) {
        self.0.lock().unwrap().push(input.clone());
    }
    fn output(&mut self, _: &qmp_core::server::Output) {}
    fn finish(&mut self, _: &Server) {}
}

#[test]
fn a_handler_takes_a_named_fd_once_and_the_trace_records_it() {
    let mut d = driver(1);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    d.set_recorder(Some(Box::new(Inputs(log.clone()))));
    let c = accept(&mut d);
    negotiate(&mut d, c);
    let m = d.monitor_of(c).unwrap();
    d.handle_read(
        t(1),
        c,
        ReadFact::Data {
            bytes: b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}",
            fds: vec![Fd(7)],
            fds_cut: false,
            capacity: CAP,
        },
    );
    assert_eq!(d.next_in_band(t(1)), None, "getfd is the core's");
    assert_eq!(drain_output(&mut d, c), "{\"return\": {}}\r\n");
    assert_eq!(d.fds_held(), 1);
    let fd = d.take_named_fd(t(2), m, "x").expect("taken");
    assert_eq!(fd.number(), 7);
    assert_eq!(
        (d.fds_held(), d.fds_closed()),
        (0, 0),
        "handed over, not closed"
    );
    assert!(
        actions(&mut d).is_empty(),
        "the handler owns it: no CloseFd"
    );
    let err = d.take_named_fd(t(3), m, "x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "File descriptor named 'x' has not been found"
    );
    let taken: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|i| matches!(i, qmp_core::server::Input::TakeNamedFd { .. }))
        .cloned()
        .collect();
    assert_eq!(
        taken,
        vec![
            qmp_core::server::Input::TakeNamedFd {
                monitor: m,
                name: "x".into()
            };
            2
        ]
    );
}

#[test]
fn an_added_client_follows_the_accept_policy() {
    let mut d = driver_with(
        vec![listener("mon0", 1), listener("extra", 1)],
        Limits::default(),
    );
    assert_eq!(d.listener_of("extra"), Some(1));
    assert_eq!(d.listener_of("nope"), None);
    let a = accept(&mut d);
    negotiate(&mut d, a);
    // The one-client chardev of the caller is busy: QEMU's tcp_chr_add_client refuses.
    assert_eq!(d.handle_added(t(1), 0), None);
    let b = d.handle_added(t(1), 1).expect("a free slot");
    assert_eq!(d.monitor_of(b), Some(MonitorId(1)));
    negotiate(&mut d, b);
    assert_eq!(d.handle_added(t(2), 1), None, "now busy too");
    d.handle_read(t(3), b, ReadFact::Eof);
    assert_eq!(closed(&mut d), [(b, CloseReason::PeerClosed)]);
    let b2 = d.handle_added(t(4), 1).expect("free again");
    assert!(drain_output(&mut d, b2).starts_with("{\"QMP\""));
    d.request_shutdown(t(5), ShutdownCause::Request, Timestamp::default());
    let _ = actions(&mut d);
    d.handle_read(t(5), b2, ReadFact::Eof);
    let _ = actions(&mut d);
    assert_eq!(
        d.handle_added(t(6), 1),
        None,
        "nothing is added after shutdown"
    );
}
