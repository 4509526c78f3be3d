//! Command-line options of `qmp-bench` and their defaults (every bound of the tool is here).

use std::path::PathBuf;
use std::time::Duration;

/// Which benchmark to run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One request at a time.
    Sequential,
    /// Up to `window` in-band requests in flight on an OOB-enabled session.
    Pipelined,
    /// `clients` concurrent sequential clients.
    Connections,
    /// Latency of `exec-oob` replies while in-band work is blocked or busy.
    OobLatency,
    /// Requests carrying a `large_size` string.
    Large,
    /// Event fan-out to `clients` negotiated monitors.
    Events,
    /// Server RSS with `clients` idle negotiated connections.
    Idle,
}

impl Mode {
    /// Every mode, in the order `--mode all` runs them.
    pub const ALL: [Mode; 7] = [
        Mode::Sequential,
        Mode::Pipelined,
        Mode::Connections,
        Mode::OobLatency,
        Mode::Large,
        Mode::Events,
        Mode::Idle,
    ];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sequential => "sequential",
            Mode::Pipelined => "pipelined",
            Mode::Connections => "connections",
            Mode::OobLatency => "oob-latency",
            Mode::Large => "large",
            Mode::Events => "events",
            Mode::Idle => "idle",
        }
    }

    /// Parses a mode name.
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// How the `oob-latency` mode keeps the in-band side busy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OobMethod {
    /// `x-oob-test {"lock": true}` blocks the dispatcher (qmpd; QEMU 7.2 lacks the command).
    Lock,
    /// `window` in-band requests kept in flight (below the queue limit of 8, so the OOB
    /// probes are never stuck behind a suspended monitor); works on any server.
    Load,
}

/// Everything a mode needs.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Server name written into results.
    pub label: String,
    /// Sockets to connect to; client `i` uses `sockets[i % len]` (QEMU allows one client per
    /// socket chardev, so multi-client modes need one socket per client there).
    pub sockets: Vec<PathBuf>,
    /// Modes to run.
    pub modes: Vec<Mode>,
    /// Time limit of each measuring loop.
    pub duration: Duration,
    /// Operation limit of each measuring loop (the other bound besides `duration`).
    pub max_ops: u64,
    /// Read/write timeout of every socket: no call of the tool blocks longer.
    pub io_timeout: Duration,
    /// In-flight requests in `pipelined` (and the in-band load of `oob-latency --oob-method load`).
    pub window: usize,
    /// Clients in `connections` and monitors in `events`.
    pub clients: usize,
    /// Connections held open by `idle`.
    pub idle_clients: usize,
    /// How `oob-latency` keeps the in-band side busy.
    pub oob_method: OobMethod,
    /// Size of the string carried by each `large` request.
    pub large_size: usize,
    /// Server process id, for `idle` (RSS from /proc/PID/status).
    pub pid: Option<u32>,
    /// In-band command used by the throughput modes.
    pub command: String,
    /// Print JSON lines instead of the table on stdout (the table then goes to stderr).
    pub json: bool,
}

/// Upper bound of `--window`: QEMU's in-band queue holds 8 requests (QMP_REQ_QUEUE_LEN_MAX).
pub const MAX_WINDOW: usize = 8;
/// Upper bound of `--clients` and `--idle-clients` (one thread per client in `connections`
/// and `events`, one descriptor per client everywhere).
pub const MAX_CLIENTS: usize = 4096;

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            label: "server".into(),
            sockets: Vec::new(),
            modes: Vec::new(),
            duration: Duration::from_secs(2),
            max_ops: 50_000_000,
            io_timeout: Duration::from_secs(30),
            window: MAX_WINDOW,
            clients: 8,
            idle_clients: 1000,
            oob_method: OobMethod::Lock,
            large_size: 1 << 20,
            pid: None,
            command: "query-status".into(),
            json: false,
        }
    }
}

/// The usage text.
pub const USAGE: &str = "\
usage: qmp-bench --socket PATH [--socket PATH ...] --mode MODE[,MODE...] [options]
       qmp-bench report FILE.jsonl [--subject qmpd] [--base qemu] [--targets issue7|tokio]
       qmp-bench floor-server PATH   (the cheapest possible server: the machine's ceiling)

modes: sequential pipelined connections oob-latency large events idle all
options:
  --socket PATH        server socket; repeat it, or put {i} in PATH with --socket-count N
  --socket-count N     expand {i} in every --socket to 0..N-1
  --label NAME         server name in results (default: server)
  --duration SECS      time limit of each measuring loop (default 2)
  --max-ops N          operation limit of each measuring loop (default 50000000)
  --io-timeout SECS    socket read/write timeout (default 30)
  --window N           in-flight requests, 1..=8 (default 8)
  --clients N          clients for connections/events (default 8)
  --idle-clients N     connections held by idle (default 1000)
  --oob-method M       lock (x-oob-test, default) or load
  --large-size BYTES   string size of large requests (default 1048576)
  --pid PID            server pid, for idle
  --command NAME       in-band command of the throughput modes (default query-status)
  --json               JSON lines on stdout, table on stderr
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut count: Option<usize> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--socket" => o.sockets.push(PathBuf::from(val(a)?)),
            "--socket-count" => count = Some(num(&val(a)?, a)?),
            "--label" => o.label = val(a)?,
            "--mode" => {
                for m in val(a)?.split(',') {
                    if m == "all" {
                        o.modes.extend(Mode::ALL);
                    } else {
                        o.modes
                            .push(Mode::parse(m).ok_or_else(|| format!("unknown mode {m}"))?);
                    }
                }
            }
            "--duration" => o.duration = secs(&val(a)?, a)?,
            "--max-ops" => o.max_ops = num::<u64>(&val(a)?, a)?.max(1),
            "--io-timeout" => o.io_timeout = secs(&val(a)?, a)?,
            "--window" => o.window = num(&val(a)?, a)?,
            "--clients" => o.clients = num(&val(a)?, a)?,
            "--idle-clients" => o.idle_clients = num(&val(a)?, a)?,
            "--oob-method" => {
                o.oob_method = match val(a)?.as_str() {
                    "lock" => OobMethod::Lock,
                    "load" => OobMethod::Load,
                    m => return Err(format!("unknown oob method {m}")),
                }
            }
            "--large-size" => o.large_size = num(&val(a)?, a)?,
            "--pid" => o.pid = Some(num(&val(a)?, a)?),
            "--command" => o.command = val(a)?,
            "--json" => o.json = true,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if let Some(n) = count {
        o.sockets = o
            .sockets
            .iter()
            .flat_map(|p| {
                let s = p.to_string_lossy().into_owned();
                (0..n).map(move |i| PathBuf::from(s.replace("{i}", &i.to_string())))
            })
            .collect();
    }
    if o.sockets.is_empty() {
        return Err("at least one --socket is needed".into());
    }
    if o.modes.is_empty() {
        return Err("--mode is needed".into());
    }
    if !(1..=MAX_WINDOW).contains(&o.window) {
        return Err(format!("--window must be 1..={MAX_WINDOW}"));
    }
    if !(1..=MAX_CLIENTS).contains(&o.clients) || !(1..=MAX_CLIENTS).contains(&o.idle_clients) {
        return Err(format!("client counts must be 1..={MAX_CLIENTS}"));
    }
    if o.command.contains('"') || o.command.contains('\\') {
        return Err("--command must be a plain command name".into());
    }
    Ok(o)
}

fn num<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{name}: not a number: {s}"))
}

fn secs(s: &str, name: &str) -> Result<Duration, String> {
    let v: f64 = num(s, name)?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{name}: out of range: {s}"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn socket_patterns_expand() {
        let o = parse(&args("--socket /t/m{i}.sock --socket-count 3 --mode idle")).unwrap();
        let names: Vec<_> = o.sockets.iter().map(|p| p.to_string_lossy()).collect();
        assert_eq!(names, ["/t/m0.sock", "/t/m1.sock", "/t/m2.sock"]);
    }

    #[test]
    fn all_expands_and_bad_values_are_refused() {
        let o = parse(&args("--socket s --mode all")).unwrap();
        assert_eq!(o.modes, Mode::ALL);
        assert!(parse(&args("--socket s --mode nope")).is_err());
        assert!(parse(&args("--socket s --mode large --window 9")).is_err());
        assert!(parse(&args("--mode large")).is_err());
        assert!(parse(&args("--socket s --mode large --duration x")).is_err());
    }
}
