//! qmpd: a demo QMP daemon on qmp-core, mirroring QEMU 7.2 `-machine none` for every command
//! it implements.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use qmp_core::json::{Object, Value};
use qmp_core::server::qapi::QapiSchema;
use qmp_core::server::{ArgType, Config, Dialect, RunState};
use qmp_io::{Builder, ListenSpec, QmpServerBuilder};

/// A demo QMP daemon: QEMU 7.2's monitor protocol (or QEMU 2.12's) over Unix and TCP sockets,
/// with a small machine behind it (`-machine none`).
#[derive(Parser, Debug)]
#[command(name = "qmpd", version, about, long_about = None)]
struct Args {
    /// Where to listen (repeatable): `unix:PATH` or `tcp:HOST:PORT`, followed by options:
    /// `,oob=on|off` offer the oob capability (default: on for qemu-7.2, off for qemu-2.12,
    /// where on means QEMU's x-oob=on); `,pretty=on` pretty-print replies, events and the
    /// greeting; `,clients=N` serve N clients at once (default 1: like a QEMU socket chardev,
    /// the next client waits unanswered in the backlog until the current one leaves);
    /// `,id=NAME` the chardev id shown by query-yank (default compat_monitorI for the I-th listener, as QEMU names -qmp chardevs).
    /// `,mode=readline` a human monitor (HMP, QEMU's -monitor) instead of QMP (`mode=control`).
    /// Unix sockets are created with mode 0600; TCP must be loopback unless --allow-remote.
    #[arg(long = "listen", value_name = "SPEC", required_unless_present = "monitor", value_parser = ListenSpec::parse)]
    listen: Vec<ListenSpec>,

    /// `stdio`: a human monitor (HMP) on standard input and output too, as QEMU's
    /// `-monitor stdio`: banner and `(qemu) ` prompt, QEMU's echo and line editing. On a
    /// terminal, raw mode as QEMU sets it (no local echo; ctrl-c still stops qmpd), restored at
    /// exit. EOF on standard input ends its input only: qmpd keeps running, as QEMU does.
    #[arg(long, value_name = "DEV", value_parser = ["stdio"])]
    monitor: Option<String>,

    /// Start in QEMU's preconfig state (`qemu -preconfig`): only commands allowed there run
    /// (QMP `allow-preconfig`, HMP flag `p`), until QMP `x-exit-preconfig` or HMP
    /// `exit_preconfig` starts the machine (RESUME).
    #[arg(long)]
    preconfig: bool,

    /// Which QEMU to behave like: qemu-7.2 (exec-oob, suspend on a full queue) or qemu-2.12
    /// (control.run-oob, id required with OOB, COMMAND_DROPPED on a full queue).
    #[arg(long, value_name = "DIALECT", default_value = "qemu-7.2", value_parser = parse_dialect)]
    dialect: Dialect,

    /// Record the session as a qmp-core trace in FILE (JSON lines), replayable with
    /// `qmp-sim replay FILE` to the same digest.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,

    /// Log level: off, error, warn, info (one summary line per connection), debug, trace.
    /// Logs go to stderr.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: tracing::level_filters::LevelFilter,

    /// Accept TCP listeners on non-loopback addresses (QMP has no authentication).
    #[arg(long)]
    allow_remote: bool,

    /// Most connections open at once across all listeners; further clients wait in the backlog.
    #[arg(long, value_name = "N", default_value_t = qmp_io::server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Let the dispatcher read a client's next requests itself while it waits for work after
    /// answering that client (`false`: only the IO thread reads, as in QEMU).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    dispatcher_reads: bool,

    /// Offer the test commands `x-oob-test` (an in-band lock released out of band) and
    /// `x-emit-event` (emit any event). Off by default: they are for test suites, not for
    /// management tools.
    #[arg(long)]
    test_commands: bool,

    /// Which adapter serves the monitor: std (an IO thread and a dispatcher thread, as QEMU)
    /// or tokio (one task on a single-threaded tokio runtime; the same machine and protocol).
    #[arg(long, value_name = "RUNTIME", default_value = "std", value_parser = ["std", "tokio"])]
    runtime: String,

    /// Report this QEMU version (MAJOR.MINOR.MICRO) in the greeting, query-version and
    /// `info version` instead of qmpd's own (for byte-for-byte comparisons with QEMU).
    #[arg(long, value_name = "X.Y.Z", value_parser = parse_version)]
    qemu_version: Option<(i64, i64, i64)>,

    /// The `package` string to report with the version (default: "qmpd", or "" with
    /// --qemu-version).
    #[arg(long, value_name = "STR")]
    package: Option<String>,

    /// The whole version object as JSON (overrides --qemu-version and --package), e.g.
    /// '{"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}'.
    #[arg(long, value_name = "JSON")]
    version_object: Option<String>,

    /// Serve every command of a QAPI schema: FILE is QEMU's `query-qmp-schema` reply (made by
    /// `scripts/qmp-schema-dump`). Arguments are checked against it, `query-qmp-schema`
    /// answers with it, and a valid call to a command qmpd does not implement gets an error.
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    match s {
        "qemu-7.2" | "7.2" => Ok(Dialect::Qemu72),
        "qemu-2.12" | "2.12" => Ok(Dialect::Qemu212),
        _ => Err(format!("unknown dialect '{s}' (qemu-7.2 or qemu-2.12)")),
    }
}

fn parse_version(s: &str) -> Result<(i64, i64, i64), String> {
    let parts: Vec<i64> = s
        .split('.')
        .map(|p| p.parse::<i64>().map_err(|_| format!("bad version '{s}'")))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [a, b, c] => Ok((a, b, c)),
        _ => Err(format!("bad version '{s}' (expected MAJOR.MINOR.MICRO)")),
    }
}

fn version_value(args: &Args) -> Result<Value, String> {
    if let Some(json) = &args.version_object {
        // qmp-core's own parser keeps member order, from which the writer derives QEMU's.
        return qmp_core::json::parse_value(json.as_bytes())
            .filter(|v| v.as_object().is_some())
            .ok_or_else(|| "--version-object: not a JSON object".to_string());
    }
    let ((major, minor, micro), default_package) = match args.qemu_version {
        Some(v) => (v, ""),
        None => {
            let n = |s: &str| s.parse::<i64>().unwrap_or(0);
            (
                (
                    n(env!("CARGO_PKG_VERSION_MAJOR")),
                    n(env!("CARGO_PKG_VERSION_MINOR")),
                    n(env!("CARGO_PKG_VERSION_PATCH")),
                ),
                "qmpd",
            )
        }
    };
    let mut qemu = Object::new();
    // QEMU builds VersionTriple as major, minor, micro; the writer derives the wire order from it.
    qemu.insert("major", Value::Int(major));
    qemu.insert("minor", Value::Int(minor));
    qemu.insert("micro", Value::Int(micro));
    let mut v = Object::new();
    v.insert("qemu", Value::Object(qemu));
    v.insert(
        "package",
        Value::string(args.package.as_deref().unwrap_or(default_package)),
    );
    Ok(Value::Object(v))
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmpd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let version = version_value(&args)?;
    // Each dialect with its own tables (2.12: its throttle table).
    let base = match args.dialect {
        Dialect::Qemu212 => Config::qemu212(),
        Dialect::Qemu72 => Config::default(),
    };
    let config = Config {
        version: version.clone(),
        run_state: if args.preconfig {
            RunState::Preconfig
        } else {
            base.run_state
        },
        ..base
    };
    let machine = qmp_io::demo::Machine::new(&version);
    if args.preconfig {
        machine.start_in_preconfig();
    }
    let schema = match &args.schema {
        Some(path) => Some(qmp_io::qapi::load_schema(path).map_err(|e| format!("--schema {e}"))?),
        None => None,
    };
    if args.runtime == "tokio" {
        #[cfg(feature = "tokio")]
        return run_tokio(&args, config, machine, schema);
        #[cfg(not(feature = "tokio"))]
        return Err("--runtime tokio: qmpd was built without the 'tokio' feature".into());
    }
    let builder = QmpServerBuilder::new(config).dispatcher_reads(args.dispatcher_reads);
    let server = configure(builder, &args, &machine, schema.as_ref())?
        .build()
        .map_err(|e| e.to_string())?;
    if args.monitor.is_some() {
        server
            .monitor_stdio()
            .map_err(|e| format!("--monitor stdio: {e}"))?;
    }
    for a in server.addresses() {
        tracing::info!(address = %a, "listening");
    }
    server.run().map_err(|e| e.to_string())
}

/// What qmpd sets on either adapter's builder: listeners and their policy, signals, the demo
/// machine and the schema, shutdown, recording.
fn configure<A>(
    mut builder: Builder<A>,
    args: &Args,
    machine: &std::sync::Arc<qmp_io::demo::Machine>,
    schema: Option<&std::sync::Arc<QapiSchema>>,
) -> Result<Builder<A>, String> {
    builder = builder
        .allow_remote(args.allow_remote)
        .max_connections(args.max_connections)
        .handle_signals(true);
    for l in &args.listen {
        builder = builder.listen(l.clone());
    }
    let test_commands = args.test_commands;
    builder = builder.commands(|r| machine.register(r, test_commands));
    builder = builder.commands(|r| register_schema(r, schema));
    let m = machine.clone();
    builder = builder.on_shutdown(move || m.release());
    if let Some(path) = &args.record {
        let sink = qmp_io::record::file_sink_for(path, &builder)
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
        builder = builder.record(sink);
    }
    Ok(builder)
}

/// `query-qmp-schema`: with `--schema`, every command of that schema with its argument checking
/// (see `qmp_driver::qapi::serve_schema`); otherwise the demo machine's commands, return types
/// and events.
fn register_schema(r: &mut qmp_io::Registry, schema: Option<&std::sync::Arc<QapiSchema>>) {
    match schema {
        Some(schema) => qmp_io::qapi::serve_schema(r, schema),
        None => {
            use qmp_io::demo::schema;
            qmp_io::qapi::declare_returns(r, schema::returns, schema::features);
            let spec = qmp_core::server::CommandSpec::new("query-qmp-schema")
                .allow_preconfig()
                .returns(schema::returns("query-qmp-schema").unwrap_or(ArgType::Any));
            qmp_io::qapi::serve_query_qmp_schema(r, spec, &schema::events());
        }
    }
}

#[cfg(feature = "tokio")]
/// The same daemon on the tokio adapter. One task owns every socket and the driver, so a
/// single-threaded runtime serves it; a second worker would only add wake-ups between threads.
fn run_tokio(
    args: &Args,
    config: Config,
    machine: std::sync::Arc<qmp_io::demo::Machine>,
    schema: Option<std::sync::Arc<QapiSchema>>,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        // The demo machine's synchronous handlers never block (its one waiting command,
        // `x-oob-test`, is async): they run in the loop task, with no hop per call.
        let builder = qmp_io::tokio::TokioServerBuilder::new(config)
            .sync_handlers(qmp_io::tokio::SyncHandlers::Inline);
        let builder = configure(builder, args, &machine, schema.as_ref())?;
        let mut server = builder.build().map_err(|e| e.to_string())?;
        if args.monitor.is_some() {
            server
                .monitor_stdio()
                .map_err(|e| format!("--monitor stdio: {e}"))?;
        }
        for a in server.addresses() {
            tracing::info!(address = %a, runtime = "tokio", "listening");
        }
        server.run().await.map_err(|e| e.to_string())
    })
}
