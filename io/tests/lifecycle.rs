//! Regression tests of a connection's lifecycle on real sockets (issue 21): a client that
//! closes right after its last bytes, whitespace then close, a TCP reset. In each case the
//! server must see the close, so a one-client listener serves the next client.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{start, Client, GREETING, TIMEOUT};

/// The repro: greeting, negotiate, half a request, close; 1,000 times on a
/// one-client listener. A lost EOF leaves the listener busy and the next greeting never comes.
#[test]
fn a_client_closing_mid_request_frees_the_one_client_listener_1000_times() {
    let d = start(&["unix:qmp.sock"]);
    for i in 0..1000 {
        let mut c = Client::connect(&d.path("qmp.sock"));
        assert_eq!(
            c.read_msg_within(TIMEOUT)
                .unwrap_or_else(|| panic!("cycle {i}: no greeting")),
            GREETING
        );
        c.send("{\"execute\":\"qmp_capabilities\"}\n");
        assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
        c.send("{\"execute\":\"query-sta");
        drop(c);
    }
}

#[test]
fn whitespace_then_close_frees_the_listener() {
    let d = start(&["unix:qmp.sock"]);
    for _ in 0..50 {
        let mut c = Client::connect(&d.path("qmp.sock"));
        assert_eq!(c.read_msg(), GREETING);
        c.send("  \n\t ");
        drop(c);
    }
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
}

#[test]
fn a_tcp_reset_frees_the_listener() {
    let d = start(&["tcp:127.0.0.1:0"]);
    let addr = match &d.server().addresses()[0] {
        qmp_io::Address::Tcp(a) => *a,
        a => panic!("{a}"),
    };
    let read_greeting = |s: &mut TcpStream| {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 512];
        while !got.ends_with(b"\r\n") {
            let n = s.read(&mut b).expect("greeting");
            assert!(n > 0, "EOF before the greeting");
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8(got).unwrap()
    };
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).unwrap();
        assert_eq!(read_greeting(&mut s), GREETING);
        s.write_all(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"query-na")
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
        // SO_LINGER 0: close sends RST instead of FIN.
        rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    let mut s = TcpStream::connect(addr).unwrap();
    assert_eq!(read_greeting(&mut s), GREETING);
}
