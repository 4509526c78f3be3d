//! The process's standard input and output as one monitor connection (QEMU's `-monitor
//! stdio`), for both adapters: the two descriptors, the non-blocking mode and the terminal
//! mode, put back when the connection is dropped.
//!
//! What QEMU 7.2 does, copied here (`char-stdio.c`; checked on a pipe and on a pty): both
//! descriptors are made non-blocking (the flags belong to the open file, which the shell
//! shares, so they are put back at the end); when standard input is a terminal it gets QEMU's
//! raw mode (`qemu_chr_set_echo_stdio(false)`: no ICANON, ECHO, ECHONL, IEXTEN; no input
//! translation such as ICRNL or IXON; 8-bit characters; a read returns as soon as one byte
//! came) **with ISIG left on** (`signal=on`, the default), so ctrl-c raises SIGINT and the
//! process shuts down as on any SIGINT; OPOST stays, so a terminal shows `\r\r\n` for the
//! monitor's `\r\n` exactly as under QEMU. The terminal's settings are put back when the
//! connection ends (at the latest at shutdown), as QEMU's `term_exit` does at exit.
//!
//! Nothing here decides anything about the connection: what a read or a write returned goes
//! to the driver as a fact (`qmp_driver::Driver::open_stdio_monitor` has the rules).
//!
//! Invariant: at most one [`Stdio`] exists at a time in the process (there is one standard
//! input; QEMU: "cannot use stdio by multiple character devices").

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::OFlags;
use rustix::termios::{
    ControlModes, InputModes, LocalModes, OptionalActions, OutputModes, SpecialCodeIndex, Termios,
};

/// Set while a [`Stdio`] exists.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Standard input and output, claimed for a monitor: copies of descriptors 0 and 1 (closing
/// them leaves 0 and 1 open), non-blocking, the terminal in QEMU's raw mode. Dropping it puts
/// the file flags and the terminal back.
#[derive(Debug)]
pub struct Stdio {
    input: OwnedFd,
    output: OwnedFd,
    input_flags: OFlags,
    output_flags: OFlags,
    /// The terminal's settings before, when standard input is a terminal.
    terminal: Option<Termios>,
}

impl Stdio {
    /// Claim standard input and output. Fails when they are claimed already
    /// (`AddrInUse`) or a descriptor is not open.
    pub fn claim() -> io::Result<Stdio> {
        if CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "cannot use stdio by multiple character devices",
            ));
        }
        match Self::open() {
            Ok(s) => Ok(s),
            Err(e) => {
                CLAIMED.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn open() -> io::Result<Stdio> {
        let input = io::stdin().as_fd().try_clone_to_owned()?;
        let output = io::stdout().as_fd().try_clone_to_owned()?;
        let input_flags = rustix::fs::fcntl_getfl(&input)?;
        let output_flags = rustix::fs::fcntl_getfl(&output)?;
        let terminal = rustix::termios::tcgetattr(&input).ok();
        let stdio = Stdio {
            input,
            output,
            input_flags,
            output_flags,
            terminal,
        };
        // From here on, dropping `stdio` puts back whatever was changed.
        rustix::fs::fcntl_setfl(&stdio.input, input_flags | OFlags::NONBLOCK)?;
        rustix::fs::fcntl_setfl(&stdio.output, output_flags | OFlags::NONBLOCK)?;
        if let Some(before) = &stdio.terminal {
            rustix::termios::tcsetattr(&stdio.input, OptionalActions::Now, &raw_mode(before))?;
        }
        Ok(stdio)
    }

    /// The input side (to register for readability).
    pub fn input(&self) -> BorrowedFd<'_> {
        self.input.as_fd()
    }

    /// The output side (to register for writability).
    pub fn output(&self) -> BorrowedFd<'_> {
        self.output.as_fd()
    }

    /// Whether standard input is a terminal (and was put in raw mode).
    pub fn is_terminal(&self) -> bool {
        self.terminal.is_some()
    }

    /// One non-blocking read of standard input (`Ok(0)` at its end).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(&self.input, buf)?)
    }

    /// One non-blocking write to standard output.
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        Ok(rustix::io::write(&self.output, bytes)?)
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        if let Some(before) = &self.terminal {
            let _ = rustix::termios::tcsetattr(&self.input, OptionalActions::Now, before);
        }
        let _ = rustix::fs::fcntl_setfl(&self.input, self.input_flags);
        let _ = rustix::fs::fcntl_setfl(&self.output, self.output_flags);
        CLAIMED.store(false, Ordering::SeqCst);
    }
}

/// QEMU 7.2's `qemu_chr_set_echo_stdio(chr, false)` with `signal=on`: `before` with the line
/// discipline's editing, echo and input translation off, ISIG and output processing kept.
fn raw_mode(before: &Termios) -> Termios {
    let mut t = before.clone();
    t.input_modes.remove(
        InputModes::IGNBRK
            | InputModes::BRKINT
            | InputModes::PARMRK
            | InputModes::ISTRIP
            | InputModes::INLCR
            | InputModes::IGNCR
            | InputModes::ICRNL
            | InputModes::IXON,
    );
    t.output_modes.insert(OutputModes::OPOST);
    t.local_modes
        .remove(LocalModes::ECHO | LocalModes::ECHONL | LocalModes::ICANON | LocalModes::IEXTEN);
    t.control_modes
        .remove(ControlModes::CSIZE | ControlModes::PARENB);
    t.control_modes.insert(ControlModes::CS8);
    t.special_codes[SpecialCodeIndex::VMIN] = 1;
    t.special_codes[SpecialCodeIndex::VTIME] = 0;
    t
}

impl crate::server::QmpServer {
    /// Serve a human monitor on standard input and output too (QEMU's `-monitor stdio`; see
    /// the module docs): its banner is written when the server starts running. Call before
    /// [`crate::QmpServer::run`] or `spawn`. Fails when standard input and output are claimed
    /// already (by this server or another in the process).
    pub fn monitor_stdio(&self) -> io::Result<()> {
        let stdio = Stdio::claim()?;
        let shared = &self.shared;
        let now = shared.now();
        let (opened, close, wake, dispatch) = {
            let mut st = shared.lock();
            let opened = st.driver.open_stdio_monitor(now);
            let refused = match opened {
                Some(id) => {
                    st.adopted.push((id, crate::conn::Stream::Stdio(stdio)));
                    None
                }
                None => Some(stdio),
            };
            let close = st.settle();
            let wake = shared.io_work_left(&mut st);
            let dispatch = shared.dispatcher_wanted(&st);
            drop(st);
            // Puts the terminal back, outside the lock.
            drop(refused);
            (opened, close, wake, dispatch)
        };
        shared.after_unlock(close, dispatch, wake);
        opened.map(|_| ()).ok_or_else(refused)
    }
}

/// The driver refused a second stdio monitor (or shutdown was requested).
pub(crate) fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "the stdio monitor is open already, or the server is shutting down",
    )
}
