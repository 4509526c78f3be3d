//! What one human monitor (HMP) connection must print, checked byte by byte as the core
//! produces it: the people's model ([`crate::hmp_model`]) queues what each key and line must
//! show ([`Want`]), and a small terminal (one screen line, a cursor, `ESC [ C/D/K`, CR, LF)
//! replays the echo. The echo bytes themselves are not predicted, only their effect: when a
//! line is entered, the screen line must read what was there at the prompt plus the line the
//! model computed. Everything else (banner, prompts, command output, completion listings) is
//! predicted exactly.
//!
//! Bounds: the screen line is at most [`MAX_SCREEN`] cells (more is a failure: the core drew
//! past any line the people typed); the queue holds what the people typed ahead, bounded by
//! the world's request budget.

use std::collections::VecDeque;

use crate::hmp_model::PROMPT;
use crate::model::show;

/// Widest screen line the terminal keeps (a drawn line plus a prompt and command output).
pub const MAX_SCREEN: usize = 4096;

/// The input the core was applying when bytes appeared (for the dispatcher checks).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum During {
    /// `NextInBand`.
    Dispatch,
    /// `Complete` of a call.
    Complete,
    /// `Event` or `Tick`: nothing may appear on a human monitor
    /// ([`crate::invariants::hmp_no_events`]).
    Event,
    /// Anything else.
    Other,
}

/// One expected piece of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// The prompt; the screen line then holds what is left of the line before it plus the
    /// prompt, and the echo of the next line starts.
    Prompt,
    /// Echo until CR LF, after which the screen line must be the prompt's plus this line.
    LineEnd(Vec<u8>),
    /// The line starts running here: its output comes during `NextInBand` (or, with `call`,
    /// during `Complete`, after the embedder's call number `call` of this connection).
    Runs {
        /// The embedder's call this line causes (1-based count on the connection).
        call: Option<u64>,
    },
    /// Lines of text not predicted, up to the next prompt.
    AnyLines,
}

/// A connection's screen and what it still must show.
#[derive(Clone, Debug, Default)]
pub struct Screen {
    wants: VecDeque<Want>,
    /// Progress into the front `Exact`/`Prompt`.
    at: usize,
    cells: Vec<u8>,
    col: usize,
    /// The screen line when the current prompt was drawn (plus the prompt).
    origin: Vec<u8>,
    /// 0: normal, 1: after ESC, 2: after ESC [.
    esc: u8,
    /// A CR was drawn; a LF must follow.
    cr: bool,
    /// Embedder calls seen on this connection.
    pub calls_seen: u64,
    /// Lines whose output began (marks).
    pub lines_run: u64,
}

fn is_event_text(b: &[u8]) -> bool {
    let t = String::from_utf8_lossy(b);
    t.contains("\"event\"") || t.contains("\"timestamp\"")
}

impl Screen {
    /// Queue an expectation.
    pub fn want(&mut self, w: Want) {
        self.wants.push_back(w);
    }

    /// Nothing more is expected (the people's typing has all been answered).
    pub fn idle(&self) -> bool {
        self.wants.is_empty()
    }

    /// What is still expected, for a liveness report.
    pub fn pending(&self) -> Option<String> {
        self.wants.front().map(|w| {
            format!(
                "{} expected output pieces, first {w:?} (screen line {})",
                self.wants.len(),
                show(&self.cells)
            )
        })
    }

    /// Checks fresh output bytes; on failure, (oracle, detail).
    pub fn feed(&mut self, bytes: &[u8], during: During) -> Result<(), (&'static str, String)> {
        for (k, &b) in bytes.iter().enumerate() {
            self.byte(b, during).map_err(|(o, d)| {
                let o = if is_event_text(&bytes[k..]) {
                    "hmp-event"
                } else {
                    o
                };
                (
                    o,
                    format!(
                        "{d}; screen line {}, output from here {}",
                        show(&self.cells),
                        show(&bytes[k..bytes.len().min(k + 200)])
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Zero-width expectations at the front, checked as the next byte arrives.
    fn runs(&mut self, during: During) -> Result<(), (&'static str, String)> {
        while let Some(Want::Runs { call }) = self.wants.front() {
            let call = *call;
            match call {
                Some(n) if self.calls_seen < n => {
                    return Err((
                        "hmp-call-missing",
                        format!("a line printed before its call number {n} was issued"),
                    ))
                }
                Some(_) if during != During::Complete => {
                    return Err((
                        "hmp-outside-dispatcher",
                        format!("a called line printed during {during:?}, not when its call completed"),
                    ))
                }
                None if during != During::Dispatch => {
                    return Err((
                        "hmp-outside-dispatcher",
                        format!("a line's output appeared during {during:?}, not when the dispatcher took it"),
                    ))
                }
                _ => {}
            }
            self.lines_run += 1;
            self.wants.pop_front();
        }
        Ok(())
    }

    fn draw(&mut self, b: u8) -> Result<(), (&'static str, String)> {
        match (self.esc, b) {
            (0, 0x1b) => self.esc = 1,
            (1, b'[') => self.esc = 2,
            (2, b'D') => {
                self.col = self.col.saturating_sub(1);
                self.esc = 0;
            }
            (2, b'C') => {
                self.col += 1;
                self.esc = 0;
            }
            (2, b'K') => {
                self.cells.truncate(self.col);
                self.esc = 0;
            }
            (1 | 2, _) => {
                return Err((
                    "hmp-echo",
                    format!("escape sequence the line editor never writes (byte {b:#04x})"),
                ))
            }
            (_, b'\r') => {
                self.cr = true;
                self.col = 0;
            }
            (_, b'\n') => {
                self.cr = false;
                self.cells.clear();
                self.col = 0;
            }
            (_, 0x20..=0x7e) => {
                if self.col >= MAX_SCREEN {
                    return Err(("hmp-echo", "screen line runs past any typed line".into()));
                }
                if self.cells.len() <= self.col {
                    self.cells.resize(self.col + 1, b' ');
                }
                self.cells[self.col] = b;
                self.col += 1;
            }
            _ => return Err(("hmp-echo", format!("byte {b:#04x} on the screen"))),
        }
        Ok(())
    }

    fn byte(&mut self, b: u8, during: During) -> Result<(), (&'static str, String)> {
        self.runs(during)?;
        if self.cr && b != b'\n' {
            return Err(("hmp-echo", "CR without LF".into()));
        }
        match self.wants.front() {
            Some(Want::Exact(e)) => {
                if e.get(self.at) != Some(&b) {
                    return Err((
                        "hmp-output",
                        format!("expected {} (byte {} of it)", show(e), self.at),
                    ));
                }
                let done = self.at + 1 == e.len();
                self.draw(b)?;
                self.at += 1;
                if done {
                    self.at = 0;
                    self.wants.pop_front();
                }
            }
            Some(Want::Prompt) => {
                if PROMPT.get(self.at) != Some(&b) {
                    return Err((
                        "hmp-output",
                        format!("expected the prompt (byte {} of it)", self.at),
                    ));
                }
                self.draw(b)?;
                self.at += 1;
                if self.at == PROMPT.len() {
                    self.at = 0;
                    self.wants.pop_front();
                    self.origin = self.cells.clone();
                }
            }
            Some(Want::AnyLines) => {
                // A line that starts like the prompt is taken for it.
                self.draw(b)?;
                if self.at != usize::MAX && PROMPT.get(self.at) == Some(&b) {
                    self.at += 1;
                    if self.at == PROMPT.len() {
                        self.at = 0;
                        self.wants.pop_front();
                        self.origin = self.cells.clone();
                    }
                } else if b == b'\n' {
                    self.at = 0;
                } else {
                    self.at = usize::MAX;
                }
            }
            Some(Want::LineEnd(line)) => {
                let was_cr = self.cr;
                if !was_cr && b == b'\r' {
                    let o = self.origin.len();
                    if self.cells.get(..o) != Some(&self.origin[..]) || self.cells[o..] != line[..]
                    {
                        let mut expect = self.origin.clone();
                        expect.extend_from_slice(line);
                        return Err((
                            "hmp-line",
                            format!(
                                "the line entered shows {} on the screen, the model typed {}",
                                show(&self.cells),
                                show(&expect)
                            ),
                        ));
                    }
                }
                self.draw(b)?;
                if was_cr && b == b'\n' {
                    self.wants.pop_front();
                }
            }
            Some(Want::Runs { .. }) => unreachable!("handled by runs()"),
            None => {
                // Echo of a line still being typed: anything but a line end.
                if matches!(b, b'\r' | b'\n') {
                    return Err((
                        "hmp-output",
                        "a line end the typed keys do not explain".into(),
                    ));
                }
                self.draw(b)?;
            }
        }
        Ok(())
    }
}
