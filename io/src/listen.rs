//! Listener specifications (`unix:PATH[,mode=readline][,oob=off][,pretty=on][,clients=N][,id=NAME]`,
//! `tcp:HOST:PORT[,...]`) and binding them.
//!
//! A listener behaves like a QEMU socket chardev: by default it serves one client at a time and
//! leaves the next one waiting, unanswered, in the kernel's backlog until the first leaves
//! (spec §1.1); `clients=N` lets N in at once, each its own monitor.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use qmp_core::server::{Dialect, MonitorOptions};
use qmp_driver::{AcceptFact, ListenerConfig};

/// Most clients one listener may serve at once (`clients=N`).
pub const MAX_CLIENTS_PER_LISTENER: usize = 1024;

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket path (created with mode 0600).
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// One `--listen` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    /// The address.
    pub address: Address,
    /// Offer the `oob` capability to clients (QEMU 7.2 does on every socket chardev; in the
    /// 2.12 dialect this is `x-oob=on`). `None`: the dialect's default.
    pub oob: Option<bool>,
    /// `pretty=on`: pretty-printed replies, events and greeting.
    pub pretty: bool,
    /// Clients served at once (1 like a QEMU socket chardev).
    pub clients: usize,
    /// The chardev id (`query-yank`, `yank`); `None`: `compat_monitor<i>` for the i-th
    /// listener, as QEMU names the chardev of its i-th `-qmp` option.
    pub id: Option<String>,
    /// `mode=readline`: a human monitor (HMP) instead of QMP (`mode=control`, the default).
    pub readline: bool,
}

impl ListenSpec {
    /// A Unix listener with QEMU's defaults.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        ListenSpec {
            address: Address::Unix(path.into()),
            oob: None,
            pretty: false,
            clients: 1,
            id: None,
            readline: false,
        }
    }

    /// A TCP listener with QEMU's defaults.
    pub fn tcp(addr: SocketAddr) -> Self {
        ListenSpec {
            address: Address::Tcp(addr),
            oob: None,
            pretty: false,
            clients: 1,
            id: None,
            readline: false,
        }
    }

    /// The driver's configuration of the `index`-th listener under `dialect`: its chardev id
    /// (QEMU names the chardev of its i-th `-qmp` option `compat_monitor<i>`), client slots
    /// and monitor options (oob offered by default in the 7.2 dialect). Both adapters use it.
    pub fn listener_config(&self, index: usize, dialect: Dialect) -> ListenerConfig {
        ListenerConfig {
            chardev: self
                .id
                .clone()
                .unwrap_or_else(|| format!("compat_monitor{index}")),
            clients: self.clients,
            options: MonitorOptions {
                oob_capable: self.oob.unwrap_or(dialect == Dialect::Qemu72),
                pretty: self.pretty,
            },
            readline: self.readline,
        }
    }

    /// Parse `unix:PATH[,opt=val...]` or `tcp:HOST:PORT[,opt=val...]`.
    pub fn parse(s: &str) -> Result<ListenSpec, String> {
        let mut parts = s.split(',');
        let addr = parts.next().unwrap_or_default();
        let mut spec = if let Some(path) = addr.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path".into());
            }
            ListenSpec::unix(path)
        } else if let Some(hp) = addr.strip_prefix("tcp:") {
            let sa: SocketAddr = hp
                .parse()
                .or_else(|_| {
                    // Accept `localhost:PORT` as QEMU does.
                    hp.strip_prefix("localhost:")
                        .ok_or(())
                        .and_then(|p| p.parse::<u16>().map_err(|_| ()))
                        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
                })
                .map_err(|_| format!("bad TCP address '{hp}' (expected HOST:PORT)"))?;
            ListenSpec::tcp(sa)
        } else {
            return Err(format!(
                "bad listen address '{addr}' (expected unix:PATH or tcp:HOST:PORT)"
            ));
        };
        for opt in parts {
            let (k, v) = opt.split_once('=').unwrap_or((opt, "on"));
            match k {
                "oob" => spec.oob = Some(parse_on_off(k, v)?),
                "pretty" => spec.pretty = parse_on_off(k, v)?,
                "clients" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| format!("clients={v}: not a number"))?;
                    if n == 0 || n > MAX_CLIENTS_PER_LISTENER {
                        return Err(format!(
                            "clients={v}: must be 1..={MAX_CLIENTS_PER_LISTENER}"
                        ));
                    }
                    spec.clients = n;
                }
                "id" if !v.is_empty() => spec.id = Some(v.to_owned()),
                "mode" => {
                    spec.readline = match v {
                        "readline" => true,
                        "control" => false,
                        _ => return Err(format!("mode={v}: expected readline or control")),
                    }
                }
                _ => return Err(format!("unknown listen option '{k}'")),
            }
        }
        if spec.readline && spec.pretty {
            // QEMU's monitor_init: "'pretty' is not compatible with HMP monitors".
            return Err("'pretty' is not compatible with HMP monitors".into());
        }
        Ok(spec)
    }
}

fn parse_on_off(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{k}={v}: expected on or off")),
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum BoundListener {
    /// Unix.
    Unix(mio::net::UnixListener, PathBuf),
    /// TCP.
    Tcp(mio::net::TcpListener),
}

impl BoundListener {
    /// The address actually bound (a TCP port 0 becomes the real port).
    pub fn local_address(&self) -> io::Result<Address> {
        match self {
            BoundListener::Unix(_, p) => Ok(Address::Unix(p.clone())),
            BoundListener::Tcp(l) => Ok(Address::Tcp(l.local_addr()?)),
        }
    }
}

/// Bind `spec`. TCP addresses must be loopback unless `allow_remote`. A Unix socket is never
/// connectable with wider rights than 0600: it is bound inside a fresh directory of mode 0700
/// next to the target, given mode 0600 there, and only then renamed into place (replacing a
/// stale socket file at the same path, as QEMU unlinks one). `bind → chmod` on the final path
/// would leave a window in which the socket has the umask's rights.
pub fn bind(spec: &ListenSpec, allow_remote: bool) -> io::Result<BoundListener> {
    match &spec.address {
        Address::Unix(path) => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
            }
            let private = private_dir_beside(path)?;
            let staged = private.join("qmp.sock");
            let bound = mio::net::UnixListener::bind(&staged).and_then(|l| {
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
                std::fs::rename(&staged, path)?;
                Ok(l)
            });
            let _ = std::fs::remove_file(&staged);
            let _ = std::fs::remove_dir(&private);
            Ok(BoundListener::Unix(bound?, path.clone()))
        }
        Address::Tcp(sa) => {
            if !sa.ip().is_loopback() && !allow_remote {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "refusing to listen on non-loopback address {sa} (QMP has no \
                         authentication); pass --allow-remote to do it anyway"
                    ),
                ));
            }
            Ok(BoundListener::Tcp(mio::net::TcpListener::bind(*sa)?))
        }
    }
}

/// A new directory of mode 0700 in the directory of `path` (so the rename into place stays
/// on one filesystem), with a name no other process uses.
fn private_dir_beside(path: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = parent.join(format!(
        ".{name}.{}.{}.bind",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// What a failed accept means to the driver (either adapter's accept).
pub(crate) fn accept_fact(e: &io::Error) -> AcceptFact {
    use rustix::io::Errno;
    match e.kind() {
        io::ErrorKind::WouldBlock => AcceptFact::WouldBlock,
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => AcceptFact::Retry,
        _ => match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => {
                AcceptFact::OutOfResources
            }
            _ => AcceptFact::Failed(e.kind()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_with_options() {
        let s = ListenSpec::parse("unix:/tmp/x.sock,oob=off,pretty=on,clients=3,id=mon0").unwrap();
        assert_eq!(s.id.as_deref(), Some("mon0"));
        assert_eq!(s.address, Address::Unix("/tmp/x.sock".into()));
        assert_eq!(s.oob, Some(false));
        assert!(s.pretty);
        assert_eq!(s.clients, 3);
    }

    #[test]
    fn parses_tcp() {
        let s = ListenSpec::parse("tcp:127.0.0.1:4444").unwrap();
        assert_eq!(s.address, Address::Tcp("127.0.0.1:4444".parse().unwrap()));
        assert_eq!(s.clients, 1);
        assert_eq!(s.oob, None);
        let l = ListenSpec::parse("tcp:localhost:5").unwrap();
        assert_eq!(l.address, Address::Tcp("127.0.0.1:5".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "unix:",
            "udp:1",
            "tcp:nohost",
            "unix:/x,clients=0",
            "unix:/x,clients=z",
            "unix:/x,pretty=maybe",
            "unix:/x,frob=on",
            "unix:/x,id=",
        ] {
            assert!(ListenSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_remote_tcp_by_default() {
        let spec = ListenSpec::parse("tcp:0.0.0.0:0").unwrap();
        let err = bind(&spec, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }
}
