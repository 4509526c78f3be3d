//! The stdio monitor's rules ([`crate::Driver::open_stdio_monitor`]), one fact at a time, with
//! the bytes standard output would get; each next to what the same fact does to a socket's
//! human monitor, which the stdio rules must not change.

use qmp_core::server::{Config, Instant, MonitorId, MonitorOptions, Server, Timestamp};

use crate::{
    Action, CloseReason, ConnId, Descriptor, Driver, Limits, ListenerConfig, ReadFact,
    ShutdownCause, WriteFact,
};

#[derive(Debug)]
struct Fd(u64);

impl Descriptor for Fd {
    fn number(&self) -> u64 {
        self.0
    }
}

fn t(ms: u64) -> Instant {
    Instant(ms * 1_000_000)
}

/// A driver with one human-monitor listener of two slots (monitors 0 and 1).
fn driver(limits: Limits) -> Driver<Fd> {
    let listener = ListenerConfig {
        chardev: "hmp0".into(),
        clients: 2,
        options: MonitorOptions::default(),
        readline: true,
    };
    Driver::new(Server::new(Config::default()), vec![listener], limits)
}

fn data(bytes: &[u8]) -> ReadFact<'_, Fd> {
    ReadFact::Data {
        bytes,
        fds: Vec::new(),
        fds_cut: false,
        capacity: 4096,
    }
}

/// Write everything `conn` has pending, as text, after the in-band lane ran what was read
/// (every line of a human monitor takes its turn there; the core answers these itself).
fn drain(d: &mut Driver<Fd>, conn: ConnId) -> String {
    assert_eq!(d.next_in_band(d.last_now()), None, "no handler call");
    let out = String::from_utf8(d.pending_output(conn).to_vec()).unwrap();
    d.handle_written(d.last_now(), conn, WriteFact::Wrote(out.len()));
    out
}

fn closed(d: &mut Driver<Fd>) -> Vec<(ConnId, CloseReason)> {
    std::iter::from_fn(|| d.poll_action())
        .filter_map(|a| match a {
            Action::CloseConn { conn, reason, .. } => Some((conn, reason)),
            Action::CloseFd(_) => None,
        })
        .collect()
}

#[test]
fn the_stdio_monitor_opens_once_after_the_listener_slots_with_the_banner() {
    let mut d = driver(Limits::default());
    let s = d.open_stdio_monitor(t(1)).expect("opened");
    assert_eq!(d.monitor_of(s), Some(MonitorId(2)), "after slots 0 and 1");
    assert_eq!(d.conn_of(MonitorId(2)), Some(s));
    let banner = drain(&mut d, s);
    assert!(
        banner.starts_with("QEMU ")
            && banner.ends_with(" monitor - type 'help' for more information\r\n(qemu) "),
        "{banner:?}"
    );
    assert!(d.should_read(s));
    assert_eq!(d.open_stdio_monitor(t(2)), None, "one standard input");
    // Not a chardev of a listener: nothing accepts, yanks or lists it.
    assert_eq!(d.chardevs().collect::<Vec<_>>(), ["hmp0"]);
    assert!(d.yank(t(3), "hmp0"));
    assert!(closed(&mut d).is_empty());
    assert!(d.is_open(s));
    // The listener's slots are still its own.
    let c = d.handle_accepted(t(4), 0).expect("accepted");
    assert_eq!(d.monitor_of(c), Some(MonitorId(0)));
}

#[test]
fn eof_on_standard_input_ends_the_input_only_and_what_came_before_is_answered() {
    let mut d = driver(Limits::default());
    let s = d.open_stdio_monitor(t(1)).unwrap();
    let sock = d.handle_accepted(t(1), 0).unwrap();
    drain(&mut d, s);
    drain(&mut d, sock);
    // The same bytes then EOF on both (a pipe's writer wrote two lines and exited).
    for c in [s, sock] {
        d.handle_read(t(2), c, data(b"foo\nbar\n"));
        d.handle_read(t(2), c, ReadFact::Eof);
    }
    // The socket's client is gone (QEMU's tcp_chr_disconnect); its answers are dropped.
    assert_eq!(closed(&mut d), [(sock, CloseReason::PeerClosed)]);
    assert!(!d.is_open(sock));
    // The stdio monitor stays: both lines answered, the input never read again.
    assert!(d.is_open(s));
    let out = drain(&mut d, s);
    assert!(
        out.contains("unknown command: 'foo'\r\n(qemu) ")
            && out.ends_with("unknown command: 'bar'\r\n(qemu) "),
        "{out:?}"
    );
    assert!(!d.should_read(s) && !d.wants_input(s));
    d.handle_readable(s);
    assert!(!d.should_read(s), "a readiness event does not reopen it");
    assert!(d.running());
}

#[test]
fn a_read_error_on_standard_input_ends_the_input_only() {
    let mut d = driver(Limits::default());
    let s = d.open_stdio_monitor(t(1)).unwrap();
    drain(&mut d, s);
    d.handle_read(t(2), s, data(b"foo\n"));
    d.handle_read(t(2), s, ReadFact::Failed(std::io::ErrorKind::Other));
    assert!(closed(&mut d).is_empty());
    assert!(d.is_open(s) && !d.should_read(s));
    assert!(drain(&mut d, s).ends_with("unknown command: 'foo'\r\n(qemu) "));
}

#[test]
fn a_failed_write_to_standard_output_drops_the_output_and_keeps_the_monitor() {
    let mut d = driver(Limits::default());
    let s = d.open_stdio_monitor(t(1)).unwrap();
    assert_eq!(d.next_transmit(), Some(s), "the banner");
    d.handle_written(t(2), s, WriteFact::Failed(std::io::ErrorKind::BrokenPipe));
    assert!(closed(&mut d).is_empty());
    assert!(d.is_open(s));
    assert!(d.pending_output(s).is_empty(), "dropped");
    assert_eq!(d.output_held(), 0);
    assert_eq!(d.next_transmit(), None);
    // Input still runs; its answer is written (or dropped again if the write fails again).
    d.handle_read(t(3), s, data(b"foo\n"));
    assert_eq!(d.next_transmit(), Some(s));
    assert!(drain(&mut d, s).contains("unknown command: 'foo'"));
    d.handle_read(t(4), s, data(b"bar\n"));
    d.handle_written(t(4), s, WriteFact::Failed(std::io::ErrorKind::BrokenPipe));
    assert!(d.pending_output(s).is_empty() && d.is_open(s));
}

#[test]
fn the_output_budget_and_shutdown_close_it_like_any_connection() {
    let limits = Limits {
        output_budget: 100,
        ..Limits::default()
    };
    let mut d = driver(limits);
    let s = d.open_stdio_monitor(t(1)).unwrap();
    drain(&mut d, s);
    // Standard output never drains: every `foo` adds an answer.
    for _ in 0..10 {
        d.handle_read(t(2), s, data(b"foo\n"));
        let _ = d.next_in_band(t(2));
        if !d.is_open(s) {
            break;
        }
    }
    assert!(matches!(
        closed(&mut d)[..],
        [(c, CloseReason::OutputBudget { budget: 100, .. })] if c == s
    ));

    let mut d = driver(Limits::default());
    let s = d.open_stdio_monitor(t(1)).unwrap();
    d.request_shutdown(t(2), ShutdownCause::Signal, Timestamp::default());
    assert!(!d.should_read(s));
    assert_eq!(d.open_stdio_monitor(t(2)), None);
    drain(&mut d, s);
    assert!(d.shutdown_flushed());
    d.finish(t(3));
    assert_eq!(closed(&mut d), [(s, CloseReason::Shutdown)]);
}
