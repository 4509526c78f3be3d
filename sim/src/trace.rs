//! Trace files (the core's `qmp-core-trace` format): loading them, and `qmp-sim replay`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use qmp_core::hmp::HmpCommand;
use qmp_core::server::trace::{replay, Header, Line, Recorder, TRACE_FORMAT, TRACE_VERSION};
use qmp_core::server::{CommandSpec, Config, Input, Instant, Server};

use crate::check::run_inputs_hmp;

/// A trace as data.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Seed from the header, if any.
    pub seed: Option<u64>,
    /// Server configuration.
    pub config: Config,
    /// Registered commands.
    pub commands: Vec<CommandSpec>,
    /// Registered human monitor commands.
    pub hmp_commands: Vec<HmpCommand>,
    /// Inputs with their instants.
    pub inputs: Vec<(Instant, Input)>,
}

/// Parses a trace text.
pub fn load(text: &str) -> Result<Loaded> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().context("empty trace")?;
    let Line::Header(h) = serde_json::from_str::<Line>(first).context("trace header")? else {
        bail!("first line is not a header");
    };
    let mut t = Loaded {
        seed: h.seed,
        config: h.config,
        commands: h.commands,
        hmp_commands: h.hmp_commands,
        inputs: Vec::new(),
    };
    for (n, l) in lines.enumerate() {
        match serde_json::from_str::<Line>(l).with_context(|| format!("trace line {}", n + 2))? {
            Line::Input { now, input } => t.inputs.push((Instant(now), input)),
            Line::Register { spec, .. } => t.commands.push(spec),
            _ => {}
        }
    }
    Ok(t)
}

/// A trace recorder for a server with these commands (QMP and HMP).
pub fn recorder(
    config: &Config,
    commands: &[CommandSpec],
    hmp_commands: &[HmpCommand],
    seed: Option<u64>,
) -> Recorder {
    Recorder::with_header(Header {
        format: TRACE_FORMAT.to_owned(),
        version: TRACE_VERSION,
        seed,
        config: config.clone(),
        commands: commands.to_vec(),
        hmp_commands: hmp_commands.to_vec(),
        human_monitor_command: false,
    })
}

/// A server as the trace's header describes it.
fn server_of(t: &Loaded) -> Server {
    let mut server = Server::new(t.config.clone());
    for spec in &t.commands {
        let _ = server.register(spec.clone());
    }
    for cmd in &t.hmp_commands {
        let _ = server.register_hmp(cmd.clone());
    }
    server
}

/// Writes inputs as a trace (core format) with the digest a replay must reproduce.
pub fn write(t: &Loaded) -> String {
    let mut rec = recorder(&t.config, &t.commands, &t.hmp_commands, t.seed);
    let mut server = server_of(t);
    for (now, input) in &t.inputs {
        rec.input(*now, input);
        let _ = server.handle(*now, input.clone());
        while server.poll_output().is_some() {}
    }
    rec.finish(&server)
}

/// Prints every input and the output bytes it produced for monitor `m` (debugging aid).
pub fn dump(t: &Loaded, m: u64) {
    let mut server = server_of(t);
    let mon = qmp_core::server::MonitorId(m);
    let mut seen = 0usize;
    for (n, (now, input)) in t.inputs.iter().enumerate() {
        let shown = match input {
            Input::Receive { monitor, bytes, .. } if *monitor == mon => {
                format!("Receive {:?}", String::from_utf8_lossy(bytes))
            }
            Input::Written { monitor, n } if *monitor == mon => format!("Written {n}"),
            Input::Receive { .. } | Input::Written { .. } => String::new(),
            other => format!("{other:?}"),
        };
        if !shown.is_empty() {
            println!("#{} t={} {}", n + 1, now.0, shown);
        }
        if let Input::Written { monitor, n } = input {
            if *monitor == mon {
                seen = seen.saturating_sub(*n);
            }
        }
        let _ = server.handle(*now, input.clone());
        while let Some(o) = server.poll_output() {
            if let qmp_core::server::Output::Call(c) = &o {
                println!(
                    "    -> call {} {} {:?} on {}",
                    c.id.0, c.command, c.lane, c.monitor.0
                );
            }
        }
        let p = server.pending_output(mon);
        if p.len() > seen {
            println!("    <- {:?}", String::from_utf8_lossy(&p[seen..]));
        }
        seen = p.len();
    }
}

/// Exit code of `qmp-sim replay` for a trace whose last line was cut (the recording process
/// died mid-write, e.g. `kill -9`), when every whole input replayed and the invariants hold.
/// A failing check still exits with its class's code (127 crash, 128 liveness, 129 correctness).
pub const EXIT_CUT_TRACE: u8 = 3;

/// A trace file's whole lines, and the length of a cut last line (bytes after the last newline
/// that are not a complete trace line), if any.
pub fn whole_lines(bytes: &[u8]) -> Result<(&str, Option<usize>)> {
    let end = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let tail = &bytes[end..];
    let tail_whole = !tail.is_empty()
        && std::str::from_utf8(tail).is_ok_and(|t| serde_json::from_str::<Line>(t).is_ok());
    let (keep, cut) = if tail.is_empty() || tail_whole {
        (bytes, None)
    } else {
        (&bytes[..end], Some(tail.len()))
    };
    let text = std::str::from_utf8(keep).context("the trace is not UTF-8")?;
    Ok((text, cut))
}

/// `qmp-sim replay TRACE`: digest check, then the intent-free invariants. Exit code by class;
/// a cut last line is dropped, said, and gives [`EXIT_CUT_TRACE`] when nothing failed.
pub fn cmd_replay(path: &Path) -> Result<u8> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (text, cut) = whole_lines(&bytes)?;
    if let Some(n) = cut {
        println!(
            "the trace's last line is cut ({n} bytes, the recording stopped mid-write): it is left out, every whole input before it is replayed"
        );
    }
    if let Some(m) = std::env::var("QMP_SIM_DUMP")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        dump(&load(text)?, m);
    }
    let report = match std::panic::catch_unwind(|| replay(text)) {
        Ok(r) => r.map_err(|e| anyhow::anyhow!("{e}"))?,
        Err(p) => {
            println!("replay crashed: {}", crate::failure::panic_text(p.as_ref()));
            return Ok(127);
        }
    };
    println!(
        "replayed {} inputs ({} refused as misuse), {} outputs, digest {}",
        report.inputs,
        report.misuse.len(),
        report.outputs,
        report.digest.hex()
    );
    let mut code = 0;
    match &report.expected {
        Some(e) if !report.matches() => {
            println!("DIGEST MISMATCH: the trace expects {e}");
            code = 129;
        }
        Some(_) => println!("digest matches the trace"),
        None => println!("the trace has no end line: digest not checked"),
    }
    let t = load(text)?;
    match run_inputs_hmp(&t.config, &t.commands, &t.hmp_commands, &t.inputs) {
        Ok(r) => println!("invariants hold ({} messages checked)", r.messages),
        Err(f) => {
            println!("{f}");
            code = f.class.exit_code();
        }
    }
    if let Some(seed) = t.seed {
        let planted = t
            .config
            .planted_bug
            .map(|b| format!(" --planted {b:?}"))
            .unwrap_or_default();
        println!(
            "(recorded from seed {seed}: `qmp-sim run --seed {seed} --runs 1{planted}` re-runs it with the reference model)"
        );
    }
    if code == 0 && cut.is_some() {
        println!(
            "replayed {} whole inputs of a cut trace (exit code {EXIT_CUT_TRACE})",
            t.inputs.len()
        );
        return Ok(EXIT_CUT_TRACE);
    }
    Ok(code as u8)
}
