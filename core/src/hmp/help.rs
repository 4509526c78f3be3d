//! `help`, `info` without a subcommand, and tab completion over the command table
//! (`help_cmd`, `help_cmd_dump`, `monitor_find_completion` of QEMU 7.2's `monitor/hmp.c`).
//!
//! Commands not available in the current phase (no `p` flag before the machine is ready)
//! are left out of listings and completions, and `help <them>` answers `unknown command`.
//! Texts end lines in `\n`; the monitor turns them into `\r\n` when it prints them.

use super::args::{is_space, parse_cmdline};
use super::readline::Completions;
use super::table::{compare_cmd, Builtin, Entry, Table};

/// QEMU's `cmd_available`: the machine is ready, or the command may run in preconfig.
pub(crate) fn available(e: &Entry, preconfig: bool) -> bool {
    !preconfig || e.cmd.preconfig()
}

/// The sub-table of an entry (`info`'s), if any.
fn sub_table(e: &Entry) -> bool {
    e.builtin == Some(Builtin::Info)
}

fn dump_one(e: &Entry, prefix: &[Vec<u8>], preconfig: bool, out: &mut Vec<u8>) {
    if !available(e, preconfig) {
        return;
    }
    for p in prefix {
        out.extend_from_slice(p);
        out.push(b' ');
    }
    out.extend_from_slice(e.cmd.name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(e.cmd.params.as_bytes());
    out.extend_from_slice(b" -- ");
    out.extend_from_slice(e.cmd.help.as_bytes());
    out.push(b'\n');
}

fn dump(
    table: &Table,
    info: bool,
    args: &[Vec<u8>],
    at: usize,
    preconfig: bool,
    out: &mut Vec<u8>,
) {
    let cmds = table.entries(info);
    if at >= args.len() {
        for e in cmds {
            dump_one(e, &args[..at], preconfig, out);
        }
        return;
    }
    if let Some(e) = cmds
        .iter()
        .find(|e| compare_cmd(&args[at], &e.cmd.name) && available(e, preconfig))
    {
        if !info && sub_table(e) {
            dump(table, true, args, at + 1, preconfig, out);
        } else {
            dump_one(e, &args[..at], preconfig, out);
        }
        return;
    }
    out.extend_from_slice(b"unknown command: '");
    for (i, a) in args[..=at].iter().enumerate() {
        out.extend_from_slice(a);
        out.extend_from_slice(if i == at { b"'\n" } else { b" " });
    }
}

/// `help_cmd`: everything, or what `name` (the rest of the `help` line) names.
pub(crate) fn help(table: &Table, name: Option<&[u8]>, preconfig: bool, out: &mut Vec<u8>) {
    let args = match name {
        Some(n) => match parse_cmdline(n) {
            Some(a) => a,
            None => return,
        },
        None => Vec::new(),
    };
    dump(table, false, &args, 0, preconfig, out);
}

fn cmd_completion(name: &[u8], list: &str, c: &mut Completions) {
    for alias in list.as_bytes().split(|&b| b == b'|') {
        let alias = &alias[..alias.len().min(126)];
        if name.is_empty() || alias.starts_with(name) {
            c.add(alias);
        }
    }
}

fn by_table(table: &Table, info: bool, args: &[Vec<u8>], preconfig: bool, c: &mut Completions) {
    let cmds = table.entries(info);
    if args.len() <= 1 {
        let name: &[u8] = args.first().map_or(&[], |a| a);
        c.index = name.len();
        for e in cmds.iter().filter(|e| available(e, preconfig)) {
            cmd_completion(name, &e.cmd.name, c);
        }
        return;
    }
    let Some(e) = cmds
        .iter()
        .find(|e| compare_cmd(&args[0], &e.cmd.name) && available(e, preconfig))
    else {
        return;
    };
    if !info && sub_table(e) {
        by_table(table, true, &args[1..], preconfig, c);
        return;
    }
    // The argument being completed: its type, skipping one type per earlier argument (and
    // optional markers), then any options.
    let next = |t: &str| -> usize { t.find(':').map_or(0, |i| i + 1) };
    let at = e.cmd.args_type.as_str();
    let mut ptype = &at[next(at)..];
    for _ in 0..args.len() - 2 {
        if !ptype.is_empty() {
            ptype = &ptype[next(ptype)..];
            while ptype.starts_with('?') && next(ptype) > 0 {
                ptype = &ptype[next(ptype)..];
            }
        }
    }
    // QEMU stops when the pointer no longer moves (no `:` left).
    while ptype.starts_with('-') && next(ptype) > 0 {
        ptype = &ptype[next(ptype)..];
    }
    // Files and block devices are not known to the core; strings complete only for `help`.
    if matches!(ptype.as_bytes().first(), Some(b's' | b'S')) && e.builtin == Some(Builtin::Help) {
        by_table(table, info, &args[1..], preconfig, c);
    }
}

/// `monitor_find_completion`: candidates for the text before the cursor.
pub(crate) fn complete(table: &Table, cmdline: &[u8], preconfig: bool) -> Completions {
    let mut c = Completions::default();
    let Some(mut args) = parse_cmdline(cmdline) else {
        return c;
    };
    if cmdline.last().copied().is_some_and(is_space) {
        if args.len() >= 16 {
            return c;
        }
        args.push(Vec::new());
    }
    by_table(table, false, &args, preconfig, &mut c);
    c
}
