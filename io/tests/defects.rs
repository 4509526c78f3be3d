//! Regression tests on real sockets for the defects of issues 21 and 16: a held `x-oob-test`
//! lock outliving its holder, out-of-band replies after the in-band replies they release, the
//! fd table's per-client share and cut descriptors (with a warning naming the client), and the
//! process-wide output budget (the cut client is logged).
//!
//! The log lines are observed through a global tracing subscriber writing into a buffer (one
//! per test binary, so every test here shares it and looks for its own lines).

mod common;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use qmp_core::server::Dialect;
use qmp_driver::{FdLimits, Limits};
use qmp_io::QmpServerBuilder;

/// Everything logged in this test binary.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(w.clone()))
            .init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// True when a logged line contains every one of `parts` within `limit`.
fn logged(parts: &[&str], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
        if text.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("log so far:\n{text}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_limited(specs: &[&str], limits: Limits) -> Demo {
    start_with(specs, Dialect::Qemu72, move |b: QmpServerBuilder| {
        b.limits(limits)
    })
}

const LOCK: &str =
    "{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"L\"}\n";
const UNLOCK: &str =
    "{\"exec-oob\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"id\": \"U\"}\n";

#[test]
fn a_lock_is_let_go_when_its_holder_disconnects_so_the_next_client_negotiates() {
    log();
    // One client at a time, as QEMU's socket chardev.
    let d = start(&["unix:qmp.sock"]);
    for _ in 0..3 {
        let mut a = Client::connect(&d.path("qmp.sock"));
        a.negotiate(true);
        a.send(LOCK);
        // The lock blocks the in-band lane: a query waits behind it.
        a.send("{\"execute\": \"query-name\", \"id\": 1}\n");
        assert_eq!(a.read_all_within(QUIET), "");
        drop(a);
        let mut b = Client::connect(&d.path("qmp.sock"));
        assert_eq!(b.read_msg(), GREETING);
        b.send("{\"execute\": \"qmp_capabilities\"}\n");
        assert_eq!(
            b.read_msg_within(TIMEOUT).as_deref(),
            Some("{\"return\": {}}\r\n"),
            "the next client cannot negotiate: the lock outlived its holder"
        );
    }
}

/// Issue 16 item 3: QEMU's IO thread writes an out-of-band reply as its handler returns, so it
/// precedes the in-band replies it releases. 20 rounds with two busy threads loading the CPU.
#[test]
fn an_out_of_band_reply_precedes_the_in_band_replies_it_releases_under_load() {
    log();
    let d = start(&["unix:qmp.sock"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    let mut first = 0;
    for _ in 0..20 {
        c.send(LOCK);
        std::thread::sleep(Duration::from_millis(5));
        c.send("{\"execute\": \"query-name\", \"id\": 1}{\"execute\": \"query-name\", \"id\": 2}");
        c.send(UNLOCK);
        let replies: Vec<String> = (0..4).map(|_| c.read_msg()).collect();
        let ids: Vec<&str> = replies
            .iter()
            .map(|r| {
                r.rsplit("\"id\": ")
                    .next()
                    .unwrap()
                    .trim_end_matches("}\r\n")
            })
            .collect();
        if ids[0] == "\"U\"" {
            first += 1;
            assert_eq!(ids, ["\"U\"", "\"L\"", "1", "2"]);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    assert!(
        first >= 19,
        "the unlock reply came first in {first} of 20 rounds"
    );
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe().expect("pipe")
}

#[test]
fn a_client_cannot_take_every_slot_of_the_fd_table_and_is_named_in_the_warning() {
    log();
    let d = start_limited(
        &["unix:qmp.sock,clients=2"],
        Limits {
            fds: FdLimits {
                total: 16,
                per_monitor: 2,
            },
            ..Limits::default()
        },
    );
    let mut a = Client::connect(&d.path("qmp.sock"));
    a.negotiate(false);
    let mut b = Client::connect(&d.path("qmp.sock"));
    b.negotiate(false);
    let pipes: Vec<_> = (0..3).map(|_| pipe()).collect();
    for (i, (_, w)) in pipes.iter().enumerate() {
        send_with_fds(
            &a.sock,
            format!("{{\"execute\": \"getfd\", \"arguments\": {{\"fdname\": \"f{i}\"}}}}\n")
                .as_bytes(),
            &[w.as_fd()],
        );
        let want = if i < 2 {
            "{\"return\": {}}\r\n"
        } else {
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No file descriptor supplied via SCM_RIGHTS\"}}\r\n"
        };
        assert_eq!(a.read_msg(), want, "getfd {i}");
    }
    assert!(logged(
        &[
            "WARN",
            "passed by client",
            "closed unused",
            "share of the descriptor table",
            "per_client=2"
        ],
        TIMEOUT
    ));
    // The other client still has its share.
    let (_r, w) = pipe();
    send_with_fds(
        &b.sock,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}\n",
        &[w.as_fd()],
    );
    assert_eq!(b.read_msg(), "{\"return\": {}}\r\n");
    assert_eq!(d.server().handle().fds_held(), 3);
}

#[test]
fn descriptors_cut_by_the_kernel_are_reported_with_the_client() {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    log();
    let d = start(&["unix:qmp.sock"]);
    let mut a = Client::connect(&d.path("qmp.sock"));
    a.negotiate(false);
    // More than one read accepts (`scm::MAX_FDS_PER_READ`): the kernel cuts the rest.
    let pipes: Vec<_> = (0..qmp_io::scm::MAX_FDS_PER_READ + 4)
        .map(|_| pipe())
        .collect();
    let fds: Vec<_> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(32))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    let req = b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"many\"}}\n";
    sendmsg(
        &a.sock,
        &[std::io::IoSlice::new(req)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
    assert_eq!(a.read_msg(), "{\"return\": {}}\r\n");
    assert!(logged(
        &[
            "WARN",
            "passed by client",
            "cut by the kernel",
            "MSG_CTRUNC"
        ],
        TIMEOUT
    ));
    let refused = d
        .server()
        .handle()
        .inspect_driver(|drv| drv.stats().fds_refused);
    assert!(refused >= 1);
}

#[test]
fn the_process_wide_output_budget_cuts_a_client_that_never_reads_and_logs_it() {
    log();
    let budget = 2 << 20;
    let d = start_limited(
        &["unix:qmp.sock,clients=3"],
        Limits {
            output_budget: budget,
            ..Limits::default()
        },
    );
    let mut a = Client::connect(&d.path("qmp.sock"));
    a.negotiate(false);
    let mut idle: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::connect(&d.path("qmp.sock"));
            c.negotiate(false);
            c
        })
        .collect();
    // Events of 64 KiB each, to everybody; `a` reads them, the other two never do.
    let pad = "x".repeat(64 << 10);
    let req = format!(
        "{{\"execute\": \"x-emit-event\", \"arguments\": {{\"event\": \"BIG\", \"data\": {{\"pad\": \"{pad}\"}}}}}}\n"
    );
    let mut cut = false;
    for _ in 0..200 {
        a.send(&req);
        assert!(a.read_msg().contains("\"event\": \"BIG\""));
        assert_eq!(a.read_msg(), "{\"return\": {}}\r\n");
        let held = d.server().handle().inspect_driver(|drv| drv.output_held());
        assert!(held <= budget, "{held} bytes held");
        if d.server()
            .handle()
            .inspect_driver(|drv| drv.stats().budget_cuts)
            > 0
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "nobody was cut");
    assert!(logged(
        &["WARN", "client", "cut", "output budget of 2097152 bytes"],
        TIMEOUT
    ));
    // One of the idle clients finds its stream ended (after what was written to it); `a` goes on.
    let ended = idle
        .iter_mut()
        .map(|c| c.eof_within(Duration::from_secs(2)))
        .filter(|&e| e)
        .count();
    assert!(ended >= 1);
    a.send("{\"execute\": \"query-name\"}\n");
    assert_eq!(a.read_msg(), "{\"return\": {}}\r\n");
}
