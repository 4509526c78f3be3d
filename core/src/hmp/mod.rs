//! The human monitor (HMP) of QEMU 7.2 as pure, deterministic parts: the line editor
//! ([`ReadLine`]), the command table ([`HmpCommand`]), the argument parser and the texts of
//! `help`, `info` and tab completion. The server (`server/human.rs`) puts them together into
//! a second kind of monitor on the same [`Server`](crate::server::Server).
//!
//! How an HMP monitor behaves, as in QEMU: on open it prints the banner and `(qemu) `; every
//! byte is echoed by the line editor; a finished line suspends the monitor (bytes typed ahead
//! wait) and joins the in-band queue like a QMP request, so HMP commands run one at a time
//! with every other in-band command, in the dispatcher's round robin; when the command has
//! printed its output the monitor resumes, which prints the prompt again. HMP monitors get no
//! QMP events.
//!
//! The embedder's HMP commands are calls named `hmp <name>` (see [`HMP_CALL_PREFIX`]) whose
//! arguments are those the `args_type` parser produced; a [`CallResult::Return`] of a string
//! is printed (each `\n` as `\r\n`), an error is printed as `Error: <desc>`.
//!
//! [`CallResult::Return`]: crate::server::CallResult::Return

mod args;
mod expr;
pub(crate) mod help;
pub mod readline;
pub(crate) mod table;

pub(crate) use args::{parse_arguments, FmtDefaults};
pub use readline::{Completions, ReadLine};
pub(crate) use table::{compare_cmd, Builtin, Table};
pub use table::{HmpCommand, HMP_CALL_PREFIX};

/// QEMU's `monitor_puts`: append `text` with every `\n` written as `\r\n`, up to a NUL.
pub(crate) fn puts(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            0 => return,
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
}
