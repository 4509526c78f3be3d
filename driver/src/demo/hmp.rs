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

/// QEMU's complaint about arguments given to a command that takes none: `name` as the command
/// table spells it (`stop|s`), `typed` as the user did (`s`, `info status`).
fn extraneous(name: &str, typed: &str) -> String {
    format!(
        "{name}: extraneous characters at the end of line\r\nTry \"help {typed}\" for more information\r\n"
    )
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
        "help" | "?" => help(&rest),
        _ => {
            let Some((names, _)) = HELP.iter().find(|(names, _)| names.contains(&cmd)) else {
                return unknown(cmd);
            };
            if !rest.is_empty() {
                return extraneous(&names.join("|"), cmd);
            }
            match names[0] {
                "stop" => machine.stop(ctx),
                "cont" => machine.cont(ctx),
                "system_powerdown" => machine.powerdown(ctx),
                "quit" => machine.quit(ctx),
                _ => {}
            }
            String::new()
        }
    }
}

/// `help [cmd [subcmd]]`: everything, one command's line, or one `info` subcommand's line;
/// words after those are ignored, as QEMU does.
fn help(rest: &[&str]) -> String {
    match rest {
        [] => lines(HELP.iter().map(|(_, l)| *l)),
        ["info"] => lines(INFO_HELP.iter().map(|(_, l)| *l)),
        ["info", sub, ..] => match INFO_HELP.iter().find(|(n, _)| n == sub) {
            Some((_, l)) => format!("{l}\r\n"),
            None => unknown(&format!("info {sub}")),
        },
        [name, ..] => match HELP.iter().find(|(names, _)| names.contains(name)) {
            Some((_, l)) => format!("{l}\r\n"),
            None => unknown(name),
        },
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
        return extraneous(sub, &format!("info {sub}"));
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
