//! The human monitor commands qmpd understands through `human-monitor-command`, with QEMU 7.2's
//! texts: `info status`, `info version`, `info name`, `info`, `help [cmd]`, `stop`, `cont`,
//! `system_powerdown`, `quit`, and QEMU's answer to anything else.
//!
//! Every output line ends in `\r\n`, as QEMU's `monitor_puts` writes it. `help` and `info`
//! list only the commands qmpd implements (QEMU lists its ~150); each line is QEMU's own.

use super::Machine;
use crate::CallContext;

/// QEMU 7.2's help lines for the top-level commands qmpd implements, in QEMU's (sorted) order.
const HELP: &[(&[&str], &str)] = &[
    (&["cont", "c"], "cont|c  -- resume emulation"),
    (&["help", "?"], "help|? [cmd] -- show the help"),
    (
        &["info"],
        "info [subcommand] -- show various information about the system state",
    ),
    (&["quit", "q"], "quit|q  -- quit the emulator"),
    (&["stop", "s"], "stop|s  -- stop emulation"),
    (
        &["system_powerdown"],
        "system_powerdown  -- send system power down event",
    ),
];

/// QEMU 7.2's help lines for the `info` subcommands qmpd implements.
const INFO_HELP: &[(&str, &str)] = &[
    ("name", "info name  -- show the current VM name"),
    (
        "status",
        "info status  -- show the current VM status (running|paused)",
    ),
    ("version", "info version  -- show the version of QEMU"),
];

fn unknown(cmd: &str) -> String {
    format!("unknown command: '{cmd}'\r\n")
}

fn lines(ls: impl Iterator<Item = &'static str>) -> String {
    ls.map(|l| format!("{l}\r\n")).collect()
}

/// Run one HMP command line and return what QEMU would print.
pub fn run(machine: &Machine, ctx: &CallContext<'_>, line: &str) -> String {
    let mut words = line.split_ascii_whitespace();
    let Some(cmd) = words.next() else {
        return String::new();
    };
    let rest: Vec<&str> = words.collect();
    match cmd {
        "info" => info(machine, &rest),
        "help" | "?" => match rest.first() {
            None => lines(HELP.iter().map(|(_, l)| *l)),
            Some(&"info") => lines(INFO_HELP.iter().map(|(_, l)| *l)),
            Some(name) => match HELP.iter().find(|(names, _)| names.contains(name)) {
                Some((_, l)) => format!("{l}\r\n"),
                None => unknown(name),
            },
        },
        "stop" | "s" => {
            machine.stop(ctx);
            String::new()
        }
        "cont" | "c" => {
            machine.cont(ctx);
            String::new()
        }
        "system_powerdown" => {
            machine.powerdown(ctx);
            String::new()
        }
        "quit" | "q" => {
            machine.quit(ctx);
            String::new()
        }
        other => unknown(other),
    }
}

fn info(machine: &Machine, rest: &[&str]) -> String {
    let Some(sub) = rest.first() else {
        return lines(INFO_HELP.iter().map(|(_, l)| *l));
    };
    if !INFO_HELP.iter().any(|(n, _)| n == sub) {
        return unknown(&format!("info {sub}"));
    }
    if rest.len() > 1 {
        return format!(
            "{sub}: extraneous characters at the end of line\r\nTry \"help info {sub}\" for more information\r\n"
        );
    }
    match *sub {
        "status" => format!(
            "VM status: {}\r\n",
            if machine.is_running() {
                "running"
            } else {
                "paused"
            }
        ),
        "version" => format!("{}\r\n", machine.version_text()),
        // `info name` prints nothing when the VM has no name (qmpd has none, like QEMU without
        // -name).
        _ => String::new(),
    }
}
