//! `qmp-bench floor-server`: the cheapest server this client can talk to, to measure the
//! machine's ceiling for the throughput modes (what stands between any server and a target).
//!
//! It sends a QEMU-like greeting (offering `oob`), then answers every request line with the
//! same fixed success reply, without parsing anything: one blocking thread per connection, one
//! `read` and one `write` per batch of requests. No QMP server can do less work per request, so
//! its rate with the same client on the same machine bounds what qmpd (or QEMU) can reach.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;

/// The greeting: what the client checks (a `QMP` object offering `oob`).
const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";
/// The reply to every request: `query-status`'s, as QEMU writes it.
const REPLY: &[u8] =
    b"{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n";
/// Bytes read per `read`; the replies to one read are written at once.
const READ_BUF: usize = 64 * 1024;
/// Connections served at once; later ones are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;

/// Serve on `path` (removed first if it exists) until killed.
pub fn serve(path: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = stream?;
        if live.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue;
        }
        live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let live = live.clone();
        thread::spawn(move || {
            let _ = answer(stream);
            live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
    Ok(())
}

/// One connection: the greeting, then one reply per request line until the peer closes.
fn answer(mut stream: std::os::unix::net::UnixStream) -> io::Result<()> {
    stream.write_all(GREETING)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut out = Vec::with_capacity(READ_BUF);
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
            out.extend_from_slice(REPLY);
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::client::Client;

    #[test]
    fn answers_each_request_line_in_one_write() {
        let dir = std::env::temp_dir().join(format!("qmp-bench-floor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("floor.sock");
        let p = path.clone();
        std::thread::spawn(move || super::serve(&p));
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut c = Client::open(&path, Duration::from_secs(5), true).unwrap();
        c.send(b"{\"execute\":\"query-status\"}\n{\"execute\":\"query-status\"}\n")
            .unwrap();
        for _ in 0..2 {
            assert_eq!(
                c.read_reply().unwrap(),
                &super::REPLY[..super::REPLY.len() - 2]
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
