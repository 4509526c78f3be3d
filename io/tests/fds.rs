//! Descriptor passing over real Unix sockets (SCM_RIGHTS): getfd/closefd/add-fd/remove-fd/
//! query-fdsets with QEMU's texts, and every descriptor closed exactly once by the shim.
//!
//! "Closed" is observed from outside: the test keeps the read end of a pipe and passes only the
//! write end; once the daemon closes its copy, the read end sees EOF.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::*;

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn getfd_closefd_with_scm_rights() {
    let d = start(&["unix:qmp.sock"]);
    let h = d.server().handle();
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f1\"}}\n");
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No file descriptor supplied via SCM_RIGHTS\"}}\r\n"
    );
    let (r, w) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f1\"}, \"id\": \"g\"}\n",
        &[w.as_fd()],
    );
    drop(w);
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"g\"}\r\n");
    assert_eq!(h.fds_held(), 1);
    assert!(!writer_closed(&r, Duration::from_millis(100)), "still held");
    c.send("{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"f1\"}}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    assert!(
        writer_closed(&r, TIMEOUT),
        "closefd must close the descriptor"
    );
    assert_eq!(h.fds_held(), 0);
    c.send("{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"f1\"}}\n");
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'f1' not found\"}}\r\n"
    );
}

#[test]
fn getfd_with_a_digit_name_closes_the_descriptor() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    let (r, w) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"1x\"}}\n",
        &[w.as_fd()],
    );
    drop(w);
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'fdname' expects a name not starting with a digit\"}}\r\n"
    );
    assert!(writer_closed(&r, TIMEOUT));
    assert_eq!(d.server().handle().fds_held(), 0);
}

#[test]
fn add_fd_query_fdsets_remove_fd() {
    let d = start(&["unix:qmp.sock"]);
    let h = d.server().handle();
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    let (r0, w0) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"add-fd\", \"arguments\": {\"opaque\": \"my pipe\"}}\n",
        &[w0.as_fd()],
    );
    drop(w0);
    let reply = c.read_msg();
    // The fd number is the daemon's own descriptor number, as in QEMU.
    let fd0: u64 = reply
        .strip_prefix("{\"return\": {\"fd\": ")
        .and_then(|s| s.strip_suffix(", \"fdset-id\": 0}}\r\n"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{reply}"));
    let (r5, w5) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"add-fd\", \"arguments\": {\"fdset-id\": 5}}\n",
        &[w5.as_fd()],
    );
    drop(w5);
    let reply = c.read_msg();
    let fd5: u64 = reply
        .strip_prefix("{\"return\": {\"fd\": ")
        .and_then(|s| s.strip_suffix(", \"fdset-id\": 5}}\r\n"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{reply}"));
    assert_ne!(fd0, fd5);
    c.send("{\"execute\": \"query-fdsets\"}\n");
    assert_eq!(
        c.read_msg(),
        format!("{{\"return\": [{{\"fds\": [{{\"fd\": {fd5}}}], \"fdset-id\": 5}}, {{\"fds\": [{{\"fd\": {fd0}, \"opaque\": \"my pipe\"}}], \"fdset-id\": 0}}]}}\r\n")
    );
    c.send("{\"execute\": \"remove-fd\", \"arguments\": {\"fdset-id\": 5, \"fd\": 999}}\n");
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'fdset-id:5, fd:999' not found\"}}\r\n"
    );
    c.send("{\"execute\": \"remove-fd\", \"arguments\": {\"fdset-id\": 5}}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    assert!(
        writer_closed(&r5, TIMEOUT),
        "remove-fd must close the descriptor"
    );
    assert!(!writer_closed(&r0, Duration::from_millis(100)));
    assert_eq!(h.fds_held(), 1);
    // Fd sets outlive the connection while the VM runs... but QEMU's cleanup closes fds of a
    // set when no monitor connection is open any more (spec §10.3).
    drop(c);
    assert!(
        writer_closed(&r0, TIMEOUT),
        "cleanup at the last disconnect"
    );
    assert!(wait_until(TIMEOUT, || h.fds_held() == 0));
}

#[test]
fn unclaimed_and_replaced_fds_are_closed_exactly_once() {
    let d = start(&["unix:qmp.sock"]);
    let h = d.server().handle();
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    // An fd sent with a command that does not use it stays pending; a newer one replaces it.
    let (r1, w1) = pipe();
    send_with_fds(&c.sock, b"{\"execute\": \"query-name\"}\n", &[w1.as_fd()]);
    drop(w1);
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    let (r2, w2) = pipe();
    let (r3, w3) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"query-name\"}\n",
        &[w2.as_fd(), w3.as_fd()],
    );
    drop((w2, w3));
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    assert!(
        writer_closed(&r1, TIMEOUT),
        "older pending fd replaced and closed"
    );
    let closed_before = h.fds_closed();
    drop(c);
    assert!(writer_closed(&r2, TIMEOUT));
    assert!(writer_closed(&r3, TIMEOUT));
    assert!(wait_until(TIMEOUT, || h.fds_held() == 0));
    // Each descriptor went through the table's close path once: three in total.
    assert_eq!(h.fds_closed(), 3);
    assert!(closed_before >= 1);
}

#[test]
fn descriptors_still_held_are_closed_at_shutdown() {
    let mut d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    // Paused, fd sets survive the last disconnect (spec §10.3); only shutdown closes them.
    c.send("{\"execute\": \"stop\"}\n");
    assert!(c.read_msg().contains("STOP"));
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    let (r, w) = pipe();
    send_with_fds(&c.sock, b"{\"execute\": \"add-fd\"}\n", &[w.as_fd()]);
    drop(w);
    assert!(c.read_msg().starts_with("{\"return\": {\"fd\": "));
    drop(c);
    assert!(
        !writer_closed(&r, Duration::from_millis(200)),
        "kept while paused"
    );
    let h = d.server().handle();
    assert_eq!(h.fds_held(), 1);
    d.server
        .take()
        .expect("running")
        .shutdown()
        .expect("shutdown");
    assert!(writer_closed(&r, TIMEOUT), "closed at shutdown");
    assert_eq!(h.fds_held(), 0);
}

/// Pass `fd` as getfd `name` on `c`.
fn getfd(c: &mut Client, name: &str, fd: std::os::fd::BorrowedFd<'_>) {
    let cmd = format!("{{\"execute\": \"getfd\", \"arguments\": {{\"fdname\": \"{name}\"}}}}\n");
    send_with_fds(&c.sock, cmd.as_bytes(), &[fd]);
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
}

fn add_client(c: &mut Client, protocol: &str, name: &str) -> String {
    c.send(&format!(
        "{{\"execute\": \"add_client\", \"arguments\": {{\"protocol\": \"{protocol}\", \"fdname\": \"{name}\"}}}}\n"
    ));
    c.read_msg()
}

/// A client from a socketpair's other end, with the test client's read timeout.
fn pair_client(s: std::os::unix::net::UnixStream) -> Client {
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    Client::from_stream(s)
}

#[test]
fn add_client_error_paths_take_and_close_the_fd() {
    let d = start(&["unix:qmp.sock"]);
    let h = d.server().handle();
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(false);
    assert_eq!(
        add_client(&mut c, "compat_monitor0", "nope"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'nope' has not been found\"}}\r\n"
    );
    // Each failure has taken the fd (closefd no longer finds it) and closed it.
    let cases = [
        ("bogus", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"protocol 'bogus' is invalid\"}}\r\n"),
        ("spice", "{\"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"SPICE is not in use\"}}\r\n"),
        ("@dbus-display", "{\"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"D-Bus display is not in use\"}}\r\n"),
        ("vnc", "{\"return\": {}}\r\n"),
        // The chardev's one client is this one: QEMU's tcp_chr_add_client refuses.
        ("compat_monitor0", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to add client\"}}\r\n"),
    ];
    for (protocol, reply) in cases {
        let (r, w) = pipe();
        getfd(&mut c, "x", w.as_fd());
        drop(w);
        assert_eq!(h.fds_held(), 1);
        assert_eq!(add_client(&mut c, protocol, "x"), reply, "{protocol}");
        assert!(writer_closed(&r, TIMEOUT), "{protocol}: fd closed");
        assert_eq!(h.fds_held(), 0);
        c.send("{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"x\"}}\n");
        assert_eq!(
            c.read_msg(),
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'x' not found\"}}\r\n",
            "{protocol}: taken"
        );
    }
    // A pipe is no socket: the listener cannot serve it.
    let (r, w) = pipe();
    getfd(&mut c, "p", w.as_fd());
    drop(w);
    c.send("{\"execute\": \"add_client\", \"arguments\": {\"protocol\": \"compat_monitor0\", \"fdname\": \"p\"}}\n");
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to add client\"}}\r\n"
    );
    assert!(writer_closed(&r, TIMEOUT));
}

#[test]
fn add_client_makes_the_passed_stream_a_client_of_the_chardev() {
    let d = start(&["unix:a.sock", "unix:b.sock,id=extra"]);
    let h = d.server().handle();
    let mut a = Client::connect(&d.path("a.sock"));
    a.negotiate(false);
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    getfd(&mut a, "x", theirs.as_fd());
    drop(theirs);
    assert_eq!(add_client(&mut a, "extra", "x"), "{\"return\": {}}\r\n");
    assert_eq!(h.fds_held(), 0);
    let mut b = pair_client(mine);
    b.negotiate(false);
    b.send("{\"execute\": \"query-status\", \"id\": 1}\n");
    assert_eq!(
        b.read_msg(),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": 1}\r\n"
    );
    // The added client occupies the one-client chardev: a connect waits, a second add fails.
    let (_mine2, theirs2) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    getfd(&mut a, "y", theirs2.as_fd());
    drop(theirs2);
    assert_eq!(
        add_client(&mut a, "extra", "y"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to add client\"}}\r\n"
    );
    let mut waiting = Client::connect(&d.path("b.sock"));
    assert_eq!(waiting.read_msg_within(Duration::from_millis(200)), None);
    // Its session behaves like an accepted one: events reach it, and when it leaves, the
    // chardev serves the client waiting in the backlog.
    a.send("{\"execute\": \"stop\"}\n");
    let out = a.read_msg() + &a.read_msg();
    assert!(out.ends_with("{\"return\": {}}\r\n"), "{out}");
    let ev = mask_ts(&b.read_msg());
    assert!(ev.contains("\"event\": \"STOP\""), "{ev}");
    drop(b);
    waiting.negotiate(false);
}
