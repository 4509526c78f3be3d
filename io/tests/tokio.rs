//! The tokio adapter on real sockets: async in-band handlers under the core's rules (one
//! in-band call at a time, the queue of 8 and its suspension, out-of-band calls answered while
//! a handler awaits), the demo machine and its sync handlers, SCM_RIGHTS, TCP with listener
//! options, events from another task, recording, and clean shutdown.
#![cfg(feature = "tokio")]

mod common;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use qmp_core::json::{Object, Value};
use qmp_core::server::{CallResult, CommandSpec, Config};
use qmp_io::demo::Machine;
use qmp_io::tokio::{TokioHandle, TokioServerBuilder};
use qmp_io::ListenSpec;

/// A server on its own thread and single-threaded runtime, as qmpd runs it.
struct Served {
    handle: TokioHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    dir: PathBuf,
}

impl Served {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Stop it and wait for the end of its run.
    fn stop(&mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        self.thread.take().expect("running").join().expect("join")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serve the demo machine (test commands on) plus whatever `extra` registers, on `specs`
/// (`unix:NAME` relative to a fresh temp dir, or `tcp:...`).
fn serve(
    specs: &[&str],
    extra: impl FnOnce(TokioServerBuilder) -> TokioServerBuilder + Send + 'static,
) -> (Served, Vec<qmp_io::Address>) {
    let dir = temp_dir();
    let specs: Vec<ListenSpec> = specs
        .iter()
        .map(|s| {
            let s = match s.strip_prefix("unix:") {
                Some(rest) => format!("unix:{}", dir.join(rest).display()),
                None => s.to_string(),
            };
            ListenSpec::parse(&s).expect("spec")
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let config = Config {
                version: test_version(),
                ..Config::default()
            };
            let machine = Machine::new(&config.version);
            let mut b = TokioServerBuilder::new(config);
            for s in specs {
                b = b.listen(s);
            }
            let m = machine.clone();
            b = b
                .commands(|r| machine.register(r, true))
                .on_shutdown(move || m.release());
            let server = extra(b).build()?;
            tx.send((server.handle(), server.addresses().to_vec()))
                .expect("send");
            server.run().await
        })
    });
    let (handle, addresses) = rx.recv_timeout(TIMEOUT).expect("server built");
    (
        Served {
            handle,
            thread: Some(thread),
            dir,
        },
        addresses,
    )
}

/// A gate an async handler awaits, opened from the test.
#[derive(Clone, Default)]
struct Gate(Arc<tokio::sync::Notify>);

/// Registers `wait` (in-band, awaits the gate, then emits WAITED and returns its argument)
/// and `count` (in-band, sync: how many calls it has seen).
fn with_gate(
    gate: Gate,
    seen: Arc<Mutex<u32>>,
) -> impl FnOnce(TokioServerBuilder) -> TokioServerBuilder {
    move |b| {
        b.async_command(
            CommandSpec::new("wait").opt("n", qmp_core::server::ArgType::Int),
            move |ctx, args| {
                let gate = gate.clone();
                Box::pin(async move {
                    gate.0.notified().await;
                    ctx.emit_event("WAITED", Object::new());
                    CallResult::Return(args.get("n").cloned().unwrap_or(Value::Null))
                })
            },
        )
        .command(CommandSpec::new("count"), move |_args| {
            let mut n = seen.lock().unwrap();
            *n += 1;
            CallResult::Return(Value::Int(i64::from(*n)))
        })
    }
}

#[test]
fn an_awaiting_handler_holds_the_in_band_lane_while_out_of_band_calls_answer() {
    let gate = Gate::default();
    let seen = Arc::new(Mutex::new(0));
    let (s, _) = serve(&["unix:qmp.sock"], with_gate(gate.clone(), seen.clone()));
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"execute\": \"wait\", \"arguments\": {\"n\": 5}, \"id\": \"w\"}\n");
    c.send("{\"execute\": \"count\", \"id\": \"c1\"}\n");
    c.send("{\"exec-oob\": \"query-yank\", \"id\": \"oob\"}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": [{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}], \"id\": \"oob\"}\r\n",
        "the out-of-band call answers while the handler awaits"
    );
    assert_eq!(c.read_msg_within(QUIET), None, "nothing else meanwhile");
    assert_eq!(*seen.lock().unwrap(), 0, "no in-band call ran behind it");
    gate.0.notify_one();
    assert!(mask_ts(&c.read_msg()).contains("\"event\": \"WAITED\""));
    assert_eq!(c.read_msg(), "{\"return\": 5, \"id\": \"w\"}\r\n");
    assert_eq!(c.read_msg(), "{\"return\": 1, \"id\": \"c1\"}\r\n");
}

#[test]
fn while_a_handler_awaits_the_queue_holds_eight_and_a_full_queue_stops_reading() {
    let gate = Gate::default();
    let seen = Arc::new(Mutex::new(0));
    let (s, _) = serve(&["unix:qmp.sock"], with_gate(gate.clone(), seen.clone()));
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"execute\": \"wait\", \"id\": \"w\"}\n");
    // Eight queue behind it; the monitor is then suspended and the out-of-band request after
    // them is not even read (QEMU 7.2: monitor_suspend on a full queue).
    let mut batch = String::new();
    for i in 0..8 {
        batch.push_str(&format!("{{\"execute\": \"count\", \"id\": {i}}}\n"));
    }
    batch.push_str("{\"exec-oob\": \"query-yank\", \"id\": \"late\"}\n");
    c.send(&batch);
    assert_eq!(
        c.read_msg_within(QUIET),
        None,
        "suspended: the out-of-band request behind a full queue waits"
    );
    gate.0.notify_one();
    assert!(c.read_msg().contains("WAITED"));
    assert_eq!(c.read_msg(), "{\"return\": null, \"id\": \"w\"}\r\n");
    // Taking the first queued call resumes the monitor: the out-of-band request is read and
    // answered at once, overtaking the rest of the queue.
    let rest: Vec<String> = (0..9).map(|_| c.read_msg()).collect();
    let late = rest
        .iter()
        .position(|m| m.contains("\"late\""))
        .expect("late answered");
    let counts: Vec<&String> = rest.iter().filter(|m| !m.contains("\"late\"")).collect();
    for (i, m) in counts.iter().enumerate() {
        assert_eq!(**m, format!("{{\"return\": {}, \"id\": {i}}}\r\n", i + 1));
    }
    assert!(
        late < 8,
        "the out-of-band reply overtook queued in-band ones: {rest:?}"
    );
    assert_eq!(*seen.lock().unwrap(), 8);
}

#[test]
fn the_demo_lock_awaits_and_an_out_of_band_unlock_releases_it() {
    let (s, _) = serve(&["unix:qmp.sock"], |b| b);
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"lock\"}\n");
    c.send("{\"execute\": \"query-status\", \"id\": \"st\"}\n");
    assert_eq!(c.read_msg_within(QUIET), None, "the lock holds the lane");
    c.send(
        "{\"exec-oob\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"id\": \"unlock\"}\n",
    );
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"unlock\"}\r\n");
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"lock\"}\r\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": \"st\"}\r\n"
    );
}

#[test]
fn a_lock_is_let_go_when_its_holder_disconnects() {
    let (s, _) = serve(&["unix:qmp.sock,clients=2"], |b| b);
    let mut a = Client::connect(&s.path("qmp.sock"));
    a.negotiate(true);
    a.send("{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}}\n");
    std::thread::sleep(Duration::from_millis(50));
    drop(a);
    let mut b = Client::connect(&s.path("qmp.sock"));
    b.negotiate(true);
    b.send("{\"execute\": \"query-name\", \"id\": 1}\n");
    assert_eq!(b.read_msg(), "{\"return\": {}, \"id\": 1}\r\n");
}

#[test]
fn events_from_another_task_reach_every_negotiated_client() {
    let (s, _) = serve(&["unix:qmp.sock,clients=2"], |b| b);
    let mut a = Client::connect(&s.path("qmp.sock"));
    let mut b = Client::connect(&s.path("qmp.sock"));
    a.negotiate(false);
    b.negotiate(false);
    let h = s.handle.clone();
    std::thread::spawn(move || {
        let mut data = Object::new();
        data.insert("x", Value::Int(1));
        h.emit_event("MY_EVENT", data);
    })
    .join()
    .unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(
            mask_ts(&c.read_msg()),
            mask_ts("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 1}, \"event\": \"MY_EVENT\", \"data\": {\"x\": 1}}\r\n")
        );
    }
}

#[test]
fn descriptors_pass_with_scm_rights_and_are_closed_once_released() {
    let (s, _) = serve(&["unix:qmp.sock"], |b| b);
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(true);
    let (r, w) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f1\"}, \"id\": \"g\"}\n",
        &[w.as_fd()],
    );
    drop(w);
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"g\"}\r\n");
    assert!(!writer_closed(&r, QUIET), "held under its name");
    c.send("{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"f1\"}, \"id\": \"c\"}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"c\"}\r\n");
    assert!(writer_closed(&r, TIMEOUT), "closed by closefd");
    // One held at shutdown is closed then too.
    let (r2, w2) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f2\"}}\n",
        &[w2.as_fd()],
    );
    drop(w2);
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    drop(s);
    assert!(writer_closed(&r2, TIMEOUT), "closed at shutdown");
}

#[test]
fn tcp_with_listener_options_and_one_client_at_a_time() {
    let (s, addrs) = serve(&["tcp:127.0.0.1:0,oob=off,pretty=on"], |b| b);
    let qmp_io::Address::Tcp(addr) = addrs[0] else {
        panic!("tcp");
    };
    let connect = || {
        let t = std::net::TcpStream::connect(addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        t
    };
    let read_until = |t: &mut std::net::TcpStream, want: &str, limit: Duration| -> String {
        use std::io::Read;
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains(want) {
            let mut b = [0u8; 4096];
            match t.read(&mut b) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let mut a = connect();
    let greeting = read_until(&mut a, "capabilities", TIMEOUT);
    assert!(
        greeting.contains("\"capabilities\": [\r\n        ]"),
        "pretty, and no oob offered: {greeting:?}"
    );
    let mut b = connect();
    assert_eq!(
        read_until(&mut b, "QMP", QUIET),
        "",
        "the second client waits while the first is served"
    );
    drop(a);
    assert!(read_until(&mut b, "capabilities", TIMEOUT).contains("QMP"));
    drop(s);
}

#[test]
fn shutdown_flushes_closes_every_client_and_removes_the_socket_file() {
    let (mut s, _) = serve(&["unix:qmp.sock"], |b| b);
    let path = s.path("qmp.sock");
    let mut c = Client::connect(&path);
    c.negotiate(true);
    s.stop().expect("clean stop");
    assert!(c.eof_within(TIMEOUT));
    assert!(!path.exists(), "socket file removed");
}

#[test]
fn a_recorded_session_replays_to_the_same_digest() {
    let dir = temp_dir();
    let trace = dir.join("trace.jsonl");
    let t = trace.clone();
    let (s, _) = serve(&["unix:qmp.sock"], move |b| {
        let sink = qmp_io::record::file_sink(&t, b.config(), b.specs()).expect("sink");
        b.record(sink)
    });
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"execute\": \"stop\"}\n{\"execute\": \"query-status\", \"id\": 1}\n");
    assert!(c.read_msg().contains("STOP"));
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    assert!(c.read_msg().contains("\"paused\""));
    c.send("{\"execute\": \"quit\"}\n");
    assert!(c.eof_within(TIMEOUT));
    drop(s);
    let text = std::fs::read_to_string(&trace).expect("trace");
    let report = qmp_core::server::trace::replay(&text).expect("replay");
    assert!(report.expected.is_some(), "ends with a digest line");
    assert!(report.misuse.is_empty(), "{:?}", report.misuse);
    assert!(report.matches(), "digest {}", report.digest.hex());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `qmpd --runtime tokio` on SIGTERM, as QEMU 7.2: SHUTDOWN host-signal to the negotiated
/// client, EOF, exit 0, socket file removed. (`QMPD_RUNTIME=tokio cargo test --test qmpd` runs
/// every daemon test on this runtime.)
#[test]
fn qmpd_on_tokio_shuts_down_on_sigterm_as_qemu_does() {
    let dir = temp_dir();
    let sock = dir.join("qmp.sock");
    /// Killed if the test fails before it exits.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_qmpd"))
            .args(["--runtime", "tokio", "--log", "warn", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn qmpd"),
    );
    let deadline = Instant::now() + TIMEOUT;
    while !sock.exists() {
        assert!(Instant::now() < deadline, "qmpd did not create its socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = Client::connect(&sock);
    c.negotiate(false);
    let pid = rustix::process::Pid::from_raw(child.0.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    assert_eq!(
        mask_ts(&c.read_msg()),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"SHUTDOWN\", \
         \"data\": {\"guest\": false, \"reason\": \"host-signal\"}}\r\n"
    );
    assert!(c.eof_within(TIMEOUT), "EOF after the event");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "qmpd did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "socket file removed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn add_client_makes_a_passed_socket_a_client_and_refusals_close_the_fd() {
    let (s, _) = serve(&["unix:a.sock", "unix:b.sock,id=extra"], |b| b);
    let mut a = Client::connect(&s.path("a.sock"));
    a.negotiate(false);
    let getfd = |a: &mut Client, fd: std::os::fd::BorrowedFd<'_>| {
        send_with_fds(
            &a.sock,
            b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}\n",
            &[fd],
        );
        assert_eq!(a.read_msg(), "{\"return\": {}}\r\n");
    };
    let add = |a: &mut Client, protocol: &str| {
        a.send(&format!(
            "{{\"execute\": \"add_client\", \"arguments\": {{\"protocol\": \"{protocol}\", \"fdname\": \"x\"}}}}\n"
        ));
        a.read_msg()
    };
    assert_eq!(
        add(&mut a, "extra"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'x' has not been found\"}}\r\n"
    );
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    getfd(&mut a, theirs.as_fd());
    drop(theirs);
    assert_eq!(
        add(&mut a, "bogus"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"protocol 'bogus' is invalid\"}}\r\n"
    );
    let mut dead = Client::from_stream(mine);
    assert!(dead.eof_within(TIMEOUT), "the refused socket is closed");
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    getfd(&mut a, theirs.as_fd());
    drop(theirs);
    assert_eq!(add(&mut a, "extra"), "{\"return\": {}}\r\n");
    mine.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut b = Client::from_stream(mine);
    b.negotiate(false);
    b.send("{\"execute\": \"query-name\", \"id\": 2}\n");
    assert_eq!(b.read_msg(), "{\"return\": {}, \"id\": 2}\r\n");
}

#[test]
fn a_blocking_sync_handler_runs_off_the_loop_while_out_of_band_calls_and_events_go_on() {
    // `slow` (sync, in-band) tells the test it runs, then blocks until the test releases it.
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let (s, _) = serve(&["unix:qmp.sock"], move |b| {
        b.command(CommandSpec::new("slow"), move |_args| {
            started_tx.lock().unwrap().send(()).expect("started");
            release_rx.lock().unwrap().recv().expect("released");
            CallResult::Return(Value::Int(1))
        })
    });
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"execute\": \"slow\", \"id\": \"slow\"}\n");
    c.send("{\"execute\": \"query-name\", \"id\": \"behind\"}\n");
    started.recv_timeout(TIMEOUT).expect("the handler runs");
    c.send("{\"exec-oob\": \"query-yank\", \"id\": \"oob\"}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": [{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}], \"id\": \"oob\"}\r\n",
        "the out-of-band call answers while the sync handler blocks"
    );
    s.handle.emit_event("MY_EVENT", Object::new());
    assert!(
        c.read_msg().contains("\"event\": \"MY_EVENT\""),
        "an event goes out meanwhile"
    );
    assert_eq!(
        c.read_msg_within(QUIET),
        None,
        "no in-band reply before the handler returns"
    );
    release.send(()).expect("release");
    assert_eq!(c.read_msg(), "{\"return\": 1, \"id\": \"slow\"}\r\n");
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"behind\"}\r\n");
}

#[test]
fn typed_sync_and_async_handlers_on_the_tokio_builder() {
    use qmp_core::server::{ArgType, CommandError};
    use qmp_io::TypedCommands;

    #[derive(serde::Deserialize)]
    struct Resize {
        device: String,
        size: u8,
    }
    #[derive(serde::Serialize)]
    struct Resized {
        device: String,
        #[serde(rename = "new-size")]
        new_size: u8,
    }
    let spec = |name: &str| {
        CommandSpec::new(name)
            .arg("device", ArgType::String)
            .arg("size", ArgType::Int)
    };
    let (s, _) = serve(&["unix:qmp.sock"], move |b| {
        b.command_typed(spec("resize"), |a: Resize| -> Result<_, CommandError> {
            Ok(Resized {
                device: a.device,
                new_size: a.size,
            })
        })
        .async_command_typed(spec("resize-later"), |a: Resize| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if a.device != "disk0" {
                return Err(CommandError::generic(format!("no device {}", a.device)));
            }
            Ok(Resized {
                device: a.device,
                new_size: a.size,
            })
        })
    });
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(false);
    let call = |c: &mut Client, name: &str, device: &str, size: i64| {
        c.send(&format!(
            "{{\"execute\": \"{name}\", \"arguments\": {{\"device\": \"{device}\", \"size\": {size}}}}}\n"
        ));
        c.read_msg()
    };
    assert_eq!(
        call(&mut c, "resize", "disk0", 7),
        "{\"return\": {\"device\": \"disk0\", \"new-size\": 7}}\r\n"
    );
    assert_eq!(
        call(&mut c, "resize-later", "disk0", 9),
        "{\"return\": {\"device\": \"disk0\", \"new-size\": 9}}\r\n"
    );
    assert_eq!(
        call(&mut c, "resize-later", "disk1", 9),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no device disk1\"}}\r\n"
    );
    // An Int the spec accepts but `u8` does not: both kinds answer as `call_typed` does.
    let sync = call(&mut c, "resize", "disk0", 300);
    assert!(
        sync.starts_with(&format!(
            "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{}: ",
            qmp_core::server::ARGS_MISMATCH
        )),
        "{sync}"
    );
    assert_eq!(call(&mut c, "resize-later", "disk0", 300), sync);
}

#[test]
fn a_pipelining_client_is_answered_once_per_request_and_its_descriptors_arrive_once() {
    // Batches of several requests per write make the loop read this client with MSG_PEEK and
    // take the bytes off later: each request must still be answered exactly once, and a
    // descriptor passed then must be held once (the peek's copy closed).
    let (s, _) = serve(&["unix:qmp.sock"], |b| b);
    let mut c = Client::connect(&s.path("qmp.sock"));
    c.negotiate(true);
    for batch in 0..20 {
        let mut text = String::new();
        for i in 0..3 {
            text.push_str(&format!(
                "{{\"execute\": \"query-name\", \"id\": {}}}\n",
                batch * 3 + i
            ));
        }
        c.send(&text);
        for i in 0..3 {
            assert_eq!(
                c.read_msg(),
                format!("{{\"return\": {{}}, \"id\": {}}}\r\n", batch * 3 + i)
            );
        }
    }
    let (r, w) = pipe();
    send_with_fds(
        &c.sock,
        b"{\"execute\": \"query-name\", \"id\": \"a\"}\n{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f\"}, \"id\": \"g\"}\n",
        &[w.as_fd()],
    );
    drop(w);
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"a\"}\r\n");
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"g\"}\r\n");
    c.send("{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"f\"}, \"id\": \"c\"}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"c\"}\r\n");
    assert!(
        writer_closed(&r, TIMEOUT),
        "closefd closed the only copy the server held"
    );
    assert_eq!(c.read_msg_within(QUIET), None, "no reply twice");
}
