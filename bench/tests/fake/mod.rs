//! A tiny QMP server for the smoke tests: greeting, negotiation, a few in-band commands that
//! echo their id, `exec-oob query-yank`, `x-oob-test` lock/unlock, and STOP/RESUME events
//! broadcast to every negotiated client. One thread per connection; just enough protocol for
//! qmp-bench to be exercised without qmpd or QEMU.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::Value;

/// How the fake treats `x-oob-test`.
#[derive(Copy, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Blocks in-band replies until the OOB unlock (qmpd's behaviour).
    Works,
    /// Unknown command (QEMU 7.2).
    Missing,
    /// Returns at once without blocking anything (a broken server).
    Ignored,
}

pub struct Fake {
    pub path: PathBuf,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

type Writer = Arc<Mutex<UnixStream>>;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn start(lock: Lock) -> Fake {
    let path = std::env::temp_dir().join(format!(
        "qmp-bench-fake-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind fake server");
    let negotiated: Arc<Mutex<Vec<Writer>>> = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let negotiated = Arc::clone(&negotiated);
            thread::spawn(move || serve(stream, &negotiated, lock));
        }
    });
    Fake { path }
}

// Lines are written by hand: QEMU's member order (return before id, timestamp first) is what
// clients see, and serde_json's map would sort the keys.
fn send(w: &Writer, line: &str) -> std::io::Result<()> {
    let mut w = w.lock().expect("writer lock");
    w.write_all(line.as_bytes())?;
    w.write_all(b"\r\n")
}

fn reply(ret: &str, id: Option<&Value>) -> String {
    match id {
        Some(id) => format!("{{\"return\": {ret}, \"id\": {id}}}"),
        None => format!("{{\"return\": {ret}}}"),
    }
}

fn error(class: &str, id: Option<&Value>) -> String {
    match id {
        Some(id) => {
            format!("{{\"id\": {id}, \"error\": {{\"class\": \"{class}\", \"desc\": \"fake\"}}}}")
        }
        None => format!("{{\"error\": {{\"class\": \"{class}\", \"desc\": \"fake\"}}}}"),
    }
}

fn serve(stream: UnixStream, negotiated: &Mutex<Vec<Writer>>, lock: Lock) {
    let w: Writer = Arc::new(Mutex::new(stream.try_clone().expect("clone")));
    let greeting = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"fake\"}, \"capabilities\": [\"oob\"]}}";
    if send(&w, greeting).is_err() {
        return;
    }
    let mut locked = false;
    let mut held: Vec<String> = Vec::new();
    for line in BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { return };
        let Ok(req) = serde_json::from_slice::<Value>(&line) else {
            return;
        };
        let id = req.get("id");
        if let Some(cmd) = req.get("exec-oob").and_then(Value::as_str) {
            let r = match cmd {
                "query-yank" => reply("[{\"type\": \"chardev\", \"id\": \"c0\"}]", id),
                "x-oob-test" if lock == Lock::Works => {
                    locked = false;
                    reply("{}", id)
                }
                _ => error("GenericError", id),
            };
            let _ = send(&w, &r);
            if !locked {
                for r in held.drain(..) {
                    let _ = send(&w, &r);
                }
            }
            continue;
        }
        let cmd = req.get("execute").and_then(Value::as_str).unwrap_or("");
        let r = match cmd {
            "qmp_capabilities" => {
                negotiated.lock().expect("list").push(Arc::clone(&w));
                reply("{}", id)
            }
            "x-oob-test" if lock == Lock::Missing => error("CommandNotFound", id),
            "x-oob-test" => {
                locked = lock == Lock::Works;
                reply("{}", id)
            }
            "stop" | "cont" => {
                let ev = if cmd == "stop" { "STOP" } else { "RESUME" };
                let event = format!(
                    "{{\"timestamp\": {{\"seconds\": 1, \"microseconds\": 2}}, \"event\": \"{ev}\"}}"
                );
                for m in negotiated.lock().expect("list").iter() {
                    let _ = send(m, &event);
                }
                reply("{}", id)
            }
            "query-status" => reply("{\"status\": \"running\", \"running\": true}", id),
            "query-name" => reply("{}", id),
            _ => error("CommandNotFound", id),
        };
        if locked || !held.is_empty() {
            held.push(r);
        } else if send(&w, &r).is_err() {
            return;
        }
    }
}
